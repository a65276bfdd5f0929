"""`hpdl grade` grades from the master: wrong answers and tampering cannot score.

Every submission below is built from lab 1's student notebook as a student would edit it,
graded once (module fixture, one class at once with ``grade_many``), and held to its
verdict: the master and a correct submission score full marks, the untouched student
notebook 0, and every mutant (a wrong answer, deleted or emptied check cells, edited
points, a grader patched from an answer cell, fake check outputs, outputs hard-coded for
the published inputs, an answer that hangs, one that kills the kernel, one that does not
parse, a missing answer cell) less than full marks, with the checks it should lose lost
and the others kept.
"""

import copy
import json

import nbformat
import numpy as np
import pytest

from course_utils.checks import backprop
from course_utils.errors import UsageError
from course_utils.hpdl import grading
from tests.conftest import REPO
from tests.notebooks import submissions as sub

pytestmark = pytest.mark.slow

MASTER = REPO / "labs" / "solutions" / "lab1_backprop.ipynb"
STUDENT = REPO / "labs" / "lab1_backprop.ipynb"
FULL = 10.0
LOSS_FORWARD = "Softmax cross-entropy with label smoothing, forward (stable)"
LOSS_BACKWARD = "Softmax cross-entropy with label smoothing, backward"
CHECKS = ["Linear forward", "Linear backward (dx, dW, db)", "GELU forward and backward",
          LOSS_FORWARD, LOSS_BACKWARD, "Two spirals: test accuracy >= 95 %"]


def correct():
    """The student notebook with the master's answers typed in (no solution markers)."""
    return sub.correct("lab1_backprop")


def _answer_cell(nb, class_name):
    return next(c for c in nb.cells if c.cell_type == "code"
                and c.source.startswith(f"class {class_name}"))


def _with(nb, cell, text, *, before=True):
    """``text`` added as lines at the top (or the end) of ``cell`` of ``nb``."""
    cell.source = (text + "\n" + cell.source) if before else (cell.source + "\n" + text)
    return nb


def wrong_gelu():
    """GELU.backward returns its local derivative, forgetting to multiply by grad_out (the
    chain rule's outer factor: training cannot learn with it)."""
    nb = correct()
    cell = _answer_cell(nb, "GELU")
    assert "return grad_out * local" in cell.source
    cell.source = cell.source.replace("return grad_out * local", "return local")
    return nb


def mutant_library_call():
    """The loss answered with lesson 01's course function (imported inside the answer)."""
    nb = correct()
    cell = _answer_cell(nb, "SoftmaxCrossEntropy")
    forward = ("        from course_utils.foundations import numpy_mlp\n"
               "        loss, self.grad = numpy_mlp.softmax_cross_entropy(logits, y)\n"
               "        return loss\n")
    start = cell.source.index("        batch, classes = logits.shape")
    end = cell.source.index("    def backward")
    cell.source = cell.source[:start] + forward + "\n" + cell.source[end:]
    start = cell.source.index("        return (self.probs - self.target)")
    cell.source = cell.source[:start] + "        return self.grad\n"
    return nb


def mutant_check_cells_emptied():
    nb = wrong_gelu()
    for cell in sub.check_cells(nb):
        cell.source = "pass"
    return nb


def mutant_check_cells_deleted():
    nb = wrong_gelu()
    nb.cells = [c for c in nb.cells if c not in sub.check_cells(nb)]
    return nb


def mutant_points_edited():
    nb = wrong_gelu()
    for cell in sub.check_cells(nb):
        cell.source = cell.source.replace("points=", "points=100 + ")
    return nb


def mutant_check_rebound():
    """An answer cell defines its own `check` that passes everything."""
    nb = wrong_gelu()
    return _with(nb, _answer_cell(nb, "GELU"), (
        "class check:\n"
        "    def __init__(self, name, points=1): self.name, self.points = name, points\n"
        "    def __enter__(self): return self\n"
        "    def __exit__(self, *exc): return True"), before=False)


def mutant_check_function_patched():
    """An answer cell replaces the check function of its own part."""
    nb = wrong_gelu()
    return _with(nb, _answer_cell(nb, "GELU"),
                 "backprop.check_gelu = lambda *args, **kwargs: None", before=False)


