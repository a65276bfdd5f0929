"""course_utils.training.dist: launches from a notebook that report a dead rank, never hang."""

import os
import textwrap
import time

import pytest

from course_utils.errors import UsageError
from course_utils.training import dist

pytestmark = pytest.mark.slow

ALLREDUCE = """
import sys
import torch
import torch.distributed as tdist
from course_utils.training import dist

info = dist.init()
t = torch.tensor([float(info.rank + 1)])
tdist.all_reduce(t)
print(f"rank {info.rank}: sum {t.item()}")
MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"
if MODE == "raise" and info.rank == 1:
    raise ValueError("rank one is broken")
if MODE == "kill" and info.rank == 1:
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
if MODE == "hang":  # rank 0 waits in a collective that rank 1 never joins
    if info.rank == 1:
        import time
        time.sleep(600)
    tdist.all_reduce(t)
if MODE in ("kill", "raise"):
    for _ in range(100):  # the survivors wait in collectives the dead rank never joins
        tdist.all_reduce(t)
dist.save_result({"rank": info.rank, "world": info.world_size, "sum": t.item(),
                  "backend": info.backend})
dist.finish()
"""


def _script(tmp_path, text=ALLREDUCE, name="worker.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_torchrun_allreduce_results_and_logs(tmp_path):
    result = dist.launch(_script(tmp_path), nproc=3, out_dir=tmp_path / "out", timeout=90,
                         show="none")
    assert result.ok and sorted(result.outputs) == [0, 1, 2]
    assert all(o["sum"] == 6.0 and o["world"] == 3 for o in result.outputs.values())
    assert result.outputs[0]["backend"] in ("gloo", "nccl")
    assert "rank 2: sum 6.0" in result.logs[2]


def test_raising_rank_is_named_with_its_traceback(tmp_path):
    with pytest.raises(dist.RankFailedError) as info:
        dist.launch(_script(tmp_path), nproc=2, args=["raise"], out_dir=tmp_path / "o",
                    timeout=90, show="none")
    message = str(info.value)
    assert message.startswith("rank 1 ") and "ValueError: rank one is broken" in message
    assert "Traceback" in message and info.value.result.returncode != 0


def test_killed_rank_reported_within_30_seconds(tmp_path):
    start = time.perf_counter()
    with pytest.raises(dist.RankFailedError) as info:
        dist.launch(_script(tmp_path), nproc=2, args=["kill"], out_dir=tmp_path / "o",
                    timeout=120, show="none")
    assert time.perf_counter() - start < 30
    assert "rank 1" in str(info.value) and "SIGKILL" in str(info.value)


def test_hang_is_stopped_at_the_timeout_and_leaves_no_process(tmp_path):
    start = time.perf_counter()
    with pytest.raises(dist.LaunchTimeout, match="timeout of 12 s") as info:
        dist.launch(_script(tmp_path), nproc=2, args=["hang"], out_dir=tmp_path / "o",
                    timeout=12, show="none")
    assert time.perf_counter() - start < 25
    time.sleep(0.5)
    leftovers = [line for line in os.popen("ps -eo args").read().splitlines()
                 if str(tmp_path / "worker.py") in line]
    assert not leftovers, leftovers
    assert info.value.result.logs  # the ranks' logs are still there to read


def test_restart_resumes_from_checkpoint(tmp_path):
    script = _script(tmp_path, """
        import json, os, signal
        from pathlib import Path
        from course_utils.training import dist
        info = dist.init()
        ckpt = Path(os.environ["HPDL_DIST_OUT"]).parent / "ckpt.json"
        step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
        for s in range(step, 6):
            if info.rank == 0:  # write then rename: a reader never sees half a file
                ckpt.with_suffix(".tmp").write_text(json.dumps({"step": s}))
                ckpt.with_suffix(".tmp").replace(ckpt)
            if s == 3 and attempt == 0 and info.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            import torch, torch.distributed as tdist
            tdist.barrier()
        dist.save_result({"started_at": step, "attempt": attempt})
        dist.finish()
    """)
    result = dist.launch(script, nproc=2, max_restarts=1, out_dir=tmp_path / "run" / "o",
                         timeout=120, show="none")
    assert result.ok and result.outputs[0]["attempt"] == 1
    assert result.outputs[0]["started_at"] >= 2
    assert "restart 1" in result.logs[0]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"nproc": 0}, "nproc"), ({"launcher": "srun"}, "launcher"),
    ({"backend": "mpi"}, "mpiexec"), ({"timeout": 0}, "timeout"),
    ({"max_restarts": -1}, "max_restarts"),
])
def test_bad_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        dist.launch(_script(tmp_path), **kwargs)


def test_missing_script(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        dist.launch(tmp_path / "nope.py")


@pytest.mark.skipif(not dist.mpi_available()[0], reason=dist.mpi_available()[1])
def test_mpiexec_with_mpi4py_and_a_failing_rank(tmp_path):
    script = _script(tmp_path, """
        import sys
        import numpy as np
        from mpi4py import MPI
        from course_utils.training import dist
        comm = MPI.COMM_WORLD
        x = np.array([comm.rank + 1.0])
        total = np.empty(1)
        comm.Allreduce(x, total, op=MPI.SUM)
        if sys.argv[1:] == ["fail"] and comm.rank == 1:
            raise RuntimeError("mpi rank failed")
        dist.save_result({"total": float(total[0]), "size": comm.size})
    """, name="mpi_worker.py")
    result = dist.launch(script, nproc=2, launcher="mpiexec", out_dir=tmp_path / "m",
                         timeout=60, show="none")
    assert result.outputs[1] == {"total": 3.0, "size": 2}
    start = time.perf_counter()
    with pytest.raises(dist.RankFailedError, match="rank 1") as info:
        dist.launch(script, nproc=2, args=["fail"], launcher="mpiexec",
                    out_dir=tmp_path / "m2", timeout=60, show="none")
    assert "RuntimeError: mpi rank failed" in str(info.value)
    assert time.perf_counter() - start < 30


def test_auto_backend_is_one_choice_for_all_ranks(monkeypatch):
    import course_utils.device as device

    monkeypatch.setattr(device, "cuda_gpu_count", lambda: 1)
    assert dist.resolve_backend("auto", 2) == "gloo"  # 2 ranks, 1 GPU: never mix NCCL/Gloo
    assert dist.resolve_backend("auto", 1) == "nccl"
    monkeypatch.setattr(device, "cuda_gpu_count", lambda: 0)
    assert dist.resolve_backend("auto", 1) == "gloo"
    assert dist.resolve_backend("gloo", 8) == "gloo"


def test_group_timeout_is_short_only_for_the_courses_own_launches(monkeypatch):
    """A script taken to a cluster (torchrun by hand) gets PyTorch's default, not the
    notebooks' 60 s: rank 0 may work alone longer than that (a checkpoint, a compile)."""
    import datetime

    monkeypatch.delenv(dist.ENV_TIMEOUT, raising=False)
    assert dist.group_timeout() is None  # PyTorch decides (NCCL: 10 minutes)
    monkeypatch.setenv(dist.ENV_TIMEOUT, "60")  # what launch() sets for its ranks
    assert dist.group_timeout() == datetime.timedelta(seconds=60)
    assert dist.group_timeout(5) == datetime.timedelta(seconds=5)
    monkeypatch.setenv(dist.ENV_TIMEOUT, "-1")
    with pytest.raises(UsageError, match="timeout must be > 0"):
        dist.group_timeout()
