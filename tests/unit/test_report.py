import json

from course_utils.hpdl import report
from course_utils.hpdl.runner import NotebookResult, RunResult


def _result(tmp_path) -> RunResult:
    result = RunResult(fingerprint={"hardware": "GPU X", "cuda_simulator": True},
                       profile="quick", device="cpu", parameters={}, created="now",
                       total_seconds=3.0)
    result.notebooks = [
        NotebookResult("lessons/a.ipynb", str(tmp_path / "lessons/a.ipynb"), "passed", 1.0,
                       metrics={"kernel_us": {"value": 5.0, "unit": "us", "hardware": "GPU X",
                                              "meaningful": False},
                                "acc": {"value": 0.9, "unit": "fraction",
                                        "hardware": "CPU: Y (2 cores)", "meaningful": True}}),
        NotebookResult("lessons/b.ipynb", str(tmp_path / "lessons/b.ipynb"), "failed", 2.0,
                       error={"cell": 4, "message": "ValueError: <bad>",
                              "traceback": "Traceback ...\nValueError: <bad>"}),
    ]
    return result


def test_results_json_and_report_page(tmp_path):
    json_path, html_path = report.write_results(_result(tmp_path), tmp_path)
    data = json.loads(json_path.read_text())
    assert data["schema"] == "hpdl-results/1"
    assert data["summary"] == {"passed": 1, "failed": 1, "timeout": 0}
    page = html_path.read_text()
    assert "1 passed, 1 failed, 0 timeout" in page
    assert 'href="lessons/a.ipynb"' in page, "links to the executed copy"
    assert "in cell 4" in page and "ValueError: &lt;bad&gt;" in page, "escaped traceback"
    assert "not a performance number" in page and "simulator" in page
    assert "on CPU: Y (2 cores)" in page, "a metric from other hardware names it"
