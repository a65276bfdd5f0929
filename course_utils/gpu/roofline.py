"""The roofline model: FLOP and byte counts, attainable performance, measured ceilings.

A kernel does ``flop`` floating-point operations and moves ``nbytes`` bytes between memory
and the processor; its **arithmetic intensity** is ``flop / nbytes`` (FLOP/byte). A machine
has a compute ceiling (peak GFLOP/s) and a memory ceiling (bandwidth, GB/s); the best a
kernel can reach is ``min(peak, intensity × bandwidth)``. Left of the *ridge point*
``peak / bandwidth`` a kernel is memory-bound, right of it compute-bound.

The first half of this module is pure arithmetic (counts, intensities, ``attainable``),
usable for any kernel: a PyTorch operation or a Numba CUDA kernel (lesson 10). The second
half measures this machine's ceilings and points with PyTorch: matrix products per dtype
(with TF32 switched on or off), large copies, an element-wise add, a sum, and host-to-device
copies. Every measurement goes through ``course_utils.timing.benchmark`` (``sync="torch"``)
and comes back as a :class:`Measurement`: the number, its unit, the ``Timing`` and the
counted cost, so a notebook can ``record(..., meaningful=m.meaningful)``.

Rates here come from the *fastest* repeat (``Timing.min``), not the median: a roofline's
ceilings are what the hardware can be shown to do, and other programs sharing the machine
only ever slow a repeat down. (The STREAM memory benchmark reports its best time for the
same reason.) The full ``Timing`` travels with each number.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import tf32
from ..errors import (
    DeviceUnavailableError,
    UsageError,
    check_choice,
    check_choices,
    check_positive,
)
from ..timing import Timing, benchmark

DTYPE_NAMES = ("fp64", "fp32", "bf16", "fp16")
BYTES_PER_ELEMENT = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}
DEVICE_NAMES = ("cpu", "cuda")
_TORCH_DTYPES = {"fp64": "float64", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# Generous upper bounds on what any machine of the kind can do, for a sanity check of a
# measured peak: a figure above them is a broken measurement (a timer stopped before the
# work ended, FLOPs counted twice), not a fast machine. CPU: per core and GHz, two 512-bit
# FMA units (64 fp32 FLOP/cycle; 32 fp64) and AMX tiles for bf16/fp16 (2048), at most
# 6 GHz. GPU: above every data-centre GPU's dense tensor-core peak to date (B200: about
# 2.25 PFLOP/s in bf16; fp64 and plain fp32 well under 100 and 150 TFLOP/s).
CPU_FLOP_PER_CYCLE_CEILING = {"fp64": 32, "fp32": 64, "bf16": 2048, "fp16": 2048}
CPU_GHZ_CEILING = 6.0
GPU_GFLOPS_CEILING = {"fp64": 100e3, "fp32": 150e3, "tf32": 1.25e6, "bf16": 2.5e6,
                      "fp16": 2.5e6}


def gflops_ceiling(dtype: str, device: str, cores: int | None = None) -> float:
    """An upper bound on the matmul GFLOP/s of ``device`` in ``dtype`` ("tf32" too on a GPU);
    see the constants above. ``cores`` (CPU) defaults to the cores this process may use."""
    if device == "cuda":
        return GPU_GFLOPS_CEILING[dtype]
    from ..env import cpu_cores

    cores = cpu_cores() if cores is None else cores
    return cores * CPU_GHZ_CEILING * CPU_FLOP_PER_CYCLE_CEILING[check_dtype(dtype)]


# --------------------------------------------------------------------------- validation

def check_size(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a whole number > 0; else a UsageError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(f"{name}={value!r} is not valid; it must be a whole number > 0")
    if not math.isfinite(value) or value != int(value):
        raise UsageError(f"{name}={value!r} is not valid; it must be a whole number > 0")
    check_positive(name, value)
    return int(value)


def check_dtype(dtype: str, name: str = "dtype") -> str:
    """Return ``dtype`` if it is one of :data:`DTYPE_NAMES`; else a UsageError naming it."""
    return check_choice(name, dtype, DTYPE_NAMES)


def parse_dtypes(value: str | Sequence[str], name: str = "dtypes") -> list[str]:
    """A list of dtype names from a list or text (``"fp32,bf16"``: what ``-p`` passes),
    each one of :data:`DTYPE_NAMES`; an empty selection is a UsageError."""
    return list(check_choices(name, value, DTYPE_NAMES))


def check_device(device: Any, name: str = "device") -> str:
    """``"cpu"`` or ``"cuda"`` (a ``torch.device`` is accepted); ``"cuda"`` needs a GPU.

    An unknown name is a UsageError; ``"cuda"`` on a machine without a usable CUDA GPU in
    PyTorch is a DeviceUnavailableError (both name the parameter).
    """
    device = getattr(device, "type", device)
    check_choice(name, device, DEVICE_NAMES)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{name}='cuda' was asked for, but PyTorch sees no CUDA GPU on this machine "
                "(torch.cuda.is_available() is False); use device='cpu'")
    return str(device)


def torch_dtype(dtype: str):
    """The ``torch.dtype`` of a dtype name (``"bf16"`` -> ``torch.bfloat16``)."""
    import torch

    return getattr(torch, _TORCH_DTYPES[check_dtype(dtype)])


# --------------------------------------------------------------------------- counting

@dataclass(frozen=True)
class KernelCost:
    """What a kernel must do at least: ``flop`` operations and ``nbytes`` bytes moved."""

    flop: int
    nbytes: int

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP/byte (0 for a pure copy)."""
        return arithmetic_intensity(self.flop, self.nbytes)


