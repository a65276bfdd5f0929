"""Reference checks for lab 4 (a ring all-reduce and data parallelism, written by hand).

The lab's answers run in several processes, and functions defined in a notebook cannot be
pickled into other processes, so the student writes them into two scripts with
``%%writefile`` cells: ``ring.py`` (``chunk_bounds``, ``ring_all_reduce``) and
``dp_train.py`` (``average_gradients``, ``train_data_parallel``), in a folder under
``build/`` (``lab_folder()``: one per notebook kernel, so the master and a student version
running at the same time never overwrite each other's scripts, and the repository stays
clean). The checks:

* ``check_chunk_bounds`` imports ``ring.py`` in the notebook's own process (no launch);
* ``check_ring_all_reduce`` (one world size per check) and ``check_ring_traffic`` share ONE
  Gloo job of ``max(world_sizes)`` processes (``course_utils.training.dist.launch`` of this module's
  worker). Inside it the ranks form a process group of each world size in turn, largest
  first (surplus ranks leave), and call the student's ``ring_all_reduce`` on tensors of
  odd lengths (and one 4 x 3 tensor), compare with ``torch.distributed.all_reduce`` and
  count what each rank sends to whom. Collectives other than send/recv are switched off
  while the student's function runs: the ring must be written with point-to-point messages.
* ``check_average_gradients`` and ``check_data_parallel`` share one job likewise:
  ``average_gradients`` is graded with torch's all-reduce (so it scores on its own), and
  ``train_data_parallel`` with the student's ring, against ``DistributedDataParallel``
  trained on the same data from the same (rank-dependent) initial weights.

Starting a rank costs seconds (each imports PyTorch), so a job's result is cached by the
content of its scripts and the settings: the checks of one part share a launch, and
rerunning a check after changing a script launches again. Every failure becomes an
``AssertionError`` whose message names the world size, the length, the rank, the first
wrong index with the value got and expected, and a hint. A function that still raises
``NotImplementedError`` at the top of its body is found by reading the script, before any
launch; one that raises it in a rank raises it in the notebook too, so ``check`` says
"not implemented". A deadlock never hangs the notebook: every process group has a
timeout (``group_timeout``) and so has the launch (``timeout``).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_utils.checks import check_seed
from course_utils.checks.own_work import no_course_calls, require_own
from course_utils.errors import UsageError, as_list, check_positive
from course_utils.paths import build_path
from course_utils.training import dist

RING_FUNCTIONS = ("chunk_bounds", "ring_all_reduce")
DP_FUNCTIONS = ("average_gradients", "train_data_parallel")
MATRIX_SHAPE = (4, 3)  # one 2-D case: any shape must work, and 12 is divisible by 2, 3, 4
MAX_WORLD_SIZE = 8
DP_SIZES = (5, 7, 3)  # the data-parallel model: Linear(5, 7) - Tanh - Linear(7, 3)
DP_RTOL, DP_ATOL = 1e-10, 1e-12  # float64: ring vs DDP differ by rounding (~1e-16)
FORBIDDEN = ("all_reduce", "reduce", "broadcast", "all_gather", "all_gather_into_tensor",
             "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "all_to_all_single",
             "gather", "scatter", "all_reduce_coalesced", "all_gather_coalesced",
             "all_gather_object", "broadcast_object_list", "gather_object",
             "scatter_object_list")
# The same collectives by other doors, also switched off while the student's ring runs:
# torch's functional collectives, their ops, the process group's methods, and the course's
# own implementations (lesson 12's), which would answer the lab with one import.
COLLECTIVE_WORDS = ("all_reduce", "allreduce", "all_gather", "allgather", "reduce_scatter",
                    "all_to_all", "alltoall", "broadcast", "permute_tensor")
PROCESS_GROUP_METHODS = ("allreduce", "allreduce_coalesced", "allgather", "allgather_coalesced",
                         "allgather_into_tensor_coalesced", "all_gather_single",
                         "all_gather_single_coalesced", "alltoall", "alltoall_base",
                         "all_to_all_single", "broadcast", "gather", "reduce", "reduce_scatter",
                         "reduce_scatter_single", "reduce_scatter_single_coalesced",
                         "reduce_scatter_tensor_coalesced", "scatter")
COURSE_COLLECTIVES = ("naive_all_reduce", "ring_reduce_scatter", "ring_all_gather",
                      "ring_all_reduce")
DEADLOCK_HINT = (
    "Did you send and receive in an order that deadlocks? When every rank first waits in "
    "a blocking send or recv for a neighbour that is itself waiting, nobody moves: post "
    "the send without waiting (dist.isend, then dist.recv, then .wait() on the send), use "
    "dist.batch_isend_irecv, or alternate by rank parity (even ranks send first, odd "
    "ranks receive first). Also check that each rank sends exactly the messages (count "
    "and sizes) its neighbour expects to receive.")
CHUNK_HINT = (
    "Check the chunk boundaries for lengths not divisible by the world size: the first "
    "n % p chunks have one element more (chunk_bounds), every rank must use the same "
    "boundaries, and with n < p some chunks are empty.")
WORKER_STUB = '''"""Lab 4's grader worker (written by course_utils.checks.distributed)."""
import sys

from course_utils.checks.distributed import worker_main

