"""Lesson 09's kernels: sums (reductions), histograms (atomics), and a chunked stream pipeline.

A **reduction** turns many numbers into one (a sum, a maximum, a histogram's counts). In
parallel that needs *combining* the threads' partial results, and the variants below differ
only in how they combine:

* ``sum_atomic``: every thread adds its share straight into one global counter with an
  atomic add (simple; the additions to that one address are serialised);
* ``sum_shared_tree``: the threads of a block add their shares pairwise in shared memory,
  ``log2(threads)`` halving steps with a barrier between them, then one atomic per block;
* ``sum_warp_shuffle``: the 32 lanes of a warp add through registers with
  ``cuda.shfl_down_sync`` (no shared memory, no barrier), then the warps' totals the same
  way, then one atomic per block. A real GPU only: the simulator has no shuffles;
* ``block_sums`` twice (*two passes*): the first launch writes one partial sum per block,
  the second sums those partials with a single block. No atomics, so the result is the
  same bits on every run.

Every variant first lets each thread sum its own elements with a grid-stride loop
(``thread_sum``) that keeps four loads in flight, which is what makes a reduction reach the
memory bandwidth. Histograms count with atomics in global memory or in a per-block
shared-memory copy. ``stream_pipeline`` copies chunks to the GPU, runs a kernel on each and
copies them back, spread over several CUDA streams so that transfers and compute overlap.

Host wrappers (``reduce_sum``, ``SumPlan``, ``histogram``, ``HistogramPlan``) validate the
input and the launch configuration and raise ``UsageError`` naming the bad parameter.
Import this module only after ``course_utils.setup()`` (it imports ``numba.cuda``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from ...cudasim import on_simulator
from ...errors import CourseError, UsageError, check_choice, check_positive
from ...timing import Timing
from ..launch import WARP_SIZE, benchmark_launches, blocks_for, check_block  # noqa: F401

MAX_THREADS = 1024  # shared arrays must have a compile-time size: room for the largest block
MAX_WARPS = MAX_THREADS // WARP_SIZE
MAX_BINS = 1024  # largest histogram whose per-block copy lives in shared memory (4 KiB)
FULL_MASK = 0xFFFFFFFF  # all 32 lanes of a warp take part in a shuffle
SUM_METHODS = ("atomic", "shared_tree", "warp_shuffle", "two_pass")
HIST_METHODS = ("global", "shared")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------- kernels


@cuda.jit(device=True)
def thread_sum(x):
    """This thread's share of ``sum(x)``: a grid-stride loop with four loads in flight.

    Thread ``i`` of the grid adds ``x[i], x[i + stride], x[i + 2 stride], ...`` where
    ``stride`` is the number of threads in the grid, so any ``x.size`` is covered by any
    grid. Four independent accumulators let four loads be on their way at once: memory
    latency is hidden by having many bytes in flight, not by waiting for each one.
    """
    stride = cuda.gridsize(1)
    i = cuda.grid(1)
    a0 = a1 = a2 = a3 = x.dtype.type(0)  # accumulate in x's precision
    while i + 3 * stride < x.size:  # four independent loads per step
        a0 += x[i]
        a1 += x[i + stride]
        a2 += x[i + 2 * stride]
        a3 += x[i + 3 * stride]
        i += 4 * stride
    while i < x.size:  # the last 0 to 3 elements of this thread
        a0 += x[i]
        i += stride
    return (a0 + a1) + (a2 + a3)


@cuda.jit
def sum_atomic(x, out):
    """Every thread adds its share straight into ``out[0]`` (zeroed before the launch).

    Correct but contended: all the atomic additions go to one address, and the memory
    system performs them one after the other.
    """
    cuda.atomic.add(out, 0, thread_sum(x))


@cuda.jit(device=True)
def block_tree(cache):
    """Sum ``cache[0:blockDim.x]`` into ``cache[0]`` in log2(blockDim.x) halving steps.

    Step ``s``: threads ``t < s`` add ``cache[t + s]`` to ``cache[t]``; a barrier makes
    every addition of a step visible before the next step reads it. ``blockDim.x`` must be
    a power of two (the host wrappers check). Every thread of the block must call this.
    """
    t = cuda.threadIdx.x
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            cache[t] += cache[t + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit
def sum_shared_tree(x, out):
    """Tree inside each block (shared memory), then one atomic add per block into ``out[0]``."""
    cache = cuda.shared.array(MAX_THREADS, dtype=out.dtype)  # one slot per thread
    t = cuda.threadIdx.x
    cache[t] = thread_sum(x)
    cuda.syncthreads()  # every slot is written before any thread reads its neighbour's
    block_tree(cache)
    if t == 0:
        cuda.atomic.add(out, 0, cache[0])  # blocks atomics instead of threads atomics


@cuda.jit
def block_sums(x, partial):
    """Pass 1 of the two-pass sum: block ``b`` writes its sum to ``partial[b]``.

    Pass 2 launches it again with a single block, on ``partial``, writing the total to
    element 0 of its output. Each result is written by exactly one thread: no atomics, so
    the sum is computed in the same order, and gives the same bits, on every run.
    """
    cache = cuda.shared.array(MAX_THREADS, dtype=partial.dtype)
    t = cuda.threadIdx.x
    cache[t] = thread_sum(x)
    cuda.syncthreads()
    block_tree(cache)
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@cuda.jit(device=True)
def warp_sum(v):
    """Sum ``v`` over the 32 lanes of a warp in 5 steps; lane 0 ends with the total.

    ``shfl_down_sync(mask, v, d)`` returns lane ``lane + d``'s ``v``: registers are read
    across the warp directly, with no shared memory and no barrier. (A real GPU only.)
    """
    offset = WARP_SIZE // 2
    while offset > 0:
        v += cuda.shfl_down_sync(FULL_MASK, v, offset)
        offset //= 2
    return v


@cuda.jit
def sum_warp_shuffle(x, out):
    """Shuffles inside each warp, then over the block's warp totals, then one atomic per
    block. ``blockDim.x`` must be a multiple of 32 (whole warps)."""
    warp_totals = cuda.shared.array(MAX_WARPS, dtype=out.dtype)
    lane = cuda.threadIdx.x % WARP_SIZE
    warp = cuda.threadIdx.x // WARP_SIZE
    v = warp_sum(thread_sum(x))
    if lane == 0:
        warp_totals[warp] = v
    cuda.syncthreads()
    if warp == 0:  # the first warp adds up the (at most 32) warp totals
        n_warps = cuda.blockDim.x // WARP_SIZE
        v = warp_totals[lane] if lane < n_warps else out.dtype.type(0)
        v = warp_sum(v)
        if lane == 0:
            cuda.atomic.add(out, 0, v)


# The simulator has no warp shuffles, so no quick run launches sum_warp_shuffle: the argument
# types and block size the lessons launch it with on a GPU, for `hpdl kernels`, which
# compiles it for sm_80 and sm_90 anyway (without a GPU).
GPU_ONLY_LAUNCHES = {
    "sum_warp_shuffle": [("(float32[::1], float32[::1])", 256),
                         ("(float32[::1], float64[::1])", 256)],
}


@cuda.jit
def fill_zero(a):
    """``a[:] = 0`` on the device (the atomic kernels add into zeroed memory)."""
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0


@cuda.jit
def copy_for_bandwidth(src, dst):
    """``dst[i] = src[i]``, one element per thread: the yardstick for memory bandwidth.

    A copy reads and writes every byte once and computes nothing, so its speed is what the
    memory system delivers to a simple kernel; lesson 09 compares the sums with it.
    """
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def histogram_global_atomics(values, hist):
    """``hist[v] += 1`` for every value, with atomics straight into global memory.

    Values outside ``[0, hist.size)`` are skipped (the host wrapper rejects them first).
    """
    nbins = hist.size
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < values.size:
        v = values[i]
        if v >= 0 and v < nbins:
            cuda.atomic.add(hist, v, 1)
        i += stride


@cuda.jit
def histogram_shared_atomics(values, hist):
    """Each block counts into its own histogram in shared memory (fast atomics, shared by
    only the block's threads), then adds its non-zero bins to ``hist`` in global memory."""
    local = cuda.shared.array(MAX_BINS, dtype=hist.dtype)
    nbins = hist.size
    t = cuda.threadIdx.x
    for b in range(t, nbins, cuda.blockDim.x):  # zero the block's histogram
        local[b] = 0
    cuda.syncthreads()
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < values.size:
        v = values[i]
        if v >= 0 and v < nbins:
            cuda.atomic.add(local, v, 1)
        i += stride
    cuda.syncthreads()  # all counting done before the block's counts are published
    for b in range(t, nbins, cuda.blockDim.x):
        if local[b] != 0:
            cuda.atomic.add(hist, b, local[b])


@cuda.jit
def dial_work(x, y, iters, a, b):
    """``y = f(x)``: ``iters`` steps of ``v = a * v + b`` per element.

    A stand-in for real work whose cost we can dial: the stream pipeline needs compute that
    takes about as long as the transfers around it.
    """
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        for _ in range(iters):
            v = a * v + b
        y[i] = v


# ------------------------------------------------------------------ launch configuration


def check_count(n: int, name: str = "n", *, allow_zero: bool = False) -> int:
    """``n`` as an int if it is an integer > 0 (>= 0 with ``allow_zero``); else a
    UsageError naming ``name``, its value and the allowed range."""
    low = 0 if allow_zero else 1
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < low:
        raise UsageError(f"{name}={n!r} is not valid; it must be an integer >= {low}")
    return int(n)


def check_sum_threads(threads: int, method: str = "shared_tree", *, name: str = "threads"
                      ) -> int:
    """Validate a block size for a sum ``method``: within the device's limits, a power of
    two for the trees, a multiple of 32 for the warp shuffles. Returns it as an int."""
    check_choice("method", method, SUM_METHODS)
    (threads,) = check_block(threads, name=name)
    if method in ("shared_tree", "two_pass") and threads & (threads - 1):
        raise UsageError(f"{name}={threads} is not valid for method={method!r}: the tree "
                         "halves the block each step, so it must be a power of two "
                         "(1, 2, 4, ..., 1024)")
    if method == "warp_shuffle" and threads % WARP_SIZE:
        raise UsageError(f"{name}={threads} is not valid for method='warp_shuffle': it "
                         f"must be a multiple of the warp size {WARP_SIZE} "
                         "(32, 64, 128, 256, 512 or 1024)")
    return threads


def resident_blocks(kernel, args: Sequence, threads: int) -> int | None:
    """Blocks of ``threads`` threads of ``kernel`` that fit on the whole GPU at once.

    Asked of the compiled kernel (its registers and shared memory limit how many blocks an
    SM holds), so a grid-stride launch of exactly this many blocks is *one full wave*: no
    block waits for another to finish. If the driver cannot say, the thread limit alone
    gives an estimate (SMs x threads per SM / threads). ``None`` on the simulator.
    """
    if on_simulator():
        return None
    try:
        compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
        return max(1, int(compiled.max_cooperative_grid_blocks(threads)))
    except Exception:  # noqa: BLE001 - older Numba: estimate from the device's limits
        dev = cuda.get_current_device()
        per_sm = max(1, dev.MAX_THREADS_PER_MULTIPROCESSOR // threads)
        return per_sm * dev.MULTIPROCESSOR_COUNT


def grid_blocks(n: int, threads: int, blocks: int | None, *, kernel=None,
                args: Sequence = ()) -> int:
    """Blocks for a grid-stride launch over ``n`` elements.

    ``blocks`` given: validated (> 0) and capped at one thread per element. ``None``: one
    full wave of the GPU (``resident_blocks``), or one thread per element when that is
    fewer or unknown (the simulator).
    """
    n = check_count(n)
    per_element = blocks_for(n, threads)
    if blocks is not None:
        check_count(blocks, "blocks")
        return min(int(blocks), per_element)
    wave = resident_blocks(kernel, args, threads) if kernel is not None else None
    return min(wave, per_element) if wave else per_element


def launcher(kernel, blocks: int, threads: int, stream=0) -> Callable[..., None]:
    """``kernel[blocks, threads, stream]`` as a reusable launcher.

    On a GPU the configured kernel is made once (launching it again skips the
    configuration step), without Numba's small-grid warning: the lesson launches tiny grids
    on purpose, to check odd sizes. The simulator's kernels keep one configuration per
    kernel object, so there each launch configures afresh.
    """
    if on_simulator():
        return lambda *args: kernel[blocks, threads, stream](*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[blocks, threads, stream]


def _is_device_array(a) -> bool:
    """True for a Numba device array (real or simulated), False for host arrays."""
    return hasattr(a, "copy_to_host") and not isinstance(a, np.ndarray)


def _as_float_vector(x, name: str = "x"):
    """``x`` as a 1-D float32/float64 array on the device (copied if it is on the host)."""
    if not _is_device_array(x):
        x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise UsageError(f"{name} must be a non-empty 1-D array; got shape {tuple(x.shape)}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise UsageError(f"{name} has dtype {x.dtype}; use float32 or float64")
    if _is_device_array(x):
        return x
    return cuda.to_device(np.ascontiguousarray(x))


# ---------------------------------------------------------------------------- sum plans


@dataclass
class SumPlan:
    """A sum of ``n`` values of ``dtype``, ready to launch again and again (for timing).

    ``plan(d_x)`` queues the kernels on the GPU and returns at once; ``plan.result()``
    waits and returns the sum. Output and partial-sum arrays are allocated once, here.
    """

    n: int
    dtype: np.dtype
    method: str = "shared_tree"
    threads: int = 256
    blocks: int | None = None
    counter_dtype: np.dtype | None = None  # ``atomic`` only: the counter's dtype (float64:
    # many small additions into one float32 counter lose digits; past 2**24 they vanish)
    out: object = field(init=False, repr=False)
    partial: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.n = check_count(self.n)
        self.dtype = np.dtype(self.dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise UsageError(f"dtype={self.dtype} is not valid; use float32 or float64")
        self.threads = check_sum_threads(self.threads, self.method)
        if self.method == "warp_shuffle" and on_simulator():
            raise CourseError("method='warp_shuffle' needs a real GPU: the CUDA simulator has "
                              "no warp shuffles (cuda.shfl_down_sync)")
        self.counter_dtype = np.dtype(self.counter_dtype or self.dtype)
        if self.counter_dtype not in FLOAT_DTYPES or (
                self.counter_dtype != self.dtype and self.method != "atomic"):
            raise UsageError(f"counter_dtype={self.counter_dtype} is not valid for "
                             f"method={self.method!r}: only 'atomic' adds into a counter, "
                             "float32 or float64")
        self.out = cuda.device_array(1, dtype=self.counter_dtype)
        kernel = {"atomic": sum_atomic, "shared_tree": sum_shared_tree,
                  "warp_shuffle": sum_warp_shuffle, "two_pass": block_sums}[self.method]
        probe = (cuda.device_array(1, dtype=self.dtype), self.out)
        self.blocks = grid_blocks(self.n, self.threads, self.blocks, kernel=kernel,
                                  args=probe)
        self.partial = cuda.device_array(self.blocks, dtype=self.dtype)
        self._zero = launcher(fill_zero, 1, 1)
        self._main = launcher(kernel, self.blocks, self.threads)
        self._second = launcher(block_sums, 1, self.threads)

    def __call__(self, d_x) -> None:
        """Queue the sum of the device array ``d_x`` (no waiting, no copy)."""
        if self.method == "two_pass":
            self._main(d_x, self.partial)
            self._second(self.partial, self.out)
        else:
            self._zero(self.out)
            self._main(d_x, self.out)

    def result(self) -> float:
        """Wait for the queued sum and return it."""
        return float(self.out.copy_to_host()[0])

    @property
    def chain(self) -> int:
        """The longest chain of additions any input goes through in this launch.

        A thread adds about n / (blocks·threads) elements of its own; then the block
        combines its threads in log2(threads) tree steps (10 shuffle steps); then the
        blocks' (or, for ``atomic``, the threads') results are added one after the other
        into the counter, or summed in a second pass. The rounding error of the sum is at
        most ``chain · eps · Σ|x|`` (see ``sum_tolerance``); never more than n - 1.
        """
        own, combine = self._chains()
        return max(1, min(own + combine, self.n - 1))

    def _chains(self) -> tuple[int, int]:
        """(additions in the thread's own loop, additions after it): for ``atomic`` the
        second part happens in the counter, in ``counter_dtype``."""
        threads_total = self.blocks * self.threads
        own = -(-self.n // threads_total) + 2  # own elements, then a0 + a1 and a2 + a3
        tree = max(self.threads - 1, 0).bit_length()  # ceil(log2(threads))
        combine = {
            "atomic": threads_total,
            "shared_tree": tree + self.blocks,
            "warp_shuffle": 10 + self.blocks,
            "two_pass": tree + (-(-self.blocks // self.threads) + 2 + tree),
        }[self.method]
        return own, combine

    def tolerance(self, x: np.ndarray) -> float:
        """The rounding bound of this plan's sum of ``x`` (see ``sum_tolerance``), with the
        counter's additions rounded in ``counter_dtype``. Compare it with the sum: a bound
        near ``Σ|x|`` (``chain · eps`` near 1) would be a check that cannot fail."""
        if self.counter_dtype == self.dtype:
            return sum_tolerance(x, chain=self.chain, dtype=self.dtype)
        own, combine = self._chains()
        return (sum_tolerance(x, chain=min(own, self.n - 1), dtype=self.dtype)
                + sum_tolerance(x, chain=min(combine, self.n - 1), dtype=self.counter_dtype))

    def describe(self) -> str:
        counter = (f", {self.counter_dtype} counter" if self.counter_dtype != self.dtype
                   else "")
        return (f"{self.method}: {self.blocks} blocks x {self.threads} threads "
                f"for n={self.n} ({self.dtype}{counter}), longest chain of additions "
                f"{self.chain}")


def reduce_sum(x, method: str = "shared_tree", *, threads: int = 256,
               blocks: int | None = None) -> float:
    """Sum of the 1-D float array ``x`` (NumPy or device) on the GPU with ``method``.

    ``method``: one of ``SUM_METHODS``; ``threads`` per block (a power of two for the
    trees, a multiple of 32 for ``warp_shuffle``); ``blocks``: None = one full wave of the
    GPU (one thread per element on the simulator). The result is rounded differently from
    ``np.sum`` (another order of additions): compare with ``sum_tolerance``.
    """
    d_x = _as_float_vector(x)
    plan = SumPlan(d_x.size, d_x.dtype, method, threads, blocks)
    plan(d_x)
    return plan.result()


def sum_tolerance(x: np.ndarray, *, chain: int | None = None, dtype=None) -> float:
    """Absolute error bound for summing ``x`` in ``dtype``: ``chain · eps · Σ|x|``.

    Every floating-point addition is off by at most half an ``eps`` relative to its result,
    and no partial sum exceeds Σ|x|. An input that goes through ``chain`` additions on its
    way to the total collects at most ``chain`` such roundings, so (to first order)
    ``|computed - exact| <= chain · eps/2 · Σ|x|``; ``eps`` instead of ``eps/2`` leaves a
    factor 2 of headroom. Any order of n terms, a loop, a tree or atomics in any order, has
    ``chain <= n - 1`` (the default, the classic n·eps bound); a grid of threads plus a tree
    has a far shorter chain (``SumPlan.chain``). For non-negative data Σ|x| is the sum
    itself, so this is a relative tolerance of ``chain · eps``. (Random roundings partly
    cancel: real errors are usually far below this bound; it is safe, not tight.)
    """
    x = np.asarray(x)
    chain = max(x.size - 1, 1) if chain is None else check_count(chain, "chain")
    eps = np.finfo(np.dtype(dtype or x.dtype)).eps
    return float(chain * eps * np.sum(np.abs(x), dtype=np.float64))


# -------------------------------------------------------------------------- histograms


def check_bins(nbins: int, name: str = "nbins") -> int:
    """``nbins`` if it is an integer in [1, MAX_BINS]; else a UsageError naming ``name``."""
    if isinstance(nbins, bool) or not isinstance(nbins, (int, np.integer)) \
            or not 1 <= nbins <= MAX_BINS:
        raise UsageError(f"{name}={nbins!r} is not valid; it must be an integer between 1 "
                         f"and {MAX_BINS} (the shared-memory histogram's size)")
    return int(nbins)


@dataclass
class HistogramPlan:
    """Counts of ``nbins`` values with ``method`` "global" or "shared" atomics, ready to
    launch repeatedly: ``plan(d_values)`` queues, ``plan.result()`` waits and returns the
    int32 counts."""

    n: int
    nbins: int = 256
    method: str = "shared"
    threads: int = 256
    blocks: int | None = None
    dtype: np.dtype = np.dtype(np.uint8)  # of the values (any integer type)
    hist: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.n = check_count(self.n)
        self.nbins = check_bins(self.nbins)
        check_choice("method", self.method, HIST_METHODS)
        (self.threads,) = check_block(self.threads, name="threads")
        if self.n >= 2**31:
            raise UsageError(f"n={self.n} is too large for int32 counts (at most 2**31 - 1)")
        kernel = histogram_global_atomics if self.method == "global" \
            else histogram_shared_atomics
        self.hist = cuda.device_array(self.nbins, dtype=np.int32)
        self.dtype = np.dtype(self.dtype)
        if self.dtype.kind not in "iu":
            raise UsageError(f"dtype={self.dtype} is not valid; values must be integers")
        probe = (cuda.device_array(1, dtype=self.dtype), self.hist)
        self.blocks = grid_blocks(self.n, self.threads, self.blocks, kernel=kernel,
                                  args=probe)
        self._zero = launcher(fill_zero, blocks_for(self.nbins, 256), 256)
        self._main = launcher(kernel, self.blocks, self.threads)

    def __call__(self, d_values) -> None:
        self._zero(self.hist)
        self._main(d_values, self.hist)

    def result(self) -> np.ndarray:
        return self.hist.copy_to_host()


def histogram(values, nbins: int = 256, method: str = "shared", *, threads: int = 256,
              blocks: int | None = None) -> np.ndarray:
    """``np.bincount(values, minlength=nbins)`` on the GPU, as int32 counts.

    ``values``: a non-empty 1-D array of integers in ``[0, nbins)`` (NumPy arrays are
    checked; device arrays are trusted, and the kernels skip out-of-range values).
    """
    nbins = check_bins(nbins)
    check_choice("method", method, HIST_METHODS)
    if not _is_device_array(values):
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0:
            raise UsageError("values must be a non-empty 1-D array; got shape "
                             f"{tuple(values.shape)}")
        if values.dtype.kind not in "iu":
            raise UsageError(f"values has dtype {values.dtype}; use an integer dtype")
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= nbins:
            raise UsageError(f"values must lie in [0, nbins={nbins}); found min {lo}, max {hi}")
        values = cuda.to_device(np.ascontiguousarray(values))
    plan = HistogramPlan(values.size, nbins, method, threads, blocks, values.dtype)
    plan(values)
    return plan.result()


def skewed_values(n: int, nbins: int, *, hot_fraction: float, seed: int = 0) -> np.ndarray:
    """``n`` uint8/uint16 values in ``[0, nbins)``: a ``hot_fraction`` of them in bin 0,
    the rest uniform. ``hot_fraction=0`` is uniform data (little contention); close to 1,
    almost every atomic goes to the same bin (heavy contention)."""
    n = check_count(n)
    nbins = check_bins(nbins)
    if not 0.0 <= hot_fraction <= 1.0:
        raise UsageError(f"hot_fraction={hot_fraction!r} is not valid; it must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if nbins <= 256 else np.uint16
    values = rng.integers(0, nbins, size=n, dtype=dtype)
    values[rng.random(n) < hot_fraction] = 0
    return values


# ---------------------------------------------------------------------- stream pipeline


def dial_reference(x: np.ndarray, iters: int, a: float, b: float) -> np.ndarray:
    """What ``dial_work`` computes, in float64 and closed form: ``v_k = a^k (x - c) + c``
    with the fixed point ``c = b / (1 - a)`` (for ``a != 1``)."""
    x = np.asarray(x, dtype=np.float64)
    if a == 1.0:
        return x + iters * b
    c = b / (1.0 - a)
    return a**iters * (x - c) + c


def dial_tolerance(x: np.ndarray, iters: int, a: float, b: float, *, dtype=np.float32
                   ) -> float:
    """Absolute error bound of ``dial_work`` in ``dtype`` against ``dial_reference``.

    Every ``v`` lies between ``x`` and the fixed point ``c = b / (1 - a)`` (for
    ``0 <= a < 1``), so ``|v| <= M``. A step ``v = a·v + b`` rounds at most twice, each by at
    most ``eps/2·(M + |b|)``. Earlier errors are multiplied by ``a < 1`` at every later
    step, so the total is at most ``min(iters, 1 / (1 - a))`` steps' worth; a factor 2 of
    headroom on top.
    """
    eps = float(np.finfo(np.dtype(dtype)).eps)
    ref = dial_reference(x, iters, a, b)
    bound_v = max(float(np.max(np.abs(x))), float(np.max(np.abs(ref))))
    steps = float(iters)
    if 0 <= a < 1:
        bound_v = max(bound_v, abs(b / (1.0 - a)))
        steps = min(steps, 1.0 / (1.0 - a))
    return 2.0 * max(steps, 1.0) * eps * (bound_v + abs(b))


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous ``(lo, hi)`` ranges covering ``range(n)``, sizes differing by
    at most one (so odd sizes split cleanly)."""
    n = check_count(n)
    chunks = check_count(chunks, "chunks")
    if chunks > n:
        raise UsageError(f"chunks={chunks} is not valid for n={n}: at most one chunk per "
                         "element")
    edges = [n * c // chunks for c in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@contextmanager
def _marked(events: list | None, chunk: int, stage: str, stream) -> Iterator[None]:
    """Record a CUDA event on ``stream`` before and after the body (when ``events`` is a
    list), and append ``(chunk, stage, start, end)`` to it."""
    if events is None:
        yield
        return
    start, end = cuda.event(timing=True), cuda.event(timing=True)
    start.record(stream)
    yield
    end.record(stream)
    events.append((chunk, stage, start, end))


@dataclass
class StreamPipeline:
    """Host -> device copy, ``dial_work`` and device -> host copy of ``n`` floats in
    ``chunks`` pieces, chunk ``c`` on stream ``c % streams``.

    One stream and one chunk is the sequential baseline: copy everything, compute, copy
    back. With several streams the copy engines and the SMs work on different chunks at
    the same time. Host buffers are pinned (page-locked): only those can be copied
    asynchronously, by the GPU's DMA engines, while the CPU and the SMs go on.
    """

    n: int
    chunks: int = 8
    streams: int = 4
    iters: int = 64
    threads: int = 256
    dtype: np.dtype = np.dtype(np.float32)
    a: float = 0.999
    b: float = 0.001

    def __post_init__(self) -> None:
        self.n = check_count(self.n)
        self.bounds = chunk_bounds(self.n, self.chunks)
        self.streams = check_count(self.streams, "streams")
        check_positive("iters", self.iters, allow_zero=True)
        self.iters = int(self.iters)
        (self.threads,) = check_block(self.threads, name="threads")
        self.dtype = np.dtype(self.dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise UsageError(f"dtype={self.dtype} is not valid; use float32 or float64")
        self.h_in = cuda.pinned_array(self.n, dtype=self.dtype)
        self.h_out = cuda.pinned_array(self.n, dtype=self.dtype)
        self.d_in = cuda.device_array(self.n, dtype=self.dtype)
        self.d_out = cuda.device_array(self.n, dtype=self.dtype)
        self.cuda_streams = [cuda.stream() for _ in range(self.streams)]
        self._a, self._b = self.dtype.type(self.a), self.dtype.type(self.b)
        self._launch = [launcher(dial_work, blocks_for(hi - lo, self.threads),
                                    self.threads, self.cuda_streams[c % self.streams])
                        for c, (lo, hi) in enumerate(self.bounds)]

    def __call__(self, events: list | None = None) -> None:
        """Queue every chunk's copy in, kernel and copy out; return without waiting.

        ``events``: a list to which ``(chunk, stage, start_event, end_event)`` is appended
        for each operation (real GPU only), for a timeline.
        """
        for c, (lo, hi) in enumerate(self.bounds):
            s = self.cuda_streams[c % self.streams]
            with _marked(events, c, "copy in", s):
                self.d_in[lo:hi].copy_to_device(self.h_in[lo:hi], stream=s)
            with _marked(events, c, "compute", s):
                self._launch[c](self.d_in[lo:hi], self.d_out[lo:hi], self.iters,
                                self._a, self._b)
            with _marked(events, c, "copy out", s):
                self.d_out[lo:hi].copy_to_host(self.h_out[lo:hi], stream=s)

    def synchronize(self) -> None:
        for s in self.cuda_streams:
            s.synchronize()

    def run(self, x: np.ndarray) -> np.ndarray:
        """Copy ``x`` into the pinned input, run the pipeline, wait, return the output."""
        x = np.asarray(x)
        if x.shape != (self.n,):
            raise UsageError(f"x must have shape ({self.n},); got {x.shape}")
        self.h_in[:] = x
        self()
        self.synchronize()
        return np.array(self.h_out)


# ------------------------------------------------------------------------ event timing


def event_benchmark(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5
                    ) -> Timing:
    """Time ``fn()`` on the GPU's own clock with CUDA events; return a ``Timing``.

    ``course_utils.benchmark`` times on the CPU's clock around a full device
    synchronisation. Events are recorded *into the GPU's queue* (here the default stream,
    which waits for all other streams and makes them wait for it), so they bracket
    exactly the work ``fn`` queued, across every stream, measured by the GPU itself.
    The simulator records no times with events: there this raises ``CourseError``.
    """
    if on_simulator():
        raise CourseError("CUDA events do not time anything on the simulator (it runs "
                          "every kernel synchronously on the CPU); time on a real GPU")
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, allow_zero=True)
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = cuda.event(timing=True), cuda.event(timing=True)
        start.record()  # default stream: after everything queued before, in every stream
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)  # ms -> s
    return Timing(times=times, warmup=warmup, synced="cuda events", simulator=False)


def event_spans(events: list, origin) -> list[tuple[int, str, float, float]]:
    """``(chunk, stage, start_s, end_s)`` for a pipeline's events, in seconds after the
    event ``origin`` (after the events have completed). A span starts when its stream
    reached the operation, so a copy that waited for a busy copy engine looks longer."""
    spans = []
    for chunk, stage, start, end in events:
        end.synchronize()
        spans.append((chunk, stage, origin.elapsed_time(start) / 1e3,
                      origin.elapsed_time(end) / 1e3))
    return spans


def peak_bandwidth_gbps() -> float | None:
    """The GPU's theoretical memory bandwidth in GB/s (data sheet figure): 2 transfers per
    clock × memory clock × bus width. ``None`` on the simulator or when the driver does not
    report the memory clock."""
    if on_simulator():
        return None
    try:
        dev = cuda.get_current_device()
        clock_hz = dev.MEMORY_CLOCK_RATE * 1e3  # reported in kHz
        bus_bytes = dev.GLOBAL_MEMORY_BUS_WIDTH / 8
    except Exception:  # noqa: BLE001 - some drivers no longer report the memory clock
        return None
    peak = 2 * clock_hz * bus_bytes / 1e9
    return peak if math.isfinite(peak) and peak > 0 else None
