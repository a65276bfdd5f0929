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
