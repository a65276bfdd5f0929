"""Multi-process training from a notebook: launch, per-rank logs, and never a hang.

Functions defined in a notebook cannot be pickled into new processes, so the worker code
of unit 3 lives in scripts (``lessons/unit3_multi_gpu/scripts/``, or a ``%%writefile``
cell) and the notebook launches them as a subprocess with ``launch``:

* ``launcher="torchrun"``: ``torchrun --standalone`` (a rendezvous on a free port, so two
  launches never collide), Gloo on CPUs, NCCL on GPUs, ``--max-restarts`` for fault
  tolerance;
* ``launcher="mpiexec"``: MPI's launcher (MPICH from the ``mpi`` extra); the ranks use
  mpi4py, and ``init()`` can still build a ``torch.distributed`` group through a file
  rendezvous.

Every rank runs inside a small wrapper (``python -m course_utils.training.dist SCRIPT ...``) that
sends its stdout and stderr to ``rank<R>.log`` and, if the script raises, writes the
traceback to ``rank<R>.error``. ``launch`` waits with a timeout, kills the whole process
tree when it expires, and when a rank dies raises ``RankFailedError`` naming the rank, its
exit status and its traceback, within seconds (torchrun and mpiexec both stop the
surviving ranks when one fails). Inside the script::

    from course_utils.training import dist
    info = dist.init()                 # explicit timeout; backend from the launch
    ...
    dist.save_result({"loss": loss})   # read back as result.outputs[rank]
    dist.finish()
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CourseError, UsageError, check_choice

LAUNCHERS = ("torchrun", "mpiexec")
BACKENDS = ("auto", "gloo", "nccl", "mpi")
ENV_OUT = "HPDL_DIST_OUT"  # folder for logs, error files and results of one launch
ENV_BACKEND = "HPDL_DIST_BACKEND"
ENV_TIMEOUT = "HPDL_DIST_TIMEOUT"  # seconds, the process group's timeout
ENV_INIT_FILE = "HPDL_DIST_INIT_FILE"  # file rendezvous (mpiexec launches)
DEFAULT_GROUP_TIMEOUT_S = 60.0


class DistError(CourseError):
    """A multi-process launch went wrong; the message says which rank and why."""


class RankFailedError(DistError):
    """A rank exited with an error; ``result`` holds every rank's log."""

    def __init__(self, message: str, result: LaunchResult):
        super().__init__(message)
        self.result = result


class LaunchTimeout(DistError):
    """The launch ran past its timeout and was killed; ``result`` holds the logs."""

    def __init__(self, message: str, result: LaunchResult):
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------- launching
@dataclass
class LaunchResult:
    """What a launch left behind: exit status, time, per-rank logs, saved results."""

    command: list[str]
    returncode: int
    seconds: float
    out_dir: Path
    launcher_output: str
    logs: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    outputs: dict[int, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def show_logs(self, ranks: Sequence[int] | None = None, tail: int = 40) -> None:
        """Print the last ``tail`` lines of each rank's log (all ranks by default)."""
        for rank in sorted(self.logs) if ranks is None else ranks:
            lines = self.logs.get(rank, "").rstrip().splitlines()
            shown = lines[-tail:] if tail else lines
            print(f"----- rank {rank} ({len(lines)} lines"
                  f"{', last ' + str(len(shown)) if len(shown) < len(lines) else ''}) -----")
            print("\n".join(shown) if shown else "(empty)")


def free_port() -> int:
    """A TCP port that is free now on localhost (for rendezvous that need one)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mpi_available() -> tuple[bool, str]:
    """Whether ``mpiexec`` and ``mpi4py`` are usable here, and if not, why."""
    if _mpiexec() is None:
        return False, ("no `mpiexec` found: install the mpi extra "
                       "(`pip install -e '.[mpi]'`, which brings MPICH and mpi4py)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False, "mpi4py is not installed: `pip install -e '.[mpi]'`"
    return True, "mpiexec and mpi4py found"


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _command(launcher: str, script: Path, nproc: int, args: Sequence[str],
             max_restarts: int) -> list[str]:
    wrapper = [sys.executable, "-m", "course_utils.training.dist", str(script), *map(str, args)]
    if launcher == "mpiexec":
        mpiexec = _mpiexec()
        if mpiexec is None:
            raise DistError(mpi_available()[1])
        return [mpiexec, "-n", str(nproc), *wrapper]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
            "--monitor-interval=0.5", "--no-python", *wrapper]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's whole process group, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_rank_files(out_dir: Path) -> tuple[dict[int, str], dict[int, str], dict[int, Any]]:
    logs, errors, outputs = {}, {}, {}
    for path in sorted(out_dir.glob("rank*.log")):
        logs[int(path.stem[4:])] = path.read_text(errors="replace")
    for path in sorted(out_dir.glob("rank*.error"), key=lambda p: p.stat().st_mtime):
        errors[int(path.stem[4:])] = path.read_text(errors="replace")
    for path in sorted(out_dir.glob("result_rank*.json")):
        outputs[int(path.stem[len("result_rank"):])] = json.loads(path.read_text())
    return logs, errors, outputs


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


PEER_FAILURE = re.compile(
    r"Connection closed by peer|Connection reset by peer|Broken pipe|remote worker crash"
    r"|remote process exited|NCCL communicator was aborted|Socket Timeout", re.I)


def _exit_codes(launcher_output: str) -> dict[int, int]:
    """Per-rank exit codes from torchrun's failure summary or mpiexec's BAD TERMINATION."""
    codes = {int(r): int(c) for r, c in re.findall(
        r"rank\s*:\s*(\d+)\s*\(local_rank.*?exitcode\s*:\s*(-?\d+)", launcher_output,
        flags=re.S)}
    for r, c in re.findall(r"RANK (\d+) PID \d+ RUNNING AT .*?EXIT CODE: (\d+)",
                           launcher_output, flags=re.S):
        codes.setdefault(int(r), int(c))
    return codes


def _failure_message(result: LaunchResult) -> str:
    """Which rank failed first, how, and its traceback (or the launcher's own words).

    When one rank dies, the others fail too: with "connection closed by peer" in a
    collective, or killed by the launcher's SIGTERM. Those are consequences, so the
    root cause is, in order: a rank whose own code raised; a rank killed by a signal the
    launcher did not send; the earliest error of any kind.
    """
    codes = _exit_codes(result.launcher_output)
    where = f"(all logs: {result.out_dir})"
    own = [r for r, text in result.errors.items() if not PEER_FAILURE.search(text)]
    killed = [r for r, c in codes.items() if c < 0 and c != -signal.SIGTERM and r not in own]
    if own:
        rank = own[0]
        return (f"rank {rank} of the launch failed after {result.seconds:.1f} s:\n"
                f"{result.errors[rank].rstrip()}\n{where}")
    if killed:
        rank = killed[0]
        return (f"rank {rank} was killed by {_signal_name(-codes[rank])} after "
                f"{result.seconds:.1f} s, without a Python traceback (killed by the system "
                f"or a user, or crashed in native code); the other ranks were stopped. "
                f"Its log ends:\n{_tail(result.logs.get(rank, ''), 15)}\n{where}")
    if result.errors:
        rank = next(iter(result.errors))
        return (f"rank {rank} of the launch failed after {result.seconds:.1f} s "
                f"(it lost a peer: look at the other ranks' logs too):\n"
                f"{result.errors[rank].rstrip()}\n{where}")
    failed = [r for r, c in codes.items() if c != 0]
    if failed:
        rank = failed[0]
        return (f"rank {rank} exited with code {codes[rank]} after {result.seconds:.1f} s, "
                f"without a Python traceback. Its log ends:\n"
                f"{_tail(result.logs.get(rank, ''), 15)}\n{where}")
    return (f"the launch failed with exit code {result.returncode} after "
            f"{result.seconds:.1f} s. Launcher output:\n{_tail(result.launcher_output, 25)}")


def _tail(text: str, n: int) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:]) if lines else "(empty)"


def resolve_backend(backend: str, local_ranks: int) -> str:
    """``auto`` becomes NCCL when every local rank can have a GPU of its own, else Gloo.

    Decided once per launch (not per rank), so that all ranks agree: with more ranks than
    GPUs, a per-rank choice would mix NCCL and Gloo and the group could never form.
    """
    check_choice("backend", backend, BACKENDS)
    if backend != "auto":
        return backend
    from ..device import cuda_gpu_count

    gpus = cuda_gpu_count()
    return "nccl" if gpus and gpus >= local_ranks else "gloo"


def launch(script: str | os.PathLike, nproc: int = 2, args: Sequence[Any] = (), *,
           launcher: str = "torchrun", backend: str = "auto", timeout: float = 120.0,
           group_timeout: float = DEFAULT_GROUP_TIMEOUT_S, max_restarts: int = 0,
           env: dict[str, str] | None = None, out_dir: str | os.PathLike | None = None,
           show: str = "failed", check: bool = True) -> LaunchResult:
    """Run ``script`` on ``nproc`` processes and wait for it, at most ``timeout`` seconds.

    ``backend`` (``auto``: NCCL when every rank can have its own GPU, else Gloo, decided
    once for all ranks by ``resolve_backend``; ``mpi`` only with ``launcher="mpiexec"``)
    and ``group_timeout`` reach the script's ``init()``.
    ``out_dir`` (default ``build/dist/<script name>``) receives ``rank<R>.log``,
    ``rank<R>.error`` and results saved with ``save_result``; it is emptied first.
    ``show``: print the per-rank logs ``"all"``, only when it ``"failed"``, or ``"none"``.
    With ``check`` a failure raises ``RankFailedError`` and a timeout ``LaunchTimeout``,
    each naming the rank and carrying the ``LaunchResult``.
    """
    from ..paths import build_path

    check_choice("launcher", launcher, LAUNCHERS)
    check_choice("backend", backend, BACKENDS)
    check_choice("show", show, ("all", "failed", "none"))
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UsageError(f"nproc={nproc!r} is not valid; it must be an integer >= 1")
    if not timeout > 0 or not group_timeout > 0:
        raise UsageError(f"timeout={timeout!r} and group_timeout={group_timeout!r} must be > 0")
    if backend == "mpi" and launcher != "mpiexec":
        raise UsageError("backend='mpi' needs launcher='mpiexec'")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise UsageError(f"max_restarts={max_restarts!r} is not valid; it must be >= 0")
    script = Path(script).resolve()
    if not script.is_file():
        raise UsageError(f"script {script} does not exist; give the path of a Python file "
                         "(a notebook can write one with %%writefile)")
    out = Path(out_dir) if out_dir is not None else build_path("dist", script.stem, "x").parent
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    backend = resolve_backend(backend, nproc)
    command = _command(launcher, script, nproc, args, max_restarts)
    child_env = {**os.environ, **(env or {}), ENV_OUT: str(out), ENV_BACKEND: backend,
                 ENV_TIMEOUT: str(group_timeout), "PYTHONUNBUFFERED": "1"}
    repo = str(Path(__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (repo, child_env.get("PYTHONPATH", "")) if p)
    if launcher == "mpiexec":
        child_env[ENV_INIT_FILE] = str(out / "rendezvous")
    chunks: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=child_env, cwd=str(script.parent),
                            start_new_session=True)
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_tree(proc)
    except BaseException:  # a KeyboardInterrupt in the notebook: leave no orphans
        _kill_tree(proc)
        raise
    reader.join(timeout=5)
    seconds = time.perf_counter() - start
    logs, errors, outputs = _read_rank_files(out)
    result = LaunchResult(command=command, returncode=proc.returncode, seconds=seconds,
                          out_dir=out, launcher_output="".join(chunks), logs=logs,
                          errors=errors, outputs=outputs)
    if show == "all" or (show == "failed" and (timed_out or not result.ok)):
        result.show_logs(tail=20)
    if timed_out:
        message = (f"the launch of {script.name} on {nproc} processes ran past its timeout "
                   f"of {timeout:g} s and was stopped (all processes killed). A rank may be "
                   f"waiting in a collective that another rank never reached. "
                   f"Logs: {out}")
        if check:
            raise LaunchTimeout(message, result)
    elif not result.ok and check:
        raise RankFailedError(_failure_message(result), result)
    return result


# ------------------------------------------------------------------------ inside a rank
@dataclass(frozen=True)
class DistInfo:
    """Who this process is: global rank, world size, local rank, its device, backend."""

    rank: int
    world_size: int
    local_rank: int
    device: str
    backend: str


def _env_int(*names: str, default: int | None = None) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def rank_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's or an MPI launcher's variables."""
    rank = _env_int("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", default=0)
    world = _env_int("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS",
                     default=1)
    local = _env_int("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK",
                     "SLURM_LOCALID", default=rank)
    return rank, world, local


def group_timeout(timeout_s: float | None = None) -> datetime.timedelta | None:
    """The process group's timeout: ``timeout_s``, else the one ``launch`` passed
    (``HPDL_DIST_TIMEOUT``: short, so that a notebook's Gloo run fails fast instead of
    hanging), else None: PyTorch's own default (10 minutes for NCCL), for a script started
    by hand on a cluster, where rank 0 may legitimately work alone for minutes (a
    checkpoint, a first ``torch.compile``) while the others wait in a collective."""
    value = timeout_s or os.environ.get(ENV_TIMEOUT)
    if value is None or value == "":
        return None
    seconds = float(value)
    if not seconds > 0:
        raise UsageError(f"the process group timeout must be > 0 seconds, got {value!r}")
    return datetime.timedelta(seconds=seconds)


def init(backend: str | None = None, timeout_s: float | None = None) -> DistInfo:
    """Join the process group with an explicit timeout; pick the device for this rank.

    ``backend`` defaults to the launch's (``HPDL_DIST_BACKEND``, ``auto``): NCCL when CUDA
    is available with a GPU for every local rank, else Gloo. A collective that waits
    longer than ``timeout_s`` (default: the launch's ``group_timeout``; PyTorch's own
    default outside ``launch``, see ``group_timeout``) fails instead of hanging.
    """
    import torch
    import torch.distributed as tdist

    backend = backend or os.environ.get(ENV_BACKEND, "auto")
    check_choice("backend", backend, BACKENDS)
    timeout = group_timeout(timeout_s)
    rank, world, local = rank_from_env()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend == "auto":  # a script started by hand with torchrun: same rule as launch()
        local_world = _env_int("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", default=world) or world
        backend = "nccl" if gpus and gpus >= local_world else "gloo"
    device = f"cuda:{local % gpus}" if gpus and backend == "nccl" else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        init_file = os.environ.get(ENV_INIT_FILE)
        kwargs: dict[str, Any] = {"backend": backend}
        if timeout is not None:
            kwargs["timeout"] = timeout
        if "MASTER_ADDR" not in os.environ and init_file:
            kwargs.update(init_method=f"file://{init_file}", rank=rank, world_size=world)
        elif os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's agent keeps one store across restarts; a key prefix per attempt
            # keeps a restarted group from reading the dead attempt's addresses.
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            agent = tdist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                   world, is_master=False,
                                   timeout=timeout or datetime.timedelta(minutes=10))
            kwargs.update(store=tdist.PrefixStore(f"hpdl/attempt_{attempt}", agent),
                          rank=rank, world_size=world)
        if backend == "nccl":
            kwargs["device_id"] = torch.device(device)
        tdist.init_process_group(**kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device,
                    backend=backend)


def save_result(value: Any) -> Path:
    """Save this rank's JSON-serialisable result; ``launch`` returns it in ``outputs``."""
    rank = rank_from_env()[0]
    folder = Path(os.environ.get(ENV_OUT, "."))
    path = folder / f"result_rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)
    return path


def finish() -> None:
    """Leave the process group (a clean exit: no warnings about leaked groups)."""
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.destroy_process_group()


def _run_rank(argv: list[str]) -> int:
    """The per-rank wrapper: logs to ``rank<R>.log``, a traceback to ``rank<R>.error``."""
    import runpy

    if not argv:
        print("usage: python -m course_utils.training.dist SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    rank = rank_from_env()[0]
    out = Path(os.environ.get(ENV_OUT, "."))
    out.mkdir(parents=True, exist_ok=True)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    log = open(out / f"rank{rank}.log", "a", buffering=1)  # noqa: SIM115 - lives as long as us
    if attempt != "0":
        log.write(f"===== restart {attempt} =====\n")
    os.dup2(log.fileno(), 1)  # C and Python output of this rank both go to its log
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        text = f"SystemExit: {exc.code}\n"  # sys.exit("message"): keep the message
        log.write(text)
        (out / f"rank{rank}.error").write_text(text)
        return 1
    except BaseException:
        text = traceback.format_exc()
        log.write(text)
        (out / f"rank{rank}.error").write_text(text)
        return 1
    return 0


def exit_now(code: int = 0) -> None:
    """Flush and leave without the interpreter's teardown (where that teardown is unsafe).

    With torch 2.13, Gloo keeps threads alive after ``destroy_process_group`` and a rank
    occasionally aborts (SIGABRT) while the interpreter tears them down, turning a
    finished run into a "failed" one. The script's work is done and its result saved at
    this point, so the rank skips the teardown. A rank that used MPI exits normally
    instead: mpi4py finalises MPI at exit, and MPICH's launcher kills the job when a rank
    skips that.
    """
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    if "mpi4py.MPI" in sys.modules:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    exit_now(_run_rank(sys.argv[1:]))
