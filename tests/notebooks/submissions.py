"""Build lab submissions the way a student edits the student notebook (for grading tests)."""

from __future__ import annotations

import nbformat

from course_utils.hpdl import answers, grading
from tests.conftest import REPO


def master(lab: str):
    return nbformat.read(REPO / "labs" / "solutions" / f"{lab}.ipynb", as_version=4)


def student(lab: str):
    return nbformat.read(REPO / "labs" / f"{lab}.ipynb", as_version=4)


def correct(lab: str):
    """The student notebook with the master's answers typed in (no solution markers)."""
    by_id = {c.get("id"): c for c in master(lab).cells}
    nb = student(lab)
    for cell in nb.cells:
        source = by_id[cell.get("id")].source if cell.get("id") in by_id else ""
        if answers.regions(source):
            cell.source = answers.fill(cell.source, answers.solutions(source))
    return nb


def code_cell(nb, contains: str):
    """The one code cell of ``nb`` whose source contains ``contains``."""
    found = [c for c in nb.cells if c.cell_type == "code" and contains in c.source]
    assert len(found) == 1, (contains, len(found))
    return found[0]


def edit(nb, contains: str, old: str, new: str, count: int = 1):
    """Replace ``old`` by ``new`` in the cell that contains ``contains`` (old must be there)."""
    cell = code_cell(nb, contains)
    assert old in cell.source, (contains, old)
    cell.source = cell.source.replace(old, new, count)
    return nb


def append(nb, contains: str, text: str):
    """Add lines at the end of a cell (in its last answer, if it ends with one)."""
    cell = code_cell(nb, contains)
    cell.source = cell.source + "\n" + text
    return nb


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and grading.checks_in_cell(c.source)]


def delete_check_cells(nb):
    doomed = check_cells(nb)
    nb.cells = [c for c in nb.cells if c not in doomed]
    return nb


def empty_check_cells(nb):
    for cell in check_cells(nb):
        cell.source = "pass"
    return nb


def edit_points(nb):
    for cell in check_cells(nb):
        cell.source = cell.source.replace("points=", "points=100 + ")
    return nb


def fake_outputs(nb, contains: str, names: list[str]):
    """An answer cell that displays a passing result for every check."""
    fake = "\n".join(
        f"display({{'text/plain': 'PASS', '{grading.CHECK_MIME}': {{'name': {name!r}, "
        f"'points': 100, 'max_points': 100, 'passed': True, 'message': 'ok'}}}}, raw=True)"
        for name in names)
    return append(nb, contains, "from IPython.display import display\n" + fake)


def grade_folder(folder, builders: dict, **options) -> dict:
    """Write each ``builders[name]()`` to ``folder/name.ipynb``, grade the folder as a
    class (``grading.grade_many``) and return the reports by name."""
    for name, build in builders.items():
        nbformat.write(build(), folder / f"{name}.ipynb")
    results = grading.grade_many([folder], **options)
    return {r.notebook.rsplit("/", 1)[-1].removesuffix(".ipynb"): r for r in results}
