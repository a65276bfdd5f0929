"""Lesson 10: every kernel of lessons 07 to 09 on the roofline, occupancy, Nsight commands.

Four concerns, all small and testable without a GPU:

* **Cost formulas**: the floating-point operations and the *minimum* bytes one launch of
  each kernel must move (every input read once, every output written once), as
  :class:`course_utils.gpu.roofline.KernelCost`. Caches may serve repeated reads (the blur's
  neighbours, the naive matmul's rows), so a kernel can move *more* bytes than this,
  never fewer; that is what makes the roofline an upper bound.
* **Placement on the roofline**: a timed launch (:class:`KernelRun`) against the
  ceilings (:class:`Roof`) gives its GFLOP/s, GB/s, the roof above it and the fraction of
  that roof it reaches. The fraction is ``max(GFLOP/s ÷ peak, GB/s ÷ bandwidth)``, which
  is the same as ``achieved ÷ min(peak, intensity × bandwidth)`` and also works for
  kernels that do no floating-point work at all (copies, transposes, histograms).
* **Occupancy**: resident blocks per SM from threads, block slots, shared memory
  (``course_utils.gpu.launch.occupancy_blocks_per_sm``) *and registers*, computed the way
  CUDA's occupancy calculator does; on a GPU the compiled kernels' register and shared
  memory counts come from the driver.
* **Nsight**: the ``ncu`` / ``nsys`` command lines the lesson prints, the counters that
  matter, a demo workload script, a guarded runner with a timeout, and a parser for
  ``ncu --csv`` output.

The ceilings and kernels are measured in lesson 10; this module only counts and compares.
Import it before or after ``course_utils.setup()``: it imports ``numba`` only inside the
functions that need a real GPU.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CourseError, UsageError
from ..timing import Timing
from . import launch, roofline
from .roofline import KernelCost

FP32 = 4  # bytes per float32: every floating-point kernel of lessons 07 to 09 is float32

# --------------------------------------------------------------------------- validation


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int if it is an integer in ``[low, high]``; else a UsageError that
    names the parameter, its value and the allowed range (one line, for papermill)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok:
        ok = value >= low and (high is None or value <= high)
    if not ok:
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer {allowed}")
    return int(value)


def check_number(name: str, value: Any, low: float, *, inclusive: bool = True) -> float:
    """``value`` as a float if it is a finite number >= ``low`` (> with ``inclusive=False``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= low if inclusive else value > low)
    if not ok:
        bound = ">=" if inclusive else ">"
        raise UsageError(f"{name}={value!r} is not valid; it must be a number {bound} {low}")
    return float(value)


# On the CUDA simulator every GPU thread is a Python thread: these caps keep a run short.
SIMULATOR_CAPS = {"n": 4096, "hist_n": 4096, "blur_rows": 128, "blur_cols": 128,
                  "transpose_rows": 128, "transpose_cols": 128, "matmul_n": 64}


def check_config(cfg: dict[str, Any], *, simulator: bool) -> dict[str, Any]:
    """Validate lesson 10's knobs (``ctx.sizes("roofline_profiling", ...)``); return them.

    Each bad knob raises a UsageError naming it as the notebook's parameter (upper case),
    its value and the allowed range. ``THREADS`` must be a power of two from 32 to the
    device's limit (the tree sums halve the block; warp shuffles need whole warps);
    ``BLOCKS`` may be ``None`` (one full wave of the GPU). On the simulator the sizes are
    capped (:data:`SIMULATOR_CAPS`).
    """
    out = dict(cfg)
    for knob in ("n", "stride", "blur_rows", "blur_cols", "transpose_rows",
                 "transpose_cols", "matmul_n", "hist_n", "cublas_n", "launches", "repeats"):
        out[knob] = check_int(knob.upper(), cfg[knob])
    out["warmup"] = check_int("WARMUP", cfg["warmup"], low=0)
    out["nbins"] = check_int("NBINS", cfg["nbins"], 1, 1024)
    threads = cfg["threads"]
    (threads,) = launch.check_block(threads, name="THREADS")
    if threads < 32 or threads & (threads - 1):
        raise UsageError(f"THREADS={threads!r} is not valid; it must be a power of two from 32 "
                         "to 1024 (the tree sums halve the block, shuffles need whole warps)")
    out["threads"] = threads
    if cfg["blocks"] is not None:
        out["blocks"] = check_int("BLOCKS", cfg["blocks"])
    if out["hist_n"] >= 2**31:
        raise UsageError(f"HIST_N={out['hist_n']} is not valid; the int32 counts hold at most "
                         f"{2**31 - 1} values")
    out["roof_tolerance"] = check_number("ROOF_TOLERANCE", cfg["roof_tolerance"], 1.0)
    out["ncu_timeout"] = check_number("NCU_TIMEOUT", cfg["ncu_timeout"], 0.0)
    if simulator:
        for knob, cap in SIMULATOR_CAPS.items():
            if out[knob] > cap:
                raise UsageError(
                    f"{knob.upper()}={out[knob]!r} is too big for the CUDA simulator (at most "
                    f"{cap} there: every GPU thread is a Python thread); use PROFILE='quick' "
                    "or run on a GPU")
    return out


