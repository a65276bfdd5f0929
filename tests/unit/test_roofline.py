import math

import numpy as np
import pytest
import torch

from course_utils import tf32
from course_utils.errors import DeviceUnavailableError, UsageError
from course_utils.gpu import roofline


@pytest.fixture
def keep_tf32_state():
    """Leave PyTorch's TF32 switches as they were, whatever a test does to them."""
    saved = tf32._raw()
    yield
    tf32._set_raw(*saved)


# --------------------------------------------------------------------------- counting

@pytest.mark.parametrize("dtype, size", [("fp64", 8), ("fp32", 4), ("bf16", 2), ("fp16", 2)])
def test_square_matmul_cost_is_2n3_flop_over_3n2_elements(dtype, size):
    cost = roofline.matmul_cost(6, dtype)
    assert cost.flop == 2 * 6**3 == 432
    assert cost.nbytes == 3 * 6**2 * size
    assert cost.intensity == pytest.approx(2 * 6 / (3 * size))  # = 2n / (3 · bytes)


def test_rectangular_matmul_cost():
    cost = roofline.matmul_cost(3, "fp64", m=2, k=5)  # (2 x 5) @ (5 x 3)
    assert cost.flop == 2 * 2 * 3 * 5
    assert cost.nbytes == (2 * 5 + 5 * 3 + 2 * 3) * 8


def test_elementwise_reduction_and_copy_costs():
    add = roofline.elementwise_cost(10, "fp32")
    assert (add.flop, add.nbytes) == (10, 120)
    assert add.intensity == pytest.approx(1 / 12)  # 1 FLOP per 3 fp32 elements moved
    saxpy = roofline.elementwise_cost(10, "fp32", flop_per_element=2)
    assert saxpy.intensity == pytest.approx(2 / 12)
    total = roofline.reduction_cost(10, "fp64")
    assert (total.flop, total.nbytes) == (10, 80)
    assert total.intensity == pytest.approx(1 / 8)  # 1 FLOP per element read
    copy = roofline.copy_cost(10, "bf16")
    assert (copy.flop, copy.nbytes, copy.intensity) == (0, 40, 0.0)


def test_attainable_ridge_and_bound():
    peak, bandwidth = 1000.0, 100.0  # ridge at 10 FLOP/byte
    assert roofline.ridge_point(peak, bandwidth) == 10.0
    assert roofline.attainable(1.0, peak, bandwidth) == 100.0  # memory roof
    assert roofline.attainable(50.0, peak, bandwidth) == 1000.0  # compute roof
    assert roofline.attainable(10.0, peak, bandwidth) == 1000.0  # the ridge: both
    np.testing.assert_allclose(roofline.attainable(np.array([0.0, 2.0, 40.0]), peak,
                                                   bandwidth), [0.0, 200.0, 1000.0])
    assert roofline.bound(1 / 12, peak, bandwidth) == "memory"
    assert roofline.bound(100.0, peak, bandwidth) == "compute"
    assert roofline.fraction_of_roof(1.0, 50.0, peak, bandwidth) == pytest.approx(0.5)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("value", [0, -3, 2.5, True, "8", math.inf])
def test_sizes_must_be_whole_and_positive(value):
    with pytest.raises(UsageError, match=r"^n="):
        roofline.matmul_cost(value)


def test_usage_errors_name_the_parameter():
    with pytest.raises(UsageError, match=r"dtype='fp8'.*fp64, fp32, bf16, fp16"):
        roofline.matmul_cost(4, "fp8")
    with pytest.raises(UsageError, match=r"device='tpu'.*cpu, cuda"):
        roofline.copy_gbps(1024, "tpu")
    with pytest.raises(UsageError, match=r"nbytes=0"):
        roofline.copy_gbps(0, "cpu")
    with pytest.raises(UsageError, match=r"nbytes=2 .*at least one fp32 element"):
        roofline.reduction_gbps(2, "cpu")
    with pytest.raises(UsageError, match=r"tf32=True .*dtype='bf16'"):
        roofline.matmul_gflops(8, "bf16", "cpu", tf32=True)
    with pytest.raises(UsageError, match=r"^peak=0"):
        roofline.attainable(1.0, 0, 10.0)
    with pytest.raises(UsageError, match=r"^bandwidth=-1"):
        roofline.ridge_point(10.0, -1)
    with pytest.raises(UsageError, match=r"^intensity="):
        roofline.attainable(-1.0, 10.0, 10.0)
    with pytest.raises(UsageError, match=r"^MATMUL_N=0"):
        roofline.check_size("MATMUL_N", 0)


def test_parse_dtypes_accepts_lists_and_comma_strings():
    assert roofline.parse_dtypes("fp32, bf16") == ["fp32", "bf16"]
    assert roofline.parse_dtypes(("fp64",)) == ["fp64"]
    with pytest.raises(UsageError, match=r"^DTYPES='fp32,int8'.*'int8' is unknown.*fp64, fp32"):
        roofline.parse_dtypes("fp32,int8", name="DTYPES")
    with pytest.raises(UsageError, match=r"^DTYPES=''"):
        roofline.parse_dtypes("", name="DTYPES")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_paths_without_a_gpu_say_so():
    with pytest.raises(DeviceUnavailableError, match=r"device='cuda'"):
        roofline.h2d_gbps(1024, pinned=True)
    with pytest.raises(DeviceUnavailableError, match=r"device='cuda'"):
        roofline.matmul_gflops(8, "fp32", "cuda")


