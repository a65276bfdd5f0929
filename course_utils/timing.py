"""One benchmark helper for every lesson: warm-up, device synchronisation, median.

GPU work is asynchronous: a kernel launch returns before the kernel ends, so a timer
around it measures the launch. ``benchmark`` synchronises the device before starting and
after stopping each repeat, discards warm-up runs (JIT compilation, caches, clocks), and
reports the median, which a stray slow repeat does not move. Never time with
``time.time()`` in a notebook; call ``benchmark``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import cudasim
from .errors import UsageError, check_positive


@dataclass
class Timing:
    """Seconds per call over ``repeats`` runs, after ``warmup`` discarded ones."""

    times: list[float] = field(default_factory=list)
    warmup: int = 0
    synced: str = "none"
    simulator: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def repeats(self) -> int:
        return len(self.times)

    @property
    def meaningful(self) -> bool:
        """False for kernels timed on the CUDA simulator."""
        return not self.simulator

    def __str__(self) -> str:
        note = "  [CUDA simulator: meaningless]" if self.simulator else ""
        return (f"median {format_seconds(self.median)}, min {format_seconds(self.min)} "
                f"over {self.repeats} runs (+{self.warmup} warm-up){note}")


def format_seconds(seconds: float) -> str:
    """Human units: ns, µs, ms or s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _synchronizer(sync: str) -> tuple[Callable[[], None], str]:
    """The function that waits for queued device work, by name ("auto" picks)."""
    def nothing() -> None:
        return None

    if sync == "none":
        return nothing, "none"
    if sync in ("auto", "torch"):
        try:
            import torch

            if torch.cuda.is_available() and torch.cuda.is_initialized():
                return torch.cuda.synchronize, "torch.cuda"
        except ImportError:  # pragma: no cover
            pass
    if sync in ("auto", "numba"):
        import sys

        if "numba.cuda" in sys.modules and not cudasim.on_simulator():
            from numba import cuda

            return cuda.synchronize, "numba.cuda"
    if sync in ("torch", "numba"):
        return nothing, "none"
    return nothing, "none"


def benchmark(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 7,
              sync: str = "auto", simulator: bool | None = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    ``sync``: "auto" synchronises PyTorch's CUDA stream or Numba's device when either is in
    use; "torch", "numba" or "none" choose explicitly. Time Numba CUDA kernels with
    ``sync="numba"``: on the CUDA simulator the result is then marked meaningless
    (``simulator`` overrides that guess).
    """
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, allow_zero=True)
    wait, synced = _synchronizer(sync)
    for _ in range(warmup):
        fn()
    wait()
    times = []
    for _ in range(repeats):
        wait()
        start = time.perf_counter()
        fn()
        wait()
        times.append(time.perf_counter() - start)
    if simulator is None:
        simulator = sync == "numba" and cudasim.on_simulator()
    return Timing(times=times, warmup=warmup, synced=synced, simulator=bool(simulator))


def benchmark_alternating(fns: Mapping[str, Callable[[], object]], *, warmup: int = 1,
                          repeats: int = 7, sync: str = "auto",
                          simulator: bool | None = None) -> dict[str, Timing]:
    """Time several functions in alternation: one run of each per round, ``repeats`` rounds.

    For comparisons on a shared machine (a laptop, a CI runner): when another program
    takes the cores for a while, every contestant of the rounds it hits is slowed, not
    just the one that happened to be timed then. Compare ``Timing.min`` of the results,
    the least-disturbed run of each, for a ratio that load does not flip.
    """
    if not fns:
        raise UsageError("benchmark_alternating needs at least one function to time, got none")
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, allow_zero=True)
    wait, synced = _synchronizer(sync)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wait()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wait()
            start = time.perf_counter()
            fn()
            wait()
            times[name].append(time.perf_counter() - start)
    if simulator is None:
        simulator = sync == "numba" and cudasim.on_simulator()
    return {name: Timing(times=t, warmup=warmup, synced=synced, simulator=bool(simulator))
            for name, t in times.items()}


def gflops(flop: float, seconds: float) -> float:
    """GFLOP/s for ``flop`` floating-point operations done in ``seconds``."""
    return flop / seconds / 1e9


def gbps(nbytes: float, seconds: float) -> float:
    """GB/s (10^9 bytes per second) for ``nbytes`` moved in ``seconds``."""
    return nbytes / seconds / 1e9


def matmul_flop(m: int, n: int, k: int) -> int:
    """Floating-point operations of an (m x k) @ (k x n) product: 2·m·n·k."""
    return 2 * m * n * k
