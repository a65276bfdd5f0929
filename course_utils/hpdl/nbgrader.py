"""nbgrader's cell metadata for the lab masters, so that nbgrader works on them as they are.

``hpdl student`` writes it into every master and student lab (a test keeps it current):

- a cell with a ``### BEGIN SOLUTION`` block: an nbgrader *solution* cell;
- a cell with ``with check("name", points=N)``: an autograded *grade* cell worth the sum
  of its checks' points, locked (nbgrader puts the master's version back when grading);
- every other code cell: locked, read-only (the given code, also put back).

``grade_id`` is the cell's id, the stable id ``hpdl grade`` also uses. Checks that run only
on one kind of machine (``gpu_only_check``, ``simulator_only_check``) are not nbgrader grade
cells: nbgrader cannot leave a cell out of the maximum on the machines that skip it; they
are graded by ``hpdl grade``. Under nbgrader a failing check must end its cell in an error
(nbgrader's only signal): ``labs/nbgrader_config.py`` sets ``HPDL_CHECKS_RAISE=1``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat

from .answers import BEGIN, PLACEHOLDER, YOUR_CODE
from .colab import retarget_badge

SCHEMA_VERSION = 3
# What nbgrader's ClearSolutions writes in place of an answer: the same as `hpdl student`.
CODE_STUB = f"{YOUR_CODE}\n{PLACEHOLDER}"


def _plain_check_points(source: str) -> float:
    """The points of the ``check("name", points=N)`` calls of a cell (literal numbers)."""
    lines = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                      for line in source.splitlines())
    try:
        tree = ast.parse(lines)
    except SyntaxError:
        return 0.0
    total = 0.0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check":
            points = next((kw.value for kw in node.keywords if kw.arg == "points"),
                          node.args[1] if len(node.args) > 1 else None)
            total += float(points.value) if isinstance(points, ast.Constant) else 1.0
    return total


def cell_metadata(cell: Any) -> dict[str, Any] | None:
    """The ``nbgrader`` metadata of one cell of a lab, or None (Markdown cells)."""
    if cell.cell_type != "code":
        return None
    base = {"grade_id": cell.id, "schema_version": SCHEMA_VERSION}
    if any(line.strip().startswith(BEGIN) for line in cell.source.splitlines()):
        return {**base, "solution": True, "grade": False, "locked": False}
    points = _plain_check_points(cell.source)
    if points:
        return {**base, "solution": False, "grade": True, "locked": True, "points": points}
    return {**base, "solution": False, "grade": False, "locked": True}


def with_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with every cell's ``nbgrader`` metadata set (in place; returned)."""
    for cell in nb.cells:
        meta = cell_metadata(cell)
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return nb



def retarget_released_badges(assignment: str, student: str, notebooks: list[str],
                             release: str = "release") -> None:
    """nbgrader ``post_convert_hook`` of ``generate_assignment`` (run in the course folder):
    the released notebooks' Open-in-Colab badges open the student labs
    (``labs/<name>.ipynb``), as ``hpdl student``'s do, not the masters they came from."""
    del student  # generate_assignment's student is "."
    for source in notebooks:
        path = Path(release) / assignment / Path(source).name
        if not path.is_file():
            continue
        nb = retarget_badge(nbformat.read(path, as_version=4), f"labs/{path.name}")
        mode = path.stat().st_mode
        path.chmod(mode | 0o200)
        nbformat.write(nb, path)
        path.chmod(mode)
