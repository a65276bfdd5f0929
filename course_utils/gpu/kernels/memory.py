"""Lesson 08's kernels: how a kernel uses the GPU's memory hierarchy.

* copies: ``copy_coalesced`` (neighbouring threads read neighbouring elements) and
  ``copy_strided`` (they read elements ``stride`` apart), to measure coalescing;
* matrix transposes: ``transpose_naive`` (reads coalesced, writes strided),
  ``transpose_tiled`` (both coalesced, through a shared-memory tile) and
  ``transpose_tiled_padded`` (the same tile one column wider: no bank conflicts);
* matrix products: ``matmul_naive`` (one output per thread, everything from global
  memory), ``matmul_tiled`` (tiles staged in shared memory) and ``matmul_register_blocked``
  (each thread keeps an 8 x 8 block of outputs in registers).

Every kernel works on ``float32`` arrays of any shape: a bounds guard protects every load
and store, and shared-memory tiles are padded with zeros past the edges, so sizes need
not be multiples of the block or tile size. Tile sizes must be compile-time constants in
Numba (a shared array's shape is fixed when the kernel is compiled), so a few fixed
variants are built by small factory functions (``make_*``) and picked by name or tile
size. The ``*_launch`` functions return a kernel with its grid (``Launch``), for timing
bare launches; the wrappers (``copy``, ``strided_copy``, ``transpose``, ``matmul``) take
NumPy or device arrays and return the same kind. Both validate shapes and launch
configurations and raise a ``UsageError`` naming the parameter for a bad one.

Import this module only after ``course_utils.setup()``: it imports ``numba.cuda``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import cuda, float32

from ...errors import UsageError, check_choice
from ..launch import blocks_for, check_block, grid_1d, grid_2d

TRANSPOSE_VARIANTS = ("naive", "tiled", "tiled_padded")
MATMUL_VARIANTS = ("naive", "tiled", "register_blocked")
TRANSPOSE_TILES = (8, 16, 32)  # tile edge of the shared-memory transposes
MATMUL_TILES = (8, 16, 32)  # tile edge (= block edge) of matmul_tiled
# register_blocked: block tile edge -> (BM, BN, BK, TM, TN): a block computes a BM x BN
# tile of C, stepping BK along k; each thread computes TM x TN outputs.
REGISTER_BLOCKED_TILES = {16: (16, 16, 4, 4, 4), 64: (64, 64, 8, 4, 4),
                          128: (128, 128, 8, 8, 8)}
DEFAULT_TILE = {"tiled": 16, "register_blocked": 128}


def check_tile(name: str, tile: Any, allowed: tuple[int, ...]) -> int:
    """``tile`` if it is one of the compiled variants ``allowed``; else a UsageError."""
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile not in allowed:
        raise UsageError(f"{name}={tile!r} is not valid; the compiled tile sizes are: "
                         f"{', '.join(map(str, allowed))}")
    return int(tile)


@functools.cache
def _cached(factory: Any, *args: int) -> Any:
    """``factory(*args)``, built once per variant (each variant compiles once)."""
    return factory(*args)


def _check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= {low}")
    return int(value)


# --------------------------------------------------------------------------------------
# Copies: coalesced and strided


@cuda.jit
def copy_coalesced(src, dst):
    """dst[i] = src[i]: the 32 threads of a warp read 32 neighbouring floats (128 bytes)."""
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i]


@cuda.jit
def copy_strided(src, dst, stride):
    """dst[i] = src[i * stride]: neighbouring threads read floats ``stride`` apart."""
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i * stride]


# --------------------------------------------------------------------------------------
# Transposes


@cuda.jit
def transpose_naive(a, out):
    """out[c, r] = a[r, c], one element per thread: reads along a row of ``a`` are
    coalesced, but the writes go down a column of ``out``, one row apart."""
    col, row = cuda.grid(2)  # x runs along the columns of a
    rows, cols = a.shape
    if row < rows and col < cols:
        out[col, row] = a[row, col]


def make_transpose_tiled(size: int, pad: int):
    """A shared-memory transpose for a ``size`` x ``size`` block tile, launched with
    ``size`` x ``size // 4`` threads (each thread moves 4 elements); ``pad`` extra columns
    in the shared tile (1 removes the bank conflicts)."""
    TILE = size  # compile-time constants of the kernel below
    TILE_COLS = size + pad  # the shared tile's row length: TILE, or TILE + 1 when padded
    BLOCK_ROWS = size // 4

    @cuda.jit
    def transpose_tiled(a, out):
        tile = cuda.shared.array((TILE, TILE_COLS), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        rows, cols = a.shape
        # 1. Read a TILE x TILE block of a, row by row: coalesced along the rows of a.
        col = cuda.blockIdx.x * TILE + tx
        row0 = cuda.blockIdx.y * TILE + ty
        for j in range(0, TILE, BLOCK_ROWS):
            if row0 + j < rows and col < cols:
                tile[ty + j, tx] = a[row0 + j, col]
        cuda.syncthreads()  # the whole tile is in shared memory before anyone reads it
        # 2. Write it to the mirrored block of out, again row by row (coalesced), reading
        #    the tile down a column: out[r, c] = a[c, r].
        out_col = cuda.blockIdx.y * TILE + tx
        out_row0 = cuda.blockIdx.x * TILE + ty
        for j in range(0, TILE, BLOCK_ROWS):
            if out_row0 + j < cols and out_col < rows:
                out[out_row0 + j, out_col] = tile[tx, ty + j]

    return transpose_tiled


def transpose_tiled_kernel(tile: int = 32, padded: bool = False):
    """The tiled transpose kernel for one of ``TRANSPOSE_TILES`` (built once, cached)."""
    return _cached(make_transpose_tiled, check_tile("tile", tile, TRANSPOSE_TILES),
                   1 if padded else 0)


# --------------------------------------------------------------------------------------
# Matrix products C = A @ B, A: (M, K), B: (K, N), C: (M, N)


@cuda.jit
def matmul_naive(A, B, C):
    """One thread per output: C[row, col] = sum_k A[row, k] * B[k, col], every operand
    read from global memory (2 loads per multiply-add)."""
    col, row = cuda.grid(2)
    M, K = A.shape
    N = B.shape[1]
    if row < M and col < N:
        acc = float32(0.0)
        for k in range(K):
            acc += A[row, k] * B[k, col]
        C[row, col] = acc


def make_matmul_tiled(tile: int):
    """A shared-memory tiled matmul with ``tile`` x ``tile`` threads per block, each
    computing one output."""
    TILE = tile

    @cuda.jit
    def matmul_tiled(A, B, C):
        sA = cuda.shared.array((TILE, TILE), float32)
        sB = cuda.shared.array((TILE, TILE), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        M, K = A.shape
        N = B.shape[1]
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        acc = float32(0.0)
        for k0 in range(0, K, TILE):
            # Each thread loads one element of each tile; zeros past the edges.
            if row < M and k0 + tx < K:
                sA[ty, tx] = A[row, k0 + tx]
            else:
                sA[ty, tx] = float32(0.0)
            if k0 + ty < K and col < N:
                sB[ty, tx] = B[k0 + ty, col]
            else:
                sB[ty, tx] = float32(0.0)
            cuda.syncthreads()  # both tiles complete
            for k in range(TILE):  # each loaded value is now used TILE times
                acc += sA[ty, k] * sB[k, tx]
            cuda.syncthreads()  # everyone done before the next tiles overwrite these
        if row < M and col < N:
            C[row, col] = acc

    return matmul_tiled


def matmul_tiled_kernel(tile: int = 16):
    """The tiled matmul kernel for one of ``MATMUL_TILES`` (built once, cached)."""
    return _cached(make_matmul_tiled, check_tile("tile", tile, MATMUL_TILES))


def make_matmul_register_blocked(bm: int, bn: int, bk: int, tm: int, tn: int):
    """A register-blocked matmul: a block computes a ``bm`` x ``bn`` tile of C with
    (bn // tn) x (bm // tm) threads, each thread ``tm`` x ``tn`` outputs."""
    BM, BN, BK, TM, TN = bm, bn, bk, tm, tn
    NTX, NTY = BN // TN, BM // TM  # threads along x (columns of C) and y (rows)
    NT = NTX * NTY
    LOADS_A, LOADS_B = BM * BK // NT, BK * BN // NT  # tile elements each thread loads
    if BM % TM or BN % TN or BM * BK % NT or BK * BN % NT:
        raise UsageError(f"no register-blocked variant for BM={BM}, BN={BN}, BK={BK}, "
                         f"TM={TM}, TN={TN}: the tiles must split evenly over the threads")
    BM_PADDED = BM + 4  # the A tile is stored transposed; +4 avoids bank conflicts there

    @cuda.jit
    def matmul_register_blocked(A, B, C):
        As = cuda.shared.array((BK, BM_PADDED), float32)  # As[k, m] = A[row0 + m, k0 + k]
        Bs = cuda.shared.array((BK, BN), float32)  # Bs[k, n] = B[k0 + k, col0 + n]
        acc = cuda.local.array((TM, TN), float32)  # this thread's outputs: registers
        a_frag = cuda.local.array(TM, float32)
        b_frag = cuda.local.array(TN, float32)
        # Numba types threadIdx as a signed int32; "& 1023" (a no-op: a block has at
        # most 1024 threads) shows the compiler it is never negative. Without it, every
        # index below gets a run-time check for Python's negative indices (a[-1]) and
        # the inner loop runs about 50 % more instructions.
        tx, ty = cuda.threadIdx.x & 1023, cuda.threadIdx.y & 1023
        tid = ty * NTX + tx
        M, K = A.shape
        N = B.shape[1]
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = float32(0.0)
        for k0 in range(0, K, BK):
            # 1. All NT threads load the BM x BK tile of A and the BK x BN tile of B,
            #    consecutive threads reading consecutive addresses; zeros past the edges.
            for load in range(LOADS_A):
                idx = tid + load * NT
                m, k = idx // BK, idx % BK
                if row0 + m < M and k0 + k < K:
                    As[k, m] = A[row0 + m, k0 + k]
                else:
                    As[k, m] = float32(0.0)
            for load in range(LOADS_B):
                idx = tid + load * NT
                k, n = idx // BN, idx % BN
                if k0 + k < K and col0 + n < N:
                    Bs[k, n] = B[k0 + k, col0 + n]
                else:
                    Bs[k, n] = float32(0.0)
            cuda.syncthreads()
            # 2. Outer products: per k, TM + TN loads from shared memory feed TM * TN
            #    multiply-adds on registers. This thread owns rows ty + i * NTY and
            #    columns tx + j * NTX (neighbouring threads, neighbouring columns).
            for k in range(BK):
                for i in range(TM):
                    a_frag[i] = As[k, ty + i * NTY]
                for j in range(TN):
                    b_frag[j] = Bs[k, tx + j * NTX]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += a_frag[i] * b_frag[j]
            cuda.syncthreads()
        # 3. Write the TM x TN outputs, skipping those past the edges of C.
        for i in range(TM):
            row = row0 + ty + i * NTY
            if row < M:
                for j in range(TN):
                    col = col0 + tx + j * NTX
                    if col < N:
                        C[row, col] = acc[i, j]

    return matmul_register_blocked


def matmul_register_blocked_kernel(tile: int = 128):
    """The register-blocked matmul for a block tile of ``REGISTER_BLOCKED_TILES``."""
    tile = check_tile("tile", tile, tuple(REGISTER_BLOCKED_TILES))
    return _cached(make_matmul_register_blocked, *REGISTER_BLOCKED_TILES[tile])


# The lesson's default variants, as module-level names (for show_source and lesson 10).
transpose_tiled = transpose_tiled_kernel(32, padded=False)
transpose_tiled_padded = transpose_tiled_kernel(32, padded=True)
matmul_tiled = matmul_tiled_kernel(DEFAULT_TILE["tiled"])
matmul_register_blocked = matmul_register_blocked_kernel(DEFAULT_TILE["register_blocked"])


# --------------------------------------------------------------------------------------
# Launch configurations and wrappers


@dataclass(frozen=True)
class Launch:
    """A kernel with its grid: ``launch(*args)`` runs ``kernel[blocks, threads](*args)``.

    Returned by the ``*_launch`` functions so that a lesson can time the bare launch.
    """

    kernel: Any
    blocks: tuple[int, ...]
    threads: tuple[int, ...]

    def __call__(self, *args: Any) -> None:
        self.kernel[self.blocks, self.threads](*args)


def copy_launch(n: int, threads: int = 256) -> Launch:
    """``copy_coalesced`` over ``n`` elements, one thread each."""
    blocks, threads = grid_1d(_check_int("n", n), threads)
    return Launch(copy_coalesced, (blocks,), (threads,))


def strided_launch(n: int, threads: int = 256) -> Launch:
    """``copy_strided`` producing ``n`` elements, one thread each."""
    blocks, threads = grid_1d(_check_int("n", n), threads)
    return Launch(copy_strided, (blocks,), (threads,))


def transpose_launch(shape: tuple[int, int], variant: str = "tiled_padded", *,
                     threads: tuple[int, int] = (32, 8), tile: int = 32) -> Launch:
    """The kernel and grid transposing an array of ``shape`` (rows, cols).

    ``threads`` is the block of the naive kernel; the tiled kernels use ``tile`` x
    ``tile // 4`` threads, each block moving one ``tile`` x ``tile`` tile.
    """
    check_choice("variant", variant, TRANSPOSE_VARIANTS)
    rows, cols = _check_shape("shape", shape)
    if variant == "naive":
        blocks, block = grid_2d((rows, cols), threads)
        return Launch(transpose_naive, blocks, block)
    tile = check_tile("tile", tile, TRANSPOSE_TILES)
    block = check_block((tile, tile // 4), name="threads")
    return Launch(transpose_tiled_kernel(tile, variant == "tiled_padded"),
                  (blocks_for(cols, tile), blocks_for(rows, tile)), block)


def matmul_launch(m: int, n: int, k: int, variant: str = "register_blocked", *,
                  threads: tuple[int, int] = (16, 16), tile: int | None = None) -> Launch:
    """The kernel and grid computing an (m x k) @ (k x n) product.

    ``threads`` is the block of the naive kernel; ``tile`` picks a compiled variant of
    the tiled (``MATMUL_TILES``) or register-blocked (``REGISTER_BLOCKED_TILES``) kernel.
    """
    check_choice("variant", variant, MATMUL_VARIANTS)
    m, n, k = (_check_int(name, v) for name, v in (("M", m), ("N", n), ("K", k)))
    if variant == "naive":
        blocks, block = grid_2d((m, n), threads)
        return Launch(matmul_naive, blocks, block)
    tile = DEFAULT_TILE[variant] if tile is None else tile
    if variant == "tiled":
        kernel = matmul_tiled_kernel(check_tile("tile", tile, MATMUL_TILES))
        block = check_block((tile, tile), name="threads")
        return Launch(kernel, (blocks_for(n, tile), blocks_for(m, tile)), block)
    tile = check_tile("tile", tile, tuple(REGISTER_BLOCKED_TILES))
    bm, bn, _, tm, tn = REGISTER_BLOCKED_TILES[tile]
    block = check_block((bn // tn, bm // tm), name="threads")
    return Launch(matmul_register_blocked_kernel(tile),
                  (blocks_for(n, bn), blocks_for(m, bm)), block)


def _check_shape(name: str, shape: Any) -> tuple[int, int]:
    try:
        rows, cols = shape
    except (TypeError, ValueError):
        raise UsageError(f"{name}={shape!r} is not valid; give (rows, cols)") from None
    return _check_int(f"{name}[0]", rows), _check_int(f"{name}[1]", cols)


def is_device_array(x: Any) -> bool:
    """True for a Numba device array (real or simulated) or any CUDA array (a PyTorch
    CUDA tensor, CuPy) that Numba can use in place."""
    return hasattr(x, "copy_to_host") or hasattr(x, "__cuda_array_interface__")


def _operand(name: str, x: Any, ndim: int):
    """(device array, was it on the device already) for a float32 operand of ``ndim``."""
    if is_device_array(x):
        arr = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
        if np.dtype(arr.dtype) != np.float32 or arr.ndim != ndim:
            raise UsageError(f"{name} must be a {ndim}-D float32 array; got "
                             f"{arr.ndim}-D {np.dtype(arr.dtype)}")
        on_device = True
    else:
        host = np.ascontiguousarray(x, dtype=np.float32)
        if host.ndim != ndim:
            raise UsageError(f"{name} must be a {ndim}-D array; got shape {host.shape}")
        arr, on_device = cuda.to_device(host), False
    if any(d == 0 for d in arr.shape):
        raise UsageError(f"{name} has shape {tuple(arr.shape)}; every dimension must be > 0")
    return arr, on_device


def _output(out: Any, shape: tuple[int, ...], name: str = "out"):
    if out is None:
        return cuda.device_array(shape, dtype=np.float32)
    dev, _ = _operand(name, out, len(shape))
    if tuple(dev.shape) != tuple(shape):
        raise UsageError(f"{name} has shape {tuple(dev.shape)}; expected {tuple(shape)}")
    return dev


def _finish(result: Any, on_device: bool):
    """Device in, device out (no copy, no wait); NumPy in, NumPy out."""
    return result if on_device else result.copy_to_host()


def copy(src: Any, *, threads: int = 256, out: Any = None):
    """A copy of the 1-D float32 array ``src`` made by ``copy_coalesced``."""
    d_src, on_device = _operand("src", src, 1)
    d_out = _output(out, d_src.shape)
    copy_launch(d_src.size, threads)(d_src, d_out)
    return _finish(d_out, on_device)


def strided_copy(src: Any, stride: int, *, threads: int = 256, out: Any = None):
    """``src[::stride]`` made by ``copy_strided``: thread i reads ``src[i * stride]``."""
    stride = _check_int("stride", stride)
    d_src, on_device = _operand("src", src, 1)
    n = blocks_for(d_src.size, stride)  # ceil(size / stride) elements
    d_out = _output(out, (n,))
    strided_launch(n, threads)(d_src, d_out, stride)
    return _finish(d_out, on_device)


def transpose(a: Any, variant: str = "tiled_padded", *, threads: tuple[int, int] = (32, 8),
              tile: int = 32, out: Any = None):
    """``a.T`` (a 2-D float32 array) computed by one of ``TRANSPOSE_VARIANTS``."""
    check_choice("variant", variant, TRANSPOSE_VARIANTS)
    d_a, on_device = _operand("a", a, 2)
    rows, cols = d_a.shape
    launch = transpose_launch((rows, cols), variant, threads=threads, tile=tile)
    d_out = _output(out, (cols, rows))
    launch(d_a, d_out)
    return _finish(d_out, on_device)


def matmul(A: Any, B: Any, variant: str = "register_blocked", *,
           threads: tuple[int, int] = (16, 16), tile: int | None = None, out: Any = None):
    """``A @ B`` for 2-D float32 arrays of any compatible shapes, by one of
    ``MATMUL_VARIANTS`` (float32 accumulation)."""
    check_choice("variant", variant, MATMUL_VARIANTS)
    d_a, on_device = _operand("A", A, 2)
    d_b, _ = _operand("B", B, 2)
    (m, k), (k2, n) = d_a.shape, d_b.shape
    if k != k2:
        raise UsageError(f"A @ B needs A.shape[1] == B.shape[0]; got A {tuple(d_a.shape)} "
                         f"and B {tuple(d_b.shape)}")
    launch = matmul_launch(m, n, k, variant, threads=threads, tile=tile)
    d_out = _output(out, (m, n))
    launch(d_a, d_b, d_out)
    return _finish(d_out, on_device)


# --------------------------------------------------------------------------------------
# Models of the hardware, for the lesson's figures


def warp_sectors(stride: int, *, lanes: int = 32, word_bytes: int = 4,
                 sector_bytes: int = 32) -> int:
    """32-byte memory sectors one warp touches when lane i reads word ``i * stride``.

    Global memory moves whole sectors: stride 1 needs 4 sectors for 32 floats (all of it
    useful), stride 8 or more needs 32 sectors, of which one float in eight is used.
    """
    stride = _check_int("stride", stride)
    return len({(lane * stride * word_bytes) // sector_bytes for lane in range(lanes)})


def warp_bank_ways(words: Sequence[int], *, banks: int = 32) -> int:
    """The cost, in shared-memory cycles, of one warp access to the 4-byte ``words`` (one
    index per lane): the largest number of *distinct* words that fall in one bank. Lanes
    that read the same word are served together (the word is broadcast to them), so 32
    lanes reading one word cost 1, not 32."""
    if not words:
        raise UsageError("words is empty: give one shared-memory word index per lane")
    distinct: dict[int, set[int]] = {}
    for word in words:
        distinct.setdefault(int(word) % banks, set()).add(int(word))
    return max(len(ws) for ws in distinct.values())


def bank_conflict_ways(row_words: int, *, lanes: int = 32, banks: int = 32) -> int:
    """How many lanes of a warp hit the same shared-memory bank when lane i reads
    ``tile[i, c]`` of a tile whose rows are ``row_words`` 4-byte words long.

    Bank of a word = its index mod 32. Rows of 32 words put a whole column in one bank
    (32-way conflict: the reads are serialised); rows of 33 words spread it over all 32.
    """
    row_words = _check_int("row_words", row_words)
    return warp_bank_ways([lane * row_words for lane in range(lanes)], banks=banks)


def check_simulator_size(name: str, value: int, limit: int) -> None:
    """On the CUDA simulator, refuse a size knob above ``limit`` with a UsageError
    (every simulated GPU thread is a Python thread: full-size problems would take hours)."""
    from ...cudasim import on_simulator

    if on_simulator() and value > limit:
        raise UsageError(
            f"{name}={value!r} is too big for the CUDA simulator (at most {limit} there: "
            "every GPU thread is a Python thread); use PROFILE='quick' or run on a GPU")


__all__: list[str] = [
    "Launch", "MATMUL_TILES", "MATMUL_VARIANTS", "REGISTER_BLOCKED_TILES",
    "TRANSPOSE_TILES", "TRANSPOSE_VARIANTS", "bank_conflict_ways", "check_simulator_size",
    "check_tile", "copy", "copy_coalesced", "copy_launch", "copy_strided", "is_device_array",
    "make_matmul_register_blocked", "make_matmul_tiled", "make_transpose_tiled", "matmul",
    "matmul_launch", "matmul_naive", "matmul_register_blocked",
    "matmul_register_blocked_kernel", "matmul_tiled", "matmul_tiled_kernel", "strided_copy",
    "strided_launch", "transpose", "transpose_launch", "transpose_naive", "transpose_tiled",
    "transpose_tiled_kernel", "transpose_tiled_padded", "warp_sectors",
]