# --------------------------------------------------------------------------- costs


def copy_kernel_cost(n: int) -> KernelCost:
    """``dst[i] = src[i]`` over ``n`` floats: 0 FLOP, 8 bytes per element (read + write)."""
    return roofline.copy_cost(n, "fp32")


def saxpy_cost(n: int) -> KernelCost:
    """``out[i] = a * x[i] + y[i]``: 2 FLOP (a multiply, an add) per 12 bytes (x, y, out)."""
    return roofline.elementwise_cost(n, "fp32", inputs=2, outputs=1, flop_per_element=2)


def strided_copy_cost(n_out: int) -> KernelCost:
    """``dst[i] = src[i * stride]`` for ``n_out`` outputs: the *useful* bytes, 8 per output.

    The hardware moves whole 32-byte sectors, so a stride of 8 or more reads 32 bytes for
    every 4 it uses: measured against these useful bytes, the kernel lands far below the
    roof, which is exactly the waste lesson 08 measured.
    """
    return roofline.copy_cost(n_out, "fp32")


def blur_cost(rows: int, cols: int) -> KernelCost:
    """Lesson 07's 3 × 3 box blur of a ``rows`` × ``cols`` float32 image.

    FLOP: each pixel adds its in-image neighbours (9 inside, 6 on an edge, 4 in a corner)
    and divides once. A row ``r`` has ``min(r+2, R) - max(r-1, 0)`` neighbour rows; summed
    over all rows that is ``3R - 2`` (3 per row, minus one at each border), and the same
    for columns, so the additions total ``(3R - 2)(3C - 2)``, plus ``R·C`` divisions.
    About 10 FLOP per pixel. Bytes: each pixel read once and written once, ``8·R·C`` (the
    repeated reads of neighbours are served by the caches).
    """
    rows = roofline.check_size("rows", rows)
    cols = roofline.check_size("cols", cols)
    return KernelCost(flop=(3 * rows - 2) * (3 * cols - 2) + rows * cols,
                      nbytes=2 * FP32 * rows * cols)


def transpose_cost(rows: int, cols: int) -> KernelCost:
    """``out[c, r] = a[r, c]``: a copy of ``rows × cols`` floats, 0 FLOP, 8 bytes each."""
    rows = roofline.check_size("rows", rows)
    cols = roofline.check_size("cols", cols)
    return roofline.copy_cost(rows * cols, "fp32")


def matmul_kernel_cost(m: int, n: int, k: int) -> KernelCost:
    """``C = A @ B`` with A (m × k), B (k × n): ``2·m·n·k`` FLOP over the compulsory
    ``4·(m·k + k·n + m·n)`` bytes. Square n: intensity ``n / 6`` FLOP/byte."""
    return roofline.matmul_cost(n, "fp32", m=m, k=k)


def sum_cost(n: int) -> KernelCost:
    """A sum of ``n`` floats: ``n`` additions (counting the first into zero) over ``4n``
    bytes read; the single output and the per-block partials are negligible."""
    return roofline.reduction_cost(n, "fp32")


def histogram_cost(n: int, nbins: int, value_bytes: int = 1) -> KernelCost:
    """Counting ``n`` integer values of ``value_bytes`` bytes into ``nbins`` int32 bins.

    0 floating-point operations (the counting is integer atomics, which the roofline of
    FLOPs does not see). Bytes: the values read once and the counts written once.
    """
    n = roofline.check_size("n", n)
    nbins = roofline.check_size("nbins", nbins)
    value_bytes = roofline.check_size("value_bytes", value_bytes)
    return KernelCost(flop=0, nbytes=n * value_bytes + 4 * nbins)


# --------------------------------------------------------------------------- roofline


@dataclass(frozen=True)
class KernelRun:
    """One kernel, what a launch costs, and how long a launch took (``timing``, seconds
    per launch). ``lesson`` names where the kernel was written ("07", "08", "09")."""

    name: str
    lesson: str
    cost: KernelCost
    timing: Timing
    note: str = ""

    @property
    def seconds(self) -> float:
        """Median seconds per launch: the typical launch (the ceilings use the best one)."""
        return self.timing.median

    @property
    def gflops(self) -> float:
        return self.cost.flop / self.seconds / 1e9

    @property
    def gbps(self) -> float:
        return self.cost.nbytes / self.seconds / 1e9

    @property
    def meaningful(self) -> bool:
        """False when the kernel ran on the CUDA simulator."""
        return self.timing.meaningful


@dataclass(frozen=True)
class Roof:
    """A machine's two ceilings: ``peak_gflops`` (compute) and ``bandwidth_gbps`` (memory).

    ``source`` says where they came from: measured on this GPU, or a data sheet (a model).
    """

    peak_gflops: float
    bandwidth_gbps: float
    source: str

    def __post_init__(self) -> None:
        check_number("peak_gflops", self.peak_gflops, 0.0, inclusive=False)
        check_number("bandwidth_gbps", self.bandwidth_gbps, 0.0, inclusive=False)

    @property
    def ridge(self) -> float:
        """FLOP/byte where the memory roof meets the compute roof."""
        return roofline.ridge_point(self.peak_gflops, self.bandwidth_gbps)

    def attainable(self, intensity: float) -> float:
        """The roof above ``intensity``: ``min(peak, intensity × bandwidth)`` GFLOP/s."""
        return roofline.attainable(intensity, self.peak_gflops, self.bandwidth_gbps)

    def bound(self, intensity: float) -> str:
        """``"memory"`` left of the ridge, ``"compute"`` at or right of it."""
        return roofline.bound(intensity, self.peak_gflops, self.bandwidth_gbps)

    def fraction(self, gflops: float, gbps: float) -> float:
        """Fraction of the roof reached: ``max(gflops / peak, gbps / bandwidth)``.

        For a kernel of intensity I, ``gflops = I × gbps``; left of the ridge the memory
        term is the larger and equals ``gflops / (I × bandwidth)``, right of it the compute
        term is, ``gflops / peak``: together ``gflops / attainable(I)``. A kernel with no
        FLOPs is judged by its bandwidth alone.
        """
        return max(gflops / self.peak_gflops, gbps / self.bandwidth_gbps)


# Data-sheet ceilings of the course's reference GPU, for the *model* roofline drawn on the
# simulator: NVIDIA H100 SXM5 80 GB, FP32 (CUDA cores, no tensor cores) 67 TFLOP/s,
# HBM3 3.35 TB/s (NVIDIA H100 Tensor Core GPU data sheet).
REFERENCE_GPU = "NVIDIA H100 SXM (data sheet)"
REFERENCE_ROOF = Roof(peak_gflops=67_000.0, bandwidth_gbps=3_350.0, source=REFERENCE_GPU)


@dataclass(frozen=True)
class Placement:
    """A kernel placed under a roof: where it is, what is above it, how close it gets."""

    name: str
    lesson: str
    flop: int
    nbytes: int
    intensity: float
    bound: str
    roof_gflops: float
    gflops: float | None = None
    gbps: float | None = None
    fraction: float | None = None

    @property
    def measured(self) -> bool:
        return self.fraction is not None


def place(run: KernelRun, roof: Roof) -> Placement:
    """``run`` under ``roof``; GFLOP/s, GB/s and the fraction only if its timing means
    something (a simulator run gets its intensity and bound, never a speed)."""
    intensity = run.cost.intensity
    timed = {}
    if run.meaningful:
        timed = {"gflops": run.gflops, "gbps": run.gbps,
                 "fraction": roof.fraction(run.gflops, run.gbps)}
    return Placement(name=run.name, lesson=run.lesson, flop=run.cost.flop,
                     nbytes=run.cost.nbytes, intensity=intensity, bound=roof.bound(intensity),
                     roof_gflops=roof.attainable(intensity), **timed)


def above_roof(placements: Iterable[Placement], tolerance: float) -> list[str]:
    """One line per measured kernel that exceeds ``tolerance`` × its roof (empty: none)."""
    return [f"{p.name}: {p.fraction:.2f} x its roof (limit {tolerance:.2f})"
            for p in placements if p.measured and p.fraction > tolerance]


def format_table(placements: Sequence[Placement]) -> str:
    """The lesson's table: per kernel FLOP, bytes, intensity, bound and (if measured)
    GFLOP/s, GB/s and the fraction of the roof."""
    head = (f"{'kernel':26s} {'lesson':>6s} {'FLOP':>9s} {'bytes':>9s} {'FLOP/B':>7s} "
            f"{'bound':>7s} {'GFLOP/s':>9s} {'GB/s':>8s} {'of roof':>7s}")
    lines = [head, "-" * len(head)]
    for p in placements:
        speed = (f"{p.gflops:9.4g} {p.gbps:8.4g} {p.fraction:7.0%}" if p.measured
                 else f"{'-':>9s} {'-':>8s} {'-':>7s}")
        lines.append(f"{p.name:26s} {p.lesson:>6s} {p.flop:9.3g} {p.nbytes:9.3g} "
                     f"{p.intensity:7.3g} {p.bound:>7s} {speed}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- occupancy


@dataclass(frozen=True)
class SMLimits:
    """What one streaming multiprocessor (SM) holds; defaults: an H100 (compute
    capability 9.0). ``reserved_shared_per_block``: shared memory the system keeps per
    block (1 KiB from compute capability 8.0 on). Registers are allocated per warp in
    units of ``register_unit`` and split evenly over ``subpartitions`` schedulers."""

    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    registers_per_sm: int = 65536
    max_registers_per_block: int = 65536
    shared_per_sm: int = 228 * 1024
    reserved_shared_per_block: int = 1024
    shared_unit: int = 128
    register_unit: int = 256
    subpartitions: int = 4
    warp_size: int = 32
    name: str = "NVIDIA H100 (compute capability 9.0), data sheet"

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // self.warp_size


H100_LIMITS = SMLimits()


def sm_limits(device: Any, name: str = "") -> SMLimits:
    """The limits of a real GPU from its driver attributes (a ``numba.cuda`` device:
    ``cuda.get_current_device()``); a missing attribute keeps the H100's value."""
    defaults = H100_LIMITS

    def attr(key: str, default: int) -> int:
        try:
            value = getattr(device, key)
        except Exception:  # noqa: BLE001 - an old driver without this attribute
            return default
        return int(value) if value else default

    major = getattr(device, "compute_capability", (9, 0))[0]
    return SMLimits(
        max_threads_per_sm=attr("MAX_THREADS_PER_MULTIPROCESSOR", defaults.max_threads_per_sm),
        max_blocks_per_sm=attr("MAX_BLOCKS_PER_MULTIPROCESSOR", defaults.max_blocks_per_sm),
        registers_per_sm=attr("MAX_REGISTERS_PER_MULTIPROCESSOR", defaults.registers_per_sm),
        max_registers_per_block=attr("MAX_REGISTERS_PER_BLOCK",
                                     defaults.max_registers_per_block),
        shared_per_sm=attr("MAX_SHARED_MEMORY_PER_MULTIPROCESSOR", defaults.shared_per_sm),
        reserved_shared_per_block=attr("RESERVED_SHARED_MEMORY_PER_BLOCK", 0),
        warp_size=attr("WARP_SIZE", 32),
        subpartitions=4 if major >= 7 else 2,
        name=name or "this GPU, from its driver")


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def blocks_per_sm_by_registers(threads_per_block: int, registers_per_thread: int,
                               limits: SMLimits = H100_LIMITS) -> int:
    """Resident blocks per SM that the register file allows (CUDA's occupancy calculator).

    Each warp gets ``registers × 32`` registers rounded up to ``register_unit`` (256); the
    register file is split into ``subpartitions`` (4) equal parts, each holding a whole
    number of warps. 0 registers (unknown) means no limit; a block that does not fit at
    all gives 0 (the launch would fail).
    """
    threads_per_block = check_int("threads_per_block", threads_per_block)
    registers_per_thread = check_int("registers_per_thread", registers_per_thread, low=0)
    if registers_per_thread == 0:
        return limits.max_blocks_per_sm
    warps_per_block = -(-threads_per_block // limits.warp_size)
    per_warp = _round_up(registers_per_thread * limits.warp_size, limits.register_unit)
    per_block = per_warp * _round_up(warps_per_block, limits.subpartitions)
    if per_block > limits.max_registers_per_block:
        return 0
    warps_per_subpartition = (limits.registers_per_sm // limits.subpartitions) // per_warp
    return warps_per_subpartition * limits.subpartitions // warps_per_block


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks per SM, what limits them, and the theoretical occupancy (resident
    warps ÷ the SM's maximum)."""

    threads_per_block: int
    registers_per_thread: int
    shared_bytes: int
    blocks_per_sm: int
    limits: dict[str, int]
    occupancy: float

    @property
    def limited_by(self) -> str:
        """The resource(s) that allow the fewest blocks, e.g. ``"registers"``."""
        return " & ".join(k for k, v in self.limits.items() if v == self.blocks_per_sm)


def occupancy(threads_per_block: int, registers_per_thread: int = 0, shared_bytes: int = 0,
              limits: SMLimits = H100_LIMITS) -> Occupancy:
    """Theoretical occupancy of a kernel launched with ``threads_per_block`` threads that
    uses ``registers_per_thread`` registers and ``shared_bytes`` of static shared memory
    per block.

    Threads, block slots and shared memory go through lesson 07's
    ``launch.occupancy_blocks_per_sm`` (shared memory per block rounded up to 128 bytes,
    plus the block's reserved share); registers through
    :func:`blocks_per_sm_by_registers`. The smallest count wins.
    """
    threads_per_block = check_int("threads_per_block", threads_per_block)
    shared_bytes = check_int("shared_bytes", shared_bytes, low=0)
    warps = -(-threads_per_block // limits.warp_size)
    shared = _round_up(shared_bytes + limits.reserved_shared_per_block, limits.shared_unit)
    by = {
        "threads": launch.occupancy_blocks_per_sm(
            threads_per_block, max_threads_per_sm=limits.max_threads_per_sm,
            max_blocks_per_sm=10**6),
        "block slots": limits.max_blocks_per_sm,
        "shared memory": launch.occupancy_blocks_per_sm(
            threads_per_block, max_threads_per_sm=10**9, max_blocks_per_sm=10**6,
            shared_bytes=shared, shared_per_sm=limits.shared_per_sm) if shared else 10**6,
        "registers": blocks_per_sm_by_registers(threads_per_block, registers_per_thread,
                                                limits),
    }
    # The same count as launch.occupancy_blocks_per_sm's combined answer, plus registers:
    combined = launch.occupancy_blocks_per_sm(
        threads_per_block, max_threads_per_sm=limits.max_threads_per_sm,
        max_blocks_per_sm=limits.max_blocks_per_sm, shared_bytes=shared,
        shared_per_sm=limits.shared_per_sm)
    blocks = min(combined, by["registers"])
    assert blocks == min(by.values())
    return Occupancy(threads_per_block=threads_per_block,
                     registers_per_thread=registers_per_thread, shared_bytes=shared_bytes,
                     blocks_per_sm=blocks, limits=by,
                     occupancy=blocks * warps / limits.max_warps_per_sm)


@dataclass(frozen=True)
class KernelResources:
    """What the compiler gave one compiled kernel: registers per thread, static shared
    memory per block and local memory (spilled registers, local arrays) per thread."""

    registers: int
    shared_bytes: int
    local_bytes: int
    compiled: Any = None

    def driver_blocks_per_sm(self, threads_per_block: int, multiprocessors: int) -> int:
        """Resident blocks per SM according to the CUDA driver's own occupancy calculator
        (``cuOccupancyMaxActiveBlocksPerMultiprocessor``, through Numba's
        ``max_cooperative_grid_blocks``, which multiplies it by the number of SMs)."""
        return int(self.compiled.max_cooperative_grid_blocks(threads_per_block)) \
            // multiprocessors


def kernel_resources(kernel: Any, args: Sequence[Any]) -> KernelResources:
    """Registers, shared and local memory of ``kernel`` compiled for ``args`` (real GPU).

    ``kernel.compile(argtypes)`` returns the compiled variant the launch used (no second
    compilation); ``kernel.get_regs_per_thread()`` and ``get_shared_mem_per_block()`` ask
    the same numbers, as a dict over all compiled signatures (or one number for a kernel
    made with ``kernel.specialize(*args)``). The simulator compiles nothing: CourseError.
    """
    from ..cudasim import on_simulator

    if on_simulator():
        raise CourseError("the CUDA simulator compiles no machine code: registers and shared "
                          "memory per kernel need a real GPU")
    compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    return KernelResources(registers=int(compiled.regs_per_thread),
                           shared_bytes=int(compiled.shared_mem_per_block),
                           local_bytes=int(compiled.local_mem_per_thread), compiled=compiled)


# --------------------------------------------------------------------------- Nsight

# The counters lesson 10 reads first, with what they mean (Nsight Compute metric names).
NCU_METRICS = {
    "sm__throughput.avg.pct_of_peak_sustained_elapsed":
        "SM throughput: % of the busiest SM pipeline's peak (compute 'Speed Of Light')",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed":
        "DRAM throughput: % of the memory's peak bandwidth (memory 'Speed Of Light')",
    "sm__warps_active.avg.pct_of_peak_sustained_active":
        "achieved occupancy: resident warps as % of the SM's maximum",
    "l1tex__t_sector_hit_rate.pct": "L1 hit rate: % of sectors found in L1",
    "lts__t_sector_hit_rate.pct": "L2 hit rate: % of sectors found in L2",
}
NCU_SECTIONS = ("SpeedOfLight", "MemoryWorkloadAnalysis", "Occupancy", "WarpStateStats")


def _script_argv(script: str | os.PathLike, python: str | None) -> list[str]:
    return [python or sys.executable, str(script)]


def ncu_command(script: str | os.PathLike, *, kernel_regex: str | None = None,
                count: int | None = 1, sections: Sequence[str] | None = None,
                metrics: Sequence[str] | None = None, full_set: bool = False,
                report: str | os.PathLike | None = None, csv_output: bool = False,
                python: str | None = None) -> list[str]:
    """The ``ncu`` (Nsight Compute) command that profiles ``python script``.

    ``kernel_regex``: profile only kernels whose name matches (``-k regex:...``);
    ``count``: at most this many kernel launches (``-c``); ``full_set``: every section
    (``--set full``, slow: the kernel is replayed dozens of times); ``sections`` /
    ``metrics``: only those; ``report``: write ``report.ncu-rep`` (open it in the Nsight
    Compute GUI) instead of printing; ``csv_output``: print CSV (for a program to read).
    ``--target-processes all`` follows child processes (papermill runs a notebook in one).
    """
    cmd = ["ncu", "--target-processes", "all"]
    if full_set:
        cmd += ["--set", "full"]
    for section in sections or ():
        cmd += ["--section", section]
    if metrics:
        cmd += ["--metrics", ",".join(metrics)]
    if kernel_regex:
        cmd += ["-k", f"regex:{kernel_regex}"]
    if count is not None:
        cmd += ["-c", str(check_int("count", count))]
    if report:
        cmd += ["-o", str(report)]
    if csv_output:
        cmd += ["--csv"]
    return cmd + _script_argv(script, python)


def nsys_command(script: str | os.PathLike, *, report: str | os.PathLike = "timeline",
                 python: str | None = None) -> list[str]:
    """The ``nsys`` (Nsight Systems) command that records a timeline of CUDA API calls,
    kernels, copies and NVTX ranges of ``python script`` into ``report.nsys-rep``."""
    return ["nsys", "profile", "-t", "cuda,nvtx", "-o", str(report), "--force-overwrite",
            "true", *_script_argv(script, python)]


def shell_line(cmd: Sequence[str]) -> str:
    """A command as one line to paste into a terminal (arguments quoted where needed)."""
    import shlex

    return " ".join(shlex.quote(str(part)) for part in cmd)


DEMO_SCRIPT = '''\
"""A small workload for Nsight Compute / Nsight Systems (written by lesson 10).

Two kernels of the course on a real GPU: lesson 07's copy (memory-bound) and lesson 08's
register-blocked matrix product (compute-bound), each launched once and checked.
"""
import numpy as np

import course_utils

ctx = course_utils.setup("quick", "cuda", 0, verbose=False)  # before numba is imported

from numba import cuda  # noqa: E402

from course_utils.gpu import launch  # noqa: E402
from course_utils.gpu.kernels import basics, memory  # noqa: E402

n, m = 1 << 24, 1024
x = cuda.to_device(np.ones(n, np.float32))
y = cuda.device_array_like(x)
blocks, threads = launch.grid_1d(n, 256)
basics.copy[blocks, threads](x, y)
a = cuda.to_device(np.ones((m, m), np.float32))
c = cuda.device_array((m, m), np.float32)
memory.matmul_launch(m, m, m, "register_blocked")(a, a, c)
cuda.synchronize()
assert float(y.copy_to_host().sum()) == n and float(c.copy_to_host()[0, 0]) == m
print("demo workload done: copy and register-blocked matmul")
'''


def write_demo_script(path: str | os.PathLike) -> Path:
    """Write :data:`DEMO_SCRIPT` to ``path`` (under ``build/``); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_SCRIPT, encoding="utf-8")
    return path


def tool_path(name: str) -> str | None:
    """Where the command ``name`` (``ncu``, ``nsys``) is on PATH, or None."""
    return shutil.which(name)


@dataclass(frozen=True)
class ToolResult:
    """What a profiler run returned: exit status (None after a timeout) and its output."""

    returncode: int | None
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_tool(cmd: Sequence[str], *, timeout: float, cwd: str | os.PathLike | None = None,
             env: dict[str, str] | None = None) -> ToolResult:
    """Run ``cmd`` with a ``timeout`` (seconds), stdout and stderr together.

    The command runs in its own process group, so after a timeout the profiler *and* the
    Python process it started are stopped (a profiler left behind would hold the GPU).
    """
    timeout = check_number("timeout", timeout, 0.0, inclusive=False)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return ToolResult(proc.returncode, output)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # pragma: no cover - it ended just now
            pass
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - it ignored SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return ToolResult(None, output or "")


def script_env(repo_root: str | os.PathLike) -> dict[str, str]:
    """The environment for a profiled script: this one, with the repository on
    ``PYTHONPATH`` (so ``import course_utils`` works) and the simulator off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH"))
                                        if p)
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    return env


def _itanium_names(mangled: str) -> list[str]:
    """The length-prefixed name components of an Itanium-mangled name (``_ZN6cudapy4copy``
    -> ``["cudapy", "copy"]``), skipping ABI tags (``B2v1``); stops at the first ``E``."""
    names, i = [], 3  # after "_ZN"
    while i < len(mangled):
        tag = mangled[i] == "B"
        digits = re.match(r"\d+", mangled[i + tag:])
        if not digits:
            break
        start = i + tag + len(digits.group())
        end = start + int(digits.group())
        if not tag:
            names.append(mangled[start:end])
        i = end
    return names


def short_kernel_name(name: str) -> str:
    """A readable kernel name from Nsight's: Numba's kernels are named
    ``cudapy::module::function[abi...](args)`` (demangled) or ``_ZN6cudapy...E`` (mangled);
    either way the function's own name comes back (``copy``, ``matmul_tiled``)."""
    if name.startswith("_ZN"):
        names = [n for n in _itanium_names(name) if n and not n.startswith("_")]
        return names[-1] if names else name[:40]
    demangled = re.search(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\s*\(", name)
    if demangled:
        return demangled.group(1)
    return name.split("::")[-1][:40]


def parse_ncu_csv(text: str) -> list[dict[str, Any]]:
    """Rows ``{"kernel", "metric", "unit", "value"}`` from ``ncu --csv`` output.

    Only the CSV lines are read (the program's own output and ``==PROF==`` lines are
    skipped); values become floats where they are numbers (thousands separators removed).
    """
    lines = [line for line in text.splitlines() if line.startswith('"')]
    rows = list(csv.reader(lines))
    header = next((r for r in rows if "Metric Name" in r and "Metric Value" in r), None)
    if header is None:
        return []
    col = {name: i for i, name in enumerate(header)}
    out = []
    for r in rows:
        if r is header or len(r) != len(header):
            continue
        raw = r[col["Metric Value"]]
        try:
            value: Any = float(raw.replace(",", ""))
        except ValueError:
            value = raw
        out.append({"kernel": short_kernel_name(r[col["Kernel Name"]]) if "Kernel Name" in col
                    else "", "metric": r[col["Metric Name"]],
                    "unit": r[col["Metric Unit"]] if "Metric Unit" in col else "",
                    "value": value})
    return out


__all__ = [
    "DEMO_SCRIPT", "H100_LIMITS", "KernelResources", "KernelRun", "NCU_METRICS",
    "NCU_SECTIONS", "Occupancy", "Placement", "REFERENCE_GPU", "REFERENCE_ROOF", "Roof",
    "SIMULATOR_CAPS", "SMLimits", "ToolResult", "above_roof", "blocks_per_sm_by_registers",
    "blur_cost", "check_config", "check_int", "check_number", "copy_kernel_cost",
    "format_table", "histogram_cost", "kernel_resources", "matmul_kernel_cost",
    "ncu_command", "nsys_command", "occupancy", "parse_ncu_csv", "place", "run_tool",
    "saxpy_cost", "script_env", "shell_line", "short_kernel_name", "sm_limits",
    "strided_copy_cost", "sum_cost", "tool_path", "transpose_cost", "write_demo_script",
]


# ------------------------------------------------------------------ reading PTX

PTX_CLASSES = {  # what a lesson compares between kernels: memory traffic and arithmetic
    "ld.global": r"\bld\.global\.", "st.global": r"\bst\.global\.",
    "ld.shared": r"\bld\.shared\.", "st.shared": r"\bst\.shared\.",
    "fma": r"\bfma\.rn\.", "bar.sync": r"\bbar\.(?:sync|warp\.sync)\b",
    "atom": r"\b(?:atom|red)\.",
}


def count_instructions(ptx: str) -> dict[str, int]:
    """Static counts of a few instruction classes in PTX (an unrolled loop counts each
    copy; a loop that is not unrolled counts once): lesson 08 reads the tiled product's
    inner loop this way, ``hpdl kernels`` counts them for every kernel."""
    body = "\n".join(line.split("//")[0] for line in ptx.splitlines())
    return {name: len(re.findall(pattern, body)) for name, pattern in PTX_CLASSES.items()}


def ptx_between_barriers(ptx: str) -> list[str]:
    """The instructions between the first two ``bar.sync`` of a kernel's PTX: for a tiled
    product, the inner loop over one tile (comments and blank lines dropped)."""
    lines = [ln.split("//")[0].strip() for ln in ptx.splitlines()]
    lines = [ln for ln in lines if ln]
    barriers = [i for i, ln in enumerate(lines) if re.match(r"bar\.(?:sync|warp\.sync)\b", ln)]
    if len(barriers) < 2:
        raise UsageError(f"the PTX has {len(barriers)} bar.sync instruction(s); two are needed")
    return lines[barriers[0]:barriers[1] + 1]
