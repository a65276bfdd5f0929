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
    for key in ("sgd_n", "sgd_blocks", "image_rows", "image_cols", "speed_n", "repeats",
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
    for key in ("blocks", "amax_n", "hist_n", "repeats", "launches"):
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
                      far_hint: str, log: Any = None) -> None:
    """Fail on entries still NaN (never written) or huge (a read past an input's end).

    Shared memory that no thread wrote holds whatever was there (NaN, a huge number, a
    previous block's values): with the access checker's record ``log``, a NaN or huge
    entry is first put to the checker, which names an uninitialised shared read or a race
    where there was one, instead of blaming an unwritten output or an input's end."""
    if not np.all(np.abs(got) < 1e20):  # NaN or huge: ask the access checker first
        access_verdict(log, where)
    if np.isnan(got).any():
        first = _first(np.isnan(got))
        count = int(np.isnan(got).sum())
        raise AssertionError(f"{where}: {name}[{_fmt(first)}] was never written ({count} of "
                             f"{got.size} entries still hold the NaN the check filled them "
                             f"with). {unwritten_hint}")
    _far(where, name, got, far_hint)


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


# --------------------------------------------------------------------------- SGD momentum
_SGD_BOUNDS = ("Did you forget the bounds guard? The grid is rounded up to whole blocks, "
               "so the last threads must not touch memory: loop while i < w.size.")
_GRID_STRIDE = ("Start at cuda.grid(1); the grid-stride step must be cuda.gridsize(1), the "
                "number of threads in the whole grid (gridDim.x * blockDim.x).")
SGD_LR, SGD_MOMENTUM = 0.25, 0.5  # powers of two: every update below is exact in float32


