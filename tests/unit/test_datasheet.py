"""course_utils.gpu.datasheet: the peaks table and the sanity check of measured peaks."""

import json

import pytest

from course_utils.gpu import datasheet
from tests.conftest import REPO


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 (80 GB HBM3)"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
    ("NVIDIA H200", "NVIDIA H200 (SXM)"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80 GB"),
    ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40 GB"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80 GB"),
    ("NVIDIA L4", "NVIDIA L4"),
    ("Tesla T4", "NVIDIA T4"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
])
def test_device_names_find_their_data_sheet(name, expected):
    assert datasheet.lookup(name).name == expected


def test_unknown_and_look_alike_names_are_not_matched():
    assert datasheet.lookup("NVIDIA L40S") is None  # not an L4
    assert datasheet.lookup("NVIDIA GeForce RTX 3060") is None


def test_peaks_are_dense_rates_in_gflops():
    h100 = datasheet.lookup("NVIDIA H100 80GB HBM3")
    assert h100.peak("fp32") == 67_000 and h100.peak("bandwidth") == 3350
    assert h100.peak("bf16") == pytest.approx(2 * h100.peak("tf32"), rel=1e-3)
    assert datasheet.lookup("Tesla T4").peak("bf16") is None


def test_the_committed_h100_reference_passes_and_broken_figures_do_not():
    run = json.loads((REPO / "results/reference/nvidia-h100-80gb-hbm3.json").read_text())
    h100 = datasheet.lookup(run["fingerprint"]["hardware"])
    checks = [datasheet.check(name, m["value"], h100) for nb in run["notebooks"]
              for name, m in nb["metrics"].items()]
    checks = [c for c in checks if c is not None]
    assert checks and all(c.ok for c in checks), [c.line() for c in checks]
    too_fast = datasheet.check("hw_matmul_fp32_gflops", 90_000, h100)  # above 105 %
    too_slow = datasheet.check("roofline_copy_gbps", 800, h100)        # below 40 %
    assert not too_fast.ok and not too_slow.ok
    assert "BROKEN MEASUREMENT" in too_fast.line()
    assert datasheet.check("saxpy_gbps", 100, h100) is None  # not a peak measurement
