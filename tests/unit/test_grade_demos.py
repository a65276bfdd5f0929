"""`hpdl grade` leaves the masters' demo cells out (unless --demos): they grade nothing.

A demo cell (tag ``demo``: a picture, a timing, a plot after a check) must be safe to drop:
no answer or check cell is tagged, and no other cell reads a name that only demo cells
bind. tests/notebooks/test_labs_e2e.py grades every master *with* its demos, so no demo
cell may raise either."""

import ast

import nbformat
import pytest

from course_utils.hpdl import answers as lab_answers
from course_utils.hpdl import grading
from tests.conftest import REPO

MASTERS = sorted((REPO / "labs" / "solutions").glob("*.ipynb"))


def _bound_and_read(source: str) -> tuple[set[str], set[str]]:
    """Names a cell binds, and names it reads before binding them itself."""
    tree = ast.parse(grading._python_lines(source))
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):  # a parameter: read inside its function, not global
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound, read - bound


@pytest.mark.parametrize("master", MASTERS, ids=[m.stem for m in MASTERS])
def test_demo_cells_can_be_left_out(master):
    nb = nbformat.read(master, as_version=4)
    demos = [c for c in nb.cells if grading.is_demo(c)]
    assert demos, f"{master.name} tags no demo cell"
    answers = set(lab_answers.answer_cells(nb))
    only_demo, others = set(), set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        bound, read = _bound_and_read(cell.source)
        if grading.is_demo(cell):
            assert index not in answers and not grading.checks_in_cell(cell.source), (
                f"{master.name} cell {index}: an answer or check cell tagged demo")
            only_demo |= bound - others
            continue
        needs = read & (only_demo - others)
        assert not needs, f"{master.name} cell {index} reads {sorted(needs)}, bound by a demo"
        others |= bound


@pytest.mark.parametrize("master", MASTERS, ids=[m.stem for m in MASTERS])
def test_graded_notebook_drops_exactly_the_demo_cells(master):
    nb = nbformat.read(master, as_version=4)
    answers = grading.take_answers(nb, master.name, nb)
    sources = {c.source for c in nb.cells if grading.is_demo(c)}
    kept, _ = grading.graded_notebook(nb, answers, "t", demos=True)
    dropped, _ = grading.graded_notebook(nb, answers, "t", demos=False)
    assert sources <= {c.source for c in kept.cells}
    assert not sources & {c.source for c in dropped.cells}
    assert len(kept.cells) - len(dropped.cells) == len(sources)
