"""Errors that carry a message meant for a student, not a traceback."""

from __future__ import annotations


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
