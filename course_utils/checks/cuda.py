"""Reference checks for labs 2 and 3: CUDA kernels written in Numba, graded against NumPy.

The graded cells of ``labs/lab2_cuda_kernels.ipynb`` and ``labs/lab3_reduction_histogram.ipynb``
pass the student's ``@cuda.jit`` kernel (and the lab's launch configuration) to a
``check_*`` function here. Each check launches the kernel on random, odd sizes with fixed
seeds (never a multiple of the block or tile size, and with fewer threads than elements
where the kernel must loop) and compares the result with a NumPy reference. The same code
runs on Numba's CUDA simulator and on a GPU.

What a check catches, and how, so that the message can say exactly what differs:

* **never written**: every float output starts as NaN; an entry still NaN was never
  written (a missing grid-stride loop, a wrong bounds guard, x and y swapped);
* **out of bounds**: inputs and outputs are views of device buffers ``PAD`` elements
  longer in each axis. On the simulator an access past the end raises ``IndexError``; on
  a GPU a write past the end lands in the padding (checked afterwards) and a read past
  the end of a float input reads ``FAR`` (1e30), which shows as a huge value in the
  result (integer inputs are followed by zeros);
* **wrong values**: the first wrong entry (index, got, expected) and a hint for the usual
  mistake found in the pattern of errors (an element updated twice, only the edges wrong,
  the last bin off, a block's tree incomplete, ...);
* **races, divergent barriers, uninitialised shared memory** (simulator): every launch runs
  under the access checker (``course_utils.gpu.sanitizer``), which records each thread's
  reads and writes and names the array, the element, the two threads and their lines. The
  simulator runs one block at a time, so a race between blocks never changes its answer:
  without the checker such a kernel would pass here and fail on a GPU now and then.

The data are multiples of 1/4 or 1/8 where the kernel only adds and multiplies them, so
float32 results are exact whatever the order of the additions: those checks compare
exactly. A kernel that still holds the lab's ``raise NotImplementedError`` is reported as
not implemented *before* it is launched (a GPU would compile the ``raise`` and ignore it).

Numba is imported inside the functions, never at import time: a notebook imports this
module after ``course_utils.setup()`` has chosen between the simulator and a GPU.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..cudasim import on_simulator
from ..errors import UsageError, check_positive
from ..gpu.launch import blocks_for, check_block, grid_1d, grid_2d
from . import assert_close, check_seed, scoring
from .own_work import no_course_calls, require_own

# Extra elements past the end of each axis of every checked array: a whole block (at most
# 1024 threads) past the end, plus a few, so that a missing bounds guard writes into them.
PAD = 1032
FAR = np.float32(1e30)  # what a float input holds just past its end: a read there shows
MAX_SHARED_INT32 = 12288  # int32 counters in 48 KiB, the shared memory every GPU gives a block

# Lab 2: (rows, cols) of the blur; (M, K, N) of the products: odd, unequal, with K both
# above TILE (several tiles, the last one partial) and below it (one partial tile).
BLUR_SHAPES = ((7, 13), (33, 17))
MATMUL_SHAPES = ((17, 33, 9), (5, 3, 20))


# --------------------------------------------------------------------------- settings
def _int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= {low}")
    return int(value)


def check_power_of_two(name: str, value: Any) -> int:
    """``value`` if it is a power of two from 1 to 1024 (a tree reduction halves the block
    at each step); else a UsageError naming the parameter."""
    (value,) = check_block(value, name=name)
    if value & (value - 1):
        raise UsageError(f"{name}={value} is not valid: the tree reduction halves the block "
                         "at every step, so it must be a power of two (1, 2, 4, ..., 1024)")
    return value


def lab2_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Lab 2's sizes, validated: a bad value is a UsageError naming its parameter."""
    out = dict(cfg)
    (out["threads"],) = check_block(cfg["threads"], name="THREADS")
    block = (cfg["block_x"], cfg["block_y"])
    out["block_x"], out["block_y"] = check_block(block, name="(BLOCK_X, BLOCK_Y)")
    for key in ("saxpy_n", "saxpy_blocks", "image_rows", "image_cols", "speed_n", "repeats",
                "launches"):
        out[key] = _int(key.upper(), cfg[key])
    out["warmup"] = _int("WARMUP", cfg["warmup"], low=0)
    speedup = cfg["min_speedup"]
    if isinstance(speedup, bool) or not isinstance(speedup, int | float | np.number):
        raise UsageError(f"MIN_SPEEDUP={speedup!r} is not valid; it must be a number > 0")
    out["min_speedup"] = float(check_positive("MIN_SPEEDUP", speedup))
    return out


def lab3_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Lab 3's sizes, validated: THREADS a power of two, NBINS fits in shared memory."""
    out = dict(cfg)
    out["threads"] = check_power_of_two("THREADS", cfg["threads"])
    out["nbins"] = _int("NBINS", cfg["nbins"])
    if out["nbins"] > MAX_SHARED_INT32:
        raise UsageError(f"NBINS={out['nbins']} is not valid: a block's int32 histogram must "
                         f"fit in 48 KiB of shared memory, so NBINS <= {MAX_SHARED_INT32}")
    for key in ("blocks", "sum_n", "hist_n", "repeats", "launches"):
        out[key] = _int(key.upper(), cfg[key])
    out["warmup"] = _int("WARMUP", cfg["warmup"], low=0)
    return out


# --------------------------------------------------------------------------- kernels
def _cuda():
    from numba import cuda

    return cuda


