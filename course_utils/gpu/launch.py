"""Launch configurations for Numba CUDA kernels: validated, with the grid computed.

A kernel launch ``kernel[blocks, threads](...)`` with a zero, negative or too-large block
size does not always fail clearly: zero threads silently does nothing, more threads than
the device allows fails deep inside the driver (or, on the simulator, may hang spawning
thousands of Python threads). Lessons and labs take block sizes from parameters, so every
launch configuration goes through ``check_block`` / ``grid_1d`` / ``grid_2d`` first.

Limits: 1024 threads per block and 65535 blocks in grid dimensions y and z on every
CUDA GPU since compute capability 2.0. On a real GPU the device's own attributes are
read; on the simulator the same architectural limits apply (each simulated thread is a
Python thread, so keep simulator launches to a few hundred threads: that is the lessons'
business, through their quick-profile sizes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..timing import Timing

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
WARP_SIZE = 32


def device_limits() -> dict[str, object]:
    """``max_threads_per_block``, ``max_block_dim``, ``max_grid_dim``, ``warp_size``,
    ``multiprocessors`` (None on the simulator) of the current device."""
    from ..cudasim import on_simulator

    limits: dict[str, object] = {
        "max_threads_per_block": MAX_THREADS_PER_BLOCK, "max_block_dim": MAX_BLOCK_DIM,
        "max_grid_dim": MAX_GRID_DIM, "warp_size": WARP_SIZE, "multiprocessors": None,
        "simulator": on_simulator(),
    }
    if limits["simulator"]:
        return limits
    from numba import cuda

    dev = cuda.get_current_device()
    limits.update(
        max_threads_per_block=dev.MAX_THREADS_PER_BLOCK,
        max_block_dim=(dev.MAX_BLOCK_DIM_X, dev.MAX_BLOCK_DIM_Y, dev.MAX_BLOCK_DIM_Z),
        max_grid_dim=(dev.MAX_GRID_DIM_X, dev.MAX_GRID_DIM_Y, dev.MAX_GRID_DIM_Z),
        warp_size=dev.WARP_SIZE, multiprocessors=dev.MULTIPROCESSOR_COUNT)
    return limits


def _as_tuple(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    dims = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        dims = tuple(dims)
    except TypeError:
        raise UsageError(f"{name}={value!r} is not valid; give an integer or a tuple of "
                         "1 to 3 integers") from None
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, int) and not isinstance(d, bool)
                                          for d in dims):
        raise UsageError(f"{name}={value!r} is not valid; give an integer or a tuple of "
                         "1 to 3 integers")
    return dims


def check_block(threads: int | Sequence[int], *, name: str = "threads per block",
                limits: dict | None = None) -> tuple[int, ...]:
    """Validate a block shape against the device limits; return it as a tuple.

    Raises ``UsageError`` naming the parameter, its value and the allowed range for a zero
    or negative size, a dimension above the device's, or more than 1024 threads in total.
    A size that is not a multiple of the warp size (32) is allowed (it wastes lanes).
    """
    dims = _as_tuple(name, threads)
    limits = limits or device_limits()
    for axis, (d, cap) in enumerate(zip(dims, limits["max_block_dim"], strict=False)):
        if d <= 0:
            raise UsageError(f"{name}={threads!r} is not valid: dimension {'xyz'[axis]} is "
                             f"{d}; every dimension must be between 1 and {cap}")
        if d > cap:
            raise UsageError(f"{name}={threads!r} is not valid: dimension {'xyz'[axis]} is "
                             f"{d}, above this device's limit of {cap}")
    total = math.prod(dims)
    cap = limits["max_threads_per_block"]
    if total > cap:
        raise UsageError(f"{name}={threads!r} is not valid: {total} threads in a block, "
                         f"above this device's limit of {cap}")
    return dims


def blocks_for(n: int, threads: int) -> int:
    """Blocks needed to give each of ``n`` elements a thread: ``ceil(n / threads)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise UsageError(f"n={n!r} is not valid; the problem size must be an integer > 0")
    return -(-n // threads)


def grid_1d(n: int, threads: int, *, max_blocks: int | None = None) -> tuple[int, int]:
    """``(blocks, threads)`` for ``n`` elements, one thread each (a bounds guard is still
    needed in the kernel: the last block is usually partly idle).

    ``max_blocks`` caps the grid, for grid-stride loops that cover ``n`` with fewer threads.
    """
    (threads,) = check_block(threads)
    blocks = blocks_for(n, threads)
    if max_blocks is not None:
        if max_blocks <= 0:
            raise UsageError(f"max_blocks={max_blocks!r} is not valid; it must be > 0")
        blocks = min(blocks, max_blocks)
    return blocks, threads


def grid_2d(shape: tuple[int, int], threads: tuple[int, int]
            ) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((blocks_x, blocks_y), (tx, ty))`` covering a (rows, cols) array.

    x runs along columns (the fastest-varying index, so neighbouring threads touch
    neighbouring memory) and y along rows, the CUDA convention.
    """
    if len(_as_tuple("threads", threads)) != 2:
        raise UsageError(f"threads={threads!r} is not valid; give a 2-D block (tx, ty)")
    tx, ty = check_block(threads)
    rows, cols = shape
    bx, by = blocks_for(cols, tx), blocks_for(rows, ty)
    if by > MAX_GRID_DIM[1]:
        raise UsageError(f"shape={shape!r} needs {by} blocks in y, above the limit of "
                         f"{MAX_GRID_DIM[1]}; use taller blocks or a grid-stride loop")
    return (bx, by), (tx, ty)


def occupancy_blocks_per_sm(threads_per_block: int, *, max_threads_per_sm: int = 2048,
                            max_blocks_per_sm: int = 32, shared_bytes: int = 0,
                            shared_per_sm: int = 228 * 1024, registers_per_thread: int = 0,
                            registers_per_sm: int = 65536) -> int:
    """Resident blocks per SM allowed by threads, block slots, shared memory and, when
    ``registers_per_thread`` is given (ptxas reports it; ``hpdl kernels`` prints it), the
    register file: the occupancy calculation of lesson 07. Blocks occupy whole warps.

    The defaults are an H100's (compute capability 9.0); the block is checked against the
    architecture's limits (1024 threads), not against the GPU this runs on. Registers are
    allocated per warp in units of 256, from 4 partitions of the register file, as in
    CUDA's occupancy calculator.
    """
    (threads_per_block,) = check_block(threads_per_block, limits={
        "max_threads_per_block": MAX_THREADS_PER_BLOCK, "max_block_dim": MAX_BLOCK_DIM})
    # The SM allocates whole warps: a block of 80 threads occupies 3 warps (96 slots).
    warps = -(-threads_per_block // WARP_SIZE)
    by_threads = max_threads_per_sm // (warps * WARP_SIZE)
    by_shared = shared_per_sm // shared_bytes if shared_bytes else max_blocks_per_sm
    by_registers = max_blocks_per_sm
    if registers_per_thread:
        if registers_per_thread * threads_per_block > registers_per_sm:
            return 0  # the launch itself fails: too many resources requested
        per_warp = -(-registers_per_thread * WARP_SIZE // 256) * 256
        by_registers = (registers_per_sm // 4 // per_warp) * 4 // warps
    return max(0, min(by_threads, max_blocks_per_sm, by_shared, by_registers))


KERNEL_RESOURCES = "kernel_resources.json"  # in data/: written by `hpdl kernels`


def compiled_resources(kernel: str, *, cc: int = 90, where: str = "") -> list[dict]:
    """What ptxas reported for a course kernel compiled for compute capability ``cc``:
    one dict per signature launched (``registers``, ``shared_bytes``, ``stack_bytes``,
    spills, ``instructions``, ``signature``, ``where``). ``where`` keeps the kernels
    defined in a file or notebook whose path starts with it (two labs may share a name).

    Read from ``data/kernel_resources.json``, which ``hpdl kernels`` writes on any machine,
    GPU or not, and which ``make test`` checks against a fresh compilation. On a GPU,
    Numba also answers directly: ``kernel.get_regs_per_thread()``.
    """
    import json

    from ..paths import DATA_DIR

    table = json.loads((DATA_DIR / KERNEL_RESOURCES).read_text())
    rows = [r for r in table["rows"] if r["ok"] and r["cc"] == cc
            and r["kernel"].split(".")[-1] == kernel and r["where"].startswith(where)]
    if not rows:
        known = sorted({r["kernel"].split(".")[-1] for r in table["rows"]})
        ccs = sorted({r["cc"] for r in table["rows"]})
        raise UsageError(f"no compiled kernel {kernel!r} for compute capability {cc} in "
                         f"{where or 'any file'} in "
                         f"data/{KERNEL_RESOURCES} (kernels: {', '.join(known)}; "
                         f"compute capabilities: {ccs})")
    return rows


def benchmark_launches(launch: Callable[[], object], *, launches: int = 1, warmup: int = 1,
                       repeats: int = 5) -> Timing:
    """``course_utils.benchmark`` of ``launch()`` called ``launches`` times back to back,
    with the times given *per launch*.

    Launching a Numba kernel costs the CPU some microseconds; a kernel that runs for less
    than about 10 of them would be timed as mostly launch overhead. Queued launches run
    back to back on the GPU while Python queues the next, so the GPU's time per launch
    shows through. The Timing is marked meaningless on the simulator.
    """
    from ..timing import Timing, benchmark

    if isinstance(launches, bool) or not isinstance(launches, int) or launches < 1:
        raise UsageError(f"launches={launches!r} is not valid; it must be an integer >= 1")

    def queue() -> None:
        for _ in range(launches):
            launch()

    t = benchmark(queue, warmup=warmup, repeats=repeats, sync="numba")
    return Timing(times=[s / launches for s in t.times], warmup=t.warmup, synced=t.synced,
                  simulator=t.simulator)


def benchmark_runtime_copy(d_src: Any, d_dst: Any, *, launches: int = 1, warmup: int = 1,
                           repeats: int = 5) -> Timing:
    """``benchmark_launches`` of the CUDA runtime's device-to-device copy
    (``d_dst.copy_to_device(d_src)``, a ``cudaMemcpy``), per copy: the bandwidth reference
    that the lessons' memory-bound kernels are held to, timed the same way as they are.

    NVIDIA tunes this copy for each GPU, so it is a fairer ceiling than a copy kernel of our
    own (which a poor launch configuration could slow down, lowering every target with it).
    """
    if d_src.shape != d_dst.shape or d_src.dtype != d_dst.dtype:
        raise UsageError(f"the runtime copy needs equal arrays: {d_src.shape} {d_src.dtype} "
                         f"-> {d_dst.shape} {d_dst.dtype}")
    return benchmark_launches(lambda: d_dst.copy_to_device(d_src), launches=launches,
                              warmup=warmup, repeats=repeats)
