"""course_utils.training.ladder: configurations, skip reasons, the augmented data set, measure()."""

import multiprocessing

import numpy as np
import pytest
import torch

from course_utils.errors import UsageError
from course_utils.training import ladder

SHAPE = (3, 16, 16)


tiny_model = ladder.model_factory(8, 1, "cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One PyTorch thread: tiny models gain nothing from more, and on a shared machine an
    OpenMP team waiting for a descheduled thread is what makes tests slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset():
    return ladder.augmented_images(64, shape=SHAPE, seed=0)


def run(config, dataset, **kw):
    args = dict(model_fn=tiny_model, batch_size=16, steps=3, warmup=1, repeats=2, lr=0.05,
                seed=0)
    args.update(kw)
    return ladder.measure(config, dataset, **args)


# ------------------------------------------------------------------ configurations
@pytest.mark.parametrize("kwargs, name", [
    ({"amp": "fp8"}, "amp"),
    ({"num_workers": -1}, "num_workers"),
    ({"num_workers": 1.5}, "num_workers"),
    ({"pin_memory": "yes"}, "pin_memory"),
    ({"cuda_graphs": True, "amp": "fp16"}, "GradScaler"),
])
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(UsageError, match=name):
        ladder.LadderConfig(**kwargs)


def test_config_describe():
    cfg = ladder.LadderConfig(num_workers=2, channels_last=True, amp="bf16", compile=True)
    assert cfg.describe() == "workers=2, channels_last, bf16, compile"
    assert ladder.LadderConfig().describe() == "workers=0, fp32"


@pytest.mark.parametrize("kwargs, words", [
    ({"cuda_graphs": True}, "kernel launches"),
    ({"pin_memory": True}, "host"),
    ({"non_blocking": True}, "host"),
    ({"tf32": True}, "TF32"),
    ({"amp": "fp16"}, "bf16"),
])
def test_gpu_only_features_are_skipped_on_cpu(kwargs, words):
    reason = ladder.skip_reason(ladder.LadderConfig(**kwargs), "cpu")
    assert reason is not None and words in reason


@pytest.mark.parametrize("kwargs", [{}, {"num_workers": 2}, {"channels_last": True},
                                    {"amp": "bf16"}])
def test_cpu_features_run_on_cpu(kwargs):
    assert ladder.skip_reason(ladder.LadderConfig(**kwargs), "cpu") is None


def test_cpu_ladder_is_cumulative_and_skips_gpu_rungs():
    rungs = ladder.build_ladder("cpu", num_workers=3, compile=False)
    assert [r.name for r in rungs] == list(ladder.RUNG_NAMES)
    skipped = {r.name for r in rungs if not r.runs}
    assert skipped == {"pinned", "tf32", "fp16", "compile", "cuda_graphs"}
    by_name = {r.name: r.config for r in rungs}
    assert by_name["baseline"] == ladder.LadderConfig()
    # a skipped rung's change is not carried on: channels_last has workers, no pinning
    assert by_name["channels_last"] == ladder.LadderConfig(num_workers=3, channels_last=True)
    assert by_name["bf16"].channels_last and by_name["bf16"].amp == "bf16"
    # fp16 is a side branch: compile builds on bf16
    assert by_name["compile"].amp == "bf16" and by_name["compile"].compile
    assert "COMPILE" in str(next(r for r in rungs if r.name == "compile").skipped)


def test_ladder_runs_compile_when_asked():
    rungs = {r.name: r for r in ladder.build_ladder("cpu", num_workers=1, compile=True)}
    from course_utils.foundations.frameworks import compiler_status

    assert rungs["compile"].runs == compiler_status("cpu")[0]


@pytest.mark.parametrize("workers", [0, -2, True])
def test_ladder_rejects_bad_workers(workers):
    with pytest.raises(UsageError, match="num_workers"):
        ladder.build_ladder("cpu", num_workers=workers)


def test_model_factory_builds_and_validates():
    net = tiny_model()
    assert net(torch.zeros(2, *SHAPE)).shape == (2, 10)
    assert tiny_model() is not net
    with pytest.raises(UsageError, match="width=4"):
        ladder.model_factory(4, 1, "cpu")  # PyTorch's CPU channels-last bug below 8
    with pytest.raises(UsageError, match="blocks"):
        ladder.model_factory(8, 0, "cpu")


def test_default_workers_bounded_by_cores():
    assert 1 <= ladder.default_workers(64) <= max(1, (__import__("os").cpu_count() or 2) - 1)
    with pytest.raises(UsageError, match="num_workers"):
        ladder.default_workers(0)


# ------------------------------------------------------------------ data
def test_augmented_images_shapes_and_augmentation(dataset):
    x, y = dataset[3]
    assert x.shape == SHAPE and x.dtype == torch.float32 and y == int(dataset.labels[3])
    assert abs(float(x.mean())) < 1.5
    plain_x, plain_y = dataset.plain([3])
    torch.manual_seed(0)
    views = torch.stack([dataset[3][0] for _ in range(8)])
    # crops and flips move pixels: not all views equal the plain image
    assert any(not torch.equal(v, plain_x[0]) for v in views)
    assert plain_y.tolist() == [int(dataset.labels[3])]
    # the plain batch is deterministic and not augmented
    assert torch.equal(dataset.plain([3, 5])[0], dataset.plain([3, 5])[0])


def test_augmented_images_rejects_float_images():
    with pytest.raises(UsageError, match="uint8"):
        ladder.AugmentedImages(np.zeros((2, 3, 8, 8), np.float32), np.zeros(2))


# ------------------------------------------------------------------ measure
def test_measure_baseline_trains_and_counts_steps(dataset):
    out = run(ladder.LadderConfig(), dataset, steps=6, warmup=1, repeats=3, lr=0.1)
    assert isinstance(out, ladder.Throughput)
    assert out.samples_per_s > 0 and out.timing.repeats == 3
    assert len(out.losses) == 1 + (1 + 3) * 6  # first step, warm-up, timed steps
    assert out.trains, out.losses
    assert out.first_logits.shape == (16, 10)
    np.testing.assert_allclose(out.first_loss, out.losses[0])


def test_measure_same_first_step_and_speedups(dataset):
    base = run(ladder.LadderConfig(), dataset)
    again = run(ladder.LadderConfig(), dataset)
    torch.testing.assert_close(again.first_logits, base.first_logits)  # seeded: same init
    for config in (ladder.LadderConfig(channels_last=True), ladder.LadderConfig(amp="bf16")):
        out = run(config, dataset)
        torch.testing.assert_close(out.first_logits, base.first_logits,
                                   **ladder.tolerance(config))
    ups = ladder.speedups({"baseline": base, "again": again,
                           "gpu": ladder.Skipped("no GPU")})
    assert set(ups) == {"baseline", "again"} and ups["baseline"] == 1.0
    with pytest.raises(UsageError, match="baseline"):
        ladder.speedups({"again": again})


def test_measure_with_workers_stops_them(dataset):
    out = run(ladder.LadderConfig(num_workers=1), dataset)
    assert isinstance(out, ladder.Throughput) and out.samples_per_s > 0
    assert not multiprocessing.active_children()


def test_measure_skips_gpu_rungs_on_cpu(dataset):
    out = run(ladder.LadderConfig(cuda_graphs=True), dataset, device="cpu")
    assert isinstance(out, ladder.Skipped) and "CUDA graphs" in str(out)


@pytest.mark.parametrize("kw, name", [
    ({"steps": 0}, "steps"),
    ({"repeats": 0}, "repeats"),
    ({"warmup": -1}, "warmup"),
    ({"batch_size": 1000}, "batch_size"),
    ({"lr": 0.0}, "lr"),
])
def test_measure_rejects_bad_sizes(dataset, kw, name):
    with pytest.raises(UsageError, match=name):
        run(ladder.LadderConfig(), dataset, **kw)


def test_trains_detects_a_rising_loss():
    t = ladder.Throughput(config=ladder.LadderConfig(), samples_per_s=1.0, timing=None,
                          first_step=None, first_loss=2.0, first_logits=torch.zeros(1),
                          losses=np.array([1.0, 1.2, 1.5, 2.0]))
    assert not t.trains
    t.losses = np.array([2.0, 1.5, 1.2, 1.0])
    assert t.trains
    t.losses = np.array([2.0, np.nan, 1.2, 1.0])
    assert not t.trains


def test_tolerance_grows_with_lower_precision():
    tol = [ladder.tolerance(ladder.LadderConfig(**kw))["rtol"]
           for kw in ({}, {"channels_last": True}, {"tf32": True}, {"amp": "bf16"})]
    assert tol == sorted(tol) and tol[0] < tol[-1]


def test_profile_steps_labels_the_parts_of_a_step(dataset):
    prof = ladder.profile_steps(ladder.LadderConfig(), dataset, model_fn=tiny_model,
                                batch_size=16, steps=2, warmup=1)
    split = ladder.time_split(prof)
    assert set(split) == set(ladder.REGIONS)
    assert split["forward"] > 0 and split["backward"] > 0 and split["data"] > 0
    with pytest.raises(UsageError, match="cannot profile"):
        ladder.profile_steps(ladder.LadderConfig(cuda_graphs=True), dataset,
                             model_fn=tiny_model, batch_size=16)


@pytest.mark.slow
def test_compiled_step_matches_eager(dataset):
    """torch.compile on the CPU (Inductor + a C++ compiler): tens of seconds."""
    from course_utils.foundations.frameworks import compiler_status

    if not compiler_status("cpu")[0]:
        pytest.skip(compiler_status("cpu")[1])
    def small():  # the smallest convolutional net: compiling it still takes seconds
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                   torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(8, 10))

    base = run(ladder.LadderConfig(), dataset, model_fn=small)
    config = ladder.LadderConfig(compile=True)
    out = run(config, dataset, model_fn=small)
    torch.testing.assert_close(out.first_logits, base.first_logits, **ladder.tolerance(config))
    assert out.first_step.median > out.timing.median / 3  # the first step compiled