# --------------------------------------------------------------------------- measuring

def _finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


@pytest.mark.parametrize("dtype", ["fp64", "fp32", "bf16"])
def test_matmul_measurement_on_cpu(dtype):
    m = roofline.matmul_gflops(32, dtype, "cpu", warmup=0, repeats=2)
    assert _finite_positive(m.value) and m.unit == "GFLOP/s" and m.meaningful
    assert m.value == pytest.approx(m.gflops)
    assert m.point == (pytest.approx(roofline.matmul_cost(32, dtype).intensity), m.gflops)
    assert m.timing.repeats == 2 and m.dtype == dtype and m.device == "cpu"
    assert str(m).startswith(f"matmul n=32 [{dtype}] on cpu:")


def test_memory_measurements_on_cpu_count_their_bytes():
    nbytes = 64 * 1024
    copy = roofline.copy_gbps(nbytes, "cpu", warmup=1, repeats=2)
    add = roofline.elementwise_gbps(nbytes, "cpu", warmup=1, repeats=2)
    total = roofline.reduction_gbps(nbytes, torch.device("cpu"), "fp64", warmup=1, repeats=2)
    for m in (copy, add, total):
        assert _finite_positive(m.value) and m.unit == "GB/s" and m.meaningful
        assert m.value == pytest.approx(m.gbps)
    assert copy.cost.nbytes == 2 * nbytes and copy.cost.flop == 0
    assert add.cost.nbytes == 3 * nbytes and add.intensity == pytest.approx(1 / 12)
    assert total.cost.nbytes == nbytes and total.intensity == pytest.approx(1 / 8)
    assert _finite_positive(add.gflops) and _finite_positive(total.gflops)


def test_dtype_supported_and_errors_on_cpu():
    assert roofline.dtype_supported("fp32", "cpu")
    assert roofline.dtype_supported("fp64", "cpu")
    err32 = roofline.matmul_relative_error(64, "fp32", "cpu")
    err16 = roofline.matmul_relative_error(64, "bf16", "cpu")
    assert 0 < err32 < 1e-5
    assert err32 < err16 < 3e-2  # bf16 keeps 8 significant bits: about 3 decimal digits
    assert roofline.matmul_relative_error(64, "fp64", "cpu") < 1e-13


# --------------------------------------------------------------------------- TF32 switches

def test_matmul_measurements_restore_the_tf32_switches(keep_tf32_state):
    with tf32.enabled(True):
        roofline.matmul_gflops(16, "fp32", "cpu", tf32=False, warmup=0, repeats=1)
        assert roofline.tf32_state() == {"matmul": "tf32", "conv": "tf32"}
    with tf32.enabled(False):
        roofline.matmul_gflops(16, "fp32", "cpu", tf32=True, warmup=0, repeats=1)
        assert roofline.tf32_state() == {"matmul": "ieee", "conv": "ieee"}


# --------------------------------------------------------------------------- GPU only

@pytest.mark.gpu
def test_cuda_measurements(keep_tf32_state):
    nbytes = 16 * 2**20
    for pinned in (False, True):
        m = roofline.h2d_gbps(nbytes, pinned=pinned, warmup=1, repeats=3)
        assert _finite_positive(m.value) and m.device == "cuda" and m.cost.nbytes == nbytes
    for use_tf32 in (False, True):
        m = roofline.matmul_gflops(256, "fp32", "cuda", tf32=use_tf32, warmup=1, repeats=3)
        assert _finite_positive(m.value) and m.dtype == ("tf32" if use_tf32 else "fp32")
    assert roofline.tf32_state() == tf32.state()
    assert _finite_positive(roofline.copy_gbps(nbytes, "cuda", repeats=3).value)
    assert _finite_positive(roofline.elementwise_gbps(nbytes, "cuda", repeats=3).value)
    assert _finite_positive(roofline.reduction_gbps(nbytes, "cuda", repeats=3).value)
    assert roofline.dtype_supported("fp32", "cuda")
    assert roofline.matmul_relative_error(128, "fp32", "cuda") < 1e-5


def test_module_available_survives_missing_parents():
    assert roofline.module_available("json")
    assert not roofline.module_available("no_such_package_hpdl.sub")


def test_gflops_ceiling_bounds_real_peaks_and_catches_broken_timings():
    # 2 cores, fp32: 2 x 6 GHz x 64 FLOP/cycle = 768 GFLOP/s
    assert roofline.gflops_ceiling("fp32", "cpu", cores=2) == 768
    assert roofline.gflops_ceiling("bf16", "cuda") > 989e3  # H100 SXM dense bf16
    assert roofline.gflops_ceiling("fp32", "cuda") > 67e3   # H100 SXM fp32
    m = roofline.matmul_gflops(64, "fp32", "cpu", warmup=1, repeats=3)
    assert 0 < m.value < roofline.gflops_ceiling("fp32", "cpu")
    # a timing that stopped too early (1 ns for a 2 GFLOP product) is far above it
    assert 2 * 1024**3 / 1e-9 / 1e9 > roofline.gflops_ceiling("fp32", "cpu")
