"""Data sets the lessons share, generated locally with a fixed seed (no network).

Each generator returns float32 features ``X`` of shape (n, d) and int64 labels ``y``.
"""

from __future__ import annotations

import os
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


# ------------------------------------------------------------------ Playground data sets
PLAYGROUND_DATASETS = ("circle", "xor", "gauss", "spiral")
PLAYGROUND_FEATURES = ("x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)")
PLAYGROUND_RADIUS = 6.0  # the Playground draws its points in [-6, 6]²


def playground(name: str, n: int = 500, noise: float = 0.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One of the TensorFlow Playground's four classification sets, ``n`` points.

    Coordinates lie in about ``[-6, 6]²`` as in the Playground (so ``sin(x1)`` means the
    same); labels are 0/1 (the Playground's -1/+1). ``noise`` is the Playground's noise
    slider as a fraction, 0 to 0.5: it jitters the points (circle, xor, spiral) or
    widens the blobs (gauss).

    * ``circle``: class 1 inside radius 2.5, class 0 on a ring from 3.5 to 5;
    * ``xor``: the label is the sign of ``x1·x2``;
    * ``gauss``: two Gaussian blobs around (2, 2) and (-2, -2);
    * ``spiral``: two interleaved spirals.
    """
    from .errors import check_choice

    check_choice("dataset", name, PLAYGROUND_DATASETS)
    check_positive("n", n)
    if not 0.0 <= noise <= 0.5:
        from .errors import UsageError

        raise UsageError(f"noise={noise!r} is not valid; it must be between 0 and 0.5 "
                         "(the Playground's 0 % to 50 %)")
    rng = np.random.default_rng(seed)
    r = PLAYGROUND_RADIUS
    if name == "circle":
        n_in = n // 2
        radius = np.concatenate([rng.uniform(0, 0.5 * r * 0.83, n_in),
                                 rng.uniform(0.7 * r * 0.83, r * 0.83, n - n_in)])
        angle = rng.uniform(0, 2 * np.pi, n)
        X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        y = (np.arange(n) < n_in).astype(np.int64)
        X += rng.uniform(-r, r, X.shape) * noise / 3
    elif name == "xor":
        X = rng.uniform(-5, 5, (n, 2))
        X += np.where(X > 0, 0.3, -0.3)  # keep a small gap around the axes
        y = (X[:, 0] * X[:, 1] >= 0).astype(np.int64)
        X += rng.uniform(-r, r, X.shape) * noise / 3
    elif name == "gauss":
        n_pos = n // 2
        spread = 0.5 + noise * 4  # the Playground maps noise onto the blobs' variance
        centres = np.where((np.arange(n) < n_pos)[:, None], 2.0, -2.0)
        X = centres + rng.normal(scale=spread, size=(n, 2))
        y = (np.arange(n) < n_pos).astype(np.int64)
    else:  # spiral
        half = n // 2
        t = np.concatenate([np.linspace(0, 1, half), np.linspace(0, 1, n - half)])
        label = (np.arange(n) >= half).astype(np.int64)
        radius = 5 * t
        angle = 1.75 * t * 2 * np.pi + label * np.pi
        X = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
        X += rng.uniform(-1, 1, X.shape) * noise * 3
        y = label
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order]


def playground_features(X: np.ndarray, features: tuple[str, ...] | list[str]) -> np.ndarray:
    """The Playground's input features of 2-D points ``X``, as columns in the given order.

    Allowed names: ``x1, x2, x1^2, x2^2, x1*x2, sin(x1), sin(x2)`` (``PLAYGROUND_FEATURES``).
    """
    from .errors import UsageError, check_choice

    if not features:
        raise UsageError("features is empty; choose at least one of: "
                         + ", ".join(PLAYGROUND_FEATURES))
    x1, x2 = X[:, 0], X[:, 1]
    table = {"x1": x1, "x2": x2, "x1^2": x1 * x1, "x2^2": x2 * x2, "x1*x2": x1 * x2,
             "sin(x1)": np.sin(x1), "sin(x2)": np.sin(x2)}
    columns = [table[check_choice("feature", f, PLAYGROUND_FEATURES)] for f in features]
    return np.stack(columns, axis=1).astype(np.float32)


# ------------------------------------------------------------------ real (small) data
def digits(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's bundled 8×8 handwritten digits (1797 images, no download).

    Returns ``X_train, X_test, y_train, y_test`` with images of shape (n, 1, 8, 8),
    float32 in [0, 1], and int64 labels 0-9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    return train_test_split(X, y, test_fraction=test_fraction, seed=seed)


MNIST1D_PAPER_ACCURACY = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}
"""Test accuracies of Greydanus (2020), "Scaling Down Deep Learning", table 1 / README."""


def mnist1d(seed: int = 42):
    """MNIST-1D (Greydanus 2020), generated locally with the paper's arguments.

    4000 training and 1000 test sequences of length 40, ten classes. The generator is
    the ``mnist1d`` package's own (``make_dataset``): no download. The result is cached in
    ``build/data/`` so a second call in another notebook costs milliseconds.

    Returns ``X_train, X_test, y_train, y_test`` with sequences of shape (n, 40), float32.
    """
    from .paths import build_path

    cache = build_path("data", f"mnist1d_seed{seed}.npz")
    if cache.exists():
        with np.load(cache) as stored:
            return tuple(stored[k] for k in ("X_train", "X_test", "y_train", "y_test"))
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    made = make_dataset(args)
    arrays = (np.asarray(made["x"], np.float32), np.asarray(made["x_test"], np.float32),
              np.asarray(made["y"], np.int64), np.asarray(made["y_test"], np.int64))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # parallel-safe
    np.savez(tmp, X_train=arrays[0], X_test=arrays[1], y_train=arrays[2], y_test=arrays[3])
    tmp.replace(cache)
    return arrays


def synthetic_images(n: int, *, shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random CIFAR-shaped images with labels that a network can learn.

    Each class has its own smooth random template; an image is its class template plus
    noise. For throughput lessons the content does not matter, but a learnable signal lets
    them check that training still trains. Float32 (n, C, H, W), int64 labels.
    """
    check_positive("n", n)
    check_positive("n_classes", n_classes)
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.normal(size=(n_classes, c, 4, 4)).astype(np.float32)
    templates = np.repeat(np.repeat(coarse, -(-h // 4), axis=2), -(-w // 4), axis=3)
    templates = templates[:, :, :h, :w]
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    X = templates[y] + rng.normal(scale=1.0, size=(n, c, h, w)).astype(np.float32)
    return X.astype(np.float32), y
