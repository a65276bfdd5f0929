"""The labs' graded checks: ``with check(...)`` scoring and each lab's reference checks.

Each check raises ``AssertionError`` with a message that says exactly what differs
(shape, first wrong index, got versus expected), GPU-Puzzles style; ``check`` scores it.
"""

from __future__ import annotations

import os

import numpy as np

from .scoring import CHECK_MIME, RESULTS, CheckResult, check, summary

__all__ = ["CHECK_MIME", "GRADE_SEED_VAR", "RESULTS", "CheckResult", "assert_close", "check",
           "check_seed", "numerical_gradient", "summary"]

GRADE_SEED_VAR = "HPDL_GRADE_SEED"
_GRADE_SEED = os.environ.get(GRADE_SEED_VAR)  # read once, before any answer cell runs


def check_seed(seed: int) -> int:
    """The seed a check draws its inputs from: its own fixed ``seed`` in a lab notebook,
    mixed with the grader's per-run seed under ``hpdl grade`` (``HPDL_GRADE_SEED``), so
    that an answer which hard-codes the outputs of the published inputs fails."""
    if not _GRADE_SEED:
        return int(seed)
    return int(np.random.SeedSequence([int(_GRADE_SEED), int(seed)]).generate_state(1)[0])


def assert_close(name: str, got, expected, *, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Raise AssertionError naming ``name`` if ``got`` differs from ``expected``."""
    if got is None:
        raise AssertionError(f"{name}: got None (did you forget to return or store it?)")
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: shape {got.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(got)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        raise AssertionError(f"{name}: not finite at index {bad} (value {got[bad]})")
    close = np.isclose(got, expected, rtol=rtol, atol=atol)
    if not close.all():
        first = tuple(int(i) for i in np.argwhere(~close)[0])
        err = np.abs(got - expected)
        raise AssertionError(
            f"{name}: {int((~close).sum())} of {got.size} values differ; first at index "
            f"{first}: got {got[first]:.6g}, expected {expected[first]:.6g} "
            f"(max abs error {err.max():.3g})"
        )


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x`` (float64).

    ``x`` is perturbed in place, one entry at a time, and restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad
