"""course_utils.training.parallelism (lesson 14): the ZeRO memory model, FSDP's shards, the pipeline
bubble, tensor-parallel layers; lesson 14's knobs; and its SLURM batch scripts."""

import math
import os
import stat
import subprocess
import textwrap

import numpy as np
import pytest
import torch

from course_utils.errors import UsageError
from course_utils.paths import LESSONS_DIR
from course_utils.profiles import PROFILES
from course_utils.training import dist, parallelism

SCRIPTS = LESSONS_DIR / "unit3_multi_gpu" / "scripts"
GB = 1e9


# ---------------------------------------------------------------------------- memory model
def test_zero_paper_example_7_5b_parameters_on_64_gpus():
    # Rajbhandari et al. 2020, Figure 1: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per device
    want = {"ddp": 120.0, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}
    for strategy, gb in want.items():
        got = parallelism.memory_per_rank(7.5e9, 64, strategy).total / GB
        assert got == pytest.approx(gb, abs=0.05), strategy
    assert parallelism.memory_per_rank(7.5e9, 64, "fsdp") == \
        parallelism.memory_per_rank(7.5e9, 64, "zero3")


def test_bytes_per_parameter_mixed_and_fp32():
    assert parallelism.bytes_per_parameter("mixed", "adam") == (2, 2, 12)
    assert parallelism.bytes_per_parameter("fp32", "adam") == (4, 4, 8)
    assert parallelism.bytes_per_parameter("fp32", "momentum") == (4, 4, 4)
    assert parallelism.bytes_per_parameter("fp32", "sgd") == (4, 4, 0)
    assert parallelism.bytes_per_parameter("mixed", "sgd") == (2, 2, 4)  # the master copy


def test_which_part_each_stage_shards():
    psi, n = 1000, 4
    ddp = parallelism.memory_per_rank(psi, n, "ddp", "fp32")
    z1 = parallelism.memory_per_rank(psi, n, "zero1", "fp32")
    z2 = parallelism.memory_per_rank(psi, n, "zero2", "fp32")
    z3 = parallelism.memory_per_rank(psi, n, "zero3", "fp32")
    assert (ddp.params, ddp.grads, ddp.optimizer) == (4000, 4000, 8000)
    assert (z1.params, z1.grads, z1.optimizer) == (4000, 4000, 2000)
    assert (z2.params, z2.grads, z2.optimizer) == (4000, 1000, 2000)
    assert (z3.params, z3.grads, z3.optimizer) == (1000, 1000, 2000)
    assert ddp.total > z1.total > z2.total > z3.total == ddp.total / n
    assert z3.as_dict()["total"] == 4000
    one = [parallelism.memory_per_rank(psi, 1, s).total for s in parallelism.STRATEGIES]
    assert len(set(one)) == 1  # on one rank there is nothing to shard


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n_params": -1, "world_size": 2}, "n_params"),
    ({"n_params": 10, "world_size": 0}, "world_size"),
    ({"n_params": 10, "world_size": 2.0}, "world_size"),
    ({"n_params": 10, "world_size": 2, "strategy": "zero4"}, "strategy='zero4'"),
    ({"n_params": 10, "world_size": 2, "precision": "fp8"}, "precision"),
    ({"n_params": 10, "world_size": 2, "optimizer": "lamb"}, "optimizer"),
])
def test_memory_model_bad_arguments(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        parallelism.memory_per_rank(**kwargs)


@pytest.mark.parametrize("shape", [(10, 7), (10,), (5, 3, 2), (3,), (1, 4), (0, 3), ()])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_fsdp_local_numel_is_torch_chunk_of_dim_0(shape, world):
    t = torch.zeros(shape) if shape else torch.zeros(())
    rows = t.reshape(1, *t.shape) if t.dim() == 0 else t
    chunks = list(torch.chunk(rows, world, dim=0)) if rows.shape[0] else []
    want = [chunks[r].numel() if r < len(chunks) else 0 for r in range(world)]
    got = [parallelism.fsdp_local_numel(shape, world, r) for r in range(world)]
    assert got == want and sum(got) == t.numel()
    bound = parallelism.fsdp_padding_bound([shape])
    assert all(g - t.numel() / world <= bound for g in got)


def test_fsdp_rank_bytes_and_padding_bound():
    shapes = [(49, 20), (49,), (31, 49), (31,), (10, 31), (10,)]
    psi = sum(math.prod(s) for s in shapes)
    per_rank = [parallelism.fsdp_rank_bytes(shapes, 3, r) for r in range(3)]
    assert sum(m.params for m in per_rank) == 4 * psi
    assert sum(m.total for m in per_rank) == 16 * psi
    assert per_rank[0].total >= 16 * psi / 3  # rank 0 always gets the ceil
    assert per_rank[0].total - 16 * psi / 3 <= 16 * parallelism.fsdp_padding_bound(shapes)
    with pytest.raises(UsageError, match="rank=3"):
        parallelism.fsdp_local_numel((4,), 3, 3)


def test_training_state_bytes_counts_adam_state_and_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters())
    psi = sum(p.numel() for p in model.parameters())
    before = parallelism.training_state_bytes(model, opt)
    assert before == {"params": 4 * psi, "grads": 0, "optimizer": 0, "optimizer_steps": 0}
    model(torch.randn(3, 5)).sum().backward()
    opt.step()
    after = parallelism.training_state_bytes(model, opt)
    assert after["grads"] == 4 * psi and after["optimizer"] == 8 * psi
    assert after["optimizer_steps"] == 4 * len(list(model.parameters()))  # float32 scalars
    assert parallelism.tensor_bytes(None) == 0
    assert parallelism.tensor_bytes(torch.zeros(3, dtype=torch.float64)) == 24


