"""hpdl gpu-check's parts that a CPU can run: the collective smoke script (on Gloo), the
peaks against the data sheet, the report and the reference file's name."""

import json

import pytest

from course_utils.hpdl import gpucheck
from tests.conftest import REPO


def test_reference_file_is_named_after_the_gpu():
    assert gpucheck.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert (REPO / "results/reference/nvidia-h100-80gb-hbm3.json").exists()


@pytest.mark.slow
def test_collective_smoke_script_passes_on_gloo():
    part = gpucheck.smoke(2, "gloo")
    assert part["ok"], part
    assert "2 rank(s) on gloo" in part["detail"]


def test_peaks_and_report_from_the_committed_h100_run():
    results = json.loads((REPO / "results/reference/nvidia-h100-80gb-hbm3.json").read_text())
    peaks = gpucheck.peak_checks(results, results["fingerprint"]["hardware"])
    assert peaks and all(p["ok"] for p in peaks)
    check = gpucheck.GpuCheck(gpu="NVIDIA H100 80GB HBM3", peaks=peaks, seconds=12.0,
                              parts={"peaks against the data sheet": {"ok": True,
                                                                      "detail": "1 peak"}})
    text = gpucheck.report_markdown(check)
    assert text.startswith("# hpdl gpu-check on NVIDIA H100 80GB HBM3")
    assert "matmul_fp32_gflops" in text and "of 67,000 (fp32)" in text
    broken = dict(results, notebooks=[{"path": "x", "metrics": {
        "hw_matmul_bf16_gflops": {"value": 5e6, "unit": "GFLOP/s", "meaningful": True}}}])
    (bad,) = gpucheck.peak_checks(broken, "NVIDIA H100 80GB HBM3")
    assert not bad["ok"] and "BROKEN MEASUREMENT" in bad["line"]
    assert gpucheck.peak_checks(results, "Some Unknown GPU") == []