def arithmetic_intensity(flop: float, nbytes: float) -> float:
    """FLOP per byte moved: ``flop / nbytes`` (``nbytes`` must be > 0)."""
    check_positive("nbytes", nbytes)
    check_positive("flop", flop, allow_zero=True)
    return flop / nbytes


def matmul_cost(n: int, dtype: str = "fp32", *, m: int | None = None,
                k: int | None = None) -> KernelCost:
    """An (m × k) @ (k × n) product (square n × n × n by default) in ``dtype``.

    FLOP: ``2·m·n·k`` (a multiply and an add per term). Bytes: the minimum any
    implementation must move, each input read once and the output written once,
    ``(m·k + k·n + m·n)`` elements; for a square product ``2n³`` FLOP over ``3n²``
    elements, so the intensity grows like ``n``.
    """
    n = check_size("n", n)
    m = n if m is None else check_size("m", m)
    k = n if k is None else check_size("k", k)
    size = BYTES_PER_ELEMENT[check_dtype(dtype)]
    return KernelCost(flop=2 * m * n * k, nbytes=(m * k + k * n + m * n) * size)


def elementwise_cost(n: int, dtype: str = "fp32", *, inputs: int = 2, outputs: int = 1,
                     flop_per_element: int = 1) -> KernelCost:
    """An element-wise kernel over ``n`` elements (default ``c = a + b``).

    Every element of the ``inputs`` arrays is read once and of the ``outputs`` written once;
    ``flop_per_element`` operations each (``a + b``: 1 FLOP per 3 elements moved; SAXPY
    ``a·x + y``: ``flop_per_element=2``).
    """
    n = check_size("n", n)
    inputs = check_size("inputs", inputs)
    outputs = check_size("outputs", outputs)
    flop_per_element = int(check_positive("flop_per_element", flop_per_element,
                                          allow_zero=True))
    size = BYTES_PER_ELEMENT[check_dtype(dtype)]
    return KernelCost(flop=flop_per_element * n, nbytes=(inputs + outputs) * n * size)


def reduction_cost(n: int, dtype: str = "fp32") -> KernelCost:
    """A sum of ``n`` elements: 1 FLOP per element read (the single output is neglected)."""
    n = check_size("n", n)
    return KernelCost(flop=n, nbytes=n * BYTES_PER_ELEMENT[check_dtype(dtype)])


def copy_cost(n: int, dtype: str = "fp32") -> KernelCost:
    """A copy of ``n`` elements: no FLOP, every byte read once and written once (2× size)."""
    n = check_size("n", n)
    return KernelCost(flop=0, nbytes=2 * n * BYTES_PER_ELEMENT[check_dtype(dtype)])


# --------------------------------------------------------------------------- the model

def attainable(intensity, peak: float, bandwidth: float):
    """Roofline bound in GFLOP/s: ``min(peak, intensity × bandwidth)``.

    ``intensity`` in FLOP/byte (a number or an array), ``peak`` in GFLOP/s, ``bandwidth``
    in GB/s. Returns a float for a number, an array for an array.
    """
    check_positive("peak", peak)
    check_positive("bandwidth", bandwidth)
    values = np.asarray(intensity, dtype=float)
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise UsageError(f"intensity={intensity!r} is not valid; it must be finite and >= 0")
    result = np.minimum(peak, values * bandwidth)
    return float(result) if result.ndim == 0 else result


def ridge_point(peak: float, bandwidth: float) -> float:
    """Intensity (FLOP/byte) where the memory roof meets the compute roof: peak / bandwidth."""
    check_positive("peak", peak)
    check_positive("bandwidth", bandwidth)
    return peak / bandwidth


