"""Data-sheet peaks of the GPUs the course is run on, and the sanity check of a measured
peak against them.

Dense (not 2:4-sparse) tensor-core rates, from NVIDIA's data sheets and architecture
whitepapers (A100: "NVIDIA A100 Tensor Core GPU" data sheet; H100/H200: the H100 and H200
data sheets, whose tensor figures are quoted *with sparsity* and are halved here; L4 and
T4: their data sheets; RTX 4090: the Ada Lovelace whitepaper, FP16/BF16 with FP32
accumulation, which is what PyTorch uses). TFLOP/s and GB/s (10^9 bytes). A measured
figure outside ``PLAUSIBLE`` of its peak is reported as a broken measurement: below 40 %
the timing or the FLOP count is probably wrong (or the GPU is throttled or shared), above
105 % it certainly is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

PLAUSIBLE = (0.40, 1.05)
KINDS = ("fp32", "tf32", "bf16", "fp16", "bandwidth")


@dataclass(frozen=True)
class Peaks:
    """One GPU's peaks: TFLOP/s per arithmetic kind, memory bandwidth in GB/s. ``None``:
    the GPU has no such unit (T4: no TF32, no BF16)."""

    name: str
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None
    bandwidth_gbps: float

    def peak(self, kind: str) -> float | None:
        """The peak for ``kind`` in GFLOP/s (or GB/s for ``bandwidth``)."""
        if kind == "bandwidth":
            return self.bandwidth_gbps
        value = getattr(self, kind)
        return None if value is None else value * 1e3


# (pattern on the lower-case device name with "-" and "_" as spaces) -> peaks; the first
# match wins, so the more specific patterns come first.
TABLE: tuple[tuple[str, Peaks], ...] = (
    (r"\bh200\b", Peaks("NVIDIA H200 (SXM)", 67.0, 494.7, 989.4, 989.4, 4800.0)),
    (r"\bh100 nvl\b", Peaks("NVIDIA H100 NVL", 60.0, 417.5, 835.5, 835.5, 3900.0)),
    (r"\bh100 pcie\b", Peaks("NVIDIA H100 PCIe", 51.0, 378.0, 756.0, 756.0, 2000.0)),
    (r"\bh100\b", Peaks("NVIDIA H100 SXM5 (80 GB HBM3)", 67.0, 494.7, 989.4, 989.4, 3350.0)),
    (r"\ba100\b.*\b40gb\b", Peaks("NVIDIA A100 40 GB", 19.5, 156.0, 312.0, 312.0, 1555.0)),
    (r"\ba100\b.*\bpcie\b", Peaks("NVIDIA A100 PCIe 80 GB", 19.5, 156.0, 312.0, 312.0,
                                  1935.0)),
    (r"\ba100\b", Peaks("NVIDIA A100 SXM4 80 GB", 19.5, 156.0, 312.0, 312.0, 2039.0)),
    (r"\bl4\b", Peaks("NVIDIA L4", 30.3, 60.0, 121.0, 121.0, 300.0)),
    (r"\bt4\b", Peaks("NVIDIA T4", 8.1, None, None, 65.0, 320.0)),
    (r"\brtx 4090\b", Peaks("NVIDIA GeForce RTX 4090", 82.6, 82.6, 165.2, 165.2, 1008.0)),
)

# Recorded metrics (course_utils.record names) that measure a peak, and which one.
PEAK_METRICS = {
    "matmul_fp32_gflops": "fp32",              # lesson 00, TF32 off
    "hw_matmul_fp32_gflops": "fp32",           # lesson 05, TF32 off
    "hw_matmul_fp32_tf32off_gflops": "fp32",
    "cublas_fp32_gflops": "fp32",              # lesson 08
    "roofline_cublas_fp32_gflops": "fp32",     # lesson 10
    "hw_matmul_tf32_gflops": "tf32",
    "hw_matmul_bf16_gflops": "bf16",
    "hw_matmul_fp16_gflops": "fp16",
    "hw_copy_bandwidth_gbps": "bandwidth",     # lesson 05, torch copy, read + write
    "roofline_copy_gbps": "bandwidth",         # lesson 10, the copy kernel
    "roofline_memcpy_gbps": "bandwidth",       # lesson 10, cudaMemcpy device to device
    "reduction_copy_gbps": "bandwidth",        # lesson 09
    "reduction_memcpy_gbps": "bandwidth",      # lesson 09, cudaMemcpy device to device
}


def lookup(gpu_name: str) -> Peaks | None:
    """The data-sheet peaks of a GPU from its name (``torch.cuda.get_device_name()``), or
    None for a GPU the table does not know."""
    name = re.sub(r"[-_]", " ", gpu_name.lower())
    for pattern, peaks in TABLE:
        if re.search(pattern, name):
            return peaks
    return None


@dataclass(frozen=True)
class PeakCheck:
    """One measured peak against its data sheet."""

    metric: str
    kind: str
    measured: float
    peak: float
    fraction: float
    ok: bool

    def line(self) -> str:
        unit = "GB/s" if self.kind == "bandwidth" else "GFLOP/s"
        verdict = "ok" if self.ok else "BROKEN MEASUREMENT"
        low, high = PLAUSIBLE
        return (f"{self.metric:34s} {self.measured:12,.0f} {unit:7s} = {self.fraction:6.1%} of "
                f"{self.peak:,.0f} ({self.kind})  {verdict}"
                + ("" if self.ok else f": outside {low:.0%}-{high:.0%} of the data sheet"))


def check(metric: str, measured: float, peaks: Peaks) -> PeakCheck | None:
    """``measured`` (GFLOP/s or GB/s) of ``metric`` against ``peaks``; None when the metric
    is not a peak measurement or the GPU has no unit for it."""
    kind = PEAK_METRICS.get(metric)
    if kind is None:
        return None
    if kind not in KINDS:  # pragma: no cover - the table above is the course's
        raise UsageError(f"unknown peak kind {kind!r} for {metric}")
    peak = peaks.peak(kind)
    if not peak:
        return None
    fraction = measured / peak
    low, high = PLAUSIBLE
    return PeakCheck(metric, kind, measured, peak, fraction, low <= fraction <= high)