# ------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
def test_every_rung_runs_trains_and_matches_on_gpu(dataset):
    rungs = ladder.build_ladder("cuda", num_workers=2, compile=True)
    results = {}
    for rung in rungs:
        results[rung.name] = run(rung.config, dataset, device="cuda", steps=8, repeats=2,
                                 lr=0.1) if rung.runs else rung.skipped
    base = results["baseline"]
    for name, out in results.items():
        if isinstance(out, ladder.Skipped):
            continue
        assert out.trains, (name, out.losses)
        torch.testing.assert_close(out.first_logits, base.first_logits,
                                   **ladder.tolerance(out.config), msg=name)
    assert isinstance(results["cuda_graphs"], ladder.Throughput)


def test_graph_replay_check_needs_a_graph_rung_that_runs_here(dataset):
    model_fn = ladder.model_factory(8, 1, "cpu")
    with pytest.raises(UsageError, match="needs cuda_graphs=True"):
        ladder.graph_replay_check(ladder.LadderConfig(), dataset, model_fn=model_fn,
                                  batch_size=4, device="cpu")
    with pytest.raises(UsageError, match="cannot check CUDA-graph replays on cpu: CUDA graphs"):
        ladder.graph_replay_check(ladder.LadderConfig(cuda_graphs=True), dataset,
                                  model_fn=model_fn, batch_size=4, device="cpu")
