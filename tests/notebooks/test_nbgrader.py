"""nbgrader works on the lab masters as they are (labs/nbgrader_config.py in the course
folder): `nbgrader generate_assignment` writes the same student notebooks as `hpdl student`,
and `nbgrader autograde` gives each master full marks and each student notebook 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.hpdl import nbgrader as hpdl_nbgrader
from course_utils.hpdl.grading import checks_in_cell
from tests.conftest import REPO

pytestmark = pytest.mark.slow

LABS = sorted(p.stem for p in (REPO / "labs" / "solutions").glob("*.ipynb"))


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HPDL_PROFILE="quick",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """An nbgrader course folder: the course's config, every master as an assignment,
    generated, then two submissions each (the master, the student notebook) autograded."""
    root = tmp_path_factory.mktemp("nbgrader-course")
    shutil.copy(REPO / "labs" / "nbgrader_config.py", root / "nbgrader_config.py")
    for lab in LABS:
        (root / "source" / lab).mkdir(parents=True)
        shutil.copy(REPO / "labs" / "solutions" / f"{lab}.ipynb", root / "source" / lab)
        for student, path in (("master", REPO / "labs" / "solutions" / f"{lab}.ipynb"),
                              ("student", REPO / "labs" / f"{lab}.ipynb")):
            (root / "submitted" / student / lab).mkdir(parents=True)
            shutil.copy(path, root / "submitted" / student / lab)
        _nbgrader(root, "generate_assignment", lab, "--force")
        _nbgrader(root, "autograde", lab, "--create", "--force")
    return root


@pytest.mark.parametrize("lab", LABS)
def test_generate_assignment_writes_the_hpdl_student_notebook(course, lab):
    released = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
    ours = nbformat.read(REPO / "labs" / f"{lab}.ipynb", as_version=4)
    assert [c.cell_type for c in released.cells] == [c.cell_type for c in ours.cells]
    for theirs, mine in zip(released.cells, ours.cells, strict=True):
        assert theirs.source == mine.source, f"{lab}, cell {mine.id} differs"
        assert theirs.metadata.get("nbgrader", {}).get("grade_id") == \
            mine.metadata.get("nbgrader", {}).get("grade_id")


def _scores(course: Path, lab: str) -> dict[str, tuple[float, float, dict[str, float]]]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "hpdl") as gb:
        for student in ("master", "student"):
            sub = gb.find_submission(lab, student)
            cells = {g.name: g.score for nb in sub.notebooks for g in nb.grades}
            out[student] = (sub.score, sub.max_score, cells)
    return out


@pytest.mark.parametrize("lab", LABS)
def test_autograde_gives_the_master_full_marks_and_the_student_notebook_zero(course, lab):
    master = nbformat.read(REPO / "labs" / "solutions" / f"{lab}.ipynb", as_version=4)
    # every cell with a literal check(...) is a grade cell worth its checks' points
    expected = {c.id: sum(p for _, p in checks_in_cell(c.source)) for c in master.cells
                if c.cell_type == "code" and hpdl_nbgrader.cell_metadata(c).get("grade")}
    assert expected, f"{lab}: no grade cells"
    scores = _scores(course, lab)
    score, max_score, cells = scores["master"]
    assert max_score == sum(expected.values()) and score == max_score, cells
    assert cells == expected
    score, max_score, cells = scores["student"]
    assert score == 0 and max_score == sum(expected.values()), cells


def test_metadata_marks_solutions_checks_and_given_code():
    master = nbformat.read(REPO / "labs" / "solutions" / "lab1_backprop.ipynb", as_version=4)
    kinds = {}
    for cell in master.cells:
        meta = cell.metadata.get("nbgrader")
        if cell.cell_type == "markdown":
            assert meta is None
            continue
        assert meta == hpdl_nbgrader.cell_metadata(cell) and meta["grade_id"] == cell.id
        kinds[cell.id] = ("solution" if meta["solution"] else "grade" if meta["grade"]
                          else "locked")
    assert kinds["lab1-06"] == "solution" and kinds["lab1-07"] == "grade"
    assert kinds["lab1-02"] == "locked"  # the setup cell: given code, put back by nbgrader


def test_the_config_uses_the_same_stub_as_hpdl_student():
    text = (REPO / "labs" / "nbgrader_config.py").read_text()
    stub = hpdl_nbgrader.CODE_STUB.replace("\n", "\\n")
    assert f"'{stub}'" in text
