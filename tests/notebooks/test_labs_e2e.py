"""Labs: student notebooks are generated, hold no solutions, grade to 0; masters to full."""

import json

import nbformat
import pytest

from course_utils.hpdl import grading
from tests.conftest import REPO, hpdl

pytestmark = pytest.mark.slow

MASTERS = sorted((REPO / "labs/solutions").glob("*.ipynb"))
IDS = [p.name for p in MASTERS]


def _solution_lines(master) -> set[str]:
    lines = set()
    for cell in nbformat.read(master, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            s = line.strip()
            if s.startswith(grading.BEGIN):
                inside = True
            elif s.startswith(grading.END):
                inside = False
            elif inside and len(s) > 12 and not s.startswith("#"):
                lines.add(s)
    return lines


def test_every_master_has_a_student_version():
    assert MASTERS
    for master in MASTERS:
        assert (REPO / "labs" / master.name).exists(), master.name


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_check_names_are_unique(master):
    names = [name for name, _ in grading.declared_checks(nbformat.read(master, as_version=4))]
    assert names and len(names) == len(set(names)), names


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_student_is_freshly_generated(master):
    assert grading.student_is_current(master, REPO / "labs" / master.name), \
        "run `hpdl student` and commit labs/"


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_no_solution_text_in_student(master):
    student_text = (REPO / "labs" / master.name).read_text()
    solution = _solution_lines(master)
    assert solution, "a master marks its answers"
    leaked = [line for line in solution if json.dumps(line)[1:-1] in student_text]
    assert not leaked, f"solution lines in the student notebook: {leaked[:3]}"


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_master_scores_full_marks_and_student_scores_zero(master):
    full = hpdl("grade", str(master), "--json", "--demos")
    assert full.returncode == 0, full.stderr
    report = json.loads(full.stdout)
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    # The masters are executed here only (make test leaves labs/solutions out of nbval),
    # demo cells included (--demos): no cell of a master may raise, graded or not.
    assert report["errors"] == [], report["errors"]
    assert set(report) >= {"notebook", "score", "max_score", "checks"}
    assert set(report["checks"][0]) >= {"name", "points", "max_points", "passed", "message"}

    empty = hpdl("grade", str(REPO / "labs" / master.name), "--json")
    assert empty.returncode == 0, empty.stderr
    student = json.loads(empty.stdout)
    assert student["score"] == 0 and student["max_score"] == report["max_score"]
    assert all("not implemented" in c["message"] for c in student["checks"]), student


def test_one_wrong_answer_loses_only_its_points(tmp_path):
    """A crashing answer scores 0 for its check; the other checks are still graded."""
    master = MASTERS[0]
    nb = nbformat.read(master, as_version=4)
    full = grading.declared_checks(nb)
    # Break the first solution block: replace its body with a crash.
    for cell in nb.cells:
        if grading.BEGIN in cell.source:
            cell.source = grading.strip_solutions(cell.source).replace(
                grading.PLACEHOLDER, "raise ZeroDivisionError('student typo')")
            break
    broken = tmp_path / master.name
    nbformat.write(nb, broken)
    report = json.loads(hpdl("grade", str(broken), "--json").stdout)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert failed and len(failed) < len(full)
    assert any("ZeroDivisionError" in c["message"] for c in failed)
    assert report["score"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("lab, parameters", [
    ("lab2_cuda_kernels", ["THREADS", "96", "BLOCK_X", "4", "BLOCK_Y", "16"]),
    ("lab3_reduction_histogram", ["THREADS", "32", "NBINS", "45", "BLOCKS", "2"]),
    ("lab4_distributed", ["WORLD_SIZES", "3,5", "LENGTHS", "[1,2,7]", "ALIGN", "3"]),
])
def test_masters_score_full_marks_with_other_valid_parameters(tmp_path, lab, parameters):
    """The checks follow the parameters: no check hard-codes a size the master's
    parameters can change (hpdl run fails a master with any failed check)."""
    args = []
    for name, value in zip(parameters[::2], parameters[1::2], strict=True):
        args += ["-p", name, value]
    result = hpdl("run", str(REPO / "labs" / "solutions" / f"{lab}.ipynb"), "--out",
                  str(tmp_path), "--profile", "quick", "--no-progress", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    (notebook,) = data["notebooks"]
    assert notebook["checks"] and all(c["passed"] for c in notebook["checks"]), notebook