def bound(intensity: float, peak: float, bandwidth: float) -> str:
    """``"memory"`` left of the ridge point, ``"compute"`` at or right of it."""
    return "memory" if intensity < ridge_point(peak, bandwidth) else "compute"


def fraction_of_roof(intensity: float, achieved: float, peak: float,
                     bandwidth: float) -> float:
    """Achieved GFLOP/s as a fraction of the roofline at that intensity (1.0 = on the roof)."""
    return achieved / attainable(intensity, peak, bandwidth)


# --------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Measurement:
    """One measured number (``value`` in ``unit``), its ``Timing`` and its counted cost.

    ``gflops``, ``gbps`` and ``intensity`` follow from the cost and the fastest repeat
    (``timing.min``, as STREAM does; see the module docstring), so the same measurement
    gives a roofline ``point`` (intensity, GFLOP/s).
    """

    name: str
    value: float
    unit: str
    timing: Timing
    cost: KernelCost
    device: str
    dtype: str | None = None

    @property
    def seconds(self) -> float:
        """Seconds of the fastest repeat (see the module docstring: ceilings are best cases)."""
        return self.timing.min

    @property
    def gflops(self) -> float:
        return self.cost.flop / self.seconds / 1e9

    @property
    def gbps(self) -> float:
        return self.cost.nbytes / self.seconds / 1e9

    @property
    def intensity(self) -> float:
        return self.cost.intensity

    @property
    def point(self) -> tuple[float, float]:
        """``(intensity FLOP/byte, achieved GFLOP/s)`` for ``plots.roofline``."""
        return (self.intensity, self.gflops)

    @property
    def meaningful(self) -> bool:
        return self.timing.meaningful

    def __str__(self) -> str:
        what = f"{self.name} [{self.dtype}]" if self.dtype else self.name
        return f"{what} on {self.device}: {self.value:.4g} {self.unit} ({self.timing})"


# The TF32 switches (course_utils.tf32), under the names the lessons use.
tf32_state = tf32.state
tf32_enabled = tf32.enabled


def dtype_supported(dtype: str, device: str = "cpu") -> bool:
    """Whether PyTorch can multiply matrices of ``dtype`` on ``device`` (a tiny trial).

    True means it *runs*, not that it is fast: bf16 and fp16 matmuls on a CPU without
    bf16/fp16 instructions are converted in software and much slower than fp32; measure.
    """
    import torch

    dtype, device = check_dtype(dtype), check_device(device)
    try:
        a = torch.ones(8, 8, dtype=torch_dtype(dtype), device=device)
        result = (a @ a).float()
        if device == "cuda":
            torch.cuda.synchronize()
        return bool(torch.all(result == 8.0))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _numel(nbytes: int, dtype: str, name: str = "nbytes") -> int:
    nbytes = check_size(name, nbytes)
    size = BYTES_PER_ELEMENT[dtype]
    if nbytes < size:
        raise UsageError(f"{name}={nbytes!r} is not valid; it must hold at least one "
                         f"{dtype} element ({size} bytes)")
    return nbytes // size


def _matmul_inputs(n: int, dtype: str, device: str, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32)
    kind = torch_dtype(dtype)
    return a.to(device=device, dtype=kind), b.to(device=device, dtype=kind)


def matmul_gflops(n: int, dtype: str = "fp32", device: str = "cpu", *, tf32: bool = False,
                  warmup: int = 2, repeats: int = 5, seed: int = 0) -> Measurement:
    """GFLOP/s of an n × n × n ``torch.matmul`` in ``dtype`` on ``device``.

    ``tf32`` (fp32 only) lets cuBLAS use TF32 tensor cores; with ``tf32=False`` a float32
    product is computed in true float32. The TF32 switches are restored afterwards.
    """
    import torch

    n, dtype, device = check_size("n", n), check_dtype(dtype), check_device(device)
    if tf32 and dtype != "fp32":
        raise UsageError(f"tf32=True is not valid with dtype={dtype!r}; TF32 changes only "
                         "fp32 matrix products (use dtype='fp32')")
    a, b = _matmul_inputs(n, dtype, device, seed)
    c = torch.empty_like(a)
    with tf32_enabled(bool(tf32)):
        timing = benchmark(lambda: torch.matmul(a, b, out=c), warmup=warmup, repeats=repeats,
                           sync="torch")
    cost = matmul_cost(n, dtype)
    label = "tf32" if tf32 else dtype
    return Measurement(name=f"matmul n={n}", value=cost.flop / timing.min / 1e9,
                       unit="GFLOP/s", timing=timing, cost=cost, device=device, dtype=label)


