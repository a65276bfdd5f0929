"""Colab: the guard installs the course only on Colab; badges open each notebook's own path;
``sync_notebooks`` (``hpdl colab``) is idempotent and its check mode finds stale notebooks."""

import os
import subprocess
import sys
import types

import nbformat
import pytest

from course_utils.errors import UsageError
from course_utils.hpdl import colab, grading

REPO_URL = "https://github.com/someone/hpdl-fork"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


# ------------------------------------------------------------------ the guard
@pytest.fixture
def calls(monkeypatch):
    """subprocess.check_call recorded instead of run; sys.path restored afterwards."""
    recorded = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: recorded.append(cmd))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return recorded


def test_guard_is_a_no_op_off_colab(monkeypatch, calls):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    before = list(sys.path)
    namespace = {}
    exec(colab.guard(REPO_URL), namespace)
    assert calls == [] and sys.path == before
    assert set(namespace) - {"__builtins__"} == {"sys"}, "off Colab it imports only sys"


@pytest.fixture
def fake_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


def test_guard_on_colab_clones_installs_and_imports(monkeypatch, calls, fake_colab):
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    exec(colab.guard(REPO_URL), {})
    assert calls == [
        ["git", "clone", "--depth", "1", REPO_URL, "/content/hpdl"],
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/hpdl"],
    ]
    assert sys.path[0] == "/content/hpdl"


def test_guard_on_colab_after_a_restart_only_puts_the_clone_on_the_path(
        monkeypatch, calls, fake_colab):
    monkeypatch.setattr(os.path, "exists", lambda path: path == "/content/hpdl")
    exec(colab.guard(REPO_URL), {})
    assert calls == [] and sys.path[0] == "/content/hpdl"


def test_guard_is_short_plain_python_without_blank_lines():
    text = colab.guard()
    lines = text.splitlines()
    assert lines[0].startswith("# ") and "Colab" in lines[0]
    assert len(lines) <= 10 and all(line.strip() for line in lines)
    assert max(map(len, lines)) <= 100, "ruff's line length holds in the notebooks too"
    assert "!" not in text and "course_utils" not in text
    compile(text, "guard", "exec")


# ------------------------------------------------------------------ repository and badge
@pytest.mark.parametrize("url", [REPO_URL, REPO_URL + ".git", REPO_URL + "/",
                                 "git@github.com:someone/hpdl-fork.git"])
def test_github_urls_are_normalised(url):
    assert colab.clone_url(url) == REPO_URL


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "hpdl", "https://github.com/a"])
def test_a_non_github_repository_is_a_usage_error(url):
    with pytest.raises(UsageError, match="not a GitHub URL"):
        colab.badge_markdown("lessons/x.ipynb", repo=url)


def test_repository_comes_from_pyproject_urls(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\n\n[project.urls]\nRepository = "{REPO_URL}"\n')
    assert colab.repository_url(pyproject) == REPO_URL
    pyproject.write_text('[project]\nname = "x"\n')
    assert colab.repository_url(pyproject) == colab.DEFAULT_REPOSITORY
    assert colab.repository_url(tmp_path / "missing.toml") == colab.DEFAULT_REPOSITORY


@pytest.mark.parametrize("path", [
    "lessons/unit1_foundations/01_dnn_from_scratch.ipynb",   # a lesson
    "labs/solutions/lab1_backprop.ipynb",                    # a lab master
    "labs/lab1_backprop.ipynb",                              # a student lab
])
def test_badge_opens_the_notebook_in_colab(path):
    badge = colab.badge_markdown(path, repo=REPO_URL)
    assert badge == (f"[![Open In Colab]({BADGE_IMAGE})](https://colab.research.google.com"
                     f"/github/someone/hpdl-fork/blob/main/{path})")


def test_badge_of_an_absolute_path_is_relative_to_the_root(tmp_path):
    path = tmp_path / "lessons" / "a.ipynb"
    assert colab.colab_url(path, REPO_URL, root=tmp_path).endswith("/blob/main/lessons/a.ipynb")
    with pytest.raises(UsageError, match="not inside the repository"):
        colab.colab_url(path, REPO_URL, root=tmp_path / "elsewhere")


# ------------------------------------------------------------------ notebooks
TITLE = "# 99 · A lesson\n\nWhat you will learn."
SETUP = ("import numpy as np\n\nimport course_utils\n\n"
         "ctx = course_utils.setup(PROFILE, DEVICE, SEED)")


def _notebook(path, title=TITLE, setup=SETUP):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "auto"\nDEVICE = "auto"\nSEED = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(title), params, nbformat.v4.new_code_cell(setup),
                nbformat.v4.new_markdown_cell("## Try it")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_sync_inserts_badge_and_guard_and_is_idempotent(tmp_path):
    path = _notebook(tmp_path / "lessons" / "99_x.ipynb")
    ids = [c.id for c in nbformat.read(path, as_version=4).cells]
    assert colab.sync_notebooks([path], repo=REPO_URL, root=tmp_path) == [path]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells] == ids
    badge = colab.badge_markdown("lessons/99_x.ipynb", repo=REPO_URL)
    assert nb.cells[0].source == f"# 99 · A lesson\n\n{badge}\n\nWhat you will learn."
    assert nb.cells[2].source == f"{colab.guard(REPO_URL)}\n\n{SETUP}"
    written = path.read_bytes()
    assert colab.sync_notebooks([path], repo=REPO_URL, root=tmp_path) == []
    assert colab.sync_notebooks([path], check=True, repo=REPO_URL, root=tmp_path) == []
    assert path.read_bytes() == written