def mutant_numpy_testing_patched():
    """numpy.testing and np.allclose made to accept anything, plus the grader's scoring."""
    nb = wrong_gelu()
    return _with(nb, _answer_cell(nb, "GELU"), (
        "import numpy.testing\n"
        "import course_utils.checks as _c\n"
        "import course_utils.checks.scoring as _s\n"
        "numpy.testing.assert_allclose = lambda *a, **k: None\n"
        "np.allclose = np.isclose = lambda *a, **k: True\n"
        "_c.assert_close = lambda *a, **k: None\n"
        "_s.check.__exit__ = lambda self, *exc: True"), before=False)


def mutant_fake_check_outputs():
    """No answers at all; an answer cell displays a passing result for every check."""
    nb = nbformat.read(STUDENT, as_version=4)
    fake = "\n".join(
        f"display({{'text/plain': 'PASS', '{grading.CHECK_MIME}': {{'name': {name!r}, "
        f"'points': 100, 'max_points': 100, 'passed': True, 'message': 'ok'}}}}, raw=True)"
        for name in CHECKS)
    return _with(nb, _answer_cell(nb, "Linear"), "from IPython.display import display\n" + fake,
                 before=False)


def mutant_hard_coded():
    """Linear.forward returns the outputs the check expects for its *published* inputs."""
    master = nbformat.read(MASTER, as_version=4)
    namespace = {"np": np}
    exec(_answer_cell(master, "Linear").source, namespace)  # noqa: S102 - our master
    outputs = []

    class Recording(namespace["Linear"]):
        def forward(self, x):
            out = super().forward(x)
            outputs.append(out.tolist())
            return out

    backprop.check_linear_forward(Recording)  # no grading seed here: the published inputs
    nb = correct()
    cell = _answer_cell(nb, "Linear")
    cell.source = cell.source.replace(
        "        self.x = x\n        return x @ self.W.T + self.b",
        f"        Linear.calls = getattr(Linear, 'calls', -1) + 1\n"
        f"        table = {outputs!r}\n"
        f"        self.x = x\n"
        f"        if Linear.calls < len(table):  # the forward check's calls: replayed\n"
        f"            return np.array(table[Linear.calls])\n"
        f"        return x @ self.W.T + self.b")
    assert "Linear.calls" in cell.source
    return nb


def mutant_patches_during_check():
    """A right GELU whose forward, run by the check, makes np.allclose accept anything."""
    nb = correct()
    cell = _answer_cell(nb, "GELU")
    cell.source = cell.source.replace(
        "self.x = x\n", "self.x = x\n        np.allclose = lambda *a, **k: True\n", 1)
    assert "np.allclose = " in cell.source
    return nb


def mutant_hangs():
    """GELU.forward never returns."""
    nb = correct()
    cell = _answer_cell(nb, "GELU")
    cell.source = cell.source.replace("self.x = x\n", "self.x = x\n        while True:\n"
                                      "            pass\n", 1)
    assert "while True" in cell.source
    return nb


def mutant_kills_kernel():
    """The GELU answer cell ends the Python process."""
    nb = correct()
    return _with(nb, _answer_cell(nb, "GELU"), "import os\nos._exit(3)", before=False)


def mutant_does_not_parse():
    nb = correct()
    cell = _answer_cell(nb, "Linear")
    cell.source = cell.source.replace("return x @ self.W.T + self.b", "return x @ self.W.T +")
    return nb


def mutant_answer_cell_deleted():
    nb = correct()
    nb.cells.remove(_answer_cell(nb, "GELU"))
    return nb


