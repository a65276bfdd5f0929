"""Walk every parameter of a notebook with bad values: each must stop the setup cell with a
``UsageError`` that names the parameter.

The bad values are made here from the *type* of the parameter's value in the profile
table (an integer knob gets -1, 2.5, ``"ten"``, ``True``; a list knob an empty list, a 0 in
the list, a word; a name knob an unknown name), not from the course's own rules, so a rule
that lets everything through fails. Zero is bad too, except for the knobs the course
declares as allowing it: those must *accept* 0 (and a list knob must accept its default
written as ``"a,b"`` and as ``"[a, b]"``, the two ways ``-p NAME VALUE`` gives lists).

Run as a script (``python -m tests.notebooks.parameter_walk NOTEBOOK``) it executes the
parameters cell, one override and the setup cell per case, in one fresh process per
notebook, and prints the outcomes as JSON: the notebook's own code is what is tested.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat

from course_utils import parameters, profiles

COMMON = ("PROFILE", "DEVICE", "SEED")


@dataclass(frozen=True)
class Case:
    """One run of the setup cell: ``name = value`` (no override when ``name`` is empty)."""

    name: str
    value: Any
    expect: str  # "ok" or "usage-error"


def setup_cells(path: Path) -> tuple[str, str]:
    """The sources of the parameters cell and of the setup cell after it."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            return cell.source, nb.cells[i + 1].source
    raise AssertionError(f"{path}: no cell tagged 'parameters'")


def parameter_names(source: str) -> list[str]:
    """The names the parameters cell assigns, in order."""
    return [target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def knobs_of_setup(source: str) -> dict[str, tuple[str, str]]:
    """``PARAMETER -> (lesson key, knob)`` for every ``ctx.sizes(key, knob=PARAMETER)`` and
    ``ctx.size(key, knob, PARAMETER)`` call in the setup cell."""
    found: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("size", "sizes") and node.args
                and isinstance(node.args[0], ast.Constant)):
            continue
        key = node.args[0].value
        if node.func.attr == "sizes":
            for kw in node.keywords:
                if isinstance(kw.value, ast.Name):
                    found[kw.value.id] = (key, kw.arg)
        elif len(node.args) == 3 and isinstance(node.args[2], ast.Name):
            found[node.args[2].id] = (key, node.args[1].value)
    return found


def example_value(key: str, knob: str) -> Any:
    """The knob's value in the quick profile, or the full one where quick has ``None``."""
    for profile in ("quick", "full"):
        value = profiles.PROFILES[profile][key][knob]
        if value is not None:
            return value
    return None


def bad_values(example: Any) -> list[Any]:
    """Values of the wrong type or range for a knob whose valid value ``example`` is."""
    if isinstance(example, bool):
        return ["maybe", 2]
    if isinstance(example, int) or example is None:
        return [-1, 2.5, "ten", True]
    if isinstance(example, float):
        return [-1.0, math.nan, "fast", False]
    if isinstance(example, str):
        return ["no-such-value", 7]
    if isinstance(example, (tuple, list)):
        return ["", "[]", "2,ten", [-1], "no-such-value"]
    raise AssertionError(f"no bad values for a knob like {example!r}")


def cases(path: Path) -> list[Case]:
    """The cases of one notebook: its defaults, then every parameter with bad values."""
    param_src, setup_src = setup_cells(path)
    names = parameter_names(param_src)
    knobs = knobs_of_setup(setup_src)
    missing = [n for n in names if n not in COMMON and n not in knobs]
    assert not missing, (f"{path.name}: parameters {missing} are not passed to ctx.sizes() in "
                         "the setup cell, so nothing validates them there")
    out = [Case("", None, "ok"),
           Case("PROFILE", "fast", "usage-error"), Case("DEVICE", "gpu0", "usage-error"),
           Case("SEED", -1, "usage-error"), Case("SEED", 1.5, "usage-error"),
           Case("SEED", "zero", "usage-error")]
    for name in names:
        if name in COMMON:
            continue
        key, knob = knobs[name]
        example = example_value(key, knob)
        out += [Case(name, value, "usage-error") for value in bad_values(example)]
        if isinstance(example, (bool, str)) or (isinstance(example, (tuple, list))
                                                and example and isinstance(example[0], str)):
            continue
        zero: Any = [0] if isinstance(example, (tuple, list)) else 0
        out.append(Case(name, zero, "ok" if parameters.allows_zero(key, knob)
                        else "usage-error"))
        if isinstance(example, (tuple, list)):
            text = ",".join(map(str, example))
            out += [Case(name, text, "ok"), Case(name, f"[{text}]", "ok")]
    return out


def run_case(param_src: str, setup_src: str, case: Case) -> dict[str, Any]:
    """Execute parameters cell, override and setup cell; what happened, as JSON."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(param_src, "<parameters cell>", "exec"), namespace)  # noqa: S102
    if case.name:
        namespace[case.name] = case.value
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(setup_src, "<setup cell>", "exec"), namespace)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test compares
        kinds = [k.__name__ for k in type(exc).__mro__]
        return {"outcome": "usage-error" if "UsageError" in kinds else "other-error",
                "error": f"{type(exc).__name__}: {exc}"}
    return {"outcome": "ok", "error": ""}


def main(argv: list[str]) -> None:
    path = Path(argv[0])
    param_src, setup_src = setup_cells(path)
    results = [{**asdict(case), "value": repr(case.value), **run_case(param_src, setup_src, case)}
               for case in cases(path)]
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
