"""Scaling laws and measures: speed-up, efficiency, Amdahl's and Gustafson's laws.

How much faster does a program get with more workers (threads, processes, GPUs)? Two
questions, two laws:

* **Strong scaling** keeps the problem fixed. If a share ``f`` of the one-worker run time
  cannot be parallelised, ``p`` workers give at most Amdahl's speed-up
  ``1 / (f + (1 - f) / p)``, which never exceeds ``1 / f`` however large ``p`` grows.
* **Weak scaling** grows the problem with the workers (``p`` times the work on ``p``
  workers). If a share ``f`` of the *p-worker* run is serial, the work done per unit time
  grows like Gustafson's scaled speed-up ``f + (1 - f) p``, without a ceiling.

Lesson 06 fits Amdahl's law to Numba thread counts; unit 3 uses the same functions for the
scaling efficiency of data-parallel training over GPUs. The laws and measures accept a
number (and return a float) or a sequence (and return a NumPy array); every function
rejects bad input with a ``UsageError`` that names the parameter, so a typo in a notebook
gives one clear line instead of a NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError

ArrayLike = float | Sequence[float] | np.ndarray


def _values(name: str, value: ArrayLike, *, minimum: float | None = None,
            strict: bool = False, maximum: float | None = None) -> np.ndarray:
    """``value`` as a float array (0-d for a number), finite and within the bounds;
    otherwise a UsageError naming ``name``, its value and the allowed range."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise UsageError(f"{name}={value!r} is not valid; it must be a number or a "
                         "sequence of numbers") from None
    if array.ndim > 1:
        raise UsageError(f"{name} must be a number or a 1-D sequence, got shape {array.shape}")
    if array.size == 0:
        raise UsageError(f"{name}={value!r} is not valid; it must not be empty")
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{name}={value!r} is not valid; every value must be finite")
    parts = []
    ok = np.ones(array.shape, dtype=bool)
    if minimum is not None:
        ok &= array > minimum if strict else array >= minimum
        parts.append(f"{'>' if strict else '>='} {minimum:g}")
    if maximum is not None:
        ok &= array <= maximum
        parts.append(f"<= {maximum:g}")
    if not np.all(ok):
        which = "it" if array.ndim == 0 else "every value"
        raise UsageError(f"{name}={_show(value)} is not valid; {which} must be "
                         f"{' and '.join(parts)}")
    return array


def _show(value: ArrayLike) -> str:
    """A short repr for error messages (arrays printed as lists)."""
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    return repr(value)


def _out(array: np.ndarray) -> float | np.ndarray:
    """A Python float for 0-d results, else the array."""
    return float(array) if array.ndim == 0 else array