def sgd_momentum_reference(lr: float, momentum: float, w: np.ndarray, g: np.ndarray,
                           v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of ``torch.optim.SGD(momentum=momentum)`` (no dampening, no Nesterov, no
    weight decay), in float32: ``v = momentum * v + g``, then ``w = w - lr * v`` with the
    *new* v. Returns (w, v); the inputs are not changed."""
    f32 = np.float32
    v_new = (f32(momentum) * v.astype(f32) + g.astype(f32)).astype(f32)
    w_new = (w.astype(f32) - f32(lr) * v_new).astype(f32)
    return w_new, v_new


def sgd_cases(threads: int) -> list[tuple[int, int]]:
    """(n, blocks): one element; one thread per element with idle threads in the last
    block; about ten elements per thread over two blocks (the grid-stride case)."""
    n_many = 10 * 2 * threads + 3
    return [(1, grid_1d(1, threads)[0]), (37, grid_1d(37, threads)[0]), (n_many, 2)]


def check_sgd_momentum(sgd_momentum: Any, *, threads: int, seed: int = 201) -> None:
    """``sgd_momentum[blocks, threads](lr, momentum, w, g, v)`` takes one SGD step with
    momentum in place, element by element (``sgd_momentum_reference``), with any number of
    blocks, including far fewer threads than elements."""
    kernel = _require_kernel(sgd_momentum, "sgd_momentum")
    (threads,) = check_block(threads, name="THREADS")
    rng = np.random.default_rng(check_seed(seed))
    lr, momentum = np.float32(SGD_LR), np.float32(SGD_MOMENTUM)
    for n, blocks in sgd_cases(threads):
        w0 = _quarters(rng, n, denominator=8.0)
        g = _quarters(rng, n, denominator=8.0)
        v0 = _quarters(rng, n, low=0, denominator=8.0)
        w_expected, v_expected = sgd_momentum_reference(lr, momentum, w0, g, v0)
        where = (f"sgd_momentum on n={n} with {_config(blocks, threads)} (lr={lr:g}, "
                 f"momentum={momentum:g})")
        d_w, d_g, d_v = _inputs(w0, g, v0)
        log = _launch(kernel, blocks, threads, (lr, momentum, d_w.view, d_g.view, d_v.view),
                      where, _SGD_BOUNDS)
        w = _fetch_output(d_w, where, "w", _SGD_BOUNDS)
        v = _fetch_output(d_v, where, "v", _SGD_BOUNDS)
        _far(where, "w", w, _SGD_BOUNDS)
        _far(where, "v", v, _SGD_BOUNDS)
        _check_steps(where, w, v, lr, momentum, w0, g, v0, many=blocks * threads < n)
        _compare(where, "v", v, v_expected, "Expected v[i] = momentum * v[i] + g[i].")
        _compare(where, "w", w, w_expected,
                 "v is right but w is not: w[i] = w[i] - lr * v[i] uses the NEW v[i] "
                 "(update v first, then w, as torch.optim.SGD does).")
        access_verdict(log, where)


def _far(where: str, name: str, got: np.ndarray, hint: str) -> None:
    """Fail on huge entries: a read past an input's end (the check puts 1e30 there)."""
    huge = ~(np.abs(got) < 1e20)
    if huge.any():
        first = _first(huge)
        raise AssertionError(f"{where}: {name}[{_fmt(first)}] = {got[first]:.3g}: a thread "
                             "read past the end of an input (the check puts 1e30 just after "
                             f"each one). {hint}")


def _check_steps(where: str, w: np.ndarray, v: np.ndarray, lr: np.float32,
                 momentum: np.float32, w0: np.ndarray, g: np.ndarray, v0: np.ndarray, *,
                 many: bool) -> None:
    """Name elements that took no step, or two steps (two threads updated them)."""
    untouched = (w == w0) & (v == v0)
    if untouched.any():
        i = _first(untouched)[0]
        why = (f"There are fewer threads than elements, so each thread must handle several. "
               f"{_GRID_STRIDE}") if many else _SGD_BOUNDS
        raise AssertionError(f"{where}: element {i} never took its step (w[{i}] and v[{i}] "
                             f"still hold their old values; {int(untouched.sum())} of "
                             f"{w.size} elements untouched). {why}")
    w1, v1 = sgd_momentum_reference(lr, momentum, w0, g, v0)
    w2, v2 = sgd_momentum_reference(lr, momentum, w1, g, v1)
    twice = (w == w2) & (v == v2) & ((w != w1) | (v != v1))
    if twice.any():
        i = _first(twice)[0]
        raise AssertionError(
            f"{where}: element {i} took two steps: two threads updated it "
            f"({int(twice.sum())} elements). {_GRID_STRIDE} A step of cuda.blockDim.x makes "
            "the blocks overlap.")

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
            "Clamp each neighbour's row into 0..rows-1 and column into 0..cols-1.", log)
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


# --------------------------------------------------------------------------- linear layer
_LINEAR_BOUNDS = ("Guard the store (row < M and col < N) and load 0.0 into the tiles for "
                  "elements outside X or W.")
_SYNC = ("Missing cuda.syncthreads()? One after loading the tiles (before anyone reads "
         "them) and one after using them (before the next loads overwrite them).")