def matmul_relative_error(n: int, dtype: str = "fp32", device: str = "cpu", *,
                          tf32: bool = False, seed: int = 0) -> float:
    """Relative error ``‖C - C_ref‖_F / ‖C_ref‖_F`` of an n × n product in ``dtype``.

    The reference is NumPy float64 on the host, from the same (already rounded) inputs,
    so the error measures the arithmetic of the product alone: about 1e-7 for fp32, 1e-3
    for TF32 and bf16 inputs summed in reduced precision.
    """

    n, dtype, device = check_size("n", n), check_dtype(dtype), check_device(device)
    if tf32 and dtype != "fp32":
        raise UsageError(f"tf32=True is not valid with dtype={dtype!r}; use dtype='fp32'")
    a, b = _matmul_inputs(n, dtype, device, seed)
    with tf32_enabled(bool(tf32)):
        c = (a @ b).double().cpu().numpy()
    ref = a.double().cpu().numpy() @ b.double().cpu().numpy()
    return float(np.linalg.norm(c - ref) / np.linalg.norm(ref))


def copy_gbps(nbytes: int, device: str = "cpu", *, warmup: int = 2,
              repeats: int = 5) -> Measurement:
    """GB/s of copying ``nbytes`` bytes into another buffer on ``device``.

    Counted bytes: read once and written once, ``2 × nbytes``. Make ``nbytes`` much larger
    than the caches (hundreds of MB), or the copy measures the cache, not the memory.
    """
    import torch

    device = check_device(device)
    n = _numel(nbytes, "fp32")
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = benchmark(lambda: dst.copy_(src), warmup=warmup, repeats=repeats, sync="torch")
    cost = copy_cost(n, "fp32")
    return Measurement(name="copy", value=cost.nbytes / timing.min / 1e9, unit="GB/s",
                       timing=timing, cost=cost, device=device, dtype="fp32")


def elementwise_gbps(nbytes: int, device: str = "cpu", dtype: str = "fp32", *,
                     warmup: int = 2, repeats: int = 5) -> Measurement:
    """GB/s of ``c = a + b`` with arrays of ``nbytes`` bytes each (3 × nbytes counted).

    The measurement's ``gflops`` and ``point`` put it on the roofline (1 FLOP per element).
    """
    import torch

    device, dtype = check_device(device), check_dtype(dtype)
    n = _numel(nbytes, dtype)
    a = torch.ones(n, dtype=torch_dtype(dtype), device=device)
    b = torch.ones_like(a)
    c = torch.empty_like(a)
    timing = benchmark(lambda: torch.add(a, b, out=c), warmup=warmup, repeats=repeats,
                       sync="torch")
    cost = elementwise_cost(n, dtype)
    return Measurement(name="add", value=cost.nbytes / timing.min / 1e9, unit="GB/s",
                       timing=timing, cost=cost, device=device, dtype=dtype)


def reduction_gbps(nbytes: int, device: str = "cpu", dtype: str = "fp32", *,
                   warmup: int = 2, repeats: int = 5) -> Measurement:
    """GB/s of ``a.sum()`` over an array of ``nbytes`` bytes (nbytes counted, 1 FLOP each)."""
    import torch

    device, dtype = check_device(device), check_dtype(dtype)
    n = _numel(nbytes, dtype)
    a = torch.ones(n, dtype=torch_dtype(dtype), device=device)
    timing = benchmark(lambda: torch.sum(a), warmup=warmup, repeats=repeats, sync="torch")
    cost = reduction_cost(n, dtype)
    return Measurement(name="sum", value=cost.nbytes / timing.min / 1e9, unit="GB/s",
                       timing=timing, cost=cost, device=device, dtype=dtype)


def h2d_gbps(nbytes: int, pinned: bool, *, warmup: int = 2, repeats: int = 5) -> Measurement:
    """GB/s of copying ``nbytes`` bytes from host memory to the GPU (CUDA only).

    ``pinned=True`` uses page-locked host memory, which the GPU's copy engine reads
    directly (DMA); ordinary *pageable* memory is first copied by the CPU into a pinned
    staging buffer, which costs bandwidth.
    """
    import torch

    check_device("cuda", name="device")
    n = check_size("nbytes", nbytes)
    host = torch.ones(n, dtype=torch.uint8, pin_memory=bool(pinned))
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    timing = benchmark(lambda: dev.copy_(host), warmup=warmup, repeats=repeats, sync="torch")
    cost = KernelCost(flop=0, nbytes=n)
    kind = "pinned" if pinned else "pageable"
    return Measurement(name=f"host-to-device ({kind})", value=n / timing.min / 1e9,
                       unit="GB/s", timing=timing, cost=cost, device="cuda")


def module_available(name: str) -> bool:
    """Whether ``import name`` would find a module (a dotted name's parents may be missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
