"""course_utils.training.ddp: the schedule, the sampler arithmetic, checkpoints, and one real
DDP run."""

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from course_utils import profiles
from course_utils.errors import UsageError
from course_utils.training import ddp, dist
from tests.conftest import REPO

SCRIPT = REPO / "lessons" / "unit3_multi_gpu" / "scripts" / "ddp_train.py"


# ------------------------------------------------------------------------------ schedule
def test_goyal_imagenet_numbers():
    # Goyal et al. 2017: lr 0.1 per 256 images; 8192 images (k = 32) -> 3.2.
    s = ddp.LinearScalingSchedule(base_lr=0.1, base_batch=256, global_batch=8192,
                                  warmup_steps=5 * 156, milestones=(30 * 156, 60 * 156))
    assert s.scale == 32 and s.peak_lr == pytest.approx(3.2)
    assert s(0) == pytest.approx(0.1)  # the warm-up starts at the small-batch rate
    assert s(5 * 156) == pytest.approx(3.2)
    assert s(5 * 156 // 2) == pytest.approx(0.1 + (3.2 - 0.1) * (5 * 156 // 2) / (5 * 156))
    assert s(30 * 156 - 1) == pytest.approx(3.2) and s(30 * 156) == pytest.approx(0.32)
    assert s(60 * 156) == pytest.approx(0.032)
    lrs = s.lrs(5 * 156 + 1)
    assert np.all(np.diff(lrs) > 0) and len(lrs) == 5 * 156 + 1  # a linear ramp, rising


def test_schedule_without_warmup_and_small_batch():
    assert ddp.LinearScalingSchedule(0.1, 32, 128)(0) == pytest.approx(0.4)
    small = ddp.LinearScalingSchedule(0.1, 256, 64, warmup_steps=10)
    assert small.peak_lr == pytest.approx(0.025) and small(0) == pytest.approx(0.025)


@pytest.mark.parametrize("kwargs, name", [
    ({"base_lr": 0.0}, "base_lr"), ({"base_lr": -1.0}, "base_lr"),
    ({"base_batch": 0}, "base_batch"), ({"global_batch": 2.5}, "global_batch"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"milestones": (5, 3)}, "milestones"),
    ({"gamma": 0.0}, "gamma"),
])
def test_schedule_rejects_bad_arguments(kwargs, name):
    args = {"base_lr": 0.1, "base_batch": 32, "global_batch": 64} | kwargs
    with pytest.raises(UsageError, match=name):
        ddp.LinearScalingSchedule(**args)
    with pytest.raises(UsageError, match="step"):
        ddp.LinearScalingSchedule(0.1, 32, 64)(-1)


# ----------------------------------------------------------------- sampler arithmetic
@pytest.mark.parametrize("n, world", [(24, 2), (25, 3), (31, 4)])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_rank_indices_match_distributed_sampler(n, world, shuffle, drop_last):
    data = list(range(n))
    for epoch in (0, 3):
        for rank in range(world):
            sampler = DistributedSampler(data, num_replicas=world, rank=rank,
                                         shuffle=shuffle, seed=7, drop_last=drop_last)
            sampler.set_epoch(epoch)
            assert ddp.rank_indices(n, world, rank, shuffle=shuffle, seed=7, epoch=epoch,
                                    drop_last=drop_last) == list(sampler)


@pytest.mark.parametrize("world, batch, accum", [(2, 3, 1), (3, 2, 1), (4, 3, 1), (2, 2, 3)])
def test_all_ranks_of_a_step_read_one_contiguous_slice(world, batch, accum):
    n = 50
    order = ddp.global_order(n, seed=1, epoch=2)
    per_rank = [ddp.rank_indices(n, world, r, seed=1, epoch=2) for r in range(world)]
    steps = ddp.steps_per_epoch(n, world, batch, accum)
    assert steps == n // (world * batch * accum)
    for s in range(steps):
        union = [i for r in range(world)
                 for i in per_rank[r][s * batch * accum:(s + 1) * batch * accum]]
        expected = ddp.step_samples(order, world, batch, s, accum)
        assert sorted(union) == sorted(expected) and len(expected) == world * batch * accum


def test_set_epoch_changes_the_order_and_rank_seeds_differ():
    assert ddp.global_order(20, epoch=0) != ddp.global_order(20, epoch=1)
    assert ddp.global_order(5, shuffle=False) == [0, 1, 2, 3, 4]
    seeds = {ddp.rank_seed(0, r, s) for r in range(4) for s in range(3)}
    assert len(seeds) == 12 and ddp.rank_seed(0, 1, 2) == ddp.rank_seed(0, 1, 2)
    with pytest.raises(UsageError, match="rank"):
        ddp.rank_indices(10, 2, 2)


