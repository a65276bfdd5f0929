"""Errors that carry a message meant for a student, not a traceback, and the checks that
raise them for notebook parameters (one name, one value, what is allowed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any


class CourseError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class UsageError(CourseError, ValueError):
    """Bad input from the user (unknown profile, missing notebook, malformed option)."""


class DeviceUnavailableError(CourseError, RuntimeError):
    """A device was asked for that this machine does not have."""


def check_choice(name: str, value: object, allowed: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise a UsageError naming both."""
    if value not in allowed:
        raise UsageError(
            f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, allowed))}"
        )
    return str(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` if it is > 0 (or >= 0); else raise a UsageError naming it."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise UsageError(f"{name}={value!r} is not valid; it must be {bound}")
    return value


# ------------------------------------------------------------------ list parameters
def as_list(value: Any) -> list[Any]:
    """The items of a parameter that holds several values, without validating them.

    ``hpdl run -p NAME VALUE`` and ``papermill -p NAME VALUE`` pass lists as text, so text
    is split: ``"2,3"``, ``"[2, 3]"``, ``"(2, 3)"``, ``"2 3"``, ``"mlp, cnn"`` and
    ``"['mlp', 'cnn']"`` all work; numbers in text become ``int`` or ``float``. A list or
    tuple is returned as a list, anything else as a one-item list.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ("(", ")")):
            text = text[1:-1]
        return [_scalar(part) for part in re.split(r"[,\s]+", text) if part.strip("'\"")]
    if isinstance(value, (list, tuple, range)):
        return list(value)
    return [value]


def _scalar(text: str) -> Any:
    text = text.strip("'\"")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_ints(name: str, value: Any, *, minimum: int, distinct: bool = False,
               example: str | None = None) -> list[int]:
    """``value`` (see :func:`as_list`) as a non-empty list of integers >= ``minimum``.

    With ``distinct`` a repeated value is an error too (world sizes, worker counts). The
    one ``UsageError`` names the parameter, its value and what is allowed.
    """
    items = as_list(value)
    bad = (not items or any(isinstance(v, bool) or not isinstance(v, Integral) or v < minimum
                            for v in items)
           or (distinct and len(set(items)) != len(items)))
    if bad:
        what = "distinct integers" if distinct else "integers"
        example = example or f"{minimum},{minimum + 1}"
        raise UsageError(f"{name}={value!r} is not valid; give one or more {what} "
                         f">= {minimum}, e.g. -p {name.upper()} {example}")
    return [int(v) for v in items]


def check_numbers(name: str, value: Any, *, example: str = "1,25") -> list[float]:
    """``value`` (see :func:`as_list`) as a non-empty list of numbers > 0."""
    items = as_list(value)
    if not items or any(isinstance(v, bool) or not isinstance(v, Real) or not v > 0
                        for v in items):
        raise UsageError(f"{name}={value!r} is not valid; give one or more numbers > 0, "
                         f"e.g. -p {name.upper()} {example}")
    return [float(v) for v in items]


def check_choices(name: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    """``value`` (see :func:`as_list`) as a tuple of allowed names, in the order given,
    without repeats. An empty selection or an unknown name raises ``UsageError`` naming
    the parameter, the bad value and the allowed names."""
    names = [v for v in as_list(value) if v != ""]
    if not names:
        raise UsageError(f"{name}={value!r} is empty; choose one or more of: "
                         f"{', '.join(allowed)}")
    chosen: list[str] = []
    for item in names:
        if item not in allowed:
            raise UsageError(f"{name}={value!r} is not valid: {item!r} is unknown; "
                             f"choose one or more of: {', '.join(allowed)}")
        if item not in chosen:
            chosen.append(item)
    return tuple(chosen)