# --------------------------------------------------------------------------------- pipeline
def test_bubble_fraction_and_pipeline_time():
    assert parallelism.bubble_fraction(1, 5) == 0.0
    assert parallelism.bubble_fraction(4, 1) == pytest.approx(0.75)
    assert parallelism.bubble_fraction(4, 8) == pytest.approx(3 / 11)
    fractions = [parallelism.bubble_fraction(4, m) for m in (1, 2, 4, 8, 1000)]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] < 0.003
    # busy m * (T / m) = T out of (m + p - 1) T / m: the idle fraction is the bubble
    for p, m in [(2, 1), (4, 4), (8, 3)]:
        total = parallelism.pipeline_time(p, m, 1.0)
        assert 1 - 1.0 / total == pytest.approx(parallelism.bubble_fraction(p, m))
        assert parallelism.measured_bubble(total, 1.0) == pytest.approx(
            parallelism.bubble_fraction(p, m))


def test_gpipe_schedule_slots():
    p, m = 3, 4
    schedule = parallelism.gpipe_schedule(p, m)
    assert len(schedule) == p * m
    assert max(slot for _, _, slot in schedule) + 1 == m + p - 1
    for s in range(p):  # every stage works m slots, in order, starting at slot s
        assert [slot for st, _, slot in schedule if st == s] == list(range(s, s + m))
    # no stage works on micro-batch j before the previous stage has finished it
    slot = {(s, j): t for s, j, t in schedule}
    assert all(slot[s, j] > slot[s - 1, j] for s in range(1, p) for j in range(m))


@pytest.mark.parametrize("call, fragment", [
    (lambda: parallelism.bubble_fraction(0, 4), "stages"),
    (lambda: parallelism.bubble_fraction(4, 0), "micro_batches"),
    (lambda: parallelism.pipeline_time(2, 2, -1.0), "stage_time"),
    (lambda: parallelism.measured_bubble(0.0, 1.0), "total_seconds"),
])
def test_pipeline_bad_arguments(call, fragment):
    with pytest.raises(UsageError, match=fragment):
        call()