sys.exit(worker_main(sys.argv[1:]))
'''


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """What the checks run: world sizes, lengths, the data-parallel run, the timeouts.

    ``timeout``: seconds for a whole grading job (process start-up included);
    ``group_timeout``: seconds a rank may wait in one send/recv or collective before it
    gives up (a deadlock then fails in that time instead of hanging).
    """

    world_sizes: tuple[int, ...] = (2, 3, 4)
    lengths: tuple[int, ...] = (1, 5, 1001)
    dp_world_sizes: tuple[int, ...] = (2, 3)
    dp_steps: int = 5
    dp_batch: int = 3
    dp_lr: float = 0.1
    seed: int = 0
    timeout: float = 240.0
    group_timeout: float = 20.0


def _int_tuple(name: str, values: Any, low: int, high: int) -> tuple[int, ...]:
    """Integers from ``low`` to ``high``, given as the course's every list parameter is
    (``2,3``, ``[2, 3]``, ``(2, 3)``, ``2 3``, a list, or one integer): errors.as_list."""
    items = as_list(values)
    if not items or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high
                        for v in items):
        raise UsageError(f"{name}={values!r} is not valid; give integers from {low} to "
                         f"{high}, e.g. -p {name.upper()} {low},{low + 1}")
    return tuple(int(v) for v in items)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= 1")
    return value


def settings(cfg: dict[str, Any], seed: int = 0) -> Settings:
    """Validated ``Settings`` from the profile's ``lab4_distributed`` knobs.

    Raises ``UsageError`` naming the knob, its value and the allowed range.
    """
    for key in ("timeout", "group_timeout", "dp_lr"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{key}={value!r} is not valid; it must be a number > 0")
        check_positive(key, value)
    if cfg["group_timeout"] >= cfg["timeout"]:
        raise UsageError(f"group_timeout={cfg['group_timeout']!r} is not valid; it must be "
                         f"less than timeout={cfg['timeout']!r}")
    return Settings(
        world_sizes=_int_tuple("world_sizes", cfg["world_sizes"], 2, MAX_WORLD_SIZE),
        lengths=_int_tuple("lengths", cfg["lengths"], 1, 10**8),
        dp_world_sizes=_int_tuple("dp_world_sizes", cfg["dp_world_sizes"], 2, MAX_WORLD_SIZE),
        dp_steps=_positive_int("dp_steps", cfg["dp_steps"]),
        dp_batch=_positive_int("dp_batch", cfg["dp_batch"]),
        dp_lr=float(cfg["dp_lr"]), seed=check_seed(seed) % 2**31,
        timeout=float(cfg["timeout"]),
        group_timeout=float(cfg["group_timeout"]))


def lab_folder() -> Path:
    """``build/lab4_distributed/kernel-<pid>/``: where this kernel's scripts are written.

    One folder per process, so that two copies of the lab running at once (a master and a
    student version, in the course's tests) never overwrite each other's scripts.
    """
    folder = build_path("lab4_distributed", f"kernel-{os.getpid()}", "x").parent
    for other in folder.parent.glob("kernel-*"):  # folders of kernels that have ended
        pid = other.name.partition("-")[2]
        if other != folder and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cases(settings: Settings) -> list[tuple[int, ...]]:
    """The tensor shapes ``ring_all_reduce`` is checked on: a 4 x 3 matrix, then the lengths."""
    return [MATRIX_SHAPE] + [(n,) for n in settings.lengths]


def reference_chunk_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """``world_size`` contiguous ``(start, stop)`` chunks of ``n`` elements; the first
    ``n % world_size`` are one element longer (the split of ``torch.tensor_split``)."""
    base, extra = divmod(n, world_size)
    bounds, start = [], 0
    for k in range(world_size):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def ring_send_floor(n: int, world_size: int) -> int:
    """The fewest elements a rank of a ring all-reduce sends: ``2 (p - 1)`` chunks of at
    least ``floor(n / p)`` elements."""
    return 2 * (world_size - 1) * (n // world_size)


def ring_send_bound(n: int, world_size: int) -> int:
    """The most elements a rank of a ring all-reduce sends: ``2 (p - 1)`` chunks of at most
    ``ceil(n / p)`` elements (``2 (p - 1) n / p`` when ``p`` divides ``n``)."""
    return 2 * (world_size - 1) * math.ceil(n / world_size)


# --------------------------------------------------------------------------- the scripts
def _script(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AssertionError(f"{path} does not exist: run the %%writefile cell that writes "
                             f"{path.name} first")
    return path.resolve()


def _function_node(path: Path, tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{path.name} has no function {name}(): keep the `def {name}(...)` "
                         "line given in the cell")


def _parse(path: Path) -> ast.Module:
    source = path.read_text()
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        raise AssertionError(f"{path.name} line {exc.lineno}: SyntaxError: {exc.msg}"
                             + (f" (`{line}`)" if line else "")
                             + ": fix the %%writefile cell and run it again") from None


def unfinished(path: str | os.PathLike, function: str) -> bool:
    """True when ``function`` in the script always raises ``NotImplementedError`` (a
    ``raise NotImplementedError`` at the top level of its body, as in the student version).

    Raises ``AssertionError`` when the script is missing, does not parse or lacks it.
    """
    path = _script(path)
    node = _function_node(path, _parse(path), function)
    for stmt in node.body:
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def _require_finished(path: Path, functions: Sequence[str]) -> None:
    """Each function is written (no ``raise NotImplementedError`` left) and is the
    student's own: neither the course's code nor built from it (``own_work``)."""
    for name in functions:
        if unfinished(path, name):
            raise NotImplementedError(f"{name}() in {path.name} is not implemented yet")
    module = load_module(path, f"lab4_own_{path.stem}")
    for name in functions:
        require_own(getattr(module, name, None), f"{name}() in {path.name}")


def load_module(path: str | os.PathLike, name: str = "lab4_student") -> types.ModuleType:
    """Import a script by its path (a fresh module each time: edits are picked up).

    An error while importing it becomes an ``AssertionError`` naming the line.
    """
    path = _script(path)
    _parse(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error of the student's module
        where = _student_frame(exc.__traceback__, path)
        raise AssertionError(f"importing {path.name} raised {type(exc).__name__}: {exc}"
                             f"{where}") from None
    return module


def _student_frame(tb, *paths: Path) -> str:
    """`` (ring.py line 12: `code`)`` for the innermost frame of ``tb`` in one of the
    student's scripts ``paths``, else ``""``."""
    frames = [f for f in traceback.extract_tb(tb) if Path(f.filename).resolve() in paths]
    if not frames:
        return ""
    frame = frames[-1]
    name = Path(frame.filename).name
    return f" ({name} line {frame.lineno}: `{(frame.line or '').strip()}`)"


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- chunk_bounds
CHUNK_CASES = ((1001, 4), (1001, 3), (5, 2), (12, 3), (1, 4), (2, 3), (7, 7), (0, 2), (9, 1))


def check_chunk_bounds(path: str | os.PathLike) -> None:
    """``chunk_bounds(n, world_size)`` of ``ring.py`` equals the ``tensor_split`` layout."""
    path = _script(path)
    module = load_module(path, "lab4_ring_check")
    require_own(getattr(module, "chunk_bounds", None), f"chunk_bounds() in {path.name}")
    for n, p in CHUNK_CASES:
        expected = reference_chunk_bounds(n, p)
        with no_course_calls(f"chunk_bounds({n}, {p})"):
            got = module.chunk_bounds(n, p)
        if got is None:
            raise AssertionError(f"chunk_bounds({n}, {p}) returned None (did you forget "
                                 "`return`?)")
        try:
            got = [tuple(int(v) for v in pair) for pair in got]
        except (TypeError, ValueError):
            raise AssertionError(f"chunk_bounds({n}, {p}) returned {got!r}; expected a list "
                                 f"of {p} (start, stop) pairs, e.g. {expected}") from None
        if got == expected:
            continue
        if len(got) != p:
            raise AssertionError(f"chunk_bounds({n}, {p}) returned {len(got)} chunks, "
                                 f"expected {p} (one per rank, some may be empty): {expected}")
        more = (f"the first n % p = {n % p} chunks get one element more than the others "
                f"({n // p} elements).")
        if got[0][0] != 0 or any(a != b for (_, a), (b, _) in zip(got, got[1:],
                                                                  strict=False)):
            hint = "The chunks must be contiguous and in order, starting at 0."
        elif got[-1][1] != n:
            hint = (f"They end at {got[-1][1]}, not at n = {n}: every element must be in a "
                    f"chunk; {more}")
        else:
            hint = more[0].upper() + more[1:]
        raise AssertionError(f"chunk_bounds({n}, {p}) returned {got}, expected {expected}. "
                             f"{hint}")


# --------------------------------------------------------------------------- launches
@dataclass
class Run:
    """One grading job: each rank's saved records, or why the job failed."""

    outputs: dict[int, Any] = field(default_factory=dict)
    failure: str = ""  # "timeout" | "rank failed" | ""
    message: str = ""
    seconds: float = 0.0


_RUNS: dict[str, Run] = {}


def _launch(kind: str, scripts: Sequence[Path], nproc: int, args: list[str],
            settings: Settings) -> Run:
    """Run this module's worker on ``nproc`` Gloo processes; cached by scripts + settings."""
    key = f"{kind}:{_digest(*scripts)}:{json.dumps(asdict(settings))}"
    if key in _RUNS:
        return _RUNS[key]
    folder = scripts[0].parent
    stub = folder / "grader_worker.py"
    if not stub.exists() or stub.read_text() != WORKER_STUB:
        stub.write_text(WORKER_STUB)
    run = Run()
    try:
        result = dist.launch(stub, nproc=nproc, args=[kind, *args], backend="gloo",
                             timeout=settings.timeout, group_timeout=settings.group_timeout,
                             out_dir=folder / f"grading_{kind}", show="none",
                             env={"PYTHONDONTWRITEBYTECODE": "1"})
        run.outputs, run.seconds = result.outputs, result.seconds
    except dist.LaunchTimeout as exc:
        run.outputs, run.failure = exc.result.outputs, "timeout"
        run.message = (f"the grading job ran past its timeout of {settings.timeout:g} s and "
                       "was stopped (all its processes killed)")
    except dist.RankFailedError as exc:
        run.outputs, run.failure = exc.result.outputs, "rank failed"
        text = str(exc).splitlines()
        run.message = "a process of the grading job died: " + "\n".join(text[:1] + text[-8:])
    _RUNS[key] = run
    return run


def ring_run(ring_py: str | os.PathLike, settings: Settings = Settings()) -> Run:
    """The ring job (cached): ``ring_all_reduce`` on every world size and case."""
    path = _script(ring_py)
    load_module(path, "lab4_ring_check")  # a syntax or import error: fail here, quickly
    sizes = ",".join(map(str, sorted(set(settings.world_sizes), reverse=True)))
    args = ["--ring", str(path), "--world-sizes", sizes,
            "--lengths", ",".join(map(str, settings.lengths)), "--seed", str(settings.seed)]
    return _launch("ring", [path], max(settings.world_sizes), args, settings)


# --------------------------------------------------------------------------- ring verdicts
PRIORITY = ("not implemented", "forbidden", "raised", "timeout", "mismatch", "peer")


def _shape_text(shape: Sequence[int]) -> str:
    return f"length {shape[0]}" if len(shape) == 1 else \
        f"a {' x '.join(map(str, shape))} tensor ({math.prod(shape)} elements)"


def _error_text(error: dict[str, Any]) -> str:
    return f"{error['type']}: {error['message']}{error.get('where', '')}"


def _mismatch_text(case: dict[str, Any], rank: int, world: int, passed: list[dict]) -> str:
    m = case["mismatch"]
    n = case["n"]
    what = _shape_text(case["shape"])
    index = m["index"]
    text = (f"ring_all_reduce on {world} ranks, {what}: rank {rank} holds wrong values: "
            f"{m['count']} of {n} differ; first at {'' if len(case['shape']) == 1 else 'flat '}"
            f"index {index}: got {m['got']:g}, expected {m['expected']:g} (the sum over all "
            "ranks, from dist.all_reduce).")
    a, b = m["chunk"]
    text += (f" Index {index} is in chunk {m['chunk_index']} (elements {a}..{b - 1}) of the "
             f"split into {world} chunks.")
    hints = []
    if m.get("unchanged_all"):
        hints.append("The tensor was not changed at all: ring_all_reduce must work in place "
                     "(write into `tensor`, e.g. through flat = tensor.view(-1))"
                     + ("; returning a new tensor is not enough." if m.get("returned_ok")
                        else "."))
    elif m.get("zeros"):
        hints.append("Those elements are 0: was a receive buffer never filled, or filled "
                     "but not copied or added into the tensor?")
    elif m.get("subset") is not None:
        ranks = m["subset"]
        if ranks == [rank]:
            hints.append(f"Elements {m['run'][0]}..{m['run'][1] - 1} still hold rank {rank}'s "
                         "own input: nothing was added to or gathered into them.")
        else:
            hints.append(f"Elements {m['run'][0]}..{m['run'][1] - 1} hold the sum over ranks "
                         f"{ranks} only, a partial sum: the reduce-scatter needs p - 1 = "
                         f"{world - 1} steps that pass each chunk all around the ring, and the "
                         "all-gather must pass on the fully reduced chunks.")
    if m.get("tail_only") and n % world:
        hints.append(f"Only the last elements (after {(n // world) * world}) are wrong: are "
                     f"the last n % p = {n % world} elements dropped by the split?")
    if n % world:
        done = [c for c in passed if c["n"] % world == 0]
        if done:
            hints.append(f"It works for {_shape_text(done[0]['shape'])} ({done[0]['n']} is "
                         f"divisible by {world}) but not here.")
        hints.append(CHUNK_HINT)
    return " ".join([text, *hints])


def _case_verdict(records: dict[int, dict], world: int, index: int, settings: Settings,
                  passed: list[dict]) -> str | None:
    """None when every rank got case ``index`` right, ``"incomplete"`` when some rank has
    no record of it (the job stopped), else the message (or raise NotImplementedError)."""
    per_rank = {r: rec["cases"][index] for r, rec in records.items()
                if index < len(rec["cases"])}
    bad = {r: c for r, c in per_rank.items() if c["status"] != "ok"}
    if not bad:
        return None if len(per_rank) == world else "incomplete"
    rank, case = min(bad.items(), key=lambda rc: (PRIORITY.index(rc[1]["status"]), rc[0]))
    status = case["status"]
    head = f"ring_all_reduce on {world} ranks, {_shape_text(case['shape'])}: rank {rank}"
    if status == "not implemented":
        raise NotImplementedError("ring_all_reduce() is not implemented yet")
    if status == "forbidden":
        called = case["error"]["message"]
        called = called if "." in called else f"torch.distributed.{called}"
        return (f"{head} called {called}: write the ring yourself, with point-to-point "
                "messages only (dist.send/dist.recv, dist.isend/dist.irecv or "
                "dist.batch_isend_irecv)")
    if status == "raised":
        return f"{head} raised {_error_text(case['error'])}"
    if status == "timeout":
        others = sorted(r for r, c in per_rank.items() if c["status"] in ("ok", "mismatch"))
        note = (f"; rank(s) {others} had finished, so the ranks disagree on the messages"
                if others else "")
        return (f"{head} waited more than {settings.group_timeout:g} s in a send/recv and "
                f"gave up{case['error'].get('where', '')}{note}. {DEADLOCK_HINT}")
    if status == "mismatch":
        return _mismatch_text(case, rank, world, passed)
    return (f"{head} lost its connection to a neighbour ({_error_text(case['error'])}): "
            "another rank failed or gave up")


def _world_records(run: Run, world: int) -> dict[int, dict]:
    return {r: out[str(world)] for r, out in run.outputs.items()
            if r < world and str(world) in out}


def _running_text(run: Run, world: int) -> str:
    for out in run.outputs.values():
        running = out.get("running")
        if running and running.get("world") == world:
            return (f", while {world} ranks were running ring_all_reduce on "
                    f"{_shape_text(running['shape'])}")
    return ""


def check_ring_all_reduce(ring_py: str | os.PathLike, world_size: int,
                          settings: Settings = Settings()) -> dict[str, Any]:
    """``ring_all_reduce`` equals ``dist.all_reduce`` on ``world_size`` ranks, for every case.

    Returns ``{"world_size", "cases", "seconds"}`` (each case's time on rank 0).
    """
    if world_size not in settings.world_sizes:
        raise UsageError(f"world_size={world_size!r} is not valid; choose one of: "
                         f"{', '.join(map(str, settings.world_sizes))}")
    path = _script(ring_py)
    _require_finished(path, ("ring_all_reduce",))
    run = ring_run(path, settings)
    records = _world_records(run, world_size)
    passed: list[dict] = []
    for index, shape in enumerate(cases(settings)):
        verdict = _case_verdict(records, world_size, index, settings, passed)
        if verdict is None:
            passed.append(records[0]["cases"][index])
            continue
        if verdict != "incomplete":
            raise AssertionError(verdict)
        if run.failure == "timeout":
            raise AssertionError(f"ring_all_reduce on {world_size} ranks did not finish: "
                                 f"{run.message}{_running_text(run, world_size)}. "
                                 f"{DEADLOCK_HINT}")
        if run.failure:
            raise AssertionError(f"ring_all_reduce on {world_size} ranks did not run to the "
                                 f"end: {run.message}")
        raise AssertionError(f"ring_all_reduce on {world_size} ranks, {_shape_text(shape)}: "
                             "no result from some ranks (see the logs in "
                             f"{path.parent / 'grading_ring'})")
    return {"world_size": world_size, "cases": [c["shape"] for c in passed],
            "seconds": [c["seconds"] for c in passed]}


def check_ring_traffic(ring_py: str | os.PathLike, settings: Settings = Settings(),
                       result: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """The ring sends only to its right neighbour, at least ``2 (p - 1) floor(n / p)`` and
    at most ``2 (p - 1) ceil(n / p)`` elements per rank.

    Measured on the longest length of the ring job, for every world size on which that case
    is correct. ``result`` (a dict), when given, receives ``{world size: {"sent": [per
    rank], "bound", "ideal", "naive_root", "n"}}`` before the assertions.
    """
    path = _script(ring_py)
    _require_finished(path, ("ring_all_reduce",))
    run = ring_run(path, settings)
    n = max(settings.lengths)
    index = cases(settings).index((n,))
    table: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    not_yet: list[int] = []
    for world in sorted(settings.world_sizes):
        records = _world_records(run, world)
        got = {r: rec["cases"][index] for r, rec in records.items() if index < len(rec["cases"])}
        if len(got) < world or any(c["status"] != "ok" for c in got.values()):
            not_yet.append(world)
            continue
        sent = [got[r]["sent"] for r in range(world)]
        table[world] = {"n": n, "sent": sent, "bound": ring_send_bound(n, world),
                        "ideal": 2 * (world - 1) * n / world, "naive_root": (world - 1) * n}
        strays = [r for r in range(world) if set(got[r]["dests"]) - {(r + 1) % world}]
        if strays:
            r = strays[0]
            problems.append(f"on {world} ranks, rank {r} sent to rank(s) {got[r]['dests']}: in a "
                            f"ring each rank sends only to its right neighbour (rank + 1) % "
                            f"world_size = {(r + 1) % world}")
        least = ring_send_floor(n, world)
        short = [r for r in range(world) if sent[r] < least]
        if short:
            r = short[0]
            problems.append(
                f"on {world} ranks, rank {r} sent only {sent[r]} elements for a tensor of {n}; "
                f"a ring's rank sends 2 (p - 1) chunks of at least floor(n / p) elements, "
                f"{least} in all: the sums must travel through the ring's messages")
        worst = max(range(world), key=lambda r: sent[r])
        if sent[worst] > table[world]["bound"]:
            problems.append(
                f"on {world} ranks, rank {worst} sent {sent[worst]} elements for a tensor of "
                f"{n}; a ring sends 2 (p - 1) / p n = {table[world]['ideal']:.0f}, at most "
                f"2 (p - 1) ceil(n / p) = {table[world]['bound']}: send chunks of about n / p "
                "elements, each once per phase, not whole tensors")
    if not_yet:
        problems.append(f"the all-reduce of length {n} is not correct yet on "
                        f"{', '.join(map(str, not_yet))} ranks (see the checks above): "
                        "traffic is measured on correct runs only")
    if result is not None:
        result.update(table)
    if problems:
        raise AssertionError("; ".join(problems))
    return table


# --------------------------------------------------------------------------- data parallel
def dp_run(dp_py: str | os.PathLike, ring_py: str | os.PathLike,
           settings: Settings = Settings()) -> Run:
    """The data-parallel job (cached): ``average_gradients`` and ``train_data_parallel``."""
    dp_path, ring_path = _script(dp_py), _script(ring_py)
    load_module(dp_path, "lab4_dp_check")
    load_module(ring_path, "lab4_ring_check")
    sizes = ",".join(map(str, sorted(set(settings.dp_world_sizes), reverse=True)))
    args = ["--dp", str(dp_path), "--ring", str(ring_path), "--world-sizes", sizes,
            "--steps", str(settings.dp_steps), "--batch", str(settings.dp_batch),
            "--lr", repr(settings.dp_lr), "--seed", str(settings.seed)]
    return _launch("dp", [dp_path, ring_path], max(settings.dp_world_sizes), args, settings)


def _first_difference(got: Sequence[float], expected: Sequence[float], rtol: float,
                      atol: float) -> tuple[int, int] | None:
    """(first differing index, number differing), or None when all are close."""
    bad = [i for i, (g, e) in enumerate(zip(got, expected, strict=True))
           if not abs(g - e) <= atol + rtol * abs(e)]
    return (bad[0], len(bad)) if bad else None


def _close(a: Sequence[float], b: Sequence[float], rtol: float = DP_RTOL,
           atol: float = DP_ATOL) -> bool:
    return _first_difference(a, b, rtol, atol) is None


def _param_at(names: list[list], index: int) -> str:
    """``'0.weight[1, 4]'`` for flat index ``index`` of the concatenated parameters
    (``names``: ``[name, size, shape]`` of each parameter, in order)."""
    offset = 0
    for name, size, *shape in names:
        if index < offset + size:
            rest, where = index - offset, []
            for dim in reversed(shape[0] if shape else [size]):
                rest, i = divmod(rest, dim)
                where.append(str(i))
            return f"{name}[{', '.join(reversed(where))}]"
        offset += size
    return f"flat index {index}"  # pragma: no cover


def _dp_failure(run: Run, world: int, part: str, function: str) -> str:
    if run.failure == "timeout":
        return (f"{function} on {world} ranks did not finish: {run.message}. A rank may wait "
                f"in a collective the others never reach. {DEADLOCK_HINT}")
    if run.failure:
        return f"{function} on {world} ranks did not run to the end: {run.message}"
    return f"{function} on {world} ranks: no result from some ranks"


def _dp_status(run: Run, world: int, part: str, function: str) -> dict[int, dict]:
    """Each rank's record of ``part`` on ``world`` ranks; raises on errors and timeouts."""
    records = {r: out[str(world)][part] for r, out in run.outputs.items()
               if r < world and part in out.get(str(world), {})}
    if len(records) < world:
        raise AssertionError(_dp_failure(run, world, part, function))
    bad = {r: rec for r, rec in records.items() if rec["status"] != "ok"}
    if not bad:
        return records
    rank, rec = min(bad.items(), key=lambda rc: (PRIORITY.index(rc[1]["status"]), rc[0]))
    if rec["status"] == "not implemented":
        raise NotImplementedError(f"{rec['error']['message'] or function}")
    head = f"{function} on {world} ranks: rank {rank}"
    if rec["status"] == "timeout":
        raise AssertionError(f"{head} waited more than its process group's timeout in a "
                             f"collective and gave up{rec['error'].get('where', '')}. "
                             f"{DEADLOCK_HINT}")
    if rec["status"] == "peer":
        raise AssertionError(f"{head} lost its connection to another rank "
                             f"({_error_text(rec['error'])}): another rank failed or gave up")
    raise AssertionError(f"{head} raised {_error_text(rec['error'])}")


def check_average_gradients(dp_py: str | os.PathLike, ring_py: str | os.PathLike,
                            settings: Settings = Settings()) -> None:
    """``average_gradients`` leaves the mean over ranks in every ``.grad`` (and changes no
    parameter), on every world size of ``settings.dp_world_sizes``. It is given torch's
    all-reduce here, so it is graded whatever the state of ``ring_all_reduce``."""
    dp_path = _script(dp_py)
    _require_finished(dp_path, ("average_gradients",))
    run = dp_run(dp_path, ring_py, settings)
    for world in sorted(settings.dp_world_sizes):
        records = _dp_status(run, world, "average", "average_gradients")
        for rank in range(world):
            rec = records[rank]
            if rec["calls"] == 0:
                raise AssertionError(f"average_gradients on {world} ranks: rank {rank} never "
                                     "called all_reduce: sum each gradient over the ranks "
                                     "with the all_reduce it is given")
            if rec["params_changed"]:
                raise AssertionError(f"average_gradients on {world} ranks changed the "
                                     "parameters: it only averages the .grad tensors; the "
                                     "optimizer updates the parameters")
            for j, (name, size, *_) in enumerate(rec["names"]):
                inputs = [records[r]["grads_in"][j] for r in range(world)]
                total = [sum(vals) for vals in zip(*inputs, strict=True)]
                mean = [t / world for t in total]
                got = rec["grads_out"][j]
                diff = _first_difference(got, mean, 1e-9, 1e-12)
                if diff is None:
                    continue
                i, count = diff
                if _close(got, total):
                    hint = (f"That is the SUM over the ranks: divide by the world size "
                            f"({world}) to get the mean.")
                elif _close(got, inputs[rank]):
                    hint = ("That is this rank's own gradient, unchanged: all_reduce works in "
                            "place on the tensor it is given; pass it param.grad itself.")
                elif _close(got, [m / world for m in mean]):
                    hint = "That is the mean divided by the world size once more."
                else:
                    hint = ("Expected the mean over ranks: all_reduce(param.grad), then divide "
                            "by the world size.")
                raise AssertionError(
                    f"average_gradients on {world} ranks: rank {rank}'s gradient of {name} "
                    f"({size} values) is wrong at {count} of them; first at index {i}: got "
                    f"{got[i]:.6g}, expected {mean[i]:.6g}. {hint}")


def check_data_parallel(dp_py: str | os.PathLike, ring_py: str | os.PathLike,
                        settings: Settings = Settings(),
                        result: dict[str, Any] | None = None) -> dict[int, float]:
    """``train_data_parallel`` with the student's ring ends with DDP's parameters.

    For every world size of ``settings.dp_world_sizes``, each rank's parameters after
    ``dp_steps`` SGD steps must equal those of ``DistributedDataParallel`` trained on the
    same data from the same initial weights, within ``DP_RTOL`` / ``DP_ATOL`` (float64).
    Returns (and puts into ``result``) the largest difference per world size.
    """
    dp_path, ring_path = _script(dp_py), _script(ring_py)
    _require_finished(dp_path, ("train_data_parallel",))
    _require_finished(ring_path, ("ring_all_reduce",))
    run = dp_run(dp_path, ring_path, settings)
    diffs: dict[int, float] = {}
    for world in sorted(settings.dp_world_sizes):
        records = _dp_status(run, world, "train", "train_data_parallel")
        diffs[world] = max(max((abs(a - b) for a, b in zip(rec["params"], rec["ddp"],
                                                                strict=True)), default=0.0)
                           for rec in records.values())
        if result is not None:
            result[world] = diffs[world]
        where = f"train_data_parallel on {world} ranks"
        for rank in range(world):
            rec = records[rank]
            if rec["calls"] == 0:
                raise AssertionError(f"{where}: rank {rank} never called all_reduce (your "
                                     "ring_all_reduce): average the gradients with "
                                     "average_gradients(model, all_reduce) after backward")
            rows = rec["rows"]
            if rows and any(r != settings.dp_batch for r in rows):
                wrong = next(r for r in rows if r != settings.dp_batch)
                extra = (f" ({wrong} = batch_size x world_size: every rank ran the whole "
                         "global batch; each rank takes only its own block of batch_size "
                         "rows)" if wrong == settings.dp_batch * world else "")
                raise AssertionError(f"{where}: rank {rank} ran a training forward pass on "
                                     f"{wrong} rows; each rank's share of a step is "
                                     f"batch_size = {settings.dp_batch} rows{extra}")
            if rows and len(rows) != settings.dp_steps:
                raise AssertionError(f"{where}: rank {rank} ran {len(rows)} training forward "
                                     f"passes for steps = {settings.dp_steps}")
        for rank in range(world):
            rec = records[rank]
            diff = _first_difference(rec["params"], rec["ddp"], DP_RTOL, DP_ATOL)
            if diff is None:
                continue
            i, count = diff
            hints = []
            if not all(_close(records[r]["params"], rec["params"]) for r in range(world)):
                hints.append("The ranks ended with different parameters: every rank must "
                             "start from rank 0's parameters (DDP broadcasts them when it "
                             "wraps the model) and apply the same averaged gradient.")
            if rec.get("torch_all_reduce_ok"):
                hints.append("With torch.distributed.all_reduce in place of your "
                             "ring_all_reduce the loop matches DDP: the difference comes from "
                             "ring_all_reduce (see its checks above).")
            elif rec.get("torch_all_reduce_ok") is False:
                hints.append("It differs with torch.distributed.all_reduce too, so look at "
                             "the loop: the same start on every rank (broadcast from rank 0), "
                             "the rank's own block of each global batch, "
                             "F.cross_entropy as the loss, average_gradients after "
                             "backward and before optimizer.step().")
            raise AssertionError(
                f"{where}, {settings.dp_steps} steps of {settings.dp_batch} rows per rank: "
                f"rank {rank}'s parameters differ from DDP's at {count} of "
                f"{len(rec['params'])} values; first at {_param_at(rec['names'], i)}: got "
                f"{rec['params'][i]:.9g}, expected {rec['ddp'][i]:.9g} (tolerance: rtol "
                f"{DP_RTOL:g}, atol {DP_ATOL:g}). " + " ".join(hints))
    return diffs


# --------------------------------------------------------------------------- the worker
class Forbidden(RuntimeError):
    """The student's ring called a collective; the message is the collective's name."""


class _Spy:
    """Counts what this rank sends and to whom; turns collectives off while ``forbid``.

    Installed before the student's module is imported, on both ``torch.distributed`` and
    ``torch.distributed.distributed_c10d`` (``send`` and ``batch_isend_irecv`` go through
    the module-level ``isend``, so every message is counted once).
    """

    def __init__(self) -> None:
        import torch.distributed as tdist
        import torch.distributed.distributed_c10d as c10d

        self.sent = 0
        self.dests: set[int] = set()
        self.forbid = False
        self.original = {name: getattr(c10d, name) for name in ("isend", *FORBIDDEN)
                         if hasattr(c10d, name)}
        isend = self.original["isend"]

        def counting_isend(tensor, *args, **kwargs):
            dst = args[0] if args else kwargs.get("dst")
            if dst is None:
                dst = kwargs.get("group_dst")
            self.sent += tensor.numel()
            if dst is not None:
                self.dests.add(int(dst))
            return isend(tensor, *args, **kwargs)

        counting_isend.__name__ = "isend"
        patched = {"isend": counting_isend}
        for name in FORBIDDEN:
            if name in self.original:
                patched[name] = self._guard(name, self.original[name])
        for name, fn in patched.items():
            setattr(c10d, name, fn)
            setattr(tdist, name, fn)
        self._close_other_doors()

    def _close_other_doors(self) -> None:
        """Guard the functional collectives, their ops, the process group's collective
        methods and course_utils' own collectives: torch.distributed's send/recv stay."""
        import importlib

        import torch

        def collective(name: str) -> bool:
            return any(word in name for word in COLLECTIVE_WORDS) \
                and not name.endswith(("_backward", "_setup_context"))

        fc = importlib.import_module("torch.distributed._functional_collectives")
        for name in dir(fc):
            if collective(name) and not name.startswith("_") and callable(getattr(fc, name)):
                setattr(fc, name, self._guard(f"_functional_collectives.{name}",
                                              getattr(fc, name)))
        for space in ("_c10d_functional", "c10d_functional", "_c10d_functional_autograd"):
            ops = getattr(torch.ops, space, None)
            for name in ("all_reduce", "all_reduce_", "all_reduce_coalesced",
                         "all_reduce_coalesced_", "all_gather_into_tensor",
                         "all_gather_into_tensor_coalesced", "all_gather_into_tensor_out",
                         "reduce_scatter_tensor", "reduce_scatter_tensor_coalesced",
                         "all_to_all_single", "broadcast", "broadcast_"):
                try:
                    op = getattr(ops, name) if ops is not None else None
                except (AttributeError, RuntimeError):
                    op = None
                if op is not None:
                    setattr(ops, name, self._guard(f"torch.ops.{space}.{name}", op))
        group = torch._C._distributed_c10d.ProcessGroup
        for name in PROCESS_GROUP_METHODS:
            if hasattr(group, name):
                setattr(group, name, self._guard(f"ProcessGroup.{name}",
                                                 getattr(group, name)))
        from course_utils.training import collectives

        for name in COURSE_COLLECTIVES:
            setattr(collectives, name, self._guard(
                f"course_utils.training.collectives.{name} (the course's own, not yours)",
                getattr(collectives, name)))

    def _guard(self, name: str, fn: Callable) -> Callable:
        def guarded(*args, **kwargs):
            if self.forbid:
                raise Forbidden(name)
            return fn(*args, **kwargs)

        guarded.__name__ = name
        return guarded

    def reset(self) -> None:
        self.sent = 0
        self.dests = set()


def _classify(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "not implemented"
    if isinstance(exc, Forbidden):
        return "forbidden"
    text = str(exc)
    if re.search(r"timed out|timeout", text, re.I):
        return "timeout"
    if dist.PEER_FAILURE.search(text):
        return "peer"
    return "raised"


def _error_record(exc: BaseException, paths: Sequence[Path]) -> dict[str, Any]:
    message = str(exc).strip().splitlines()
    where = _student_frame(exc.__traceback__, *paths)
    return {"type": type(exc).__name__, "message": (message[0] if message else "")[:300],
            "where": where, "traceback": traceback.format_exc()[-3000:]}


def _join(out: Path, tag: str, rank: int, world: int, group_timeout: float,
          wait: float) -> None:
    """Form a Gloo process group of ranks ``0..world-1`` through a file store in ``out``.

    Ranks may arrive up to ``wait`` seconds apart (one gave up on a deadlock only after
    ``group_timeout``), so they first meet in the store, then join the group together.
    """
    import torch.distributed as tdist

    store = tdist.FileStore(str(out / f"store_{tag}"), world)
    store.set_timeout(datetime.timedelta(seconds=wait))
    store.add("arrived", 1)
    deadline = time.monotonic() + wait
    while store.add("arrived", 0) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ranks did not meet for {tag} within {wait:g} s")
        time.sleep(0.02)
    tdist.init_process_group("gloo", store=tdist.PrefixStore("pg", store), rank=rank,
                             world_size=world,
                             timeout=datetime.timedelta(seconds=group_timeout))


def _leave() -> None:
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.destroy_process_group()


def ring_input(shape: Sequence[int], seed: int, world: int, rank: int):
    """Rank ``rank``'s input: multiples of 1/8 in [-12.4, 12.4], so every sum is exact."""
    import torch

    n = math.prod(shape)
    gen = torch.Generator().manual_seed(((seed * 1009 + world) * 100_003 + n) * 17 + rank)
    return (torch.randint(-99, 100, tuple(shape), generator=gen) / 8).to(torch.float32)


def _diagnose(got, expected, inputs: list, rank: int, world: int, returned) -> dict[str, Any]:
    """What a wrong result looks like: first index, the run of wrong values, a pattern."""
    import torch

    flat, ref = got.reshape(-1), expected.reshape(-1)
    wrong = ~torch.isclose(flat, ref, rtol=1e-5, atol=1e-5)
    bad = torch.nonzero(wrong).flatten().tolist()
    i = bad[0]
    n = flat.numel()
    bounds = reference_chunk_bounds(n, world)
    chunk_index = next(k for k, (a, b) in enumerate(bounds) if a <= i < b)
    stop = i
    while stop < n and stop - i < 64 and wrong[stop]:
        stop += 1
    segment = flat[i:stop]
    subset = None
    for size in range(1, world + 1):
        for ranks in itertools.combinations(range(world), size):
            total = sum(inputs[r].reshape(-1)[i:stop] for r in ranks)
            if torch.equal(segment, total):
                subset = list(ranks)
                break
        if subset is not None:
            break
    unchanged = torch.equal(got, inputs[rank])
    returned_ok = (returned is not None and hasattr(returned, "shape")
                   and tuple(returned.shape) == tuple(expected.shape)
                   and bool(torch.allclose(returned.float(), expected)))
    return {"count": len(bad), "index": i, "got": float(flat[i]), "expected": float(ref[i]),
            "chunk_index": chunk_index, "chunk": list(bounds[chunk_index]),
            "run": [i, stop], "subset": subset, "unchanged_all": unchanged,
            "returned_ok": returned_ok, "zeros": bool(torch.all(segment == 0)),
            "tail_only": n >= world and bad[0] >= (n // world) * world}


def _ring_worker(args: argparse.Namespace) -> None:
    import torch

    rank = dist.rank_from_env()[0]
    out = Path(os.environ.get(dist.ENV_OUT, "."))
    group_timeout = float(os.environ.get(dist.ENV_TIMEOUT, dist.DEFAULT_GROUP_TIMEOUT_S))
    spy = _Spy()
    ring_path = Path(args.ring).resolve()
    module = load_module(ring_path, "lab4_ring")
    shapes = [MATRIX_SHAPE] + [(n,) for n in args.lengths]
    saved: dict[str, Any] = {}
    for world in args.world_sizes:  # largest first: surplus ranks leave
        if rank >= world:
            break
        _join(out, f"ring_w{world}", rank, world, group_timeout, wait=4 * group_timeout)
        entry: dict[str, Any] = {"cases": []}
        saved[str(world)] = entry
        for shape in shapes:
            saved["running"] = {"world": world, "shape": list(shape)}
            dist.save_result(saved)
            inputs = [ring_input(shape, args.seed, world, r) for r in range(world)]
            expected = inputs[rank].clone()
            spy.original["all_reduce"](expected)  # the reference: dist.all_reduce (sum)
            tensor = inputs[rank].clone()
            case: dict[str, Any] = {"shape": list(shape), "n": tensor.numel(), "status": "ok"}
            spy.reset()
            spy.forbid = True
            start = time.perf_counter()
            returned = None
            try:
                returned = module.ring_all_reduce(tensor)
            except Exception as exc:  # noqa: BLE001 - the student's error, reported
                case["status"] = _classify(exc)
                case["error"] = _error_record(exc, [ring_path])
                if case["status"] == "forbidden":
                    case["error"]["message"] = str(exc)
            finally:
                spy.forbid = False
            case.update(seconds=time.perf_counter() - start, sent=spy.sent,
                        dests=sorted(spy.dests))
            if case["status"] == "ok":
                if tuple(tensor.shape) != tuple(shape) or tensor.dtype != torch.float32:
                    case["status"] = "raised"
                    case["error"] = {"type": "AssertionError", "where": "", "message":
                                     f"the tensor's shape or dtype changed to "
                                     f"{tuple(tensor.shape)} {tensor.dtype}"}
                elif not torch.allclose(tensor, expected, rtol=1e-5, atol=1e-5):
                    case["status"] = "mismatch"
                    case["mismatch"] = _diagnose(tensor, expected, inputs, rank, world,
                                                 returned)
            entry["cases"].append(case)
            if case["status"] not in ("ok", "mismatch"):
                break  # the group may be out of step now: the next world size starts afresh
        saved.pop("running", None)
        dist.save_result(saved)
        _leave()
    saved.pop("running", None)
    dist.save_result(saved)


def dp_model(seed: int):
    """The data-parallel model, float64, initialised from ``seed``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    n_in, hidden, n_out = DP_SIZES
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).double()


def dp_data(seed: int, rows: int):
    """``rows`` samples (float64 features, labels in 0..2), the same on every rank."""
    import torch

    gen = torch.Generator().manual_seed(seed * 7919 + 11)
    X = torch.randn(rows, DP_SIZES[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, DP_SIZES[2], (rows,), generator=gen)
    return X, y


def _flat_params(model) -> list[float]:
    import torch

    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()


def _names(model) -> list[list]:
    return [[name, p.numel(), list(p.shape)] for name, p in model.named_parameters()]


def _dp_average(dpm, rank: int, world: int, seed: int) -> dict[str, Any]:
    import torch
    import torch.distributed as tdist

    model = dp_model(seed + 100 + rank)
    grads_in = []
    for j, p in enumerate(model.parameters()):
        gen = torch.Generator().manual_seed((seed * 31 + world) * 1000 + rank * 10 + j)
        p.grad = (torch.randint(-99, 100, p.shape, generator=gen) / 8).double()
        grads_in.append(p.grad.reshape(-1).tolist())
    before = _flat_params(model)
    calls = [0]

    def all_reduce(tensor):
        calls[0] += 1
        tdist.all_reduce(tensor)

    dpm.average_gradients(model, all_reduce)
    grads_out = [(p.grad.reshape(-1).tolist() if p.grad is not None else [math.nan] * p.numel())
                 for p in model.parameters()]
    return {"status": "ok", "calls": calls[0], "names": _names(model), "grads_in": grads_in,
            "grads_out": grads_out, "params_changed": _flat_params(model) != before}


def _ddp_reference(rank: int, world: int, seed: int, X, y, steps: int, batch: int,
                   lr: float) -> list[float]:
    """DistributedDataParallel from the same rank-dependent start, same data, plain SGD."""
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    model = dp_model(seed + 1 + rank)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)
    for step in range(steps):
        start = (step * world + rank) * batch
        optimizer.zero_grad()
        F.cross_entropy(ddp(X[start:start + batch]), y[start:start + batch]).backward()
        optimizer.step()
    return _flat_params(model)


def _dp_train(dpm, ring, rank: int, world: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.distributed as tdist

    X, y = dp_data(args.seed, args.steps * args.batch * world)
    model = dp_model(args.seed + 1 + rank)
    rows: list[int] = []
    model.register_forward_pre_hook(
        lambda module, inputs: rows.append(int(inputs[0].shape[0]))
        if torch.is_grad_enabled() else None)
    calls = [0]

    def ring_all_reduce(tensor):
        calls[0] += 1
        return ring.ring_all_reduce(tensor)

    dpm.train_data_parallel(model, X.clone(), y.clone(), steps=args.steps,
                            batch_size=args.batch, lr=args.lr, all_reduce=ring_all_reduce)
    params = _flat_params(model)
    ddp = _ddp_reference(rank, world, args.seed, X, y, args.steps, args.batch, args.lr)
    record = {"status": "ok", "calls": calls[0], "rows": rows, "params": params, "ddp": ddp,
              "names": _names(model), "torch_all_reduce_ok": None}
    flag = torch.tensor([0.0 if _close(params, ddp) else 1.0])
    tdist.all_reduce(flag)
    if flag.item() > 0:  # diagnose on every rank: the same loop with torch's all-reduce
        again = dp_model(args.seed + 1 + rank)
        dpm.train_data_parallel(again, X.clone(), y.clone(), steps=args.steps,
                                batch_size=args.batch, lr=args.lr,
                                all_reduce=lambda t: tdist.all_reduce(t))
        record["torch_all_reduce_ok"] = _close(_flat_params(again), ddp)
    return record


def _dp_worker(args: argparse.Namespace) -> None:
    rank = dist.rank_from_env()[0]
    out = Path(os.environ.get(dist.ENV_OUT, "."))
    group_timeout = float(os.environ.get(dist.ENV_TIMEOUT, dist.DEFAULT_GROUP_TIMEOUT_S))
    paths = [Path(args.dp).resolve(), Path(args.ring).resolve()]
    dpm = load_module(paths[0], "lab4_dp")
    ring = load_module(paths[1], "lab4_ring")
    saved: dict[str, Any] = {}
    for world in args.world_sizes:
        if rank >= world:
            break
        saved[str(world)] = {}
        for part, run in (("average", lambda w=world: _dp_average(dpm, rank, w, args.seed)),
                          ("train", lambda w=world: _dp_train(dpm, ring, rank, w, args))):
            _join(out, f"dp_{part}_w{world}", rank, world, group_timeout,
                  wait=4 * group_timeout)
            try:
                record = run()
            except Exception as exc:  # noqa: BLE001 - the student's error, reported
                record = {"status": _classify(exc), "error": _error_record(exc, paths)}
            saved[str(world)][part] = record
            dist.save_result(saved)
            _leave()
    dist.save_result(saved)


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def worker_main(argv: Sequence[str]) -> int:
    """The grading job inside each rank: ``ring ...`` or ``dp ...`` (see ``ring_run``)."""
    sys.dont_write_bytecode = True
    parser = argparse.ArgumentParser(prog="lab 4 grader worker")
    sub = parser.add_subparsers(dest="kind", required=True)
    ring = sub.add_parser("ring")
    ring.add_argument("--ring", required=True)
    ring.add_argument("--world-sizes", type=_int_list, required=True)
    ring.add_argument("--lengths", type=_int_list, required=True)
    ring.add_argument("--seed", type=int, default=0)
    dp = sub.add_parser("dp")
    dp.add_argument("--dp", required=True)
    dp.add_argument("--ring", required=True)
    dp.add_argument("--world-sizes", type=_int_list, required=True)
    dp.add_argument("--steps", type=int, required=True)
    dp.add_argument("--batch", type=int, required=True)
    dp.add_argument("--lr", type=float, required=True)
    dp.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv))
    if args.kind == "ring":
        _ring_worker(args)
    else:
        _dp_worker(args)
    return 0
