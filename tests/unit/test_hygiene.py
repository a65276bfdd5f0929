"""Notebooks stored clean: the hygiene check, and the pre-commit hook that runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.hpdl import hygiene
from tests.conftest import REPO, make_notebook


def _dirty(path: Path) -> Path:
    make_notebook(path, ["print(1)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[1].execution_count = 3
    nbformat.write(nb, path)
    return path


def test_a_dirty_notebook_is_refused_with_each_problem_and_the_fix(tmp_path, capsys):
    path = _dirty(tmp_path / "lesson.ipynb")
    assert hygiene.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: cell 1 has outputs" in out
    assert f"{path}: cell 1 has an execution count" in out
    assert "--fix" in out


def test_fix_clears_outputs_and_counts(tmp_path):
    path = _dirty(tmp_path / "lesson.ipynb")
    assert hygiene.main(["--fix", str(path)]) == 0
    assert hygiene.problems(nbformat.read(path, as_version=4)) == []
    assert hygiene.main([str(path)]) == 0


def test_wrong_kernel_is_named_and_not_fixed(tmp_path):
    path = make_notebook(tmp_path / "r.ipynb", ["x = 1"])
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"]["name"] = "ir"
    nbformat.write(nb, path)
    assert hygiene.problems(nb) == ["kernelspec is 'ir', not 'python3'"]
    assert hygiene.main(["--fix", str(path)]) == 1


@pytest.mark.parametrize("name, text", [("notes.txt", "hello"), ("broken.ipynb", "{not json")])
def test_not_a_notebook_is_bad_usage(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert hygiene.main([str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_pre_commit_hook_refuses_a_notebook_with_outputs(tmp_path):
    """The repository's own .pre-commit-config.yaml, in a scratch git repository."""
    pytest.importorskip("pre_commit")
    shutil.copy(REPO / ".pre-commit-config.yaml", tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    _dirty(tmp_path / "lesson.ipynb")
    (tmp_path / "ok.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "."], cwd=tmp_path, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "PRE_COMMIT_HOME": str(tmp_path / ".cache")}
    run = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "lesson.ipynb: cell 1 has outputs" in run.stdout
    assert "ruff check (Python and notebooks)" in run.stdout

    hygiene.main(["--fix", str(tmp_path / "lesson.ipynb")])
    subprocess.run(git + ["add", "."], cwd=tmp_path, check=True)
    run = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