# ------------------------------------------------------------------------ tensor parallelism
@pytest.mark.parametrize("n, p", [(10, 4), (16, 4), (3, 4), (0, 2), (7, 1)])
def test_split_sizes_like_tensor_split(n, p):
    sizes = parallelism.split_sizes(n, p)
    assert sizes == [len(c) for c in torch.tensor_split(torch.arange(n), p)]
    ranges = [parallelism.shard_range(n, p, r) for r in range(p)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_split_sizes_divisibility_rule_is_a_clear_usage_error():
    assert parallelism.split_sizes(16, 4, require_divisible=True) == [4, 4, 4, 4]
    with pytest.raises(UsageError, match="hidden=10 is not divisible by the tensor-parallel "
                                         "size 4.*e.g. 12"):
        parallelism.split_sizes(10, 4, require_divisible=True, name="hidden")
    with pytest.raises(UsageError, match="world_size"):
        parallelism.split_sizes(10, 0)


def _mlp(features, hidden, seed=0):
    torch.manual_seed(seed)
    fc1 = torch.nn.Linear(features, hidden).double()
    fc2 = torch.nn.Linear(hidden, features).double()
    return fc1, fc2


@pytest.mark.parametrize("hidden", [8, 10, 7, 3])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_tensor_parallel_shards_sum_to_the_full_mlp_with_its_gradients(hidden, world):
    """All ranks simulated in one process: the partial outputs summed (the all-reduce) plus
    b2 are the full MLP's output, and each shard's gradient is its slice of the full one."""
    fc1, fc2 = _mlp(6, hidden)
    x = torch.randn(5, 6, dtype=torch.float64)
    target = torch.randn(5, 6, dtype=torch.float64)
    ((fc2(torch.relu(fc1(x))) - target) ** 2).mean().backward()
    shards = [parallelism.TensorParallelMLP(fc1, fc2, r, world) for r in range(world)]
    y = sum(s.partial(x) for s in shards) + shards[0].b2
    torch.testing.assert_close(y, fc2(torch.relu(fc1(x))))
    ((y - target) ** 2).mean().backward()
    for s in shards:
        a, b = s.hidden_range
        torch.testing.assert_close(s.w1.grad, fc1.weight.grad[a:b])
        torch.testing.assert_close(s.b1.grad, fc1.bias.grad[a:b])
        torch.testing.assert_close(s.w2.grad, fc2.weight.grad[:, a:b])
    assert sum(s.w1.numel() for s in shards) == fc1.weight.numel()


def test_tensor_parallel_mlp_on_one_process_is_the_mlp():
    fc1, fc2 = _mlp(4, 6)
    tp = parallelism.TensorParallelMLP(fc1, fc2, 0, 1, activation="gelu")
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = tp(x)
    torch.testing.assert_close(y, fc2(torch.nn.functional.gelu(fc1(x))))
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    with pytest.raises(UsageError, match="out_features"):
        parallelism.TensorParallelMLP(fc1, fc2, 0, 4, require_divisible=True)
    with pytest.raises(UsageError, match="activation"):
        parallelism.TensorParallelMLP(fc1, fc2, 0, 1, activation="tanh")
    with pytest.raises(UsageError, match="fc1.out_features=6 must equal"):
        parallelism.TensorParallelMLP(fc1, torch.nn.Linear(5, 4).double(), 0, 1)


def test_column_and_row_shards_are_copies_of_the_right_slices():
    w = torch.arange(12.0).reshape(4, 3)
    b = torch.arange(4.0)
    w1, b1 = parallelism.column_parallel_shard(w, b, 1, 2)
    assert torch.equal(w1, w[2:]) and torch.equal(b1, b[2:])
    w1 += 1
    assert w[2, 0] == 6.0  # a copy, not a view
    assert torch.equal(parallelism.row_parallel_shard(w, 1, 2), w[:, 2:])
    assert torch.equal(parallelism.row_parallel_shard(w, 0, 2), w[:, :2])


# -------------------------------------------------------------------------- lesson's knobs
def test_list_knobs_also_come_as_text_from_hpdl_run():
    cfg = {**PROFILES["quick"]["beyond_dp"], "micro_batches": "[8, 2, 2]", "widths": "7, 5",
           "tp_sizes": 2}
    out = parallelism.check_lesson_config(cfg)
    assert out["micro_batches"] == [2, 8] and out["widths"] == [7, 5] and out["tp_sizes"] == [2]
    with pytest.raises(UsageError, match="widths='a b' is not valid"):
        parallelism.check_lesson_config({**cfg, "widths": "a b"})


def test_both_profiles_pass_the_lesson_check():
    for profile in ("quick", "full"):
        cfg = parallelism.check_lesson_config(PROFILES[profile]["beyond_dp"])
        assert cfg["tp_world"] % max(cfg["tp_sizes"]) == 0


@pytest.mark.parametrize("knob, value, fragment", [
    ("backend", "mpi", "backend='mpi'"),
    ("fsdp_world_sizes", (1,), "fsdp_world_sizes"),
    ("widths", (), "widths"),
    ("steps", 0, "steps=0"),
    ("lr", 0.0, "lr=0.0"),
    ("tp_sizes", (3,), "do not divide tp_world"),
    ("micro_batches", (0, 2), "micro_batches"),
    ("stages", 1, "stages=1"),
    ("stage_ms", -5, "stage_ms"),
    ("bubble_tolerance", 1.5, "bubble_tolerance"),
    ("ft_kill_step", 8, r"ft_kill_step=8 .*\[1, 7\]"),
    ("mpi_nproc", 0, "mpi_nproc"),
    ("timeout", 0, "timeout"),
])
def test_bad_lesson_knobs_name_the_knob(knob, value, fragment):
    cfg = {**PROFILES["quick"]["beyond_dp"], knob: value}
    with pytest.raises(UsageError, match=fragment):
        parallelism.check_lesson_config(cfg)


# ------------------------------------------------------------------------- SLURM scripts
SBATCH = {"slurm_torchrun_1node.sbatch": ["--standalone",
                                          '--nproc-per-node="$GPUS"',
                                          "GPUS=${SLURM_GPUS_ON_NODE:-"],
          "slurm_torchrun_multinode.sbatch": [
              '--nnodes="$SLURM_NNODES"', "--rdzv-backend=c10d",
              '--rdzv-endpoint="$head_node:29500"', '--rdzv-id="$SLURM_JOB_ID"',
              "scontrol show hostnames",
              'srun --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}"']}


@pytest.mark.parametrize("name", sorted(SBATCH))
def test_sbatch_scripts_parse_and_have_the_rendezvous_lines(name):
    path = SCRIPTS / name
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --gres=gpu:" in text
    for fragment in SBATCH[name]:
        assert fragment in text, f"{name}: {fragment!r} missing"


def _stub(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("name, want", [
    ("slurm_torchrun_1node.sbatch",
     "--standalone --nproc-per-node=4 --max-restarts=1 train.py --steps 3"),
    ("slurm_torchrun_multinode.sbatch",
     "--nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d --rdzv-endpoint=gpu-a:29500 "
     "--rdzv-id=4242 --max-restarts=1 train.py --steps 3"),
])
def test_sbatch_scripts_build_the_torchrun_command(tmp_path, name, want):
    """Run the batch script outside SLURM with stand-ins for torchrun, srun and scontrol
    that record what they were asked to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    log = tmp_path / "calls.txt"
    _stub(bin_dir, "torchrun", f'echo "torchrun $*" >> {log}\n')
    _stub(bin_dir, "srun", f'echo "srun $1" >> {log}\nshift\nexec "$@"\n')
    # A long node list, as on a big cluster: far more than a pipe's 64 KiB buffer, so that
    # a reader that stops after the first line (`| head -n 1` under pipefail) kills the
    # stand-in with SIGPIPE and the script fails with 141, as it would in a real job.
    _stub(bin_dir, "scontrol", 'printf "gpu-a\\ngpu-b\\n"\n'
          'for i in $(seq 1 40000); do echo "gpu-node-$i"; done\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "HPDL_VENV": str(tmp_path / "venv"), "SLURM_JOB_ID": "4242",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "32", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "gpu-[a-b]"}
    run = subprocess.run(["bash", str(SCRIPTS / name), "train.py", "--steps", "3"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    calls = log.read_text()
    assert f"torchrun {want}" in calls, (calls, run.stdout, run.stderr)
    assert ("srun" in calls) == ("multinode" in name)
    if "multinode" in name:  # Slurm >= 22.05: srun must be given the task's CPUs itself
        assert "srun --cpus-per-task=32" in calls, calls


def test_one_node_script_without_gpus_says_how_to_ask_for_them(tmp_path):
    """Under `set -u` an unset SLURM_GPUS_ON_NODE used to end in 'unbound variable'."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "nvidia-smi", "exit 9\n")  # no driver, no GPU
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", HPDL_VENV=str(tmp_path / "venv"))
    run = subprocess.run(["bash", str(SCRIPTS / "slurm_torchrun_1node.sbatch"), "train.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "no GPU on this node" in run.stderr and "--gres=gpu:N" in run.stderr
    assert "unbound variable" not in run.stderr


# ------------------------------------------------------------- one launch: a real all-reduce
@pytest.mark.slow
def test_tensor_parallel_script_on_two_processes(tmp_path):
    result = dist.launch(SCRIPTS / "beyond_tensor_parallel.py", nproc=2,
                         args=["--hidden", 5, "--tp-sizes", 2, "--features", 3],
                         out_dir=tmp_path / "tp", timeout=180, show="none")
    for rank in (0, 1):
        (check,) = result.outputs[rank]["checks"]
        assert check["hidden_range"] == [[0, 3], [3, 5]][rank]
        assert max(check["errors"].values()) < 1e-12, check["errors"]
    assert np.isfinite(result.seconds)
