"""Graded checks inside a lab notebook: ``with check("name", points=N): ...``.

A lab's graded cells wrap their assertions in ``check``: full points if the block runs,
0 with a one-line reason if it raises, and the notebook goes on to the next check.
Each result is shown in the notebook and emitted as a ``CHECK_MIME`` output, which is
what ``hpdl grade`` and ``hpdl run`` read back from the executed notebook.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import asdict, dataclass

from ..errors import UsageError

CHECK_MIME = "application/vnd.hpdl.check+json"
SKIPPED_MIME = "application/vnd.hpdl.check-skipped+json"  # a check this machine cannot grade

@dataclass
class CheckResult:
    """The outcome of one graded check."""

    name: str
    points: float
    max_points: float
    passed: bool
    message: str


RESULTS: dict[str, CheckResult] = {}
# Under nbgrader (labs/nbgrader_config.py sets it) a failed check also raises, so that
# nbgrader, which scores a grade cell by whether it ends in an error, sees it. Read once,
# when the setup cell imports this, before any answer cell can change the environment.
RAISE_VAR = "HPDL_CHECKS_RAISE"
RAISE_ON_FAILURE = os.environ.get(RAISE_VAR, "") not in ("", "0")


class CheckFailed(AssertionError):
    """A failed check, raised after it is scored when ``HPDL_CHECKS_RAISE`` is set."""
"""This kernel's latest result of each check, by name (re-running a check replaces it)."""


def _explain(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        why = str(exc)
        if why and "write your code here" not in why and "still raises" not in why:
            return f"not graded: {why}"  # the grader's reason (missing cell, no parse, ...)
        return "not implemented yet (the answer still raises NotImplementedError)"
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    if isinstance(exc, NameError):
        return f"{exc}: did an earlier answer cell fail or not run?"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"your code raised {type(exc).__name__}: {exc}{where}"


class check:  # noqa: N801 - used as `with check(...)`, reads like a statement
    """Context manager for one graded check: full points if the block runs, else 0.

    Errors inside the block (an unfinished answer, a wrong value, a crash) are caught,
    explained in one line and scored 0, so the next checks still run (unless
    ``HPDL_CHECKS_RAISE`` is set, as under nbgrader: then the cell ends in the error).
    """

    def __init__(self, name: str, points: float = 1):
        if points <= 0:
            raise UsageError(f"check({name!r}): points must be > 0, got {points}")
        self.name = name
        self.points = points

    def __enter__(self) -> check:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: let them through
        passed = exc is None
        result = CheckResult(self.name, self.points if passed else 0, self.points, passed,
                             "ok" if passed else _explain(exc))
        RESULTS[self.name] = result
        _emit(result)
        if not passed and RAISE_ON_FAILURE:
            raise CheckFailed(f"{self.name}: {result.message}") from None
        return True


def _emit(result: CheckResult) -> None:
    mark = "PASS" if result.passed else "FAIL"
    text = (f"[{mark}] {result.name}: {result.points:g}/{result.max_points:g} points"
            + ("" if result.passed else f" - {result.message}"))
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        shell = None
    if shell is not None:
        from IPython.display import display

        display({"text/plain": text, CHECK_MIME: asdict(result)}, raw=True)
    else:
        print(text)


def summary() -> None:
    """Print the score so far in this kernel (latest result of each check)."""
    score = sum(r.points for r in RESULTS.values())
    total = sum(r.max_points for r in RESULTS.values())
    print(f"score so far: {score:g} / {total:g} points over {len(RESULTS)} checks")


def skipped(name: str, points: float, reason: str) -> None:
    """Say that the check ``name`` is not graded on this machine, and why (one line, and a
    ``SKIPPED_MIME`` output so that the grader leaves its points out of the maximum)."""
    text = f"[not graded here] {name} ({points:g} points): {reason}"
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        shell = None
    if shell is not None:
        from IPython.display import display

        display({"text/plain": text,
                 SKIPPED_MIME: {"name": name, "points": points, "reason": reason}}, raw=True)
    else:
        print(text)
