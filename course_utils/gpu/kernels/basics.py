"""Lesson 07's CUDA kernels: index maps, SAXPY, a grid-stride loop, copy, a 2-D box blur.

Each kernel is a plain Numba ``@cuda.jit`` function, shown in the lesson with
``course_utils.show_source`` and launched either directly (``kernel[blocks, threads](...)``
with a configuration from ``course_utils.gpu.launch``) or through the small ``run_*`` host
wrappers below. The wrappers validate the launch configuration (a zero, negative or too
large block size is a ``UsageError``, not a crash or a hang), check shapes, and move host
arrays to the device and back explicitly, so a caller can pass NumPy arrays (a result comes
back as a NumPy array) or device arrays (the result stays on the device, nothing is copied:
what the timed loops of lessons 07 and 10 need).

Conventions (the CUDA ones): ``x`` runs along columns, the fastest-varying index of a
C-ordered array, so neighbouring threads of a warp touch neighbouring addresses; ``y`` runs
along rows. Every kernel has a bounds guard, because grids are rounded up to whole blocks.

Import this module only after ``course_utils.setup()`` (it imports ``numba.cuda``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import cuda

from ...errors import UsageError
from .. import launch

# --------------------------------------------------------------------------- kernels


@cuda.jit
def index_1d(global_id, block_id, thread_id):
    """Each thread writes its global index, its block index and its index in the block."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x  # the same as cuda.grid(1)
    if i < global_id.size:  # bounds guard: the last block may reach past the end
        global_id[i] = i
        block_id[i] = cuda.blockIdx.x
        thread_id[i] = cuda.threadIdx.x


@cuda.jit
def index_2d(row_id, col_id, block_id):
    """Each thread of a 2-D grid writes its (row, col) and the linear number of its block."""
    col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x  # x runs along columns
    row = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y  # y runs along rows
    if row < row_id.shape[0] and col < row_id.shape[1]:
        row_id[row, col] = row
        col_id[row, col] = col
        block_id[row, col] = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x


@cuda.jit
def fill_unguarded(out, value):
    """WRONG on purpose: no bounds guard. Threads past the end write past the end."""
    i = cuda.grid(1)
    out[i] = value


@cuda.jit
def saxpy(a, x, y, out):
    """out = a * x + y, one element per thread (``out`` may be ``y``: in place)."""
    i = cuda.grid(1)  # blockIdx.x * blockDim.x + threadIdx.x
    if i < out.size:  # bounds guard
        out[i] = a * x[i] + y[i]


@cuda.jit
def saxpy_grid_stride(a, x, y, out):
    """out = a * x + y with a grid-stride loop: any grid size covers any n."""
    start = cuda.grid(1)
    stride = cuda.gridsize(1)  # gridDim.x * blockDim.x: threads in the whole grid
    for i in range(start, out.size, stride):
        out[i] = a * x[i] + y[i]


@cuda.jit
def copy(src, dst):
    """dst = src, one element per thread: the bandwidth reference (2 x 4 bytes each)."""
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i]


@cuda.jit
def blur(img, out):
    """3x3 box blur: each pixel becomes the mean of its neighbours *inside* the image.

    Interior pixels average 9 values, edge pixels 6, corner pixels 4 (no padding, no
    clamping): exactly ``blur_reference``.
    """
    col, row = cuda.grid(2)  # x along columns, y along rows
    rows, cols = img.shape
    if row < rows and col < cols:
        total = np.float32(0.0)  # float32 sums: a Python 0.0 would make them float64
        count = 0
        for r in range(max(row - 1, 0), min(row + 2, rows)):
            for c in range(max(col - 1, 0), min(col + 2, cols)):
                total += img[r, c]
                count += 1
        out[row, col] = total / np.float32(count)


# ------------------------------------------------------------------- NumPy references


def saxpy_reference(a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """a * x + y in float32, like the kernel."""
    return (np.float32(a) * np.asarray(x, np.float32) + np.asarray(y, np.float32)).astype(
        np.float32)


def blur_reference(img: np.ndarray) -> np.ndarray:
    """The 3x3 box blur of ``blur``, vectorised: at each pixel the sum of the in-image
    pixels of its 3x3 neighbourhood divided by how many there are (9, 6 or 4).

    Computed in float64 (sums of zero-padded shifted copies, and the same for a field of
    ones to count the neighbours), returned as float32.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise UsageError(f"blur_reference needs a 2-D image, got shape {img.shape}")
    rows, cols = img.shape
    padded = np.pad(img, 1)
    ones = np.pad(np.ones_like(img), 1)
    total = np.zeros_like(img)
    count = np.zeros_like(img)
    for dr in range(3):
        for dc in range(3):
            total += padded[dr:dr + rows, dc:dc + cols]
            count += ones[dr:dr + rows, dc:dc + cols]
    return (total / count).astype(np.float32)


# ---------------------------------------------------------------------- host wrappers


def check_count(name: str, value: object) -> int:
    """``value`` as an int if it is an integer > 0 (a size, a count of blocks or repeats);
    else a UsageError naming the parameter, so ``-p N abc`` fails in one clear line."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer > 0")
    return int(value)