def linear_reference(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X @ W.T + b`` in float64: ``torch.nn.functional.linear(X, W, b)``, with W stored
    as PyTorch stores a Linear layer's weight, (out_features, in_features)."""
    return X.astype(np.float64) @ W.astype(np.float64).T + b.astype(np.float64)


def matmul_grid(m: int, n: int, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """One ``tile`` x ``tile`` block per tile of an m x n output: x along columns."""
    check_block((tile, tile), name="(TILE, TILE)")
    return (blocks_for(n, tile), blocks_for(m, tile)), (tile, tile)


def _linear_operands(rng: np.random.Generator, m: int, k: int, n: int):
    return (_quarters(rng, (m, k), high=4), _quarters(rng, (n, k), high=4),
            _quarters(rng, n, high=4))


def check_linear_tiled(linear_tiled: Any, *, tile: int, seed: int = 203) -> None:
    """``linear_tiled[grid, (TILE, TILE)](X, W, b, Y)`` computes ``Y = X @ W.T + b`` (a
    Linear layer's forward pass, W of shape (N, K)) through shared-memory tiles, on odd
    shapes (K above and below TILE)."""
    kernel = _require_kernel(linear_tiled, "linear_tiled", needs=("shared", "syncthreads"))
    rng = np.random.default_rng(check_seed(seed))
    for m, k, n in MATMUL_SHAPES:
        X, W, b = _linear_operands(rng, m, k, n)
        grid, threads = matmul_grid(m, n, tile)
        where = (f"linear_tiled on X ({m} x {k}), W ({n} x {k}), b ({n}) with TILE={tile}, "
                 f"{_config(grid, threads)}")
        d_X, d_W, d_b = _inputs(X, W, b)
        Y = _output((m, n))
        log = _launch(kernel, grid, threads, (d_X.view, d_W.view, d_b.view, Y.view), where,
                      _LINEAR_BOUNDS)
        got = _fetch_output(Y, where, "Y", _LINEAR_BOUNDS)
        _unwritten_or_far(where, "Y", got, (
            "Each thread writes Y[row, col] with row = blockIdx.y * TILE + threadIdx.y and "
            "col = blockIdx.x * TILE + threadIdx.x, after the loop over all the tiles."),
            "Load 0.0 into the tiles for every element outside X (row >= M or k >= K) or "
            "outside W (its row >= N or k >= K).", log)
        expected = linear_reference(X, W, b)
        _compare(where, "Y", got, expected, _linear_hint(X, W, b, got, tile))
        access_verdict(log, where)


def _linear_hint(X: np.ndarray, W: np.ndarray, b: np.ndarray, got: np.ndarray,
                 tile: int) -> str:
    if np.array_equal(got, linear_reference(X, W, 0 * b).astype(np.float32)):
        return "Y is X @ W.T without the bias: add b[col] once, when storing Y[row, col]."
    first_tile = linear_reference(X[:, :tile], W[:, :tile], b)
    if X.shape[1] > tile and np.array_equal(got, first_tile.astype(np.float32)):
        return (f"Y holds only the first tile's products (k < {tile}): loop over every tile, "
                "for k0 in range(0, K, TILE).")
    return (f"{_SYNC} Check also the tile indices: W is (N, K), so the tile of W for the "
            "block's columns holds W[blockIdx.x * TILE + ty, k0 + tx] in sW[ty, tx], and "
            "Y[row, col] adds sX[ty, j] * sW[tx, j] over j.")


def check_linear_speed(linear_tiled: Any, linear_naive: Any, *, tile: int, n: int = 2048,
                       min_speedup: float = 3.0, naive_block: Sequence[int] = (16, 16),
                       warmup: int = 2, repeats: int = 10, seed: int = 204,
                       result: dict[str, Any] | None = None) -> float:
    """On a GPU: the tiled layer on n x n operands agrees with the naive one and is at
    least ``min_speedup`` times faster (medians of ``repeats`` timed launches, at least 3,
    after ``warmup`` untimed ones and a first launch of each that compiles and is checked).
    Returns the speed-up; ``result`` (a dict) receives the timings before the speed-up is
    asserted."""
    from ..timing import benchmark, gflops, matmul_flop

    kernel = _require_kernel(linear_tiled, "linear_tiled", needs=("shared", "syncthreads"))
    cuda = _cuda()
    rng = np.random.default_rng(check_seed(seed))
    X = rng.standard_normal((n, n), dtype=np.float32)
    W = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    d_X, d_W, d_b = cuda.to_device(X), cuda.to_device(W), cuda.to_device(b)
    d_naive, d_tiled = (cuda.device_array((n, n), np.float32),
                        cuda.device_array((n, n), np.float32))
    naive_grid, naive_threads = grid_2d((n, n), tuple(naive_block))
    tiled_grid, tiled_threads = matmul_grid(n, n, tile)

    def run_naive() -> None:
        linear_naive[naive_grid, naive_threads](d_X, d_W, d_b, d_naive)

    def run_tiled() -> None:
        kernel[tiled_grid, tiled_threads](d_X, d_W, d_b, d_tiled)

    run_naive()
    run_tiled()
    where = f"linear_tiled at {n} x {n} (TILE={tile})"
    _compare(where, "Y", d_tiled.copy_to_host(), d_naive.copy_to_host(),
             "It disagrees with linear_naive on this large layer.", rtol=1e-4,
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
            f"for linear_naive, {speedup:.2f}x faster; needs at least {min_speedup:g}x. "
            "Does each thread load ONE element of each tile per step, with neighbouring "
            "threads (tx) on neighbouring addresses (sX[ty, tx] = X[row, k0 + tx] and "
            "sW[ty, tx] = W[blockIdx.x * TILE + ty, k0 + tx])? Is the W tile padded to "
            "TILE + 1 columns (without it, reading sW[tx, j] down a column puts several "
            "threads of a warp on one bank: lesson 08)? "
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
_AMAX_BOUNDS = ("Did you forget the bounds guard in the grid-stride loop (i < x.size)? Or "
                "does a thread index cache[] or partial[] past its end?")


def reduce_cases(threads: int) -> list[tuple[int, int]]:
    """(n, blocks): one element in a whole block; fewer elements than threads over two
    blocks; about five elements per thread over three blocks."""
    return [(1, 1), (37, 2), (5 * 3 * threads + 7, 3)]


def thread_shares(x: np.ndarray, blocks: int, threads: int, *, op: str = "amax") -> np.ndarray:
    """What each thread g of the grid reduces: ``x[g], x[g + G], ...``, G = blocks * threads,
    combined with ``op``: "amax" (the largest absolute value; 0 for a thread without an
    element) or "sum"."""
    size = blocks * threads
    padded = np.zeros(blocks_for(max(x.size, 1), size) * size)
    padded[:x.size] = x
    rows = padded.reshape(-1, size)
    if op == "sum":
        return rows.sum(axis=0)
    if op == "amax":
        return np.abs(rows).max(axis=0)
    raise UsageError(f"op={op!r}: 'amax' or 'sum'")


def block_amax_reference(x: np.ndarray, blocks: int, threads: int) -> np.ndarray:
    """``partial[b]``: the largest |x[i]| over the shares of threads ``b*threads`` to
    ``(b+1)*threads - 1`` (0 when they hold no element)."""
    return thread_shares(x, blocks, threads).reshape(blocks, threads).max(axis=1)


def amax_data(rng: np.random.Generator, n: int, blocks: int, threads: int) -> np.ndarray:
    """n random multiples of 1/4 in +-[1/4, 16], and in the share of every block b that
    holds elements one NEGATIVE peak, -(17 + b): every block's amax is its own, the largest
    sits in the last block with elements (a one-pass answer misses it), and a max without
    abs() is wrong in every block, whatever the seed."""
    x = _quarters(rng, n, high=64)
    size = blocks * threads
    owner = (np.arange(n) % size) // threads  # the block whose thread reaches element i
    for b in range(blocks):
        mine = np.flatnonzero(owner == b)
        if mine.size:
            x[rng.choice(mine)] = np.float32(-(17 + b))
    return x


def check_block_amax(block_amax: Any, *, threads: int, seed: int = 301) -> None:
    """``block_amax[blocks, THREADS](x, partial)`` writes the largest absolute value of
    block b's grid-stride shares of ``x`` to ``partial[b]``, through a tree in shared
    memory."""
    kernel = _require_kernel(block_amax, "block_amax", needs=("shared", "syncthreads"))
    threads = check_power_of_two("THREADS", threads)
    rng = np.random.default_rng(check_seed(seed))
    for n, blocks in reduce_cases(threads):
        x = amax_data(rng, n, blocks, threads)
        where = f"block_amax on n={n} with {_config(blocks, threads)}"
        (d_x,) = _inputs(x)
        partial = _output((blocks,))
        log = _launch(kernel, blocks, threads, (d_x.view, partial.view), where, _AMAX_BOUNDS)
        got = _fetch_output(partial, where, "partial", "partial has one entry per block.")
        _unwritten_or_far(where, "partial", got, (
            "Thread 0 of each block writes the block's result to partial[cuda.blockIdx.x], "
            "after the tree."), _AMAX_BOUNDS, log)
        expected = block_amax_reference(x, blocks, threads)
        _compare(where, "partial", got, expected,
                 _amax_hint(x, got, expected, blocks, threads))
        access_verdict(log, where)


def _amax_hint(x: np.ndarray, got: np.ndarray, expected: np.ndarray, blocks: int,
               threads: int) -> str:
    shares = thread_shares(x, blocks, threads).reshape(blocks, threads)
    size = blocks * threads
    if np.array_equal(got, thread_shares(x, blocks, threads, op="sum")
                      .reshape(blocks, threads).sum(axis=1)):
        return ("Those are the blocks' sums (lesson 09's reduction): this lab wants the "
                "largest absolute value, max(|x[i]|), combined with max, not +.")
    signed = np.zeros(blocks_for(max(x.size, 1), size) * size)
    signed[:x.size] = x
    if np.array_equal(got, signed.reshape(-1, size).max(axis=0).reshape(blocks, -1)
                      .max(axis=1)):
        return "That is the largest value, not the largest ABSOLUTE value: use abs(x[i])."
    one_each = np.zeros(size)
    one_each[:min(x.size, size)] = np.abs(x[:size])
    if x.size > size and np.array_equal(got, one_each.reshape(blocks, -1).max(1)):
        return (f"Each thread looked at only one element, but {size} threads cover "
                f"{x.size}: first loop over i = cuda.grid(1), i + cuda.gridsize(1), ... "
                "(grid stride), then reduce the block.")
    if np.array_equal(got, shares[:, 0]):
        return ("partial[b] holds only thread 0's own share: the tree must combine all "
                "THREADS values of the block (step = THREADS // 2, then halve it down to 1).")
    if blocks > 1 and got.max() == expected.max():
        return ("The largest value is right but the blocks are split differently: block b "
                "reduces the shares of threads b * THREADS to (b + 1) * THREADS - 1, and "
                "thread g of the grid looks at x[g], x[g + cuda.gridsize(1)], ...")
    return ("Does every thread write cache[t] (0.0 when it has no element: |x| >= 0), with "
            f"a cuda.syncthreads() after that and after every halving step? {_SYNC_SIM}")


_SYNC_SIM = ("(The simulator starts a block's threads one after another, so a missing "
             "barrier shows as wrong values here too.)")


def check_reduce_amax(reduce_amax: Callable[[Any, int], Any], *, threads: int,
                      block_amax: Any = None, seed: int = 302) -> None:
    """``reduce_amax(x, blocks)`` returns ``max(|x|)`` of a device array, as one number.

    ``block_amax``, the kernel it launches, is reported as not implemented first if it is
    (on a GPU its placeholder ``raise`` would be compiled away and return garbage).
    """
    if block_amax is not None and not implemented(block_amax):
        raise NotImplementedError("reduce_amax launches block_amax, which still raises "
                                  "NotImplementedError")
    threads = check_power_of_two("THREADS", threads)
    require_own(reduce_amax, "reduce_amax")
    rng = np.random.default_rng(check_seed(seed))
    for n, blocks in reduce_cases(threads):
        x = amax_data(rng, n, blocks, threads)
        where = f"reduce_amax(x, blocks={blocks}) on n={n}"
        (d_x,) = _inputs(x)
        with watched(where, _AMAX_BOUNDS, verdict=False) as log, no_course_calls(where):
            value = reduce_amax(d_x.view, blocks)
        if value is None:
            raise AssertionError(f"{where} returned None (did you forget `return`?)")
        if np.size(value) != 1:
            raise AssertionError(f"{where} returned {np.size(value)} values (shape "
                                 f"{np.shape(value)}); return ONE number, max(|x|)")
        value = float(np.asarray(value).reshape(()))
        expected = float(np.abs(x).max())
        if value == expected:
            access_verdict(log, where)
            continue
        partial = block_amax_reference(x, blocks, threads)
        if blocks > 1 and value == partial[0]:
            hint = ("That is block 0's result only: combine the blocks' results with a "
                    "second launch, block_amax[1, THREADS](partial, result).")
        elif abs(value) >= 1e20 or not math.isfinite(value):
            hint = "A thread read past the end of an array: " + _AMAX_BOUNDS
        else:
            hint = ("Launch block_amax over x with `blocks` blocks of THREADS threads into "
                    "partial (blocks entries), then block_amax[1, THREADS](partial, result) "
                    "and return result's only element.")
        raise AssertionError(f"{where}: got {value:.6g}, expected {expected:.6g} (exact: "
                             f"the largest |x[i]|). {hint}")

# --------------------------------------------------------------------------- histogram
_HIST_BOUNDS = ("Count only i < data.size (the grid-stride loop's bound), and only the "
                "values bin_index maps into 0..NBINS-1 (it returns -1 for the others).")
HIST_LO, HIST_INV_WIDTH = -2.0, 4.0  # the checks' bins: [-2, -1.75), [-1.75, -1.5), ...


def bin_of(values: np.ndarray, lo: float, inv_width: float, nbins: int) -> np.ndarray:
    """Each value's bin, in float32 as the lab's ``bin_index`` computes it:
    ``t = (v - lo) * inv_width``; the bin is ``int(t)`` when ``0 <= t < nbins``, else -1
    (below the range, at or above its end, or NaN)."""
    t = (values.astype(np.float32) - np.float32(lo)) * np.float32(inv_width)
    inside = (t >= 0) & (t < nbins)
    return np.where(inside, np.floor(np.where(inside, t, 0)), -1).astype(np.int64)


def histogram_reference(data: np.ndarray, nbins: int, lo: float = HIST_LO,
                        inv_width: float = HIST_INV_WIDTH) -> np.ndarray:
    """``hist[b]`` = how many values fall in bin b, ``[lo + b / inv_width,
    lo + (b + 1) / inv_width)``, for b in 0..nbins-1; values outside are not counted (int32).
    For values away from the edges this is ``np.histogram(data, nbins, (lo, hi))``."""
    bins = bin_of(data, lo, inv_width, nbins)
    return np.bincount(bins[bins >= 0], minlength=nbins).astype(np.int32)


def histogram_values(bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 values that fall in the given bins of the checks' range (bin -1: below the
    range, bin NBINS or more: above it): the bin's left edge (exact in float32) or a point
    inside the bin, multiples of 1/32."""
    offset = rng.integers(0, 8, size=bins.shape) / 32.0  # 0 (the edge) .. 7/32 < 1/4
    return (HIST_LO + bins / HIST_INV_WIDTH + offset).astype(np.float32)


def histogram_cases(nbins: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """(data, blocks): every bin at least once plus hot bins (0 and the last) and values
    outside the range (below it, exactly at its end, far above) over three blocks; 37
    random values over two blocks; the last bin's value alone. The full case comes first,
    so that the pattern of wrong bins tells one mistake from another."""
    every = np.arange(nbins)
    hot = np.concatenate([np.zeros(2 * nbins // 5 + 3, int),
                          np.full(2 * nbins // 5 + 4, nbins - 1)])
    outside = np.array([-1, -3, nbins, nbins, nbins + 5, -40])
    spread = rng.integers(0, nbins, size=7 * nbins + 7)
    many = rng.permutation(np.concatenate([every, hot, outside, spread]))
    return [(histogram_values(many, rng), 3),
            (histogram_values(rng.integers(-2, nbins + 2, size=37), rng), 2),
            (histogram_values(np.array([nbins - 1]), rng), 1)]


def check_histogram(histogram_shared: Any, *, threads: int, nbins: int,
                    seed: int = 303) -> None:
    """``histogram_shared[blocks, THREADS](data, lo, inv_width, bins)`` adds the counts of
    the float32 values in ``data`` per bin (``histogram_reference``; values outside the
    range are not counted) into ``bins`` (NBINS zeros at the start), through one histogram
    per block in shared memory."""
    kernel = _require_kernel(histogram_shared, "histogram_shared",
                             needs=("shared", "syncthreads", "atomic"))
    (threads,) = check_block(threads, name="THREADS")
    nbins = _int("NBINS", nbins)
    rng = np.random.default_rng(check_seed(seed))
    for data, blocks in histogram_cases(nbins, rng):
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
    """Launch ``kernel[blocks, threads](data, lo, inv_width, bins)`` on guarded arrays:
    (where, the access checker's record, the counts)."""
    where = (f"histogram_shared on n={data.size} values with NBINS={nbins} (lo={HIST_LO:g}, "
             f"inv_width={HIST_INV_WIDTH:g}), {_config(blocks, threads)}")
    (d_data,) = _inputs(data)
    bins = _output((nbins,), np.int32)
    log = _launch(kernel, blocks, threads, (d_data.view, np.float32(HIST_LO),
                                            np.float32(HIST_INV_WIDTH), bins.view),
                  where, _HIST_BOUNDS)
    return where, log, _fetch_output(bins, where, "bins", _HIST_BOUNDS)


def _histogram_hint(got: np.ndarray, expected: np.ndarray, wrong: np.ndarray, threads: int,
                    data: np.ndarray) -> str:
    nbins = expected.size
    last = (f"Only the last bin ({nbins - 1}) is wrong: an off-by-one at the end? Loops over "
            "the bins run up to NBINS (range(t, NBINS, cuda.blockDim.x)).")
    high = (f"Only bins >= {threads} (the block size) are wrong: NBINS = {nbins} is more than "
            "THREADS, so each thread must zero and publish bins t, t + THREADS, "
            "t + 2 * THREADS, ... (a loop, not one bin per thread).")
    if wrong.size == 1 and wrong[0] == nbins - 1:
        return last
    if nbins > threads and wrong.min() >= threads:
        return high
    total, n = int(got.sum()), int(expected.sum())
    outside = data.size - n
    if total > n:
        return (f"{total} values were counted, but {n} of the {data.size} values are inside "
                f"the range ({outside} are outside: skip them, bin_index returns -1). Was "
                "the shared histogram zeroed before counting (shared memory starts with "
                "garbage; on the simulator it even keeps the previous block's counts), with "
                "a cuda.syncthreads() before the first count? Is each block's count added to "
                "bins only once?")
    if total < n:
        return (f"Only {total} of the {n} values inside the range were counted. Count every "
                "element (grid stride: i += cuda.gridsize(1)) with cuda.atomic.add (local[b] "
                "+= 1 loses increments when two threads hit the same bin), and publish after "
                "a cuda.syncthreads().")
    return ("The right number of values, in the wrong bins: count data[i] into bin "
            "bin_index(data[i], lo, inv_width), and add shared bin b into bins[b].")

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
    """Fail if one element of the kernel's ``argument``-th *array* argument (scalars are
    not counted) was read (or written) more than ``limit`` times by the threads of one
    block."""
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


def check_linear_traffic(linear_tiled: Any, *, tile: int, seed: int = 204) -> None:
    """Each element of X and W is loaded from global memory at most once by the threads
    of one block (a block serves one tile row of X and one tile of rows of W: it loads each
    of their elements once into shared memory, then reads it from there), and each element
    of Y is written once. Counted on the simulator, on a 2 x 2 grid of tiles, 3 tiles deep."""
    kernel = _require_kernel(linear_tiled, "linear_tiled", needs=("shared", "syncthreads"))
    m, k, n = tile + 3, 2 * tile + 1, tile + 2
    rng = np.random.default_rng(check_seed(seed))
    X, W, b = _linear_operands(rng, m, k, n)
    grid, threads = matmul_grid(m, n, tile)
    where = f"linear_tiled on X ({m} x {k}), W ({n} x {k}) with TILE={tile}"
    d_X, d_W, d_b = _inputs(X, W, b)
    Y = _output((m, n))
    log = _launch(kernel, grid, threads, (d_X.view, d_W.view, d_b.view, Y.view), where,
                  _LINEAR_BOUNDS)
    got = _fetch_output(Y, where, "Y", _LINEAR_BOUNDS)
    _compare(where, "Y", got, linear_reference(X, W, b),
             "First pass the check `Tiled linear layer in shared memory`.")
    access_verdict(log, where)
    tiles = ("Load each tile once (one element of X and one of W per thread and step), "
             "cuda.syncthreads(), then read it TILE times from shared memory.")
    _traffic(log, where, 0, "X", write=False, limit=1, why=tiles)
    _traffic(log, where, 1, "W", write=False, limit=1, why=tiles)
    _traffic(log, where, 3, "Y", write=True, limit=1,
             why="Accumulate in a register (acc) and store Y[row, col] once, after the loop.")


def check_block_amax_traffic(block_amax: Any, *, threads: int, seed: int = 304) -> None:
    """Each element of x is read from global memory once, and each block writes its
    result once: the tree works in shared memory, not in global memory."""
    kernel = _require_kernel(block_amax, "block_amax", needs=("shared", "syncthreads"))
    threads = check_power_of_two("THREADS", threads)
    n, blocks = 3 * 2 * threads + 5, 2
    x = amax_data(np.random.default_rng(check_seed(seed)), n, blocks, threads)
    where = f"block_amax on n={n} with {_config(blocks, threads)}"
    (d_x,) = _inputs(x)
    partial = _output((blocks,))
    log = _launch(kernel, blocks, threads, (d_x.view, partial.view), where, _AMAX_BOUNDS)
    got = _fetch_output(partial, where, "partial", _AMAX_BOUNDS)
    _compare(where, "partial", got, block_amax_reference(x, blocks, threads),
             "First pass the check `Block amax with a shared-memory tree`.")
    access_verdict(log, where)
    _traffic(log, where, 0, "x", write=False, limit=1,
             why="Each thread reads its grid-stride share of x once, into a register.")
    _traffic(log, where, 1, "partial", write=True, limit=1,
             why="Only thread 0 writes the block's result, once, after the tree.")


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
    # every bin at least once (a lost last bin shows whatever the seed), bin 0 hot
    which = np.concatenate([np.zeros(threads, int), np.arange(nbins),
                            rng.integers(0, nbins, nbins + 3)])
    data = histogram_values(rng.permutation(which), rng)
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

    ``which``: "sgd_momentum" (2 blocks of ``threads``, fewer threads than elements),
    "blur" (a 6 x 7 image, ``block``), "linear" (``tile``), "block_amax" (``threads``, 2
    blocks), "histogram" (``threads``, ``nbins``, 2 blocks). Returns the matplotlib figure.
    """
    from ..gpu import sanitizer

    kinds = ("sgd_momentum", "blur", "linear", "block_amax", "histogram")
    if which not in kinds:
        raise UsageError(f"which={which!r}: one of {', '.join(kinds)}")
    cuda = _cuda()
    rng = np.random.default_rng(0)
    if which == "sgd_momentum":
        n = 2 * threads + 3
        w, g, v = (_quarters(rng, n) for _ in range(3))
        grid, launch_block = 2, threads
        args = (np.float32(SGD_LR), np.float32(SGD_MOMENTUM), cuda.to_device(w),
                cuda.to_device(g), cuda.to_device(v))
    elif which == "blur":
        block = check_block(tuple(block), name="(BLOCK_X, BLOCK_Y)")
        img = rng.random((6, 7), dtype=np.float32)
        grid, launch_block = grid_2d(img.shape, block)
        args = (cuda.to_device(img), cuda.device_array(img.shape, np.float32))
    elif which == "linear":
        m, k, n = tile + 1, tile + 3, tile + 2
        grid, launch_block = matmul_grid(m, n, tile)
        args = (*(cuda.to_device(a) for a in _linear_operands(rng, m, k, n)),
                cuda.device_array((m, n), np.float32))
        color_by = "block"
    elif which == "block_amax":
        n = 2 * threads + threads // 2 + 1
        grid, launch_block = 2, threads
        args = (cuda.to_device(_quarters(rng, n)), cuda.device_array(2, np.float32))
    else:
        data = histogram_values(rng.integers(0, nbins, 2 * threads + 5), rng)
        grid, launch_block = 2, threads
        args = (cuda.to_device(data), np.float32(HIST_LO), np.float32(HIST_INV_WIDTH),
                cuda.to_device(np.zeros(nbins, np.int32)))
    with sanitizer.watch() as log:
        kernel[grid, launch_block](*args)
    return log.last.plot(color_by=color_by, max_elements=4096)