SUBMISSIONS = {
    "master": lambda: nbformat.read(MASTER, as_version=4),
    "student": lambda: nbformat.read(STUDENT, as_version=4),
    "correct": correct,
    "wrong_gelu": wrong_gelu,
    "library_call": mutant_library_call,
    "check_cells_emptied": mutant_check_cells_emptied,
    "check_cells_deleted": mutant_check_cells_deleted,
    "points_edited": mutant_points_edited,
    "check_rebound": mutant_check_rebound,
    "check_function_patched": mutant_check_function_patched,
    "numpy_testing_patched": mutant_numpy_testing_patched,
    "fake_check_outputs": mutant_fake_check_outputs,
    "hard_coded": mutant_hard_coded,
    "patches_during_check": mutant_patches_during_check,
    "hangs": mutant_hangs,
    "kills_kernel": mutant_kills_kernel,
    "does_not_parse": mutant_does_not_parse,
    "answer_cell_deleted": mutant_answer_cell_deleted,
}
GELU_LOST = {"GELU forward and backward", "Two spirals: test accuracy >= 95 %"}
# submission -> the checks it must lose (all others it must keep); None: it must lose all
EXPECTED = {
    "master": set(), "correct": set(), "student": None,
    "wrong_gelu": GELU_LOST, "check_cells_emptied": GELU_LOST,
    "library_call": {LOSS_FORWARD, LOSS_BACKWARD, "Two spirals: test accuracy >= 95 %"},
    "check_cells_deleted": GELU_LOST, "points_edited": GELU_LOST, "check_rebound": GELU_LOST,
    "check_function_patched": GELU_LOST, "numpy_testing_patched": GELU_LOST,
    "fake_check_outputs": None, "hard_coded": {"Linear forward"}, "hangs": GELU_LOST,
    "kills_kernel": GELU_LOST, "answer_cell_deleted": GELU_LOST,
    "patches_during_check": GELU_LOST,
    "does_not_parse": {"Linear forward", "Linear backward (dx, dW, db)",
                       "Two spirals: test accuracy >= 95 %"},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    paths = []
    for name, build in SUBMISSIONS.items():
        nb = build()
        nb = copy.deepcopy(nb)
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    (folder / "notes.txt").write_text("not a notebook")
    results = grading.grade_many(paths + [folder / "notes.txt"], timeout=300, cell_timeout=20)
    written = grading.write_gradebook(results, folder / "book")
    return {str(r["notebook"] if isinstance(r, dict) else r.notebook): r
            for r in results}, folder, written


def _report(graded, name):
    reports, folder, _ = graded
    return reports[str(folder / f"{name}.ipynb")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict(graded, name):
    report = _report(graded, name)
    assert report.max_score == FULL, report.table()  # the master's points, always
    assert [c.name for c in report.checks] == CHECKS, report.table()
    lost = {c.name for c in report.checks if not c.passed}
    expected = EXPECTED[name]
    if expected is None:
        assert report.score == 0, report.table()
    else:
        assert lost == expected, report.table()
    if name not in ("master", "correct"):
        assert report.score < FULL


def test_messages_name_the_cause(graded):
    def message(name, check):
        return next(c.message for c in _report(graded, name).checks if c.name == check)

    assert "not implemented" in message("student", "Linear forward")
    assert "ran past the 20 s limit" in message("hangs", "GELU forward and backward")
    assert "killed the Python kernel" in message("kills_kernel", "GELU forward and backward")
    assert "does not parse" in message("does_not_parse", "Linear forward")
    assert "missing from the notebook" in message("answer_cell_deleted",
                                                  "GELU forward and backward")
    assert "changed the grader while this check ran" in message(
        "patches_during_check", "GELU forward and backward")
    assert "'check' was rebound" in " ".join(_report(graded, "check_rebound").notes)
    undone = " ".join(_report(graded, "numpy_testing_patched").notes)
    assert "numpy.allclose was changed" in undone and "check.__exit__ was changed" in undone


def test_the_seed_is_drawn_per_run_and_recorded(graded):
    seeds = {_report(graded, name).seed for name in ("master", "correct", "student")}
    assert len(seeds) == 3 and all(isinstance(s, int) for s in seeds)


def test_gradebook_has_a_row_per_submission_and_a_column_per_check(graded):
    reports, folder, written = graded
    book = json.loads((folder / "book" / "gradebook.json").read_text())
    assert len(book["submissions"]) == len(SUBMISSIONS) + 1
    bad = [s for s in book["submissions"] if "error" in s]
    assert len(bad) == 1 and "not a Jupyter notebook" in bad[0]["error"]
    csv_text = (folder / "book" / "gradebook-lab1_backprop.csv").read_text()
    header = csv_text.splitlines()[0]
    for name in CHECKS:
        assert f"{name} [points]" in header and f"{name} [message]" in header
    assert len(csv_text.strip().splitlines()) == 1 + len(SUBMISSIONS)


def test_a_notebook_of_no_lab_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(UsageError, match="not a lab of the course"):
        grading.grade(path)