def test_check_reports_a_stale_notebook_and_writes_nothing(tmp_path):
    fresh = _notebook(tmp_path / "lessons" / "a.ipynb")
    colab.sync_notebooks([fresh], repo=REPO_URL, root=tmp_path)
    stale = _notebook(tmp_path / "lessons" / "b.ipynb")
    before = stale.read_bytes()
    got = colab.sync_notebooks([fresh, stale], check=True, repo=REPO_URL, root=tmp_path)
    assert got == [stale] and stale.read_bytes() == before


def test_a_copied_notebook_or_another_repository_is_updated_in_place(tmp_path):
    original = _notebook(tmp_path / "lessons" / "a.ipynb")
    colab.sync_notebooks([original], repo=REPO_URL, root=tmp_path)
    copy = tmp_path / "lessons" / "b.ipynb"
    copy.write_bytes(original.read_bytes())  # badge still says a.ipynb
    assert colab.sync_notebooks([copy], check=True, repo=REPO_URL, root=tmp_path) == [copy]
    other = "https://github.com/course/other"
    colab.sync_notebooks([copy], repo=other, root=tmp_path)
    nb = nbformat.read(copy, as_version=4)
    assert nb.cells[0].source.count("Open In Colab") == 1
    assert "github/course/other/blob/main/lessons/b.ipynb" in nb.cells[0].source
    assert nb.cells[2].source.count("google.colab") == 1
    assert nb.cells[2].source.startswith(colab.guard(other) + "\n\nimport numpy")


def test_a_notebook_without_a_setup_cell_is_a_usage_error(tmp_path):
    path = _notebook(tmp_path / "lessons" / "a.ipynb", setup="x = 1")
    with pytest.raises(UsageError, match="not the setup cell"):
        colab.sync_notebooks([path], repo=REPO_URL, root=tmp_path)


def test_student_lab_badge_opens_the_student_lab_and_keeps_the_guard():
    master = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "auto"\nDEVICE = "auto"\nSEED = 0')
    master.cells = [nbformat.v4.new_markdown_cell("# Lab 9 — x"), params,
                    nbformat.v4.new_code_cell(SETUP),
                    nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")]
    master = colab.synced(master, "labs/solutions/lab9.ipynb", REPO_URL)
    student = grading.student_notebook(master, "lab9.ipynb")
    assert colab.badge_markdown("labs/lab9.ipynb", repo=REPO_URL) in student.cells[0].source
    assert "labs/solutions" not in student.cells[0].source
    assert student.cells[2].source.startswith(colab.guard(REPO_URL))
    assert colab.synced(student, "labs/lab9.ipynb", REPO_URL) == student, \
        "`hpdl colab` on a student lab agrees with `hpdl student`"


def test_pyproject_keeps_colabs_own_torch():
    """pip install -e on Colab must not replace Colab's CUDA PyTorch: torch (and numba) are
    asked for with a lower bound only, no pin, no upper bound, no local (+cuXXX) tag."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from tests.conftest import REPO

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name in ("torch", "numba"):
        req = next(Requirement(d) for d in deps if Requirement(d).name == name)
        assert req.url is None and all(s.operator == ">=" for s in req.specifier), req