def check_fraction(name: str, value: object) -> float:
    """``value`` as a float if it is a number in (0, 1] (a required fraction of a
    bandwidth); else a UsageError naming the parameter."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
            or not 0 < value <= 1):
        raise UsageError(f"{name}={value!r} is not valid; it must be a number in (0, 1]")
    return float(value)


def is_device_array(a: object) -> bool:
    """True for a Numba device array (real or simulated), False for a NumPy array."""
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def _to_device(*arrays):
    """Device copies of host arrays (device arrays pass through); whether any was host."""
    host = any(not is_device_array(a) for a in arrays if a is not None)
    moved = tuple(a if a is None or is_device_array(a) else cuda.to_device(np.ascontiguousarray(a))
                  for a in arrays)
    return moved, host


def _check_same_shape(**arrays) -> tuple[int, ...]:
    shapes = {name: tuple(a.shape) for name, a in arrays.items() if a is not None}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise UsageError("arrays must have the same shape; got "
                         + ", ".join(f"{k}{v}" for k, v in shapes.items()))
    return first


def _check_1d(**arrays) -> int:
    shape = _check_same_shape(**arrays)
    if len(shape) != 1:
        raise UsageError(f"these kernels take 1-D arrays; got shape {shape}")
    return shape[0]


def _check_dtype(**arrays) -> None:
    for name, a in arrays.items():
        if a is not None and np.dtype(a.dtype) != np.float32:
            raise UsageError(f"{name} has dtype {a.dtype}; these kernels take float32 arrays "
                             "(use .astype(np.float32))")


def run_index_1d(n: int, threads: int) -> dict[str, np.ndarray]:
    """Launch ``index_1d`` over ``n`` elements with ``threads`` per block; host arrays
    ``global``, ``block``, ``thread`` (-1 where no thread wrote, which must not happen)."""
    blocks, threads = launch.grid_1d(n, threads)
    out = {k: cuda.to_device(np.full(n, -1, np.int32)) for k in ("global", "block", "thread")}
    index_1d[blocks, threads](out["global"], out["block"], out["thread"])
    return {k: v.copy_to_host() for k, v in out.items()}


def run_index_2d(shape: tuple[int, int], threads: tuple[int, int]) -> dict[str, np.ndarray]:
    """Launch ``index_2d`` over a (rows, cols) array with (tx, ty) blocks; host arrays
    ``row``, ``col``, ``block`` (-1 where no thread wrote)."""
    if len(shape) != 2:
        raise UsageError(f"shape={shape!r} is not valid; give (rows, cols)")
    blocks, threads = launch.grid_2d(tuple(shape), threads)
    out = {k: cuda.to_device(np.full(shape, -1, np.int32)) for k in ("row", "col", "block")}
    index_2d[blocks, threads](out["row"], out["col"], out["block"])
    return {k: v.copy_to_host() for k, v in out.items()}


def run_saxpy(a: float, x, y, out=None, *, threads: int = 256, grid_stride: bool = False,
              max_blocks: int | None = None):
    """``out = a * x + y`` on the GPU (float32, 1-D), launch configuration validated.

    ``threads``: threads per block (1 to the device limit). ``grid_stride=True`` uses
    ``saxpy_grid_stride`` with at most ``max_blocks`` blocks (the grid then covers ``n``
    with fewer threads than elements). Host inputs are copied to the device and the result
    comes back as a NumPy array; device inputs give a device result, with no copies.
    """
    if max_blocks is not None and not grid_stride:
        raise UsageError("max_blocks needs grid_stride=True: the one-element-per-thread "
                         "kernel must launch a thread for every element")
    _check_dtype(x=x, y=y, out=out)
    n = _check_1d(x=x, y=y, out=out)
    blocks, threads = launch.grid_1d(n, threads, max_blocks=max_blocks)
    (d_x, d_y, d_out), host = _to_device(x, y, out)
    if d_out is None:
        d_out = cuda.device_array(n, dtype=np.float32)
    kernel = saxpy_grid_stride if grid_stride else saxpy
    kernel[blocks, threads](np.float32(a), d_x, d_y, d_out)
    if host:
        result = d_out.copy_to_host()
        if out is not None and not is_device_array(out):
            out[...] = result
            return out
        return result
    return d_out


def run_copy(src, dst=None, *, threads: int = 256):
    """``dst = src`` with the ``copy`` kernel (float32, 1-D); host in, host out."""
    _check_dtype(src=src, dst=dst)
    n = _check_1d(src=src, dst=dst)
    blocks, threads = launch.grid_1d(n, threads)
    (d_src, d_dst), host = _to_device(src, dst)
    if d_dst is None:
        d_dst = cuda.device_array(n, dtype=np.float32)
    copy[blocks, threads](d_src, d_dst)
    if host:
        result = d_dst.copy_to_host()
        if dst is not None and not is_device_array(dst):
            dst[...] = result
            return dst
        return result
    return d_dst


def run_blur(img, out=None, *, threads: Sequence[int] = (16, 16)):
    """The 3x3 box blur of a 2-D float32 image; ``threads`` = (tx, ty), x along columns."""
    _check_dtype(img=img, out=out)
    shape = _check_same_shape(img=img, out=out)
    if len(shape) != 2:
        raise UsageError(f"blur needs a 2-D image (rows, cols); got shape {shape}")
    blocks, threads = launch.grid_2d(shape, threads)
    (d_img, d_out), host = _to_device(img, out)
    if d_out is None:
        d_out = cuda.device_array(shape, dtype=np.float32)
    blur[blocks, threads](d_img, d_out)
    if host:
        result = d_out.copy_to_host()
        if out is not None and not is_device_array(out):
            out[...] = result
            return out
        return result
    return d_out
