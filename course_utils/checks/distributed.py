"""Reference checks for lab 4 (a bucketed ring all-reduce and data parallelism, by hand).

The lab's answers run in several processes, and functions defined in a notebook cannot be
pickled into other processes, so the student writes them into two scripts with
``%%writefile`` cells: ``ring.py`` (``chunk_bounds(n, world_size, align)``,
``ring_all_reduce(tensors, align)``) and ``dp_train.py`` (``average_gradients``,
``train_data_parallel``), in a folder under ``build/`` (``lab_folder()``: one per notebook
kernel, so the master and a student version running at the same time never overwrite each
other's scripts, and the repository stays clean).

The lab is the next step after lesson 12, not a copy of it: lesson 12's ring all-reduces
one tensor over chunks of ``chunk_bounds(n, p)``; the lab's all-reduces a *bucket* (a list
of tensors of different shapes, as DDP all-reduces its gradients) with ONE ring over their
concatenation, cut into chunks whose starts are multiples of ``align`` elements (as
libraries align flat buffers for vector loads). So lesson 12's functions, even copied,
answer a different question and fail these checks. The checks:

* ``check_chunk_bounds`` imports ``ring.py`` in the notebook's own process (no launch) and
  compares ``chunk_bounds`` with ``reference_chunk_bounds`` for align 1, 3, 4 (and the
  lab's ``ALIGN``);
* ``check_ring_all_reduce`` (one world size per check) and ``check_ring_traffic`` share ONE
  Gloo job of ``max(world_sizes)`` processes (``course_utils.training.dist.launch`` of this
  module's worker). Inside it the ranks form a process group of each world size in turn,
  largest first (surplus ranks leave), and call the student's ``ring_all_reduce`` on one
  bucket per length of ``lengths`` (a 5 x 7 matrix, a vector of that length and a 0-d
  scalar), compare every tensor with ``torch.distributed.all_reduce`` and count what each
  rank sends, to whom, in how many messages of which sizes. Collectives other than
  send/recv are switched off while the student's function runs: the ring must be written
  with point-to-point messages.
* ``check_average_gradients`` and ``check_data_parallel`` share one job likewise:
  ``average_gradients`` is graded with torch's all-reduce applied to the bucket it is
  given (so it scores on its own), and ``train_data_parallel`` with the student's ring
  (collectives switched off while the ring runs), against ``DistributedDataParallel``
  trained on the same data from the same (rank-dependent) initial weights.

Starting a rank costs seconds (each imports PyTorch), so a job's result is cached by the
content of its scripts and the settings: the checks of one part share a launch, and
rerunning a check after changing a script launches again. Every failure becomes an
``AssertionError`` whose message names the world size, the bucket, the rank, the first
wrong element with the value got and expected, and a hint. A function that still raises
``NotImplementedError`` at the top of its body is found by reading the script, before any
launch, and so is one that cannot be called as the lab calls it (lesson 12's signatures);
one that raises ``NotImplementedError`` in a rank raises it in the notebook too, so
``check`` says "not implemented". A deadlock never hangs the notebook: every process group
has a timeout (``group_timeout``) and so has the launch (``timeout``).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import inspect
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
# Each bucket of the ring checks: a matrix, a vector of a length of ``lengths``, a 0-d
# scalar (any shapes must work): 35 + L + 1 elements, so for odd L not divisible by 3
# (1, 5, 1001: 37, 41, 1037) no bucket size is a multiple of 2, 3, 4 ranks or align 3, 4.
MATRIX_SHAPE = (5, 7)
SCALAR_SHAPE: tuple[int, ...] = ()
# How the lab calls the answers: a signature that cannot bind these fails before a launch.
CALLS = {"chunk_bounds": ((1001, 4, 4), {}, "chunk_bounds(n, world_size, align)"),
         "ring_all_reduce": (([],), {"align": 4}, "ring_all_reduce(tensors, align=ALIGN)")}
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
    "Check the chunk boundaries: every rank must cut the WHOLE bucket of N elements the same "
    "way, chunk_bounds(N, p, align): units of align elements (the last unit may be short), "
    "the first units % p chunks one unit longer, bounds clipped to N (trailing chunks may "
    "be empty).")
BUCKET_HINT = (
    "A ring per tensor sends 2 (p - 1) messages per tensor, and every message pays the "
    "network's latency alpha (lesson 12's model: t = alpha + n beta per message), so many "
    "small tensors make the all-reduce latency-bound: that is why DDP puts its gradients "
    "into buckets. Concatenate the bucket into one flat buffer, run ONE ring over it and "
    "copy the sums back.")
WORKER_STUB = '''"""Lab 4's grader worker (written by course_utils.checks.distributed)."""
import sys

from course_utils.checks.distributed import worker_main