def _names_used(fn: Any, depth: int = 2) -> set[str]:
    """Global and attribute names in ``fn``'s code and in the device functions it calls."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return set()
    names = set(code.co_names)
    if depth > 0:
        scope = getattr(fn, "__globals__", {})
        for name in code.co_names:
            inner = getattr(scope.get(name), "py_func", None)
            if inner is not None and inner is not fn:
                names |= _names_used(inner, depth - 1)
    return names


def implemented(kernel: Any) -> bool:
    """False while a lab answer (a kernel or a function) still raises NotImplementedError."""
    fn = getattr(kernel, "py_func", kernel)
    return "NotImplementedError" not in getattr(getattr(fn, "__code__", None), "co_names", ())


def _require_kernel(kernel: Any, name: str, needs: Sequence[str] = ()) -> Any:
    """``kernel`` if it is a CUDA kernel whose body has been written; else the reason.

    ``needs`` lists names the body must use (``shared``, ``syncthreads``, ``atomic``):
    a part of the lab about shared memory is not answered by a kernel that never uses it.
    """
    if not implemented(kernel):
        raise NotImplementedError(f"{name} still raises NotImplementedError")
    if getattr(kernel, "py_func", None) is None or not hasattr(kernel, "__getitem__"):
        raise AssertionError(f"{name} is not a CUDA kernel (it is a {type(kernel).__name__}): "
                             "keep the @cuda.jit line above its def")
    require_own(kernel, name)
    used = _names_used(kernel.py_func)
    spelled = {"shared": "cuda.shared.array", "syncthreads": "cuda.syncthreads()",
               "atomic": "cuda.atomic.add"}
    for need in needs:
        if need not in used:
            raise AssertionError(f"{name} never calls {spelled.get(need, need)}: this part is "
                                 f"about using it (see the explanation above the cell)")
    return kernel


def passed(name: str) -> bool:
    """True when the graded check ``name`` passed in this kernel (for demos after it)."""
    result = scoring.RESULTS.get(name)
    return bool(result and result.passed)


_FIXES = {
    "race": "Two threads touching one element between the same two barriers (or from two "
            "blocks) need cuda.atomic.add, or a cuda.syncthreads() between the write and the "
            "read (within a block only: nothing orders two blocks)",
    "divergent barrier": "Every thread of the block must reach each cuda.syncthreads(): "
                         "keep barriers out of `if`s that only some threads enter, and do "
                         "not `return` early from a kernel that has one",
    "uninitialised shared read": "Shared memory starts with garbage: write (or zero) every "
                                 "element first, then cuda.syncthreads(), then read",
}


@contextlib.contextmanager
def watched(where: str, hint: str = "", *, verdict: bool = True) -> Iterator[Any]:
    """Run what the block launches under the access checker (``gpu.sanitizer``), so that a
    race, a divergent barrier or a read of uninitialised shared memory fails the check even
    when the simulator's answer looks right (it runs one block at a time). Yields the
    checker's record, or None on a real GPU (where compute-sanitizer does this job).

    An index out of bounds fails at once. With ``verdict=False`` the other findings wait
    for ``access_verdict(log, where)``: a check first compares the values, whose hints are
    more specific when the answer is wrong, and then asks the checker."""
    if not on_simulator():
        yield None
        return
    from ..gpu import sanitizer

    log = None
    try:
        with sanitizer.watch() as log:
            yield log
    except IndexError as exc:
        found = [p for p in (log.problems if log else []) if p.kind == "out of bounds"]
        what = str(found[0]).removeprefix("out of bounds: ") if found else str(exc)
        raise AssertionError(f"{where}: a thread indexed outside an array: {what}. "
                             f"{hint}") from None
    if verdict:
        access_verdict(log, where)


def access_verdict(log: Any, where: str) -> None:
    """Fail with the access checker's report if it found a problem (None: not watched)."""
    if log is None or log.clean:
        return
    from ..gpu import sanitizer

    kinds = sorted({p.kind for p in log.problems}, key=sanitizer.KINDS.index)
    fixes = " ".join(f"{_FIXES[k]}." for k in kinds if k in _FIXES)
    raise AssertionError(
        f"{where}: the access checker found what a GPU would get wrong, some of the time "
        "(the simulator runs one block at a time, so its answer can still look right):\n"
        f"{log.report()}\n{fixes}")


def _launch(kernel: Any, grid: Any, block: Any, args: Sequence[Any], where: str,
            hint: str) -> Any:
    """``kernel[grid, block](*args)``, waiting for it, under the access checker on the
    simulator (``watched``); an index out of range becomes an AssertionError with ``hint``.
    The kernel may not run the course's own kernels' code (``no_course_calls``: on the
    simulator a device function imported inside a kernel body would run it).
    Returns the checker's record (None on a GPU) for ``access_verdict``."""
    cuda = _cuda()
    with watched(where, hint, verdict=False) as log, no_course_calls(where):
        try:
            with warnings.catch_warnings():  # the checks' grids are small on purpose
                warnings.filterwarnings("ignore", message="Grid size .* under-utilization")
                kernel[grid, block](*args)
                cuda.synchronize()
        except IndexError as exc:
            if on_simulator():
                raise  # watched() names the thread and the index
            raise AssertionError(f"{where}: a thread indexed outside an array ({exc}). "
                                 f"{hint}") from None
    return log


def _config(blocks: Any, threads: Any) -> str:
    if isinstance(blocks, tuple):
        return (f"a grid of {blocks[0]} x {blocks[1]} blocks of {threads[0]} x {threads[1]} "
                "threads (x along columns)")
    return f"{blocks} block{'s' * (blocks != 1)} of {threads} threads"


# --------------------------------------------------------------------------- guarded memory
class _Guarded:
    """A device array with ``PAD`` extra elements past the end of each axis.

    ``view`` (the part the kernel sees) holds ``inside``; the padding holds ``outside``.
    """

    def __init__(self, inside: np.ndarray, outside: Any):
        cuda = _cuda()
        self.shape = inside.shape
        self.region = tuple(slice(0, s) for s in inside.shape)
        self.outside = outside
        host = np.full(tuple(s + PAD for s in inside.shape), outside, dtype=inside.dtype)
        host[self.region] = inside
        self.full = cuda.to_device(host)
        self.view = self.full[self.region]

    def fetch(self) -> tuple[np.ndarray, bool]:
        """(the inside, whether anything in the padding changed)."""
        host = self.full.copy_to_host()
        pad = np.ones(host.shape, dtype=bool)
        pad[self.region] = False
        rest = host[pad]
        if isinstance(self.outside, float) and math.isnan(self.outside):
            changed = not np.all(np.isnan(rest))
        else:
            changed = not np.all(rest == self.outside)
        return host[self.region].copy(), changed


