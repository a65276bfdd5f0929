"""`hpdl run` end to end: failures reported, the others still run, sources untouched."""

import json
import subprocess

import pytest

from tests.conftest import REPO, hpdl, make_notebook

pytestmark = pytest.mark.slow


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                          text=True, check=False).stdout


def test_run_reports_failure_timeout_and_metrics(tmp_path):
    src = tmp_path / "course"
    make_notebook(src / "a_ok.ipynb", [
        "import course_utils\nctx = course_utils.setup(PROFILE, DEVICE, SEED)",
        'course_utils.record("answer", X * 2, "units")'])
    make_notebook(src / "b_fails.ipynb", ["x = 1", 'raise ValueError("boom in cell")'])
    make_notebook(src / "sub/c_slow.ipynb", ["import time\ntime.sleep(60)"])
    out = tmp_path / "out"
    before = _git_status()
    result = hpdl("run", str(src), "--out", str(out), "--timeout", "15", "-p", "X", "21",
                  "--profile", "quick", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    by_name = {nb["path"]: nb for nb in data["notebooks"]}
    ok, bad, slow = by_name["a_ok.ipynb"], by_name["b_fails.ipynb"], by_name["c_slow.ipynb"]
    assert ok["status"] == "passed" and ok["metrics"]["answer"]["value"] == 42
    assert ok["error"] is None
    assert bad["status"] == "failed" and bad["error"]["cell"] == 3
    assert "ValueError: boom in cell" in bad["error"]["message"]
    assert slow["status"] == "timeout" and slow["seconds"] < 40
    assert data["summary"] == {"passed": 1, "failed": 1, "timeout": 1}
    assert data["profile"] == "quick" and data["device"] in ("cpu", "cuda")
    assert data["parameters"] == {"X": 21} and data["fingerprint"]["hardware"]
    assert (out / "a_ok.ipynb").exists() and (out / "report.html").exists()
    html = (out / "report.html").read_text()
    assert "boom in cell" in html and "Traceback" in html or "ValueError" in html
    assert "1 passed, 1 failed, 1 timeout" in result.stdout
    assert _git_status() == before, "hpdl run modified the repository"


def test_run_all_passing_exits_0(tmp_path, monkeypatch):
    """The resolved profile and device are injected (explicit --profile beats HPDL_PROFILE),
    and figures are kept even where MPLBACKEND=Agg is exported, as in CI."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = make_notebook(tmp_path / "only.ipynb", [
        'print(f"ran with {PROFILE}/{DEVICE}")',
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"])
    result = hpdl("run", str(nb), "--out", str(tmp_path / "o"), "--profile", "full",
                  "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr
    executed = (tmp_path / "o/only.ipynb").read_text()
    assert "ran with full/cpu" in executed
    assert '"image/png"' in executed, "the executed notebook lost its figure"


def test_console_shows_only_progress_and_summary(tmp_path):
    """What a notebook writes below Python (C++ logging such as the PyTorch profiler's
    `USDT: ... profiler_start`, a subprocess's output) stays in the executed copy and the
    kernel's log; the terminal gets the progress lines and the summary only."""
    nb = make_notebook(tmp_path / "noisy.ipynb", [
        'import os, subprocess\nos.write(2, b"FD-LEVEL-NOISE\\n")\n'
        'subprocess.run(["echo", "SUBPROCESS-NOISE"], check=True)\nprint("PY-PRINT")'])
    out = tmp_path / "o"
    result = hpdl("run", str(nb), "--out", str(out), "--profile", "quick")
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    for noise in ("FD-LEVEL-NOISE", "SUBPROCESS-NOISE", "PY-PRINT"):
        assert noise not in console, f"{noise!r} reached the console:\n{console}"
    assert "1 passed, 0 failed, 0 timeout" in result.stdout
    executed = (out / "noisy.ipynb").read_text()
    assert "FD-LEVEL-NOISE" in executed and "SUBPROCESS-NOISE" in executed
    assert "FD-LEVEL-NOISE" in (out / "noisy.kernel.log").read_text()