sys.exit(worker_main(sys.argv[1:]))
'''


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """What the checks run: world sizes, lengths, alignment, the data-parallel run, the
    timeouts.

    ``lengths``: the vector lengths of the ring's buckets (see ``bucket_shapes``);
    ``align``: every chunk of the ring starts at a multiple of ``align`` elements;
    ``timeout``: seconds for a whole grading job (process start-up included);
    ``group_timeout``: seconds a rank may wait in one send/recv or collective before it
    gives up (a deadlock then fails in that time instead of hanging).
    """

    world_sizes: tuple[int, ...] = (2, 3, 4)
    lengths: tuple[int, ...] = (1, 5, 1001)
    align: int = 4
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
        align=_positive_int("align", cfg["align"]),
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


def bucket_shapes(length: int) -> list[tuple[int, ...]]:
    """The shapes of one bucket of the ring checks: a 5 x 7 matrix, a vector of ``length``
    elements and a 0-d scalar (``36 + length`` elements in all)."""
    return [MATRIX_SHAPE, (length,), SCALAR_SHAPE]


def cases(settings: Settings) -> list[list[tuple[int, ...]]]:
    """The buckets ``ring_all_reduce`` is checked on: one per length of the settings."""
    return [bucket_shapes(n) for n in settings.lengths]


def reference_chunk_bounds(n: int, world_size: int, align: int = 1) -> list[tuple[int, int]]:
    """``world_size`` contiguous ``(start, stop)`` chunks of ``n`` elements, each starting
    at a multiple of ``align``.

    The ``n`` elements are cut into ``ceil(n / align)`` units of ``align`` elements (the
    last one may be short); the first ``units % world_size`` chunks take one unit more;
    bounds are clipped to ``n``, so trailing chunks may be empty. With ``align = 1``: the
    first ``n % world_size`` chunks are one element longer (``torch.tensor_split``).
    """
    units = -(-n // align)
    base, extra = divmod(units, world_size)
    bounds, start = [], 0
    for k in range(world_size):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((min(start * align, n), min(stop * align, n)))
        start = stop
    return bounds


def chunk_sizes(n: int, world_size: int, align: int = 1) -> list[int]:
    """The sizes of ``reference_chunk_bounds(n, world_size, align)``."""
    return [b - a for a, b in reference_chunk_bounds(n, world_size, align)]


def ring_send_floor(n: int, world_size: int, align: int = 1) -> int:
    """The fewest elements a rank of a ring all-reduce of ``n`` elements sends:
    ``2 (n - largest chunk)`` (all chunks but one in each of the two phases)."""
    return 2 * (n - max(chunk_sizes(n, world_size, align)))


def ring_send_bound(n: int, world_size: int, align: int = 1) -> int:
    """The most elements a rank of a ring all-reduce of ``n`` elements sends:
    ``2 (n - smallest chunk)`` (``2 (p - 1) n / p`` when the chunks are equal)."""
    return 2 * (n - min(chunk_sizes(n, world_size, align)))


def ring_message_bound(world_size: int) -> int:
    """The most messages a rank of a ring all-reduce sends, whatever the bucket holds:
    one per step, ``2 (p - 1)``."""
    return 2 * (world_size - 1)


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
    """Each function is written (no ``raise NotImplementedError`` left), is the student's
    own (neither the course's code nor built from it: ``own_work``), and can be called as
    the lab calls it (``CALLS``)."""
    for name in functions:
        if unfinished(path, name):
            raise NotImplementedError(f"{name}() in {path.name} is not implemented yet")
    module = load_module(path, f"lab4_own_{path.stem}")
    for name in functions:
        require_own(getattr(module, name, None), f"{name}() in {path.name}")
        require_signature(getattr(module, name, None), name, path)


SIGNATURE_HINTS = {
    "chunk_bounds": "the lab's chunk_bounds also takes the alignment (lesson 12's "
                    "chunk_bounds(n, world_size) answers another question): keep the "
                    "`def chunk_bounds(n, world_size, align):` line given in the cell",
    "ring_all_reduce": "the lab's ring all-reduces a bucket, a list of tensors, over chunks "
                       "aligned to align elements (lesson 12's ring_all_reduce(tensor) takes "
                       "one tensor): keep the `def ring_all_reduce(tensors, align=4):` line "
                       "given in the cell",
}


def require_signature(fn: Any, name: str, path: Path) -> None:
    """Raise ``AssertionError`` when ``fn`` cannot be called as the lab calls ``name``
    (``CALLS``): found before any process is started."""
    if name not in CALLS or fn is None:
        return
    args, kwargs, shown = CALLS[name]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # not introspectable (a builtin, say): calling it will tell
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        plain = signature.replace(  # as the student wrote it, without annotations
            parameters=[p.replace(annotation=inspect.Parameter.empty)
                        for p in signature.parameters.values()],
            return_annotation=inspect.Signature.empty)
        raise AssertionError(f"{name}{plain} in {path.name} cannot be called as {shown} "
                             f"({exc}): {SIGNATURE_HINTS[name]}") from None


def load_module(path: str | os.PathLike, name: str = "lab4_student") -> types.ModuleType:
    """Import a script by its path (a fresh module each time: edits are picked up).

    An error while importing it becomes an ``AssertionError`` naming the line.
    """
    path = _script(path)
    _parse(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error of the student's module
        sys.modules.pop(name, None)
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
# (n, world size, align): align 1 (an even split), 4 (16 bytes of float32) and an odd 3;
# n below align, n = 0, one rank, more ranks than units, n divisible by nothing here.
CHUNK_CASES = ((1001, 4, 1), (1001, 3, 1), (7, 7, 1), (1, 4, 1), (0, 2, 1),
               (1037, 4, 4), (1037, 3, 4), (41, 4, 4), (37, 2, 4), (12, 3, 4), (9, 4, 4),
               (3, 2, 4), (0, 3, 4), (9, 1, 4),
               (1001, 4, 3), (17, 5, 3), (2, 3, 3), (1037, 2, 3))


def _chunk_hint(got: list[tuple[int, int]], n: int, p: int, align: int) -> str:
    """What is wrong with ``got`` (a list of ``p`` pairs that differs from the reference)."""
    units = -(-n // align)
    more = (f"With ceil(n / align) = {units} unit(s) of {align} element(s) (the last may be "
            f"short), the first units % p = {units % p} chunk(s) get one unit more than the "
            f"others ({units // p} unit(s) each), and bounds are clipped to n = {n}.")
    if got[0][0] != 0 or any(a != b for (_, a), (b, _) in zip(got, got[1:], strict=False)):
        return "The chunks must be contiguous and in order, starting at 0."
    if got[-1][1] != n:
        return (f"They end at {got[-1][1]}, not at n = {n}: every element must be in a "
                f"chunk. {more}")
    crooked = [(k, a) for k, (a, _) in enumerate(got) if a % align and a != n]
    if crooked:
        k, a = crooked[0]
        return (f"Chunk {k} starts at {a}, not a multiple of align = {align}: cut the "
                f"elements into units of align elements first and give each chunk whole "
                f"units. {more}")
    return more


def check_chunk_bounds(path: str | os.PathLike, align: int | None = None) -> None:
    """``chunk_bounds(n, world_size, align)`` of ``ring.py`` equals
    ``reference_chunk_bounds`` on ``CHUNK_CASES`` (align 1, 3 and 4), plus buckets of the
    lab's ``align`` when it is another value."""
    path = _script(path)
    module = load_module(path, "lab4_ring_check")
    function = getattr(module, "chunk_bounds", None)
    require_own(function, f"chunk_bounds() in {path.name}")
    require_signature(function, "chunk_bounds", path)
    extra = () if align in (None, 1, 3, 4) else tuple((1037, p, align) for p in (2, 3, 4))
    for n, p, a in CHUNK_CASES + extra:
        call = f"chunk_bounds({n}, {p}, {a})"
        expected = reference_chunk_bounds(n, p, a)
        with no_course_calls(call):
            got = module.chunk_bounds(n, p, a)
        if got is None:
            raise AssertionError(f"{call} returned None (did you forget `return`?)")
        try:
            got = [tuple(int(v) for v in pair) for pair in got]
        except (TypeError, ValueError):
            raise AssertionError(f"{call} returned {got!r}; expected a list of {p} (start, "
                                 f"stop) pairs, e.g. {expected}") from None
        if got == expected:
            continue
        if len(got) != p:
            raise AssertionError(f"{call} returned {len(got)} chunks, expected {p} (one per "
                                 f"rank, some may be empty): {expected}")
        raise AssertionError(f"{call} returned {got}, expected {expected}. "
                             f"{_chunk_hint(got, n, p, a)}")


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
    """The ring job (cached): ``ring_all_reduce`` on every world size and bucket."""
    path = _script(ring_py)
    load_module(path, "lab4_ring_check")  # a syntax or import error: fail here, quickly
    sizes = ",".join(map(str, sorted(set(settings.world_sizes), reverse=True)))
    args = ["--ring", str(path), "--world-sizes", sizes,
            "--lengths", ",".join(map(str, settings.lengths)), "--align", str(settings.align),
            "--seed", str(settings.seed)]
    return _launch("ring", [path], max(settings.world_sizes), args, settings)


# --------------------------------------------------------------------------- ring verdicts
PRIORITY = ("not implemented", "forbidden", "raised", "timeout", "mismatch", "peer")


def _dims(shape: Sequence[int]) -> str:
    return "scalar" if not shape else " x ".join(map(str, shape))


def bucket_text(shapes: Sequence[Sequence[int]]) -> str:
    """``'the bucket [5 x 7, 1001, scalar] (1037 elements)'``."""
    n = sum(math.prod(shape) for shape in shapes)
    return f"the bucket [{', '.join(_dims(shape) for shape in shapes)}] ({n} elements)"


def _tensor_text(shapes: Sequence[Sequence[int]], j: int) -> str:
    shape = shapes[j]
    kind = "a scalar" if not shape else (f"length {shape[0]}" if len(shape) == 1
                                         else f"shape {_dims(shape)}")
    return f"tensor {j} ({kind})"


def _error_text(error: dict[str, Any]) -> str:
    return f"{error['type']}: {error['message']}{error.get('where', '')}"


def _mismatch_text(case: dict[str, Any], rank: int, world: int, align: int,
                   passed: list[dict]) -> str:
    m = case["mismatch"]
    n, shapes = case["n"], case["shapes"]
    j = m["tensor"]
    flat = "flat " if len(shapes[j]) > 1 else ""
    text = (f"ring_all_reduce on {world} ranks, {bucket_text(shapes)}: rank {rank} holds "
            f"wrong values: {m['count']} of {n} differ; first in {_tensor_text(shapes, j)} at "
            f"{flat}index {m['tensor_index']} (element {m['index']} of the bucket): got "
            f"{m['got']:g}, expected {m['expected']:g} (the sum over all ranks, from "
            "dist.all_reduce).")
    a, b = m["chunk"]
    text += (f" Element {m['index']} of the bucket is in chunk {m['chunk_index']} (elements "
             f"{a}..{b - 1}) of chunk_bounds({n}, {world}, {align}).")
    hints = []
    if m.get("replaced"):
        hints.append("The list holds other tensors than the ones given: write the sums into "
                     "the tensors themselves (e.g. t.copy_(...)), do not replace the list's "
                     "items.")
    elif m.get("unchanged_all"):
        hints.append("No tensor of the bucket was changed: ring_all_reduce works in place "
                     "(copy the sums back into the tensors given)"
                     + ("; returning new tensors is not enough." if m.get("returned_ok")
                        else "."))
    else:
        wrong = m.get("wrong_tensors") or []
        if 0 < len(wrong) < len(shapes):
            hints.append(f"Only tensor(s) {wrong} of the bucket are wrong, the others are "
                         "right: does the flat buffer hold every tensor, and are the sums "
                         "copied back into every one, at its own offset?")
        if m.get("zeros"):
            hints.append("Those elements are 0: was a receive buffer never filled, or filled "
                         "but not copied or added into the buffer?")
        elif m.get("subset") is not None:
            ranks = m["subset"]
            first, stop = m["run"]
            if ranks == [rank]:
                hints.append(f"Elements {first}..{stop - 1} of the bucket still hold rank "
                             f"{rank}'s own input: nothing was added to or gathered into "
                             "them.")
            else:
                hints.append(f"Elements {first}..{stop - 1} of the bucket hold the sum over "
                             f"ranks {ranks} only, a partial sum: the reduce-scatter needs "
                             f"p - 1 = {world - 1} steps that pass each chunk all around the "
                             "ring, and the all-gather must pass on the fully reduced "
                             "chunks.")
        if m.get("tail_only"):
            hints.append(f"Only elements from {m['tail_from']} on are wrong: are the last "
                         "units dropped by the split?")
        if passed:
            hints.append(f"It works for {bucket_text(passed[0]['shapes'])} but not here.")
        hints.append(CHUNK_HINT)
    return " ".join([text, *hints])


def _case_verdict(records: dict[int, dict], world: int, index: int, settings: Settings,
                  passed: list[dict]) -> str | None:
    """None when every rank got bucket ``index`` right, ``"incomplete"`` when some rank
    has no record of it (the job stopped), else the message (or raise
    NotImplementedError)."""
    per_rank = {r: rec["cases"][index] for r, rec in records.items()
                if index < len(rec["cases"])}
    bad = {r: c for r, c in per_rank.items() if c["status"] != "ok"}
    if not bad:
        return None if len(per_rank) == world else "incomplete"
    rank, case = min(bad.items(), key=lambda rc: (PRIORITY.index(rc[1]["status"]), rc[0]))
    status = case["status"]
    head = f"ring_all_reduce on {world} ranks, {bucket_text(case['shapes'])}: rank {rank}"
    if status == "not implemented":
        raise NotImplementedError("ring_all_reduce() is not implemented yet")
    if status == "forbidden":
        return f"{head} {_forbidden_text(case['error']['message'])}"
    if status == "raised":
        return f"{head} raised {_error_text(case['error'])}"
    if status == "timeout":
        others = sorted(r for r, c in per_rank.items() if c["status"] in ("ok", "mismatch"))
        note = (f"; rank(s) {others} had finished, so the ranks disagree on the messages"
                if others else "")
        return (f"{head} waited more than {settings.group_timeout:g} s in a send/recv and "
                f"gave up{case['error'].get('where', '')}{note}. {DEADLOCK_HINT}")
    if status == "mismatch":
        return _mismatch_text(case, rank, world, settings.align, passed)
    return (f"{head} lost its connection to a neighbour ({_error_text(case['error'])}): "
            "another rank failed or gave up")


def _forbidden_text(called: str) -> str:
    called = called if "." in called else f"torch.distributed.{called}"
    return (f"called {called}: write the ring yourself, with point-to-point messages only "
            "(dist.send/dist.recv, dist.isend/dist.irecv or dist.batch_isend_irecv)")


def _world_records(run: Run, world: int) -> dict[int, dict]:
    return {r: out[str(world)] for r, out in run.outputs.items()
            if r < world and str(world) in out}


def _running_text(run: Run, world: int) -> str:
    for out in run.outputs.values():
        running = out.get("running")
        if running and running.get("world") == world:
            return (f", while {world} ranks were running ring_all_reduce on "
                    f"{bucket_text(running['shapes'])}")
    return ""


def check_ring_all_reduce(ring_py: str | os.PathLike, world_size: int,
                          settings: Settings = Settings()) -> dict[str, Any]:
    """``ring_all_reduce(bucket, align=settings.align)`` leaves in every tensor of every
    bucket what ``dist.all_reduce`` of that tensor gives, on ``world_size`` ranks.

    Returns ``{"world_size", "cases", "seconds"}`` (each bucket's shapes, and its time on
    rank 0).
    """
    if world_size not in settings.world_sizes:
        raise UsageError(f"world_size={world_size!r} is not valid; choose one of: "
                         f"{', '.join(map(str, settings.world_sizes))}")
    path = _script(ring_py)
    _require_finished(path, ("ring_all_reduce",))
    run = ring_run(path, settings)
    records = _world_records(run, world_size)
    passed: list[dict] = []
    for index, shapes in enumerate(cases(settings)):
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
        raise AssertionError(f"ring_all_reduce on {world_size} ranks, {bucket_text(shapes)}: "
                             "no result from some ranks (see the logs in "
                             f"{path.parent / 'grading_ring'})")
    return {"world_size": world_size, "cases": [c["shapes"] for c in passed],
            "seconds": [c["seconds"] for c in passed]}


def _traffic_problems(rows: list[dict[int, dict]], world: int, align: int) -> list[str]:
    """What each rank's traffic breaks, the first bucket of each kind of problem only.

    ``rows``: per bucket, every rank's (correct) record with ``sent``, ``messages``,
    ``sizes`` (the distinct message sizes) and ``dests``.
    """
    found: dict[str, str] = {}
    most_messages = ring_message_bound(world)
    for got in rows:
        n, shapes = got[0]["n"], got[0]["shapes"]
        sizes = chunk_sizes(n, world, align)
        least, most = 2 * (n - max(sizes)), 2 * (n - min(sizes))
        what = f"{bucket_text(shapes)}, {len(shapes)} tensors"
        for r in range(world):
            case, right = got[r], (r + 1) % world
            if "right" not in found and set(case["dests"]) - {right}:
                found["right"] = (
                    f"on {world} ranks, rank {r} sent to rank(s) {case['dests']}: in a ring "
                    f"each rank sends only to its right neighbour (rank + 1) % world_size = "
                    f"{right}")
            if "messages" not in found and case["messages"] > most_messages:
                found["messages"] = (
                    f"on {world} ranks, rank {r} sent {case['messages']} messages for ONE "
                    f"all-reduce of {what}; a ring sends at most 2 (p - 1) = {most_messages} "
                    f"messages, one per step, whatever the bucket holds. {BUCKET_HINT}")
            odd = [m for m in case["sizes"] if m not in sizes]
            if "sizes" not in found and odd:
                found["sizes"] = (
                    f"on {world} ranks, rank {r} sent messages of {odd[:6]} elements for "
                    f"{what}: each message of the ring is one whole chunk of "
                    f"chunk_bounds({n}, {world}, {align}), of {sorted(set(sizes))} elements. "
                    "Cut the whole bucket (not each tensor) with your chunk_bounds and the "
                    "align given")
            if "short" not in found and case["sent"] < least:
                found["short"] = (
                    f"on {world} ranks, rank {r} sent only {case['sent']} elements for "
                    f"{what}; a ring's rank sends every chunk but one in each phase, at least "
                    f"2 (N - largest chunk) = {least} elements in all: the sums must travel "
                    "through the ring's messages")
            if "long" not in found and case["sent"] > most:
                found["long"] = (
                    f"on {world} ranks, rank {r} sent {case['sent']} elements for {what}; a "
                    f"ring sends about 2 (p - 1) / p N = {2 * (world - 1) * n / world:.0f}, "
                    f"at most 2 (N - smallest chunk) = {most}: send chunks of about N / p "
                    "elements, each once per phase, not whole tensors")
    return [found[k] for k in ("right", "messages", "sizes", "short", "long") if k in found]


def check_ring_traffic(ring_py: str | os.PathLike, settings: Settings = Settings(),
                       result: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """The ring sends only to its right neighbour, in at most ``2 (p - 1)`` messages per
    all-reduce of a bucket, each one chunk of ``chunk_bounds(N, p, align)``, between
    ``2 (N - largest chunk)`` and ``2 (N - smallest chunk)`` elements per rank.

    Measured on every bucket, for every world size on which all buckets are correct.
    ``result`` (a dict), when given, receives ``{world size: {"n", "sent": [per rank],
    "messages": [per rank], "floor", "bound", "max_messages", "ideal", "naive_root"}}`` of
    the largest bucket, before the assertions.
    """
    path = _script(ring_py)
    _require_finished(path, ("ring_all_reduce",))
    run = ring_run(path, settings)
    buckets = cases(settings)
    numels = [sum(math.prod(shape) for shape in shapes) for shapes in buckets]
    largest = max(range(len(buckets)), key=lambda i: (numels[i], i))
    table: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    not_yet: list[int] = []
    for world in sorted(settings.world_sizes):
        records = _world_records(run, world)
        rows = []
        for index in range(len(buckets)):
            got = {r: rec["cases"][index] for r, rec in records.items()
                   if index < len(rec["cases"])}
            if len(got) < world or any(c["status"] != "ok" for c in got.values()):
                break
            rows.append(got)
        if len(rows) < len(buckets):
            not_yet.append(world)
            continue
        n, big = numels[largest], rows[largest]
        table[world] = {"n": n, "sent": [big[r]["sent"] for r in range(world)],
                        "messages": [big[r]["messages"] for r in range(world)],
                        "floor": ring_send_floor(n, world, settings.align),
                        "bound": ring_send_bound(n, world, settings.align),
                        "max_messages": ring_message_bound(world),
                        "ideal": 2 * (world - 1) * n / world, "naive_root": (world - 1) * n}
        problems += _traffic_problems(rows, world, settings.align)
    if not_yet:
        problems.append(f"the all-reduce of the buckets is not correct yet on "
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
            "--lr", repr(settings.dp_lr), "--align", str(settings.align),
            "--seed", str(settings.seed)]
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
    if rec["status"] == "forbidden":
        raise AssertionError(f"{head}: your ring_all_reduce "
                             f"{_forbidden_text(rec['error']['message'])}")
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
    parameter), with ONE call of ``all_reduce`` on a bucket of every gradient, on every
    world size of ``settings.dp_world_sizes``. Its ``all_reduce(tensors)`` is torch's
    all-reduce of each tensor of the list here, so it is graded whatever the state of
    ``ring_all_reduce``."""
    dp_path = _script(dp_py)
    _require_finished(dp_path, ("average_gradients",))
    run = dp_run(dp_path, ring_py, settings)
    for world in sorted(settings.dp_world_sizes):
        records = _dp_status(run, world, "average", "average_gradients")
        where = f"average_gradients on {world} ranks"
        for rank in range(world):
            rec = records[rank]
            numel = sum(size for _, size, *_ in rec["names"])
            if rec["calls"] == 0:
                raise AssertionError(f"{where}: rank {rank} never called all_reduce: put "
                                     "every parameter's gradient into one list and sum it "
                                     "over the ranks with all_reduce(grads)")
            if rec["params_changed"]:
                raise AssertionError(f"{where} changed the parameters: it only averages the "
                                     ".grad tensors; the optimizer updates the parameters")
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
                    hint = ("That is this rank's own gradient, unchanged: all_reduce sums the "
                            "tensors of its list in place; put the .grad tensors themselves "
                            "into the list (not copies), every one of them.")
                elif _close(got, [m / world for m in mean]):
                    hint = "That is the mean divided by the world size once more."
                else:
                    hint = ("Expected the mean over ranks: all_reduce(grads) with every "
                            "gradient in the list, then divide each by the world size.")
                if sum(rec["buckets"]) < numel:
                    hint += (f" The buckets given to all_reduce held {sum(rec['buckets'])} of "
                             f"the model's {numel} gradient values.")
                raise AssertionError(
                    f"{where}: rank {rank}'s gradient of {name} ({size} values) is wrong at "
                    f"{count} of them; first at index {i}: got {got[i]:.6g}, expected "
                    f"{mean[i]:.6g}. {hint}")
            if rec["calls"] > 1:
                raise AssertionError(
                    f"{where}: rank {rank} called all_reduce {rec['calls']} times, on buckets "
                    f"of {rec['buckets'][:8]} values: the means are right, but each call is a "
                    "whole all-reduce (on a ring, 2 (p - 1) messages, each paying the latency "
                    "alpha). Put every gradient into ONE bucket and call all_reduce once, as "
                    "DDP buckets its gradients.")


def check_data_parallel(dp_py: str | os.PathLike, ring_py: str | os.PathLike,
                        settings: Settings = Settings(),
                        result: dict[str, Any] | None = None) -> dict[int, float]:
    """``train_data_parallel`` with the student's ring (``ring_all_reduce(tensors,
    align=settings.align)``, collectives switched off while it runs) ends with DDP's
    parameters.

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
    """Counts what this rank sends (elements, messages, their sizes) and to whom; turns
    collectives off while ``forbid``.

    Installed before the student's module is imported, on both ``torch.distributed`` and
    ``torch.distributed.distributed_c10d``. ``send`` and ``batch_isend_irecv`` (each send
    op of the batch) go through the module-level ``isend``, so every message is counted
    once, whichever of the three sends it.
    """

    MAX_SIZES = 32  # distinct message sizes kept per call (a runaway loop sends many)

    def __init__(self) -> None:
        import torch.distributed as tdist
        import torch.distributed.distributed_c10d as c10d

        self.sent = 0
        self.messages = 0
        self.sizes: set[int] = set()
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
            self.messages += 1
            if len(self.sizes) < self.MAX_SIZES:
                self.sizes.add(int(tensor.numel()))
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
        self.sent = self.messages = 0
        self.sizes = set()
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


def ring_input(shape: Sequence[int], seed: int, world: int, rank: int, index: int = 0):
    """Rank ``rank``'s tensor ``index`` of a bucket: multiples of 1/8 in [-12.4, 12.4], so
    every sum is exact."""
    import torch

    n = math.prod(shape)
    key = (((seed * 1009 + world) * 100_003 + n) * 17 + rank) * 7 + index
    gen = torch.Generator().manual_seed(key % 2**62)  # any grading seed (up to 2**31)
    return (torch.randint(-99, 100, tuple(shape), generator=gen) / 8).to(torch.float32)


def _flat_bucket(tensors: Sequence[Any]):
    import torch

    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def _diagnose(got: list, expected: list, inputs: list[list], rank: int, world: int,
              align: int, returned: Any, replaced: bool) -> dict[str, Any]:
    """What a wrong bucket looks like: the first wrong element (in the bucket and in its
    tensor), the run of wrong values after it, which ranks' inputs they sum, a pattern."""
    import torch

    flat, ref = _flat_bucket(got), _flat_bucket(expected)
    wrong = ~torch.isclose(flat, ref, rtol=1e-5, atol=1e-5)
    bad = torch.nonzero(wrong).flatten().tolist()
    i = bad[0]
    n = flat.numel()
    offsets = list(itertools.accumulate((t.numel() for t in got), initial=0))
    tensor = max(j for j in range(len(got)) if offsets[j] <= i and got[j].numel())
    wrong_tensors = [j for j in range(len(got))
                     if bool(wrong[offsets[j]:offsets[j + 1]].any())]
    bounds = reference_chunk_bounds(n, world, align)
    chunk_index = next(k for k, (a, b) in enumerate(bounds) if a <= i < b)
    stop = i
    while stop < n and stop - i < 64 and wrong[stop]:
        stop += 1
    segment = flat[i:stop]
    mine = [_flat_bucket(bucket) for bucket in inputs]
    subset = None
    for size in range(1, world + 1):
        for ranks in itertools.combinations(range(world), size):
            if torch.equal(segment, sum(mine[r][i:stop] for r in ranks)):
                subset = list(ranks)
                break
        if subset is not None:
            break
    returned_ok = False
    if isinstance(returned, (list, tuple)) and len(returned) == len(expected):
        try:
            returned_ok = bool(torch.allclose(_flat_bucket(returned), ref))
        except (RuntimeError, TypeError, AttributeError):
            returned_ok = False
    units = -(-n // align)
    tail_from = min((units // world) * world * align, n)
    return {"count": len(bad), "index": i, "got": float(flat[i]), "expected": float(ref[i]),
            "tensor": tensor, "tensor_index": i - offsets[tensor],
            "wrong_tensors": wrong_tensors, "chunk_index": chunk_index,
            "chunk": list(bounds[chunk_index]), "run": [i, stop], "subset": subset,
            "unchanged_all": bool(torch.equal(flat, mine[rank])), "replaced": replaced,
            "returned_ok": returned_ok, "zeros": bool(torch.all(segment == 0)),
            "tail_only": tail_from < n and i >= tail_from, "tail_from": tail_from}


def _run_case(module, spy: _Spy, shapes: list[tuple[int, ...]], rank: int, world: int,
              args: argparse.Namespace, ring_path: Path) -> dict[str, Any]:
    """One bucket on this rank: the student's ring against dist.all_reduce of each tensor."""
    import torch

    inputs = [[ring_input(shape, args.seed, world, r, j) for j, shape in enumerate(shapes)]
              for r in range(world)]
    expected = [t.clone() for t in inputs[rank]]
    for t in expected:
        spy.original["all_reduce"](t)  # the reference: dist.all_reduce (sum) of each tensor
    given = [t.clone() for t in inputs[rank]]
    bucket = list(given)
    case: dict[str, Any] = {"shapes": [list(shape) for shape in shapes],
                            "n": sum(t.numel() for t in given), "status": "ok"}
    spy.reset()
    spy.forbid = True
    start = time.perf_counter()
    returned = None
    try:
        returned = module.ring_all_reduce(bucket, align=args.align)
    except Exception as exc:  # noqa: BLE001 - the student's error, reported
        case["status"] = _classify(exc)
        case["error"] = _error_record(exc, [ring_path])
        if case["status"] == "forbidden":
            case["error"]["message"] = str(exc)
    finally:
        spy.forbid = False
    case.update(seconds=time.perf_counter() - start, sent=spy.sent, messages=spy.messages,
                sizes=sorted(spy.sizes), dests=sorted(spy.dests))
    if case["status"] != "ok":
        return case
    changed = [j for j, (t, shape) in enumerate(zip(given, shapes, strict=True))
               if tuple(t.shape) != tuple(shape) or t.dtype != torch.float32]
    if changed:
        j = changed[0]
        case["status"] = "raised"
        case["error"] = {"type": "AssertionError", "where": "", "message":
                         f"tensor {j} of the bucket changed its shape or dtype to "
                         f"{tuple(given[j].shape)} {given[j].dtype}"}
    elif not all(torch.allclose(t, e, rtol=1e-5, atol=1e-5)
                 for t, e in zip(given, expected, strict=True)):
        replaced = len(bucket) != len(given) or any(
            b is not g for b, g in zip(bucket, given, strict=False))
        case["status"] = "mismatch"
        case["mismatch"] = _diagnose(given, expected, inputs, rank, world, args.align,
                                     returned, replaced)
    return case


def _ring_worker(args: argparse.Namespace) -> None:
    rank = dist.rank_from_env()[0]
    out = Path(os.environ.get(dist.ENV_OUT, "."))
    group_timeout = float(os.environ.get(dist.ENV_TIMEOUT, dist.DEFAULT_GROUP_TIMEOUT_S))
    spy = _Spy()
    ring_path = Path(args.ring).resolve()
    module = load_module(ring_path, "lab4_ring")
    saved: dict[str, Any] = {}
    for world in args.world_sizes:  # largest first: surplus ranks leave
        if rank >= world:
            break
        _join(out, f"ring_w{world}", rank, world, group_timeout, wait=4 * group_timeout)
        entry: dict[str, Any] = {"cases": []}
        saved[str(world)] = entry
        for length in args.lengths:
            shapes = bucket_shapes(length)
            saved["running"] = {"world": world, "shapes": [list(s) for s in shapes]}
            dist.save_result(saved)
            case = _run_case(module, spy, shapes, rank, world, args, ring_path)
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


def torch_bucket_all_reduce(buckets: list[int] | None = None) -> Callable:
    """``all_reduce(tensors)`` as part 2 uses it, made of torch's all-reduce: sums every
    tensor of the list ``tensors`` over the ranks, in place, and returns the list. Each
    call appends its bucket's number of elements to ``buckets``. Anything but a list (or
    tuple) of tensors raises ``TypeError`` with what the lab expects."""
    import torch
    import torch.distributed as tdist

    def all_reduce(tensors):
        if not isinstance(tensors, (list, tuple)) or not all(
                isinstance(t, torch.Tensor) for t in tensors):
            raise TypeError(f"all_reduce(tensors) takes a bucket, a list of tensors, not "
                            f"{type(tensors).__name__}: put the gradients into a list and "
                            "pass the whole list")
        if buckets is not None:
            buckets.append(sum(t.numel() for t in tensors))
        for t in tensors:
            tdist.all_reduce(t)
        return tensors

    return all_reduce


def _dp_average(dpm, rank: int, world: int, seed: int) -> dict[str, Any]:
    import torch

    model = dp_model(seed + 100 + rank)
    grads_in = []
    for j, p in enumerate(model.parameters()):
        gen = torch.Generator().manual_seed((seed * 31 + world) * 1000 + rank * 10 + j)
        p.grad = (torch.randint(-99, 100, p.shape, generator=gen) / 8).double()
        grads_in.append(p.grad.reshape(-1).tolist())
    before = _flat_params(model)
    buckets: list[int] = []
    dpm.average_gradients(model, torch_bucket_all_reduce(buckets))
    grads_out = [(p.grad.reshape(-1).tolist() if p.grad is not None else [math.nan] * p.numel())
                 for p in model.parameters()]
    return {"status": "ok", "calls": len(buckets), "buckets": buckets, "names": _names(model),
            "grads_in": grads_in, "grads_out": grads_out,
            "params_changed": _flat_params(model) != before}


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


def _dp_train(dpm, ring, spy: _Spy, rank: int, world: int,
              args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.distributed as tdist

    X, y = dp_data(args.seed, args.steps * args.batch * world)
    model = dp_model(args.seed + 1 + rank)
    rows: list[int] = []
    model.register_forward_pre_hook(
        lambda module, inputs: rows.append(int(inputs[0].shape[0]))
        if torch.is_grad_enabled() else None)
    calls = [0]

    def ring_all_reduce(tensors):  # the student's ring, point-to-point only
        calls[0] += 1
        spy.forbid = True
        try:
            return ring.ring_all_reduce(tensors, align=args.align)
        finally:
            spy.forbid = False

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
                                all_reduce=torch_bucket_all_reduce())
        record["torch_all_reduce_ok"] = _close(_flat_params(again), ddp)
    return record


def _dp_worker(args: argparse.Namespace) -> None:
    rank = dist.rank_from_env()[0]
    out = Path(os.environ.get(dist.ENV_OUT, "."))
    group_timeout = float(os.environ.get(dist.ENV_TIMEOUT, dist.DEFAULT_GROUP_TIMEOUT_S))
    paths = [Path(args.dp).resolve(), Path(args.ring).resolve()]
    spy = _Spy()  # collectives off while the student's ring runs (not in their loop)
    dpm = load_module(paths[0], "lab4_dp")
    ring = load_module(paths[1], "lab4_ring")
    saved: dict[str, Any] = {}
    for world in args.world_sizes:
        if rank >= world:
            break
        saved[str(world)] = {}
        for part, run in (("average", lambda w=world: _dp_average(dpm, rank, w, args.seed)),
                          ("train", lambda w=world: _dp_train(dpm, ring, spy, rank, w, args))):
            _join(out, f"dp_{part}_w{world}", rank, world, group_timeout,
                  wait=4 * group_timeout)
            try:
                record = run()
            except Exception as exc:  # noqa: BLE001 - the student's error, reported
                record = {"status": _classify(exc), "error": _error_record(exc, paths)}
                if record["status"] == "forbidden":
                    record["error"]["message"] = str(exc)
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
    ring.add_argument("--align", type=int, default=1)
    ring.add_argument("--seed", type=int, default=0)
    dp = sub.add_parser("dp")
    dp.add_argument("--dp", required=True)
    dp.add_argument("--ring", required=True)
    dp.add_argument("--world-sizes", type=_int_list, required=True)
    dp.add_argument("--steps", type=int, required=True)
    dp.add_argument("--batch", type=int, required=True)
    dp.add_argument("--lr", type=float, required=True)
    dp.add_argument("--align", type=int, default=1)
    dp.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv))
    if args.kind == "ring":
        _ring_worker(args)
    else:
        _dp_worker(args)
    return 0