def _inputs(*arrays: np.ndarray) -> list[_Guarded]:
    return [_Guarded(a, FAR if a.dtype.kind == "f" else 0) for a in arrays]


def _output(shape: tuple[int, ...], dtype=np.float32) -> _Guarded:
    fill = np.nan if np.dtype(dtype).kind == "f" else 0
    return _Guarded(np.full(shape, fill, dtype=dtype), fill)


def _fetch_output(out: _Guarded, where: str, name: str, hint: str) -> np.ndarray:
    got, changed = out.fetch()
    if changed:
        raise AssertionError(f"{where}: the kernel wrote past the end of {name} (shape "
                             f"{out.shape}; the check watches the memory just after it). "
                             f"{hint}")
    return got


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _fmt(index: tuple[int, ...]) -> str:
    return ", ".join(map(str, index))


def _unwritten_or_far(where: str, name: str, got: np.ndarray, unwritten_hint: str,
                      far_hint: str) -> None:
    """Fail on entries still NaN (never written) or huge (a read past an input's end)."""
    if np.isnan(got).any():
        first = _first(np.isnan(got))
        count = int(np.isnan(got).sum())
        raise AssertionError(f"{where}: {name}[{_fmt(first)}] was never written ({count} of "
                             f"{got.size} entries still hold the NaN the check filled them "
                             f"with). {unwritten_hint}")
    huge = ~(np.abs(got) < 1e20)
    if huge.any():
        first = _first(huge)
        raise AssertionError(f"{where}: {name}[{_fmt(first)}] = {got[first]:.3g}: a thread "
                             "read past the end of an input (the check puts 1e30 just after "
                             f"each one). {far_hint}")


