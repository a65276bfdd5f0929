"""benchmarks/sanitizer_overhead.py runs: the lab masters' kernels pass every lab check
with and without the access checker, and the script reports a ratio for each."""

import importlib.util
import json

import pytest

from course_utils import cudasim
from tests.conftest import REPO

cudasim.configure()

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not cudasim.on_simulator(), reason="the checker watches the CUDA simulator")]


def test_overhead_benchmark_reports_every_lab_check(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "sanitizer_overhead", REPO / "benchmarks" / "sanitizer_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "overhead.json"
    assert module.main(["--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 6
    for row in data["rows"]:
        assert row["plain_s"] > 0 and row["watched_s"] > 0, row
    assert data["total_ratio"] > 0
    assert "goal: at most 3x" in capsys.readouterr().out
