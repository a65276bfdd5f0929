"""Watch every memory access of a kernel run on Numba's CUDA simulator, and say what is wrong.

The simulator runs one block at a time, so a race between blocks never changes an answer
on a CPU, and a race inside a block shows only as a wrong number now and then. On a GPU
such kernels give wrong answers some of the time. NVIDIA's compute-sanitizer finds these
bugs on a GPU; this module finds them on a laptop, from the real simulated run::

    from course_utils.gpu import sanitizer

    with sanitizer.watch() as log:
        histogram[blocks, threads](d_values, d_bins)
    print(log.report())        # "clean", or each problem with its array, index and threads
    log.assert_clean()         # AssertionError with the same report

For each launch inside ``watch()`` it records, per thread (block index, thread index),
every read and write of every element of the kernel's array arguments (global memory) and
of its ``cuda.shared.array`` arrays, split into intervals between ``cuda.syncthreads()``.
It reports:

* a **race**: two threads touch one element in the same interval (shared memory: threads
  of one block; global memory: any two threads of the launch, since a barrier orders only
  the threads of its own block), at least one writes, and not both through an atomic;
* a **divergent barrier**: threads of one block that pass a different sequence of
  ``cuda.syncthreads()`` calls (some skip one, or reach a different one);
* a read of **uninitialised shared memory**: an element read before any thread of the
  block wrote it (shared memory starts with garbage on a GPU);
* an **out-of-bounds** index (negative indices included: NumPy would wrap them, a GPU
  reads whatever lies there), which also stops the launch with an IndexError.

It also counts each thread's global and shared reads and writes (``counts``), and draws
which thread touched which element (``Launch.plot``). Indices must be integers (the
course's kernels index elements, not slices); device functions are followed. Timings
under ``watch()`` mean even less than the simulator's: it is a correctness tool.
"""

from __future__ import annotations

import contextlib
import linecache
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import CourseError, UsageError

Thread = tuple[tuple[int, ...], tuple[int, ...]]  # (blockIdx, threadIdx)
KINDS = ("out of bounds", "divergent barrier", "race", "uninitialised shared read")
_SHOWN_PER_KIND = 3  # problems of one kind on one array shown in full; the rest counted


class OutOfBoundsError(IndexError):
    """A thread indexed outside an array; ``problem`` names the thread and the index."""

    def __init__(self, problem: Problem | str):
        # The simulator re-creates a thread's exception from its message: accept both.
        super().__init__(problem.message if isinstance(problem, Problem) else problem)
        self.problem = problem if isinstance(problem, Problem) else None


class Access(NamedTuple):
    """One read or write of one element by one thread (a tuple: millions are made)."""

    thread: Thread
    epoch: int          # how many barriers this thread had passed
    write: bool
    atomic: bool
    where: tuple[Any, int]  # (code object, line number) of the access

    @property
    def line(self) -> str:
        """'line 12 of histogram_shared'."""
        return _format_where(self.where)


@dataclass
class Problem:
    """One finding: its kind, the array and index, the threads and where they were."""

    kind: str
    array: str
    index: tuple[int, ...] | None
    threads: tuple[Thread, ...]
    message: str
    more: int = 0       # further elements of the same array with the same kind of problem

    def __str__(self) -> str:
        extra = f" (and {self.more} more element{'s' * (self.more != 1)} like it)" \
            if self.more else ""
        return f"{self.kind}: {self.message}{extra}"


@dataclass
class Counts:
    """Accesses of one thread (an atomic counts as one write)."""

    global_reads: int = 0
    global_writes: int = 0
    shared_reads: int = 0
    shared_writes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ArrayLog:
    """Every access to one array of one launch (shared arrays: keyed by block too)."""

    name: str
    space: str                       # "global" | "shared"
    shape: tuple[int, ...]
    accesses: dict[tuple, list[Access]] = field(default_factory=lambda: defaultdict(list))
    written: set[tuple] = field(default_factory=set)  # (block, index) written (shared)

    def elements(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...] | None,
                                         list[Access]]]:
        """(index, block or None, accesses) for every element touched."""
        for key, accesses in sorted(self.accesses.items()):
            if self.space == "shared":
                yield key[1], key[0], accesses
            else:
                yield key, None, accesses


