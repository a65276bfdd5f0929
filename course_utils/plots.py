"""Plots the lessons share: decision boundaries and loss/accuracy curves.

Every function draws on a given ``ax`` (or a new one) and returns it, so a lesson can put
several plots side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _axes(ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    return ax


def scatter(X: np.ndarray, y: np.ndarray, *, ax=None, title: str = ""):
    """2-D points coloured by class, with equal axes (the data sets of unit 1)."""
    ax = _axes(ax)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu", s=8, edgecolors="k", linewidths=0.2)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.set_aspect("equal")
    return ax


def decision_boundary(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                      y: np.ndarray, *, ax=None, title: str = "", resolution: int = 200,
                      margin: float = 0.1):
    """Shade the class ``predict`` gives each point of a grid, and scatter the data.

    ``predict`` maps an (n, 2) float32 array to n class labels (or scores of class 1).
    """
    ax = _axes(ax)
    lo = X.min(axis=0) - margin
    hi = X.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    zz = np.asarray(predict(grid)).reshape(gx.shape)
    ax.contourf(gx, gy, zz, levels=20 if zz.dtype.kind == "f" else None,
                cmap="RdBu", alpha=0.35)
    return scatter(X, y, ax=ax, title=title)


def curves(history: dict[str, Sequence[float]], *, ax=None, xlabel: str = "epoch",
           ylabel: str = "", title: str = "", logy: bool = False):
    """One line per entry of ``history`` (e.g. ``{"train loss": [...], "test loss": [...]}``)."""
    ax = _axes(ax)
    for label, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def confusion(matrix: np.ndarray, *, ax=None, title: str = "", labels=None):
    """A confusion matrix as an image: rows are true classes, columns predictions."""
    ax = _axes(ax)
    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    n = matrix.shape[0]
    ticks = np.arange(n)
    labels = list(range(n)) if labels is None else labels
    ax.set(xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black")
    return ax


def roofline(peak_gflops: float | dict[str, float], bandwidth_gbps: float,
             points: dict[str, tuple[float, float]] | None = None, *, ax=None,
             title: str = "", hardware: str = ""):
    """The roofline model: attainable GFLOP/s = min(peak, intensity × bandwidth).

    ``peak_gflops`` is one compute ceiling or several (``{"fp32": ..., "bf16": ...}``);
    ``bandwidth_gbps`` the memory ceiling (GB/s); ``points`` maps a kernel's name to its
    ``(arithmetic intensity in FLOP/byte, measured GFLOP/s)``. Log-log axes; the ridge
    point (where a kernel stops being memory-bound) is marked for each ceiling.
    ``hardware`` names the machine the numbers came from (put into the title).
    """
    from .errors import check_positive

    ax = _axes(ax)
    peaks = peak_gflops if isinstance(peak_gflops, dict) else {"peak": peak_gflops}
    check_positive("bandwidth_gbps", bandwidth_gbps)
    for name, peak in peaks.items():
        check_positive(f"peak_gflops[{name!r}]", peak)
    intensities = [i for i, _ in (points or {}).values()]
    ridges = [peak / bandwidth_gbps for peak in peaks.values()]
    lo = min([*intensities, *ridges, 1.0]) / 4
    hi = max([*intensities, *ridges, 1.0]) * 4
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.loglog(x, x * bandwidth_gbps, "k--", lw=1, label=f"memory {bandwidth_gbps:.3g} GB/s")
    for (name, peak), ridge in zip(peaks.items(), ridges, strict=True):
        line, = ax.loglog(x, np.minimum(peak, x * bandwidth_gbps), lw=2,
                          label=f"{name} {peak:.3g} GFLOP/s")
        ax.axvline(ridge, color=line.get_color(), lw=0.5, ls=":")
    for name, (intensity, achieved) in (points or {}).items():
        ax.loglog([intensity], [achieved], "o")
        ax.annotate(name, (intensity, achieved), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    full_title = title + (f"\n{hardware}" if hardware else "")
    ax.set(xlabel="arithmetic intensity (FLOP / byte)", ylabel="GFLOP/s", title=full_title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return ax


def bars(values: dict[str, float], *, ax=None, ylabel: str = "", title: str = "",
         reference: float | None = None, fmt: str = "{:.3g}"):
    """Labelled bars (an optimisation ladder, a table of throughputs), values on top.

    ``reference`` draws a horizontal line (a baseline or a hardware peak).
    """
    ax = _axes(ax)
    names, heights = list(values), [values[k] for k in values]
    rects = ax.bar(names, heights)
    for rect, h in zip(rects, heights, strict=True):
        ax.annotate(fmt.format(h), (rect.get_x() + rect.get_width() / 2, h),
                    ha="center", va="bottom", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1)
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=30)
    return ax


def scaling(workers: Sequence[int], throughput: Sequence[float], *, ax=None,
            title: str = "", unit: str = "samples/s"):
    """Measured throughput against worker count, with ideal linear scaling and the
    scaling efficiency (throughput / (workers × single-worker throughput)) annotated."""
    ax = _axes(ax)
    workers = np.asarray(workers, dtype=float)
    throughput = np.asarray(throughput, dtype=float)
    base = throughput[0] / workers[0]
    ax.plot(workers, throughput, "o-", label="measured")
    ax.plot(workers, base * workers, "k--", lw=1, label="ideal (linear)")
    for w, t in zip(workers, throughput, strict=True):
        ax.annotate(f"{t / (base * w):.0%}", (w, t), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    ax.set(xlabel="workers", ylabel=unit, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax
