"""Data sets the lessons share, generated locally with a fixed seed (no network).

Each generator returns float32 features ``X`` of shape (n, d) and int64 labels ``y``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .errors import check_positive


def two_spirals(n_per_class: int = 500, noise: float = 0.2, turns: float = 1.5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, the classic set a linear model cannot separate.

    Points of class ``c`` lie at angle ``t + c·π`` and radius ``t`` for ``t`` in
    ``(0, turns·2π]``, with Gaussian ``noise`` added; coordinates are scaled to about [-1, 1].
    """
    check_positive("n_per_class", n_per_class)
    check_positive("noise", noise, allow_zero=True)
    check_positive("turns", turns)
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.02, 1.0, size=n_per_class)) * turns * 2 * np.pi
    xs, ys = [], []
    for label in (0, 1):
        angle = t + label * np.pi
        points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
        points += rng.normal(scale=noise, size=points.shape)
        xs.append(points)
        ys.append(np.full(n_per_class, label))
    X = np.concatenate(xs) / (turns * 2 * np.pi)
    y = np.concatenate(ys)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order].astype(np.int64)


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.25,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle once with ``seed`` and split: ``X_train, X_test, y_train, y_test``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} must be between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(round(len(y) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def minibatches(X: np.ndarray, y: np.ndarray, batch_size: int,
                rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of shuffled mini-batches (the last one may be smaller)."""
    check_positive("batch_size", batch_size)
    order = rng.permutation(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]
