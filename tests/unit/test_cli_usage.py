"""Bad input: one clear line on stderr, exit 2, nothing written."""

import json

import pytest

from tests.conftest import hpdl, make_notebook


@pytest.mark.parametrize("args, expected", [
    (["run", "lessons/nope.ipynb"], "no such file"),
    (["run", "--profile", "fast"], "--profile='fast'"),
    (["run", "--device", "tpu"], "--device='tpu'"),
    (["run", "-p", "1bad", "3"], "identifier"),
    (["run", "-p", "X"], "expected 2 arguments"),
    (["run", "--timeout", "-5"], "--timeout"),
    (["run", "lessons/00_start_here.ipynb", "-p", "HIDEN", "3"],
     "-p HIDEN: lessons/00_start_here.ipynb has no parameter HIDEN; its parameters are: "
     "MATMUL_N, SEED"),
    (["run", "lessons/unit1_foundations", "-p", "NO_SUCH_KNOB", "3"],
     "-p NO_SUCH_KNOB: any of the 5 notebooks selected has no parameter NO_SUCH_KNOB"),
    (["run", "--out", "lessons/build"], "refusing to write"),
    (["grade", "README.md"], "not a Jupyter notebook"),
    (["grade", "missing.ipynb"], "no such file"),
    (["colab", "--repo", "https://gitlab.com/a/b"], "not a GitHub URL"),
    (["compare", "missing.json"], "no such file"),
    (["site", "--run", "no-such-run"], "hpdl run"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_usage_exits_2_with_one_line(tmp_path, args, expected):
    out = tmp_path / "out"
    if args[0] == "run" and "--out" not in args:
        args = [*args, "--out", str(out)]
    result = hpdl(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_cuda_without_gpu_is_refused(tmp_path):
    from course_utils.device import gpu_available

    if gpu_available():
        pytest.skip("this machine has a GPU")
    result = hpdl("run", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and not (tmp_path / "o").exists()


def test_grade_rejects_a_broken_notebook_file(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    result = hpdl("grade", str(bad))
    assert result.returncode == 2 and "not a Jupyter notebook" in result.stderr


def test_env_json():
    result = hpdl("env", "--json")
    assert result.returncode == 0
    assert "fingerprint" in json.loads(result.stdout)


def test_student_check_passes_on_committed_labs():
    result = hpdl("student", "--check")
    assert result.returncode == 0, result.stdout


def test_run_help_documents_the_schema():
    result = hpdl("run", "--help")
    assert result.returncode == 0 and "hpdl-results/1" in result.stdout


def test_make_notebook_fixture(tmp_path):
    assert make_notebook(tmp_path / "x.ipynb", ["1"]).exists()


def test_gpu_check_without_a_gpu_says_what_to_do():
    from course_utils.device import gpu_available

    if gpu_available():
        pytest.skip("this machine has a GPU: gpu-check would run")
    result = hpdl("gpu-check", "--out", "build/never")
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "make gpu-check" in result.stderr
    assert "Traceback" not in result.stderr