def _same_length(names: tuple[str, str], a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim and b.ndim and a.shape != b.shape:
        raise UsageError(f"{names[0]} and {names[1]} must have the same length, "
                         f"got {a.size} and {b.size}")


def check_fraction(name: str, value: float, *, allow_one: bool = True) -> float:
    """Return ``value`` if it is a number in [0, 1] (or [0, 1)); else a UsageError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise UsageError(f"{name}={value!r} is not valid; it must be a number in [0, 1]")
    upper_ok = value <= 1 if allow_one else value < 1
    if not (math.isfinite(value) and value >= 0 and upper_ok):
        bracket = "]" if allow_one else ")"
        raise UsageError(f"{name}={value!r} is not valid; it must be in [0, 1{bracket}")
    return float(value)


def worker_counts(max_workers: int, *, limit: int | None = None,
                  name: str = "max_workers") -> list[int]:
    """The worker counts a scaling study measures: 1, 2, 4, ... up to ``max_workers``,
    plus ``max_workers`` itself (e.g. 1, 2, 4, 8, 12 for 12 cores).

    ``limit`` is the most the machine offers (Numba's thread pool, the GPUs); ``name`` is
    the parameter's name in the error message (a notebook passes its knob's name).
    """
    if (isinstance(max_workers, bool) or not isinstance(max_workers, (int, np.integer))
            or max_workers < 1 or (limit is not None and max_workers > limit)):
        allowed = f"an integer from 1 to {limit}" if limit is not None else "an integer >= 1"
        raise UsageError(f"{name}={max_workers!r} is not valid; it must be {allowed}")
    counts = [1 << k for k in range(int(max_workers).bit_length()) if 1 << k <= max_workers]
    if counts[-1] != max_workers:
        counts.append(int(max_workers))
    return counts


def speedup(t1: ArrayLike, tp: ArrayLike) -> float | np.ndarray:
    """Speed-up ``t1 / tp``: the one-worker time over the time on ``p`` workers
    (same problem). For throughputs, divide the other way round: ``rate_p / rate_1``."""
    t1_ = _values("t1", t1, minimum=0, strict=True)
    tp_ = _values("tp", tp, minimum=0, strict=True)
    return _out(t1_ / tp_)


def strong_scaling_efficiency(speedup: ArrayLike, workers: ArrayLike) -> float | np.ndarray:
    """Strong-scaling efficiency ``speedup / workers`` for a *fixed* problem, the speed-up
    being ``T_1 / T_p``: 1.0 is perfect, 0.5 means half of the workers' time is lost to
    serial parts, overheads or waiting. For a problem that grows with the workers use
    :func:`weak_scaling_efficiency`."""
    s = _values("speedup", speedup, minimum=0, strict=True)
    p = _values("workers", workers, minimum=1)
    _same_length(("speedup", "workers"), s, p)
    return _out(s / p)


def weak_scaling_efficiency(t1: ArrayLike, tp: ArrayLike) -> float | np.ndarray:
    """Weak-scaling efficiency ``t1 / tp``, where ``tp`` is the time of ``p`` workers on
    ``p`` times the one-worker problem: 1.0 means the bigger problem took no longer."""
    t1_ = _values("t1", t1, minimum=0, strict=True)
    tp_ = _values("tp", tp, minimum=0, strict=True)
    return _out(t1_ / tp_)


def amdahl_speedup(workers: ArrayLike, serial_fraction: float) -> float | np.ndarray:
    """Amdahl's law, ``1 / (f + (1 - f) / p)``: the speed-up of a fixed problem on ``p``
    workers when a share ``f`` of the one-worker time is serial. Limit: ``1 / f``."""
    p = _values("workers", workers, minimum=1)
    f = check_fraction("serial_fraction", serial_fraction)
    return _out(1.0 / (f + (1.0 - f) / p))


def gustafson_speedup(workers: ArrayLike, serial_fraction: float) -> float | np.ndarray:
    """Gustafson's law, ``f + (1 - f) p = p - f (p - 1)``: the scaled speed-up when the
    problem grows with ``p`` and a share ``f`` of the time *on p workers* is serial."""
    p = _values("workers", workers, minimum=1)
    f = check_fraction("serial_fraction", serial_fraction)
    return _out(f + (1.0 - f) * p)


def karp_flatt(workers: ArrayLike, speedups: ArrayLike) -> float | np.ndarray:
    """The experimentally determined serial fraction of each measurement (Karp and Flatt,
    1990): ``(1/S - 1/p) / (1 - 1/p)``, the ``f`` for which Amdahl's law gives exactly the
    measured ``S`` at ``p`` (> 1) workers. Constant across ``p``: a true serial part;
    growing with ``p``: overheads (synchronisation, communication) that grow with workers.
    Not clipped, so a speed-up above ``p`` shows up as a negative value."""
    p = _values("workers", workers, minimum=1, strict=True)
    s = _values("speedups", speedups, minimum=0, strict=True)
    _same_length(("workers", "speedups"), p, s)
    return _out((1.0 / s - 1.0 / p) / (1.0 - 1.0 / p))


def fit_amdahl(workers: ArrayLike, speedups: ArrayLike) -> float:
    """The serial fraction ``f`` in [0, 1] whose Amdahl curve fits the measured speed-ups
    best (least squares on the speed-ups, ``scipy.optimize.curve_fit`` with bounds).

    ``workers[i]`` workers gave ``speedups[i]`` (relative to one worker). At least one
    count must be above 1: one worker always gives speed-up 1 and says nothing about
    ``f``. Measurements better than linear push ``f`` to 0; slow-downs (speed-up below 1)
    push it to 1, the worst Amdahl's law can describe.
    """
    p = np.atleast_1d(_values("workers", workers, minimum=1))
    s = np.atleast_1d(_values("speedups", speedups, minimum=0, strict=True))
    if p.shape != s.shape:
        raise UsageError(f"workers and speedups must have the same length, got {p.size} "
                         f"and {s.size}")
    informative = p > 1
    if not np.any(informative):
        raise UsageError(f"workers={_show(workers)} is not valid; fit_amdahl needs at least "
                         "one worker count > 1")
    # Amdahl's law is linear in f for the time ratio: 1/S - 1/p = f (1 - 1/p). That
    # closed-form least-squares solution starts the fit on the speed-ups themselves.
    a = 1.0 - 1.0 / p
    start = float(np.sum(a * (1.0 / s - 1.0 / p)) / np.sum(a * a))
    start = min(max(start, 1e-6), 1.0 - 1e-6)
    from scipy.optimize import OptimizeWarning, curve_fit

    with warnings.catch_warnings():  # a single informative point has no covariance
        warnings.simplefilter("ignore", OptimizeWarning)
        (fraction,), _ = curve_fit(lambda x, f: 1.0 / (f + (1.0 - f) / x), p, s,
                                   p0=[start], bounds=(0.0, 1.0))
    return float(min(max(fraction, 0.0), 1.0))


def plot_amdahl(workers: ArrayLike, speedups: ArrayLike, serial_fraction: float | None = None,
                *, ax=None, title: str = "", hardware: str = "", label: str = "measured",
                extrapolate_to: int | None = None):
    """Measured speed-ups against workers, Amdahl's curve for ``serial_fraction`` (fitted
    with ``fit_amdahl`` when ``None``) and the ideal line ``S = p``; returns ``ax``.

    ``extrapolate_to`` continues the fitted curve (dotted) to that many workers, with
    Amdahl's ceiling ``1 / f``, to show what the same program would do on a bigger machine.
    ``hardware`` names the machine the measurements came from (added to the title).
    """
    import matplotlib.pyplot as plt

    p = np.atleast_1d(_values("workers", workers, minimum=1))
    s = np.atleast_1d(_values("speedups", speedups, minimum=0, strict=True))
    if p.shape != s.shape:
        raise UsageError(f"workers and speedups must have the same length, got {p.size} "
                         f"and {s.size}")
    f = fit_amdahl(p, s) if serial_fraction is None else check_fraction(
        "serial_fraction", serial_fraction)
    if extrapolate_to is not None:
        _values("extrapolate_to", extrapolate_to, minimum=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    p_max = float(p.max())
    far_end = float(extrapolate_to) if extrapolate_to is not None else p_max
    ideal = np.geomspace(1.0, max(p_max, far_end), 200)
    ax.plot(ideal, ideal, "k--", lw=1, label="ideal (S = p)")
    curve = np.linspace(1.0, p_max, 200)
    line, = ax.plot(curve, amdahl_speedup(curve, f), lw=2, label=f"Amdahl, f = {f:.3f}")
    ax.plot(p, s, "o", color=line.get_color(), label=label)
    if far_end > p_max:
        far = np.geomspace(p_max, far_end, 200)
        ax.plot(far, amdahl_speedup(far, f), ":", lw=2, color=line.get_color(),
                label=f"Amdahl extrapolated to {far_end:g}")
        if f > 0 and 1.0 / f <= far_end:
            ax.axhline(1.0 / f, color="grey", lw=0.8, ls="-.",
                       label=f"ceiling 1/f = {1.0 / f:.3g}")
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        for axis in (ax.xaxis, ax.yaxis):  # 1, 2, 4, ... instead of 2^0, 2^1, 2^2, ...
            axis.set_major_formatter(ScalarFormatter())
    full_title = title + (f"\n{hardware}" if hardware else "")
    ax.set(xlabel="workers p", ylabel="speed-up S(p)", title=full_title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax
