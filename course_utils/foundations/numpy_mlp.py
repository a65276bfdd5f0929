"""Lesson 01's network in NumPy, as a module: the hand-written reference for later lessons.

Lesson 01 derives these functions cell by cell; lesson 02 imports them to assert that
PyTorch's autograd computes exactly the gradients we wrote by hand. The network is
``in -> hidden ... -> out`` with ReLU or tanh, softmax and mean cross-entropy; parameters
are a dict ``{"W1", "b1", "W2", "b2", ...}`` with ``W`` of shape (n_in, n_out), the
convention of lesson 01 (``Z = A @ W + b``; PyTorch's ``nn.Linear`` stores ``W.T``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import check_choice

ACTIVATIONS = ("relu", "tanh")


def init_params(sizes: Sequence[int], rng: np.random.Generator, activation: str = "relu",
                dtype=np.float32) -> dict[str, np.ndarray]:
    """He (ReLU) or Xavier (tanh) initialised weights for layer ``sizes``; zero biases."""
    check_choice("activation", activation, ACTIVATIONS)
    gain = 2.0 if activation == "relu" else 1.0
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        params[f"W{i}"] = (rng.normal(size=(n_in, n_out)) * np.sqrt(gain / n_in)).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype=dtype)
    return params


def _act(z: np.ndarray, activation: str) -> np.ndarray:
    return np.maximum(z, 0) if activation == "relu" else np.tanh(z)


def _act_grad(z: np.ndarray, a: np.ndarray, activation: str) -> np.ndarray:
    return (z > 0).astype(z.dtype) if activation == "relu" else 1 - a * a


def forward(params: dict[str, np.ndarray], X: np.ndarray, activation: str = "relu"):
    """Logits and the cache of every layer's input and pre-activation, for ``backward``."""
    check_choice("activation", activation, ACTIVATIONS)
    n_layers = len(params) // 2
    A, cache = X, []
    for i in range(1, n_layers + 1):
        Z = A @ params[f"W{i}"] + params[f"b{i}"]
        cache.append((A, Z))
        A = _act(Z, activation) if i < n_layers else Z
    return A, cache


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient ``(P - Y) / B`` with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    P = exp / exp.sum(axis=1, keepdims=True)
    batch = len(y)
    loss = -np.log(P[np.arange(batch), y]).mean()
    dZ = P.copy()
    dZ[np.arange(batch), y] -= 1
    return float(loss), dZ / batch


def backward(params: dict[str, np.ndarray], cache, dZ: np.ndarray,
             activation: str = "relu") -> dict[str, np.ndarray]:
    """Backpropagation by hand: ``dW = A.T @ dZ``, ``db = sum(dZ)``, ``dA = dZ @ W.T``."""
    grads = {}
    n_layers = len(cache)
    for i in range(n_layers, 0, -1):
        A, _ = cache[i - 1]
        grads[f"W{i}"] = A.T @ dZ
        grads[f"b{i}"] = dZ.sum(axis=0)
        if i > 1:
            dA = dZ @ params[f"W{i}"].T
            Z_prev = cache[i - 2][1]
            dZ = dA * _act_grad(Z_prev, _act(Z_prev, activation), activation)
    return grads


def loss_and_grads(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
                   activation: str = "relu") -> tuple[float, dict[str, np.ndarray]]:
    """Forward, loss, backward: the loss and the gradient of every parameter."""
    logits, cache = forward(params, X, activation)
    loss, dZ = softmax_cross_entropy(logits, y)
    return loss, backward(params, cache, dZ, activation)