@dataclass
class Launch:
    """What one kernel launch did, and what is wrong with it."""

    kernel: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    arrays: dict[str, ArrayLog] = field(default_factory=dict)
    barriers: dict[Thread, list[str]] = field(default_factory=lambda: defaultdict(list))
    threads_seen: set[Thread] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    counts: dict[Thread, Counts] = field(default_factory=lambda: defaultdict(Counts))
    raced: set[tuple[str, tuple]] = field(default_factory=set)  # every (array, index)
    _uninit: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))

    # ------------------------------------------------------------------ results
    @property
    def clean(self) -> bool:
        return not self.problems

    def max_counts(self) -> Counts:
        """The most accesses of each kind made by any one thread (GPU-Puzzles' measure)."""
        best = Counts()
        for c in self.counts.values():
            for key, value in c.as_dict().items():
                setattr(best, key, max(getattr(best, key), value))
        return best

    def most_per_block(self, array: str, *, write: bool) -> tuple[int, tuple | None,
                                                                  tuple | None]:
        """(count, index, block): the most reads (or writes) of one element of global
        ``array`` by the threads of one block. A tiled matmul reads each input element
        at most once per block; a shared-memory histogram writes each bin once per block."""
        log = self._array(array)
        best: tuple[int, tuple | None, tuple | None] = (0, None, None)
        for index, _, accesses in log.elements():
            per_block: dict[tuple, int] = defaultdict(int)
            for a in accesses:
                if a.write == write:
                    per_block[a.thread[0]] += 1
            for blk, count in per_block.items():
                if count > best[0]:
                    best = (count, index, blk)
        return best

    def report(self) -> str:
        head = f"{self.kernel}[grid {_dims(self.grid)}, block {_dims(self.block)}]"
        if self.clean:
            return f"{head}: clean (no race, divergent barrier, uninitialised shared read " \
                   "or out-of-bounds index)"
        lines = [f"{head}: {len(self.problems)} problem{'s' * (len(self.problems) != 1)}"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    @property
    def arguments(self) -> list[str]:
        """The names of the kernel's array arguments, in order (global memory)."""
        return [name for name, log in self.arrays.items() if log.space == "global"]

    def thread_number(self, thread: Thread, color_by: str = "thread") -> int:
        """A thread's (or with ``color_by="block"`` its block's) number in launch order."""
        import numpy as np

        block = int(np.ravel_multi_index(thread[0][::-1], self.grid[::-1]))
        if color_by == "block":
            return block
        per_block = int(np.prod(self.block))
        return block * per_block + int(np.ravel_multi_index(thread[1][::-1], self.block[::-1]))

    def plot(self, arrays: list[str] | None = None, *, color_by: str = "thread",
             max_elements: int = 512):
        """Which thread wrote and how many threads read each element, one row per array.

        Left: each element coloured by the thread (or block) that wrote it, its number
        written in; "3w" marks an element that three threads wrote (atomically, or in a
        race: then in red). Right: how many threads read it. Shared arrays are shown for
        the first block. Meant for small launches (``max_elements`` per array).
        """
        import matplotlib.pyplot as plt
        import numpy as np

        from ..errors import check_choice

        check_choice("color_by", color_by, ("thread", "block"))
        names = arrays if arrays is not None else list(self.arrays)
        for name in names:
            self._array(name)
        if not names:
            raise UsageError(f"{self.kernel}: no array was accessed, nothing to draw")
        first_block = tuple(0 for _ in self.grid)
        fig, axes = plt.subplots(len(names), 2, squeeze=False,
                                 figsize=(11, 1.2 + 1.6 * len(names)))
        for row, name in enumerate(names):
            log = self.arrays[name]
            shape = log.shape if len(log.shape) == 2 else (1, int(np.prod(log.shape)))
            if shape[0] * shape[1] > max_elements:
                raise UsageError(f"{name} has {shape[0] * shape[1]} elements; draw a launch "
                                 f"with at most {max_elements} per array")
            writer = np.full(shape, np.nan)
            writers: dict[tuple, set] = defaultdict(set)
            readers = np.zeros(shape, int)
            for index, blk, accesses in log.elements():
                if blk is not None and blk != first_block:
                    continue
                cell = tuple(index) if len(log.shape) == 2 else (0, int(np.ravel_multi_index(
                    index, log.shape)))
                who_writes = {a.thread for a in accesses if a.write}
                writers[cell] = who_writes
                if who_writes:
                    writer[cell] = self.thread_number(min(who_writes), color_by)
                readers[cell] = len({a.thread for a in accesses if not a.write})
            left, right = axes[row]
            cmap = plt.get_cmap("tab20").with_extremes(bad="white")
            left.imshow(np.ma.masked_invalid(writer % 20), cmap=cmap,
                        vmin=0, vmax=19, aspect="auto")
            top = max(2, int(readers.max()))
            right.imshow(readers, cmap="Blues", aspect="auto", vmin=0, vmax=top)
            small = shape[0] * shape[1] <= 128 and shape[1] <= 40  # room for numbers
            for (r, c), who in writers.items():
                if not who or not small:
                    continue
                label = (f"{len(who)}w" if len(who) > 1
                         else str(self.thread_number(next(iter(who)), color_by)))
                index = (r, c) if len(log.shape) == 2 else np.unravel_index(c, log.shape)
                race = (name, tuple(int(i) for i in index)) in self.raced
                left.text(c, r, label, ha="center", va="center", fontsize=7,
                          color="red" if race else "black",
                          fontweight="bold" if race else "normal")
            if small:
                for (r, c), n in np.ndenumerate(readers):
                    if n:
                        right.text(c, r, str(n), ha="center", va="center", fontsize=7,
                                   color="white" if n > top / 2 else "black")
            where = f"shared `{name}` (block {_dims(first_block)})" if log.space == "shared" \
                else f"global `{name}` {log.shape}"
            left.set_title(f"{where}: written by {color_by} (red: race)", fontsize=9)
            right.set_title(f"{where}: number of threads that read it", fontsize=9)
            for ax in (left, right):
                ax.set_yticks(range(shape[0]) if shape[0] > 1 else [])
                ax.set_xticks(range(0, shape[1], max(1, shape[1] // 16)))
            for ax, empty, what in ((left, np.isnan(writer).all(), "never written"),
                                    (right, not readers.any(), "never read")):
                if empty:
                    ax.cla()
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, f"{where}: {what}", ha="center", va="center",
                            fontsize=9, transform=ax.transAxes, color="0.4")
        fig.suptitle(f"{self.kernel}[grid {_dims(self.grid)}, block {_dims(self.block)}]: "
                     "every access of the simulated run", fontsize=10)
        fig.tight_layout()
        return fig

    def _array(self, name: str) -> ArrayLog:
        if name not in self.arrays:
            raise UsageError(f"{self.kernel} has no array {name!r}; it has "
                             f"{', '.join(sorted(self.arrays)) or 'none'}")
        return self.arrays[name]

    # ------------------------------------------------------------------ analysis
    def analyse(self) -> None:
        """Fill ``problems`` from the record (called when the launch ends)."""
        problems = [p for p in self.problems if p.kind == "out of bounds"]
        problems += self._divergent_barriers()
        for log in {id(log): log for log in self.arrays.values()}.values():  # aliases once
            races = self._races(log)
            self.raced |= {(p.array, p.index) for p in races}
            problems += _summarise(races)
        for found in self._uninit.values():
            problems += _summarise(found)
        self.problems = problems

    def all_threads(self) -> list[Thread]:
        """Every thread of the launch, those that touched no memory included."""
        import numpy as np

        return [(tuple(int(i) for i in b), tuple(int(i) for i in t))
                for b in np.ndindex(*self.grid) for t in np.ndindex(*self.block)]

    def _divergent_barriers(self) -> list[Problem]:
        by_block: dict[tuple, dict[tuple, list[Thread]]] = defaultdict(lambda: defaultdict(list))
        for thread in self.all_threads():
            by_block[thread[0]][tuple(self.barriers.get(thread, ()))].append(thread)
        found = []
        for blk, groups in sorted(by_block.items()):
            if len(groups) < 2:
                continue
            (seq_a, threads_a), (seq_b, threads_b) = sorted(
                groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))[:2]
            a, b = threads_a[0], threads_b[0]
            found.append(Problem(
                "divergent barrier", "", None, (a, b),
                f"in block {_dims(blk)}, {_who(a)} passed {_barriers(seq_a)} but "
                f"{_who(b)} passed {_barriers(seq_b)}: every thread of a block must reach "
                "the same cuda.syncthreads() calls (a barrier inside an `if` that only some "
                "threads enter, or after a `return` that some take, hangs or corrupts a GPU "
                f"run); {sum(len(t) for t in groups.values()) - len(threads_a)} threads of "
                "this block differ from the majority"))
        return found

    def _races(self, log: ArrayLog) -> list[Problem]:
        found = []
        for index, blk, accesses in log.elements():
            if len(accesses) < 2 or all(a.atomic for a in accesses):
                continue
            pair = _racing_pair(accesses, log.space)
            if pair is None:
                continue
            w, o = pair
            where = "shared" if log.space == "shared" else "global"
            block_note = f" of block {_dims(blk)}" if blk is not None else ""
            why = ("in different blocks: no barrier orders them" if w.thread[0] != o.thread[0]
                   else "between the same two barriers")
            found.append(Problem(
                "race", log.name, index, (w.thread, o.thread),
                f"{where} `{log.name}`{_idx(index)}{block_note}: {_who(w.thread)} "
                f"{_verb(w)} it at {w.line} and {_who(o.thread)} {_verb(o)} it at {o.line}, "
                f"{why}"))
        return found


def _racing_pair(accesses: list[Access], space: str) -> tuple[Access, Access] | None:
    writes = [a for a in accesses if a.write]
    for w in writes:
        for o in accesses:
            if o.thread == w.thread or (w.atomic and o.atomic):
                continue
            same_block = o.thread[0] == w.thread[0]
            if space == "global" and not same_block:
                return w, o
            if same_block and o.epoch == w.epoch:
                return w, o
    return None


def _summarise(problems: list[Problem]) -> list[Problem]:
    """The first few problems of one kind on one array in full, the rest as a count."""
    if len(problems) <= _SHOWN_PER_KIND:
        return problems
    shown = problems[:_SHOWN_PER_KIND]
    shown[-1].more = len(problems) - _SHOWN_PER_KIND
    return shown


def _dims(t: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, t)) + ")" if len(t) > 1 else str(t[0])


def _idx(index: tuple[int, ...] | None) -> str:
    return "" if index is None else "[" + ", ".join(map(str, index)) + "]"


def _who(thread: Thread) -> str:
    return f"thread {_dims(thread[1])} of block {_dims(thread[0])}"


def _verb(a: Access) -> str:
    return ("atomically updated" if a.atomic else "wrote") if a.write else "read"


def _barriers(seq: tuple[str, ...]) -> str:
    if not seq:
        return "no cuda.syncthreads()"
    return f"{len(seq)} cuda.syncthreads() ({', '.join(seq)})"


# ---------------------------------------------------------------------------- the watcher
class Watch:
    """Every launch made inside one ``watch()`` block, in order."""

    def __init__(self) -> None:
        self.launches: list[Launch] = []

    @property
    def last(self) -> Launch:
        if not self.launches:
            raise UsageError("no kernel was launched inside watch()")
        return self.launches[-1]

    @property
    def problems(self) -> list[Problem]:
        return [p for launch in self.launches for p in launch.problems]

    @property
    def clean(self) -> bool:
        return not self.problems

    def report(self) -> str:
        if not self.launches:
            return "no kernel was launched"
        return "\n".join(launch.report() for launch in self.launches)

    def assert_clean(self) -> None:
        if not self.clean:
            raise AssertionError(self.report())


_active: Watch | None = None
_active_lock = threading.Lock()
_local = threading.local()


@contextlib.contextmanager
def watch() -> Iterator[Watch]:
    """Record every kernel launched inside the block (simulator only; not nested)."""
    global _active
    _require_simulator()
    with _active_lock:
        if _active is not None:
            raise UsageError("sanitizer.watch() is already active: do not nest it")
        _active = Watch()
    record = _active
    try:
        with _patched():
            yield record
    finally:
        with _active_lock:
            _active = None


def _require_simulator() -> None:
    from ..cudasim import on_simulator

    if not on_simulator():
        raise CourseError("the access checker watches Numba's CUDA simulator, and this "
                          "process runs kernels on a real GPU. Run the check on a CPU "
                          "(NUMBA_ENABLE_CUDASIM=1, or DEVICE='cpu'), or on the GPU use "
                          "NVIDIA's compute-sanitizer (--tool racecheck / synccheck / "
                          "initcheck / memcheck)")


# ---------------------------------------------------------------------------- recording
def _current() -> tuple[Launch, Thread, Any] | None:
    launch = _launching
    if launch is None:
        return None
    t = threading.current_thread()
    tid = getattr(t, "_hpdl_id", None)
    if tid is None:
        block_idx = getattr(t, "blockIdx", None)
        if block_idx is None:  # not a simulated CUDA thread
            return None
        nb, nt = len(launch.grid), len(launch.block)
        tid = (tuple(block_idx)[:nb], tuple(t.threadIdx)[:nt])
        t._hpdl_id = tid
        t._hpdl_epoch = 0
        launch.threads_seen.add(tid)
    return launch, tid, t


_launching: Launch | None = None  # the launch in progress (blocks run one at a time)


_SKIPPED_FILES: dict[str, bool] = {}  # file name -> is it this module or the simulator?


def _caller() -> tuple[Any, int]:
    """(code, line) of the innermost frame outside this module and the simulator."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        skip = _SKIPPED_FILES.get(code.co_filename)
        if skip is None:
            name = code.co_filename.replace("\\", "/")
            skip = _SKIPPED_FILES[code.co_filename] = (
                code.co_filename == __file__ or "cuda/simulator" in name)
        if not skip:
            return code, frame.f_lineno
        frame = frame.f_back
    return None, 0  # pragma: no cover


def _format_where(where: tuple[Any, int]) -> str:
    code, line = where
    return f"line {line} of {code.co_name}" if code is not None else "an unknown line"


def _caller_line() -> str:
    """'line N of fn' of the innermost frame outside this module and the simulator."""
    return _format_where(_caller())


def _normalise(index: Any, ndim: int) -> tuple[int, ...] | None:
    """The element index as a tuple of ints, or None for anything else (a slice...)."""
    if type(index) is int:  # the common case, fast
        return (index,) if ndim == 1 else None
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        try:
            out.append(int(i.__index__()))
        except (AttributeError, TypeError):
            return None  # a slice, an array, a field name: not an element access
    return tuple(out) if len(out) == ndim else None


def _record(log: ArrayLog, index: Any, write: bool, atomic: bool = False) -> None:
    here = _current()
    if here is None or getattr(_local, "suppress", False):
        return
    launch, tid, t = here
    idx = _normalise(index, len(log.shape))
    if idx is None:
        return
    if any(i < 0 or i >= n for i, n in zip(idx, log.shape, strict=True)):
        problem = Problem(
            "out of bounds", log.name, idx, (tid,),
            f"{_who(tid)} {'wrote' if write else 'read'} {log.space} `{log.name}`"
            f"{_idx(idx)} at {_caller_line()}, outside its shape {log.shape}"
            + (" (a negative index: NumPy would wrap it, a GPU reads whatever lies "
               "before the array)" if min(idx) < 0 else ""))
        launch.problems.append(problem)
        raise OutOfBoundsError(problem)
    where = _caller()
    access = Access(tid, t._hpdl_epoch, write, atomic, where)
    counts = launch.counts[tid]
    if log.space == "shared":
        key = (tid[0], idx)
        if (not write or atomic) and key not in log.written:
            launch._uninit[log.name].append(Problem(
                "uninitialised shared read", log.name, idx, (tid,),
                f"{_who(tid)} read shared `{log.name}`{_idx(idx)} at {_format_where(where)} "
                "before any "
                "thread of its block wrote it (shared memory starts with garbage: write "
                "it, then cuda.syncthreads(), then read)"))
            log.written.add(key)  # report each element once
        if write:
            log.written.add(key)
            counts.shared_writes += 1
        else:
            counts.shared_reads += 1
    else:
        key = idx
        if write:
            counts.global_writes += 1
        else:
            counts.global_reads += 1
    log.accesses[key].append(access)


class _SharedArray:
    """A ``cuda.shared.array`` seen through the checker: every element access recorded."""

    __slots__ = ("_ary", "_log")

    def __init__(self, ary: Any, log: ArrayLog):
        self._ary = ary
        self._log = log

    def __getitem__(self, index: Any) -> Any:
        _record(self._log, index, write=False)
        return self._ary[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        _record(self._log, index, write=True)
        self._ary[index] = value

    def __len__(self) -> int:
        return len(self._ary)

    def __getattr__(self, name: str) -> Any:  # shape, size, dtype, ndim
        return getattr(self._ary, name)


_SHARED_NAME = re.compile(r"(\w+)\s*(?::[^=]*)?=\s*[\w.]*shared\.array\(")


def _shared_name(filename: str, lineno: int) -> str:
    match = _SHARED_NAME.search(linecache.getline(filename, lineno))
    return match.group(1) if match else f"shared@line{lineno}"


# ---------------------------------------------------------------------------- patching
_ATOMICS = ("add", "sub", "and_", "or_", "xor", "inc", "dec", "exch", "max", "min",
            "nanmax", "nanmin", "cas")


def _is_array_arg(arg: Any) -> bool:
    """Does the simulator hand this launch argument to the kernel as an array?"""
    import numpy as np
    from numba.cuda.simulator.args import ArgHint
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return (isinstance(arg, np.ndarray) and arg.ndim > 0) or isinstance(
        arg, FakeCUDAArray | ArgHint | np.void)


@contextlib.contextmanager
def _patched() -> Iterator[None]:
    import inspect

    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator import kernelapi
    from numba.cuda.simulator.cudadrv import devicearray

    wrapper = devicearray.FakeWithinKernelCUDAArray
    saved = {
        (sim_kernel.FakeCUDAKernel, "__call__"): sim_kernel.FakeCUDAKernel.__call__,
        (sim_kernel.FakeCUDAKernel, "__getitem__"): sim_kernel.FakeCUDAKernel.__getitem__,
        (wrapper, "__init__"): wrapper.__init__,
        (wrapper, "__getitem__"): wrapper.__getitem__,
        (wrapper, "__setitem__"): wrapper.__setitem__,
        (kernelapi.FakeCUDAShared, "array"): kernelapi.FakeCUDAShared.array,
        (sim_kernel.BlockThread, "syncthreads"): sim_kernel.BlockThread.syncthreads,
    }
    for name in _ATOMICS:
        saved[(kernelapi.FakeCUDAAtomic, name)] = getattr(kernelapi.FakeCUDAAtomic, name)
    pending: list[str] = []
    logs: dict[int, ArrayLog] = {}     # id(kernel-side array wrapper) -> its log
    buffers: dict[int, ArrayLog] = {}  # id(the NumPy memory behind it) -> its log

    def call(self: Any, *args: Any) -> Any:
        global _launching
        original = saved[(sim_kernel.FakeCUDAKernel, "__call__")]
        if self._device or sim_kernel._kernel_context or _launching is not None:
            return original(self, *args)
        grid, block = sim_kernel.normalize_kernel_dimensions(self.grid_dim, self.block_dim)
        given = getattr(self, "_hpdl_config", (grid, block))  # as the launch wrote them
        dims = [len(g) if isinstance(g, tuple | list) else 1 for g in given]
        launch = Launch(self.fn.__name__, tuple(grid)[:dims[0]], tuple(block)[:dims[1]])
        names = list(inspect.signature(self.fn).parameters)
        pending[:] = [names[i] if i < len(names) else f"arg{i}"
                      for i, a in enumerate(args) if _is_array_arg(a)]
        logs.clear()
        buffers.clear()
        _launching = launch
        _active.launches.append(launch)
        try:
            return original(self, *args)
        finally:
            _launching = None
            pending.clear()
            launch.analyse()

    def configure(self: Any, configuration: Any) -> Any:
        self._hpdl_config = tuple(configuration[:2])
        return saved[(sim_kernel.FakeCUDAKernel, "__getitem__")](self, configuration)

    def init(self: Any, item: Any) -> None:
        saved[(wrapper, "__init__")](self, item)
        if _launching is not None and pending and not hasattr(threading.current_thread(),
                                                              "blockIdx"):
            name = pending.pop(0)
            # One array passed twice (``y`` and ``out`` in place) is one memory: one log.
            log = buffers.get(id(item._ary))
            if log is None:
                log = buffers[id(item._ary)] = ArrayLog(name, "global", tuple(item._ary.shape))
            _launching.arrays[name] = log
            logs[id(self)] = log

    def getitem(self: Any, index: Any) -> Any:
        log = logs.get(id(self))
        if log is not None:
            _record(log, index, write=False)
        return saved[(wrapper, "__getitem__")](self, index)

    def setitem(self: Any, index: Any, value: Any) -> None:
        log = logs.get(id(self))
        if log is not None:
            _record(log, index, write=True)
        saved[(wrapper, "__setitem__")](self, index, value)

    def shared_array(self: Any, shape: Any, dtype: Any, alignment: Any = None) -> Any:
        # As the simulator does (one allocation per file and line of the kernel), but
        # wrapped so that every access is recorded. Not a call of the original: it finds
        # "its caller" by stack depth, which would then be this function.
        import numpy as np
        from numba.core import types
        from numba.np import numpy_support

        if alignment is not None:
            raise RuntimeError("Array alignment is not supported in cudasim")
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        while frame.f_code.co_filename == kernelapi.__file__:
            frame = frame.f_back
        if shape == 0:
            count = self._dynshared_size // np.dtype(dtype).itemsize
            ary = np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
            caller = ("dynamic", 0)
        else:
            caller = (frame.f_code.co_filename, frame.f_lineno)
            ary = self._allocations.get(caller)
            if ary is None:
                ary = np.empty(shape, dtype)
                self._allocations[caller] = ary
        launch = _launching
        if launch is None:
            return ary
        name = _shared_name(*caller) if caller[0] != "dynamic" else "dynamic shared"
        log = launch.arrays.get(name)
        if log is None or log.space != "shared":
            log = ArrayLog(name, "shared", tuple(ary.shape))
            launch.arrays[name] = log
        return _SharedArray(ary, log)

    def syncthreads(self: Any) -> None:
        here = _current()
        if here is not None:
            launch, tid, t = here
            launch.barriers[tid].append(_caller_line())
            t._hpdl_epoch += 1
        saved[(sim_kernel.BlockThread, "syncthreads")](self)

    def atomic(name: str):
        original = saved[(kernelapi.FakeCUDAAtomic, name)]

        def op(self: Any, array: Any, index: Any, *values: Any) -> Any:
            log = array._log if isinstance(array, _SharedArray) else logs.get(id(array))
            if log is not None and not getattr(_local, "suppress", False):
                _record(log, index, write=True, atomic=True)
            _local.suppress = True
            try:
                return original(self, array, index, *values)
            finally:
                _local.suppress = False
        return op

    replacements = {
        (sim_kernel.FakeCUDAKernel, "__call__"): call,
        (sim_kernel.FakeCUDAKernel, "__getitem__"): configure,
        (wrapper, "__init__"): init,
        (wrapper, "__getitem__"): getitem,
        (wrapper, "__setitem__"): setitem,
        (kernelapi.FakeCUDAShared, "array"): shared_array,
        (sim_kernel.BlockThread, "syncthreads"): syncthreads,
    }
    for name in _ATOMICS:
        replacements[(kernelapi.FakeCUDAAtomic, name)] = atomic(name)
    try:
        for (owner, name), fn in replacements.items():
            setattr(owner, name, fn)
        yield
    finally:
        for (owner, name), fn in saved.items():
            setattr(owner, name, fn)


__all__ = ["KINDS", "Access", "ArrayLog", "Counts", "Launch", "OutOfBoundsError", "Problem",
           "Watch", "watch"]