def _compare(where: str, name: str, got: np.ndarray, expected: np.ndarray, hint: str,
             rtol: float = 0.0, atol: float = 0.0) -> None:
    try:
        assert_close(f"{where}: {name}", got, expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        raise AssertionError(f"{exc}. {hint}" if hint else str(exc)) from None


def _quarters(rng: np.random.Generator, shape: Any, low: int = 1, high: int = 8,
              denominator: float = 4.0) -> np.ndarray:
    """Random non-zero multiples of 1/denominator with random signs: exact in float32."""
    values = rng.integers(low, high + 1, size=shape) * rng.choice([-1, 1], size=shape)
    return (values / denominator).astype(np.float32)


# --------------------------------------------------------------------------- SAXPY
_SAXPY_BOUNDS = ("Did you forget the bounds guard? The grid is rounded up to whole blocks, "
                 "so the last threads must not touch memory: loop while i < out.size.")
_GRID_STRIDE = ("Start at cuda.grid(1); the grid-stride step must be cuda.gridsize(1), the "
                "number of threads in the whole grid (gridDim.x * blockDim.x).")


def saxpy_reference(a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``a * x + y`` in float32."""
    return (np.float32(a) * x.astype(np.float32) + y.astype(np.float32)).astype(np.float32)


def saxpy_cases(threads: int) -> list[tuple[int, int, bool]]:
    """(n, blocks, in_place): one element; one thread per element with idle threads in the
    last block; about ten elements per thread with two blocks, then the same in place."""
    n_many = 10 * 2 * threads + 3
    return [(1, grid_1d(1, threads)[0], False), (37, grid_1d(37, threads)[0], False),
            (n_many, 2, False), (n_many, 2, True)]


def check_saxpy(saxpy_grid_stride: Any, *, threads: int, seed: int = 201) -> None:
    """``saxpy_grid_stride[blocks, threads](a, x, y, out)`` computes ``a * x + y`` for every
    element, with any number of blocks, also in place (``out`` is ``y``)."""
    kernel = _require_kernel(saxpy_grid_stride, "saxpy_grid_stride")
    (threads,) = check_block(threads, name="THREADS")
    rng = np.random.default_rng(check_seed(seed))
    a = np.float32(1.5)
    for n, blocks, in_place in saxpy_cases(threads):
        x = _quarters(rng, n, denominator=8.0)
        y = _quarters(rng, n, low=0, denominator=8.0)
        expected = saxpy_reference(a, x, y)
        mode = ", in place: out is y" if in_place else ""
        where = f"saxpy_grid_stride on n={n} with {_config(blocks, threads)}{mode}"
        d_x, d_y = _inputs(x, y)
        out = d_y if in_place else _output((n,))
        log = _launch(kernel, blocks, threads, (a, d_x.view, d_y.view, out.view), where,
                      _SAXPY_BOUNDS)
        got = _fetch_output(out, where, "out", _SAXPY_BOUNDS)
        if not in_place:
            many = blocks * threads < n
            _unwritten_or_far(where, "out", got, (
                f"Only {blocks * threads} threads for {n} elements: each thread must handle "
                f"several. {_GRID_STRIDE}") if many else _SAXPY_BOUNDS, _SAXPY_BOUNDS)
        else:
            _check_updates(where, got, a, x, y)
        _compare(where, "out", got, expected, "Expected out[i] = a * x[i] + y[i].")
        access_verdict(log, where)


def _check_updates(where: str, got: np.ndarray, a: np.float32, x: np.ndarray,
                   y: np.ndarray) -> None:
    """In place, ``out = y + k * a * x`` tells how many times (k) each element was updated."""
    if not np.all(np.isfinite(got)):
        return
    k = (got.astype(np.float64) - y) / (np.float64(a) * x)
    whole = np.isclose(k, np.round(k), atol=1e-6)
    if not whole.all():
        return
    k = np.round(k).astype(int)
    if (k > 1).any():
        i = _first(k > 1)[0]
        raise AssertionError(
            f"{where}: out[{i}] = y[{i}] + {k[i]} * a * x[{i}]: element {i} was updated by "
            f"{k[i]} threads ({int((k > 1).sum())} elements more than once). {_GRID_STRIDE} "
            "A step of cuda.blockDim.x makes the blocks overlap.")
    if (k == 0).any():
        i = _first(k == 0)[0]
        raise AssertionError(f"{where}: out[{i}] was never updated (it still equals y[{i}]). "
                             f"{_GRID_STRIDE}")


# --------------------------------------------------------------------------- blur
_BLUR_BOUNDS = ("Did you forget the bounds guard (row < rows and col < cols)? Or is a "
                "neighbour's index not clamped into the image?")


def blur_reference(img: np.ndarray) -> np.ndarray:
    """3 x 3 box blur with clamped edges: each pixel is the mean of the 9 pixels
    ``img[clamp(r + dr, 0, rows - 1), clamp(c + dc, 0, cols - 1)]``, dr, dc in {-1, 0, 1}.

    The same as padding the image by repeating its edge pixels (``np.pad(mode="edge")``)
    and averaging each 3 x 3 window. Computed in float64, returned as float32.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise UsageError(f"blur_reference needs a 2-D image, got shape {img.shape}")
    rows, cols = img.shape
    padded = np.pad(img, 1, mode="edge")
    total = sum(padded[dr:dr + rows, dc:dc + cols] for dr in range(3) for dc in range(3))
    return (total / 9.0).astype(np.float32)


def blur_inside_reference(img: np.ndarray) -> np.ndarray:
    """Lesson 07's edge rule (mean of the neighbours inside the image), to recognise it."""
    img = np.asarray(img, dtype=np.float64)
    rows, cols = img.shape
    padded, ones = np.pad(img, 1), np.pad(np.ones_like(img), 1)
    total = sum(padded[dr:dr + rows, dc:dc + cols] for dr in range(3) for dc in range(3))
    count = sum(ones[dr:dr + rows, dc:dc + cols] for dr in range(3) for dc in range(3))
    return total / count


def check_blur(blur: Any, *, block: Sequence[int], seed: int = 202) -> None:
    """``blur[grid, block](img, out)`` writes the clamped 3 x 3 box blur of ``img`` (float32,
    2-D) into ``out`` on odd shapes; the grid comes from ``launch.grid_2d``."""
    kernel = _require_kernel(blur, "blur")
    block = check_block(tuple(block), name="(BLOCK_X, BLOCK_Y)")
    rng = np.random.default_rng(check_seed(seed))
    for shape in BLUR_SHAPES:
        img = rng.random(shape, dtype=np.float32)
        grid, threads = grid_2d(shape, block)
        where = f"blur on a {shape[0]} x {shape[1]} image with {_config(grid, threads)}"
        (d_img,) = _inputs(img)
        out = _output(shape)
        log = _launch(kernel, grid, threads, (d_img.view, out.view), where, _BLUR_BOUNDS)
        got = _fetch_output(out, where, "out", _BLUR_BOUNDS)
        _unwritten_or_far(where, "out", got, (
            "Does x run along columns (col, row = cuda.grid(2), in that order) and does "
            "the guard let every pixel with row < rows and col < cols through?"),
            "Clamp each neighbour's row into 0..rows-1 and column into 0..cols-1.")
        expected = blur_reference(img)
        _compare(where, "out", got, expected, _blur_hint(img, got, expected),
                 rtol=1e-5, atol=1e-6)
        access_verdict(log, where)


def _blur_hint(img: np.ndarray, got: np.ndarray, expected: np.ndarray) -> str:
    close = np.isclose(got, expected, rtol=1e-5, atol=1e-6)
    if np.allclose(got, blur_inside_reference(img), rtol=1e-5, atol=1e-6):
        return ("That is lesson 07's edge rule (the mean of the neighbours inside the image); "
                "this lab clamps: a neighbour outside the image is replaced by the nearest "
                "edge pixel, and every pixel averages 9 values.")
    if np.allclose(got, 9 * expected, rtol=1e-5, atol=1e-5):
        return "Every value is 9 times too large: divide the sum by 9."
    if close[1:-1, 1:-1].all():
        return ("The interior is right but pixels on the edges are wrong: clamp the neighbour "
                "coordinates, min(max(r + dr, 0), rows - 1) and the same for columns.")
    return ("Expected out[r, c] = the mean of img over rows r-1..r+1 and columns c-1..c+1, "
            "each clamped into the image. Accumulate in float32 (float32(0.0)).")


# --------------------------------------------------------------------------- matmul
_MATMUL_BOUNDS = ("Guard the store (row < M and col < N) and load 0.0 into the tile for "
                  "elements outside A or B.")
_SYNC = ("Missing cuda.syncthreads()? One after loading the tiles (before anyone reads "
         "them) and one after using them (before the next loads overwrite them).")


def matmul_reference(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` in float64."""
    return A.astype(np.float64) @ B.astype(np.float64)


def matmul_grid(m: int, n: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """One ``tile`` x ``tile`` block per tile of C (m x n): x along columns."""
    check_block((tile, tile), name="(TILE, TILE)")
    return (blocks_for(n, tile), blocks_for(m, tile)), (tile, tile)


def check_matmul_tiled(matmul_tiled: Any, *, tile: int, seed: int = 203) -> None:
    """``matmul_tiled[grid, (TILE, TILE)](A, B, C)`` computes ``C = A @ B`` through
    shared-memory tiles, on odd shapes (K above and below TILE)."""
    kernel = _require_kernel(matmul_tiled, "matmul_tiled", needs=("shared", "syncthreads"))
    rng = np.random.default_rng(check_seed(seed))
    for m, k, n in MATMUL_SHAPES:
        A = _quarters(rng, (m, k), high=4)
        B = _quarters(rng, (k, n), high=4)
        grid, threads = matmul_grid(m, n, tile)
        where = (f"matmul_tiled on ({m} x {k}) @ ({k} x {n}) with TILE={tile}, "
                 f"{_config(grid, threads)}")
        d_A, d_B = _inputs(A, B)
        C = _output((m, n))
        log = _launch(kernel, grid, threads, (d_A.view, d_B.view, C.view), where,
                      _MATMUL_BOUNDS)
        got = _fetch_output(C, where, "C", _MATMUL_BOUNDS)
        _unwritten_or_far(where, "C", got, (
            "Each thread writes C[row, col] with row = blockIdx.y * TILE + threadIdx.y and "
            "col = blockIdx.x * TILE + threadIdx.x, after the loop over all the tiles."),
            "Load 0.0 into the tile where row >= M or k0 + tx >= K (and for B where "
            "k0 + ty >= K or col >= N).")
        expected = matmul_reference(A, B)
        _compare(where, "C", got, expected, _matmul_hint(A, B, got, tile))
        access_verdict(log, where)


def _matmul_hint(A: np.ndarray, B: np.ndarray, got: np.ndarray, tile: int) -> str:
    first_tile = matmul_reference(A[:, :tile], B[:tile, :])
    if A.shape[1] > tile and np.array_equal(got, first_tile.astype(np.float32)):
        return (f"C holds only the first tile's products (k < {tile}): loop over every tile, "
                "for k0 in range(0, K, TILE).")
    return (f"{_SYNC} Check also the tile indices: sA[ty, tx] holds A[row, k0 + tx] and "
            "sB[ty, tx] holds B[k0 + ty, col]; the inner loop adds sA[ty, j] * sB[j, tx].")


def check_matmul_speed(matmul_tiled: Any, matmul_naive: Any, *, tile: int, n: int = 2048,
                       min_speedup: float = 3.0, naive_block: Sequence[int] = (16, 16),
                       warmup: int = 2, repeats: int = 10, seed: int = 204,
                       result: dict[str, Any] | None = None) -> float:
    """On a GPU: the tiled product of two n x n matrices agrees with the naive one and is at
    least ``min_speedup`` times faster (medians of ``repeats`` timed launches, at least 3,
    after ``warmup`` untimed ones and a first launch of each that compiles and is checked).
    Returns the speed-up; ``result`` (a dict) receives the timings before the speed-up is
    asserted."""
    from ..timing import benchmark, gflops, matmul_flop

    kernel = _require_kernel(matmul_tiled, "matmul_tiled", needs=("shared", "syncthreads"))
    cuda = _cuda()
    rng = np.random.default_rng(check_seed(seed))
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    d_A, d_B = cuda.to_device(A), cuda.to_device(B)
    d_naive, d_tiled = cuda.device_array((n, n), np.float32), cuda.device_array((n, n),
                                                                              np.float32)
    naive_grid, naive_threads = grid_2d((n, n), tuple(naive_block))
    tiled_grid, tiled_threads = matmul_grid(n, n, tile)

    def run_naive() -> None:
        matmul_naive[naive_grid, naive_threads](d_A, d_B, d_naive)

    def run_tiled() -> None:
        kernel[tiled_grid, tiled_threads](d_A, d_B, d_tiled)

    run_naive()
    run_tiled()
    where = f"matmul_tiled at {n} x {n} (TILE={tile})"
    _compare(where, "C", d_tiled.copy_to_host(), d_naive.copy_to_host(),
             "It disagrees with matmul_naive on this large product.", rtol=1e-4,
             atol=1e-4 * math.sqrt(n))
    repeats = max(repeats, 3)  # a verdict on speed needs more than one sample
    t_naive = benchmark(run_naive, warmup=warmup, repeats=repeats, sync="numba")
    t_tiled = benchmark(run_tiled, warmup=warmup, repeats=repeats, sync="numba")
    speedup = t_naive.median / t_tiled.median
    flop = matmul_flop(n, n, n)
    if result is not None:
        result.update(n=n, naive=t_naive, tiled=t_tiled, speedup=speedup,
                      naive_gflops=gflops(flop, t_naive.median),
                      tiled_gflops=gflops(flop, t_tiled.median))
    if speedup < min_speedup:
        raise AssertionError(
            f"{where}: {t_tiled.median * 1e3:.3g} ms against {t_naive.median * 1e3:.3g} ms "
            f"for matmul_naive, {speedup:.2f}x faster; needs at least {min_speedup:g}x. "
            "Does each thread load ONE element of each tile per step, with x along columns "
            "(sA[ty, tx] = A[row, k0 + tx]: neighbouring threads, neighbouring addresses)? "
            "Is the accumulator a float32 (float32(0.0), not 0.0, which makes it float64)?")
    return speedup


def gpu_only_check(name: str, points: float, run: Callable[[], Any]) -> bool:
    """A graded check that exists only on a real GPU: there ``run()`` is graded as
    ``scoring.check(name, points)``; on the simulator nothing is graded and one line says why.

    The check is registered when it runs (the notebook has no literal ``check("...")`` for
    it), so the lab's maximum score is the same for every submission on one machine: the
    simulator's total without it, a GPU's with it. Returns whether it was graded.
    """
    if on_simulator():
        scoring.skipped(name, points, "not graded on the CUDA simulator: simulated kernels "
                        "run each CUDA thread as a Python thread, so their times mean "
                        "nothing; this check exists only on a GPU.")
        return False
    with scoring.check(name, points=points):
        run()
    return True


# --------------------------------------------------------------------------- reduction
_SUM_BOUNDS = ("Did you forget the bounds guard in the grid-stride loop (i < x.size)? Or "
               "does a thread index cache[] or partial[] past its end?")


def reduce_cases(threads: int) -> list[tuple[int, int]]:
    """(n, blocks): one element in a whole block; fewer elements than threads over two
    blocks; about five elements per thread over three blocks."""
    return [(1, 1), (37, 2), (5 * 3 * threads + 7, 3)]


def thread_shares(x: np.ndarray, blocks: int, threads: int) -> np.ndarray:
    """What each thread g of the grid adds up: ``x[g] + x[g + G] + ...``, G = blocks * threads."""
    size = blocks * threads
    padded = np.zeros(blocks_for(max(x.size, 1), size) * size)
    padded[:x.size] = x
    return padded.reshape(-1, size).sum(axis=0)


def block_sum_reference(x: np.ndarray, blocks: int, threads: int) -> np.ndarray:
    """``partial[b]``: the sum of the shares of threads ``b*threads .. (b+1)*threads - 1``."""
    return thread_shares(x, blocks, threads).reshape(blocks, threads).sum(axis=1)


def check_block_sum(block_sum: Any, *, threads: int, seed: int = 301) -> None:
    """``block_sum[blocks, THREADS](x, partial)`` writes the sum of block b's grid-stride
    shares of ``x`` to ``partial[b]``, through a tree in shared memory."""
    kernel = _require_kernel(block_sum, "block_sum", needs=("shared", "syncthreads"))
    threads = check_power_of_two("THREADS", threads)
    rng = np.random.default_rng(check_seed(seed))
    for n, blocks in reduce_cases(threads):
        x = _quarters(rng, n)
        where = f"block_sum on n={n} with {_config(blocks, threads)}"
        (d_x,) = _inputs(x)
        partial = _output((blocks,))
        log = _launch(kernel, blocks, threads, (d_x.view, partial.view), where, _SUM_BOUNDS)
        got = _fetch_output(partial, where, "partial", "partial has one entry per block.")
        _unwritten_or_far(where, "partial", got, (
            "Thread 0 of each block writes the block's total to partial[cuda.blockIdx.x], "
            "after the tree."), _SUM_BOUNDS)
        expected = block_sum_reference(x, blocks, threads)
        _compare(where, "partial", got, expected, _sum_hint(x, got, expected, blocks, threads))
        access_verdict(log, where)


def _sum_hint(x: np.ndarray, got: np.ndarray, expected: np.ndarray, blocks: int,
              threads: int) -> str:
    shares = thread_shares(x, blocks, threads).reshape(blocks, threads)
    one_each = np.zeros(blocks * threads)
    one_each[:min(x.size, one_each.size)] = x[:one_each.size]
    if x.size > blocks * threads and np.array_equal(got, one_each.reshape(blocks, -1).sum(1)):
        return (f"Each thread added only one element, but {blocks * threads} threads cover "
                f"{x.size}: first loop over i = cuda.grid(1), i + cuda.gridsize(1), ... "
                "(grid stride), then reduce the block.")
    if np.array_equal(got, shares[:, 0]):
        return ("partial[b] holds only thread 0's own share: the tree must add all THREADS "
                "values of the block (step = THREADS // 2, then halve it down to 1).")
    if np.isclose(got.sum(), expected.sum()) and blocks > 1:
        return ("The blocks add up to the right total but are split differently: block b "
                "sums the shares of threads b * THREADS to (b + 1) * THREADS - 1, and thread g "
                "of the grid adds x[g], x[g + cuda.gridsize(1)], ...")
    return ("Does every thread write cache[t] (0.0 when it has no element), with a "
            f"cuda.syncthreads() after that and after every halving step? {_SYNC_SIM}")


_SYNC_SIM = ("(The simulator starts a block's threads one after another, so a missing "
             "barrier shows as wrong values here too.)")


def check_reduce_sum(reduce_sum: Callable[[Any, int], Any], *, threads: int,
                     block_sum: Any = None, seed: int = 302) -> None:
    """``reduce_sum(x, blocks)`` returns ``sum(x)`` of a device array, as one number.

    ``block_sum``, the kernel it launches, is reported as not implemented first if it is
    (on a GPU its placeholder ``raise`` would be compiled away and return garbage).
    """
    if block_sum is not None and not implemented(block_sum):
        raise NotImplementedError("reduce_sum launches block_sum, which still raises "
                                  "NotImplementedError")
    threads = check_power_of_two("THREADS", threads)
    require_own(reduce_sum, "reduce_sum")
    rng = np.random.default_rng(check_seed(seed))
    for n, blocks in reduce_cases(threads):
        x = _quarters(rng, n)
        where = f"reduce_sum(x, blocks={blocks}) on n={n}"
        (d_x,) = _inputs(x)
        with watched(where, _SUM_BOUNDS, verdict=False) as log, no_course_calls(where):
            value = reduce_sum(d_x.view, blocks)
        if value is None:
            raise AssertionError(f"{where} returned None (did you forget `return`?)")
        if np.size(value) != 1:
            raise AssertionError(f"{where} returned {np.size(value)} values (shape "
                                 f"{np.shape(value)}); return ONE number, the total")
        value = float(np.asarray(value).reshape(()))
        expected = float(x.astype(np.float64).sum())
        if value == expected:
            access_verdict(log, where)
            continue
        partial = block_sum_reference(x, blocks, threads)
        if blocks > 1 and value == partial[0]:
            hint = ("That is block 0's partial sum only: add the partial sums with a second "
                    "launch, block_sum[1, THREADS](partial, total).")
        elif abs(value) >= 1e20 or not math.isfinite(value):
            hint = "A thread read past the end of an array: " + _SUM_BOUNDS
        else:
            hint = ("Launch block_sum over x with `blocks` blocks of THREADS threads into "
                    "partial (blocks entries), then block_sum[1, THREADS](partial, total) "
                    "and return total's only element.")
        raise AssertionError(f"{where}: got {value:.6g}, expected {expected:.6g} (exact: the "
                             f"data are multiples of 1/4). {hint}")


# --------------------------------------------------------------------------- histogram
_HIST_BOUNDS = ("Count only i < data.size (the grid-stride loop's bound), and only into "
                "bins 0..NBINS-1.")


def histogram_reference(data: np.ndarray, nbins: int) -> np.ndarray:
    """``hist[v]`` = how many times the value ``v`` occurs, for v in 0..nbins-1 (int32)."""
    return np.bincount(data, minlength=nbins).astype(np.int32)


def histogram_cases(nbins: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """(data, blocks): every bin at least once plus hot bins (0 and the last) over three
    blocks; 37 random values over two blocks; the last bin's value alone. The full case
    comes first, so that the pattern of wrong bins tells one mistake from another."""
    every = np.arange(nbins)
    hot = np.concatenate([np.zeros(2 * nbins // 5 + 3, int),
                          np.full(2 * nbins // 5 + 4, nbins - 1)])
    spread = rng.integers(0, nbins, size=7 * nbins + 7)
    many = rng.permutation(np.concatenate([every, hot, spread]))
    return [(many, 3), (rng.integers(0, nbins, size=37), 2), (np.array([nbins - 1]), 1)]


def check_histogram(histogram_shared: Any, *, threads: int, nbins: int,
                    seed: int = 303) -> None:
    """``histogram_shared[blocks, THREADS](data, bins)`` adds the counts of the int32
    values in ``data`` (all in 0..NBINS-1) into ``bins`` (NBINS zeros at the start), through
    one histogram per block in shared memory."""
    kernel = _require_kernel(histogram_shared, "histogram_shared",
                             needs=("shared", "syncthreads", "atomic"))
    (threads,) = check_block(threads, name="THREADS")
    nbins = _int("NBINS", nbins)
    rng = np.random.default_rng(check_seed(seed))
    for values, blocks in histogram_cases(nbins, rng):
        data = values.astype(np.int32)
        where, log, got = _run_histogram(kernel, data, blocks, threads, nbins)
        expected = histogram_reference(data, nbins)
        if np.array_equal(got, expected):
            access_verdict(log, where)
            continue
        wrong = np.flatnonzero(got != expected)
        b = int(wrong[0])
        head = (f"{where}: {wrong.size} of {nbins} bins differ; first bins[{b}]: got "
                f"{got[b]}, expected {expected[b]}")
        raise AssertionError(f"{head}. {_histogram_hint(got, expected, wrong, threads, data)}")


def _run_histogram(kernel: Any, data: np.ndarray, blocks: int, threads: int,
                   nbins: int) -> tuple[str, Any, np.ndarray]:
    """Launch ``kernel[blocks, threads](data, bins)`` on guarded arrays: (where, the access
    checker's record, the counts)."""
    where = (f"histogram_shared on n={data.size} values with NBINS={nbins}, "
             f"{_config(blocks, threads)}")
    (d_data,) = _inputs(data)
    bins = _output((nbins,), np.int32)
    log = _launch(kernel, blocks, threads, (d_data.view, bins.view), where, _HIST_BOUNDS)
    return where, log, _fetch_output(bins, where, "bins", _HIST_BOUNDS)


def _histogram_hint(got: np.ndarray, expected: np.ndarray, wrong: np.ndarray, threads: int,
                    data: np.ndarray) -> str:
    nbins = expected.size
    last = (f"Only the last bin ({nbins - 1}) is wrong: an off-by-one at the end? Loops over "
            "the bins run up to NBINS (range(t, NBINS, cuda.blockDim.x)), and a value v is "
            "counted when v < NBINS, not v < NBINS - 1.")
    high = (f"Only bins >= {threads} (the block size) are wrong: NBINS = {nbins} is more than "
            "THREADS, so each thread must zero and publish bins t, t + THREADS, "
            "t + 2 * THREADS, ... (a loop, not one bin per thread).")
    if wrong.size == 1 and wrong[0] == nbins - 1:
        return last
    if nbins > threads and wrong.min() >= threads:
        return high
    total, n = int(got.sum()), data.size
    if total > n:
        return (f"{total} values were counted, but data holds {n}. Was the shared histogram "
                "zeroed before counting (shared memory starts with garbage; on the simulator "
                "it even keeps the previous block's counts), with a cuda.syncthreads() before "
                "the first count? Is each block's count added to bins only once?")
    if total < n:
        return (f"Only {total} of {n} values were counted. Count every element (grid stride: "
                "i += cuda.gridsize(1)) with cuda.atomic.add (local[v] += 1 loses increments "
                "when two threads hit the same bin), and publish after a cuda.syncthreads().")
    return ("The right number of values, in the wrong bins: count data[i] into bin "
            "data[i] itself, and add shared bin b into bins[b].")


# --------------------------------------------------------------------------- memory traffic
def simulator_only_check(name: str, points: float, run: Callable[[], Any]) -> bool:
    """A graded check that exists only on the CUDA simulator, where every access of the
    kernel is recorded: there ``run()`` is graded as ``scoring.check(name, points)``; on a
    GPU nothing is graded and one line says why (there the speed checks measure the same
    thing). Returns whether it was graded. The mirror of ``gpu_only_check``."""
    if not on_simulator():
        scoring.skipped(name, points, "graded on the CUDA simulator only: it counts every "
                        "global-memory access of the kernel, which only the simulator "
                        "records; on this GPU the speed check measures what the counts "
                        "predict.")
        return False
    with scoring.check(name, points=points):
        run()
    return True


def _traffic(log: Any, where: str, argument: int, label: str, *, write: bool,
             limit: int, why: str) -> None:
    """Fail if one element of the kernel's ``argument``-th array was read (or written) more
    than ``limit`` times by the threads of one block."""
    launch = log.last
    name = launch.arguments[argument]
    count, index, block = launch.most_per_block(name, write=write)
    if count > limit:
        most = launch.max_counts()
        raise AssertionError(
            f"{where}: {label}[{_fmt(index)}] was {'written' if write else 'read'} {count} "
            f"times in global memory by the threads of block {_fmt(block)}; at most {limit} "
            f"is enough. {why} (Most accesses by one thread: {most.global_reads} global "
            f"reads, {most.global_writes} global writes, {most.shared_reads} shared reads, "
            f"{most.shared_writes} shared writes.)")


def check_matmul_traffic(matmul_tiled: Any, *, tile: int, seed: int = 204) -> None:
    """Each element of A and B is loaded from global memory at most once by the threads
    of one block (a block serves one tile row of A and one tile column of B: it loads each
    of their elements once into shared memory, then reads it from there), and each element
    of C is written once. Counted on the simulator, on a 2 x 2 grid of tiles, 3 tiles deep."""
    kernel = _require_kernel(matmul_tiled, "matmul_tiled", needs=("shared", "syncthreads"))
    m, k, n = tile + 3, 2 * tile + 1, tile + 2
    rng = np.random.default_rng(check_seed(seed))
    A, B = _quarters(rng, (m, k), high=4), _quarters(rng, (k, n), high=4)
    grid, threads = matmul_grid(m, n, tile)
    where = f"matmul_tiled on ({m} x {k}) @ ({k} x {n}) with TILE={tile}"
    d_A, d_B = _inputs(A, B)
    C = _output((m, n))
    log = _launch(kernel, grid, threads, (d_A.view, d_B.view, C.view), where, _MATMUL_BOUNDS)
    got = _fetch_output(C, where, "C", _MATMUL_BOUNDS)
    _compare(where, "C", got, matmul_reference(A, B), "First pass the check `Tiled matmul`.")
    access_verdict(log, where)
    tiles = ("Load the tile once (sA[ty, tx] = A[row, k0 + tx], one element per thread), "
             "cuda.syncthreads(), then read it TILE times from shared memory.")
    _traffic(log, where, 0, "A", write=False, limit=1, why=tiles)
    _traffic(log, where, 1, "B", write=False, limit=1, why=tiles)
    _traffic(log, where, 2, "C", write=True, limit=1,
             why="Accumulate in a register (acc) and store C[row, col] once, after the loop.")


def check_block_sum_traffic(block_sum: Any, *, threads: int, seed: int = 304) -> None:
    """Each element of x is read from global memory once, and each block writes its
    partial sum once: the tree adds in shared memory, not in global memory."""
    kernel = _require_kernel(block_sum, "block_sum", needs=("shared", "syncthreads"))
    threads = check_power_of_two("THREADS", threads)
    n, blocks = 3 * 2 * threads + 5, 2
    x = _quarters(np.random.default_rng(check_seed(seed)), n)
    where = f"block_sum on n={n} with {_config(blocks, threads)}"
    (d_x,) = _inputs(x)
    partial = _output((blocks,))
    log = _launch(kernel, blocks, threads, (d_x.view, partial.view), where, _SUM_BOUNDS)
    got = _fetch_output(partial, where, "partial", _SUM_BOUNDS)
    _compare(where, "partial", got, block_sum_reference(x, blocks, threads),
             "First pass the check `Block sums with a shared-memory tree`.")
    access_verdict(log, where)
    _traffic(log, where, 0, "x", write=False, limit=1,
             why="Each thread reads its grid-stride share of x once, into a register.")
    _traffic(log, where, 1, "partial", write=True, limit=1,
             why="Only thread 0 writes the block's total, once, after the tree.")


def check_histogram_traffic(histogram_shared: Any, *, threads: int, nbins: int,
                            seed: int = 305) -> None:
    """Each value is read once, and each block adds into each global bin at most once:
    counting happens in the block's shared histogram, global memory sees one update per
    bin per block (global atomics on every value are what the shared histogram avoids)."""
    kernel = _require_kernel(histogram_shared, "histogram_shared",
                             needs=("shared", "syncthreads", "atomic"))
    (threads,) = check_block(threads, name="THREADS")
    nbins = _int("NBINS", nbins)
    rng = np.random.default_rng(check_seed(seed))
    data = np.concatenate([np.zeros(threads, int), rng.integers(0, nbins, 2 * nbins + 3)])
    data = rng.permutation(data).astype(np.int32)
    where, log, got = _run_histogram(kernel, data, 2, threads, nbins)
    if not np.array_equal(got, histogram_reference(data, nbins)):
        raise AssertionError(f"{where}: wrong counts; first pass the check "
                             "`Shared-memory histogram`")
    access_verdict(log, where)
    _traffic(log, where, 0, "data", write=False, limit=1,
             why="Each value is read once by the thread whose grid-stride loop reaches it.")
    _traffic(log, where, 1, "bins", write=True, limit=1,
             why="Count into the block's shared histogram; after a cuda.syncthreads(), add "
                 "each shared bin to the global bin once (one cuda.atomic.add per bin).")


# --------------------------------------------------------------------------- the picture
def access_picture(kernel: Any, which: str, *, threads: int = 4, block: Sequence[int] = (4, 4),
                   tile: int = 4, nbins: int = 8, color_by: str = "thread"):
    """Launch a lab kernel once at a small size under the access checker and draw which
    thread read and wrote each element (``gpu.sanitizer.Launch.plot``); simulator only.

    ``which``: "saxpy" (2 blocks of ``threads``, fewer threads than elements), "blur"
    (a 6 x 7 image, ``block``), "matmul" (``tile``), "block_sum" (``threads``, 2 blocks),
    "histogram" (``threads``, ``nbins``, 2 blocks). Returns the matplotlib figure.
    """
    from ..gpu import sanitizer

    kinds = ("saxpy", "blur", "matmul", "block_sum", "histogram")
    if which not in kinds:
        raise UsageError(f"which={which!r}: one of {', '.join(kinds)}")
    cuda = _cuda()
    rng = np.random.default_rng(0)
    if which == "saxpy":
        n = 2 * threads + 3
        x, y = _quarters(rng, n), _quarters(rng, n)
        grid, launch_block = 2, threads
        args = (np.float32(1.5), cuda.to_device(x), cuda.to_device(y),
                cuda.device_array(n, np.float32))
    elif which == "blur":
        block = check_block(tuple(block), name="(BLOCK_X, BLOCK_Y)")
        img = rng.random((6, 7), dtype=np.float32)
        grid, launch_block = grid_2d(img.shape, block)
        args = (cuda.to_device(img), cuda.device_array(img.shape, np.float32))
    elif which == "matmul":
        m, k, n = tile + 1, tile + 3, tile + 2
        grid, launch_block = matmul_grid(m, n, tile)
        args = (cuda.to_device(_quarters(rng, (m, k))), cuda.to_device(_quarters(rng, (k, n))),
                cuda.device_array((m, n), np.float32))
        color_by = "block"
    elif which == "block_sum":
        n = 2 * threads + threads // 2 + 1
        grid, launch_block = 2, threads
        args = (cuda.to_device(_quarters(rng, n)), cuda.device_array(2, np.float32))
    else:
        data = rng.integers(0, nbins, 2 * threads + 5).astype(np.int32)
        grid, launch_block = 2, threads
        args = (cuda.to_device(data), cuda.to_device(np.zeros(nbins, np.int32)))
    with sanitizer.watch() as log:
        kernel[grid, launch_block](*args)
    return log.last.plot(color_by=color_by, max_elements=4096)