# ------------------------------------------------------- reference and parameter helpers
def test_reference_training_is_deterministic():
    sched = ddp.LinearScalingSchedule(0.1, 8, 16, warmup_steps=2)
    runs = []
    for _ in range(2):
        model, X, y = ddp.spirals_problem(20, (8,), seed=3)
        hist = ddp.reference_training(model, X, y, global_batch=16, epochs=2, schedule=sched,
                                      momentum=0.9)
        runs.append(model)
    assert len(hist["loss"]) == 2 * (40 // 16) and hist["lr"][:2] == pytest.approx([0.1, 0.15])
    assert ddp.parameter_digest(runs[0]) == ddp.parameter_digest(runs[1])
    assert ddp.max_abs_difference(runs[0], runs[1]) == 0.0
    fresh, _, _ = ddp.spirals_problem(20, (8,), seed=3)
    assert ddp.max_abs_difference(runs[0], fresh) > 0
    assert ddp.parameter_digest(runs[0]) != ddp.parameter_digest(fresh)
    assert ddp.flat_parameters(fresh).dtype == torch.float64


def test_unwrap_and_size_mismatch():
    net = nn.Linear(3, 2)
    assert ddp.unwrap(nn.DataParallel(net)) is net
    with pytest.raises(UsageError, match="differ in size"):
        ddp.max_abs_difference(net, nn.Linear(3, 3))


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_through_a_wrapper(tmp_path):
    model, X, y = ddp.spirals_problem(10, (4,), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(X), y).backward()
    opt.step()
    path = ddp.save_checkpoint(tmp_path / "c" / "ckpt.pt", model=nn.DataParallel(model),
                               optimizer=opt, step=7, extra={"epoch": 1})
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]  # no temp file left
    other, _, _ = ddp.spirals_problem(10, (4,), seed=1)
    opt2 = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    state = ddp.load_checkpoint(path, model=other, optimizer=opt2)
    assert state["step"] == 7 and state["extra"] == {"epoch": 1}
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped
    assert ddp.max_abs_difference(model, other) == 0.0
    buf = opt2.state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(buf, opt.state_dict()["state"][0]["momentum_buffer"])


def test_a_crash_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, _, _ = ddp.spirals_problem(10, (4,), seed=0)
    path = ddp.save_checkpoint(tmp_path / "ckpt.pt", model=model, step=1)

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkp")  # then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ddp.save_checkpoint(path, model=model, step=2)
    monkeypatch.undo()
    assert ddp.load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]
    with pytest.raises(UsageError, match="does not exist"):
        ddp.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(UsageError, match="no optimizer state"):
        ddp.load_checkpoint(path, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


# ------------------------------------------------------------------------- the knobs
def _cfg(**overrides):
    return profiles.sizes("quick", "data_parallel") | overrides


def test_both_profiles_pass_the_checks():
    for profile in profiles.PROFILE_NAMES:
        cfg = ddp.check_config(profiles.sizes(profile, "data_parallel"), gpus=0)
        assert cfg["bench_world_sizes"][0] == 1
    full = ddp.check_config(profiles.sizes("full", "data_parallel"), gpus=8)
    assert full["bench_world_sizes"] == (1, 2, 4, 8)
    assert ddp.bench_backend((1, 2), "cuda", 8) == "nccl"
    assert ddp.bench_backend((1, 2), "cuda", 1) == "gloo"
    assert ddp.bench_backend((1, 2), "cpu", 8) == "gloo"


@pytest.mark.parametrize("knob, value", [
    ("batch_size", 0), ("lr", -0.1), ("dtype", "float16"), ("world_sizes", (1, 2)),
    ("world_sizes", ()), ("bucket_caps_mb", (0, 25)), ("bench_world_sizes", (2, 4)),
    ("die_at_step", 10_000), ("restart_demo", "yes"), ("hidden", (0,)),
    ("n_per_class", 5), ("timeout", -1),
])
def test_bad_knobs_are_named(knob, value):
    with pytest.raises(UsageError, match=knob if knob != "n_per_class" else "too few"):
        ddp.check_config(_cfg(**{knob: value}))


def test_sequence_knobs_accept_text_from_the_command_line():
    cfg = ddp.check_config(_cfg(world_sizes="[3, 2]", hidden="16,8", bucket_caps_mb="0.5",
                                bench_world_sizes="(1, 2, 4)"))
    assert cfg["world_sizes"] == (2, 3) and cfg["hidden"] == (16, 8)
    assert cfg["bucket_caps_mb"] == (0.5,) and cfg["bench_world_sizes"] == (1, 2, 4)
    with pytest.raises(UsageError, match="world_sizes='two'"):
        ddp.check_config(_cfg(world_sizes="two"))


def test_dtype_and_backend_helpers():
    assert ddp.dtype_of("float32") is torch.float32
    assert ddp.backend_for(2, "cpu") == "gloo"
    with pytest.raises(UsageError, match="nproc"):
        ddp.backend_for(0)


# ---------------------------------------------------- one real launch: the core claim
@pytest.mark.slow
def test_two_ranks_end_where_one_process_with_twice_the_batch_ends(tmp_path):
    """2 Gloo ranks x batch 6, and 2 x 3 micro-batches under no_sync, against one process."""
    args = ["--n-per-class", "24", "--hidden", "8", "--batch-size", "6", "--epochs", "2",
            "--base-batch", "6", "--warmup-steps", "2", "--accum-steps", "1", "2"]
    result = dist.launch(SCRIPT, nproc=2, args=args, out_dir=tmp_path / "out", timeout=150,
                         show="failed", backend="gloo")
    for k, run in ((1, 0), (2, 1)):
        model, X, y = ddp.spirals_problem(24, (8,), seed=0)
        sched = ddp.LinearScalingSchedule(0.05, 6, 12 * k, warmup_steps=2)
        hist = ddp.reference_training(model, X, y, global_batch=12 * k, epochs=2,
                                      schedule=sched, momentum=0.9)
        trained, _, _ = ddp.spirals_problem(24, (8,), seed=0)
        ddp.load_checkpoint(tmp_path / "out" / f"final_accum{k}.pt", model=trained)
        torch.testing.assert_close(ddp.flat_parameters(trained), ddp.flat_parameters(model),
                                   rtol=1e-10, atol=1e-12)
        rank0, rank1 = result.outputs[0]["runs"][run], result.outputs[1]["runs"][run]
        assert rank0["final_digest"] == rank1["final_digest"]  # replicas stay identical
        assert rank0["random_draw"] != rank1["random_draw"]  # per-rank random streams
        np.testing.assert_allclose(rank0["loss"], hist["loss"], rtol=1e-9)
