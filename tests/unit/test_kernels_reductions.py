"""course_utils.gpu.kernels.reductions: sums, histograms and the stream pipeline against NumPy,
on odd sizes (not multiples of the block size), and launch configurations validated.

Runs on the CUDA simulator (or a real GPU when present); the warp-shuffle sum and CUDA
event timing need a real GPU and are marked ``gpu``.
"""

import numpy as np
import pytest

from course_utils import cudasim
from course_utils.errors import CourseError, UsageError

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from course_utils.gpu.kernels import reductions as r  # noqa: E402

ODD_SIZES = (1, 37, 1001)
ON_SIM = cudasim.on_simulator()


def _data(n, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


def _assert_sum(got, x):
    exact = np.sum(x, dtype=np.float64)
    assert abs(got - exact) <= r.sum_tolerance(x), (got, exact, r.sum_tolerance(x))


@pytest.mark.parametrize("method", ["atomic", "shared_tree", "two_pass"])
@pytest.mark.parametrize("threads", [32, 64])
@pytest.mark.parametrize("n", ODD_SIZES)
def test_sums_match_numpy_on_odd_sizes(n, threads, method):
    x = _data(n, seed=n)
    _assert_sum(r.reduce_sum(x, method, threads=threads, blocks=3), x)


@pytest.mark.parametrize("method", ["atomic", "shared_tree", "two_pass"])
def test_float64_and_one_thread_per_element(method):
    x = _data(101, np.float64, seed=1)
    _assert_sum(r.reduce_sum(x, method, threads=32), x)  # blocks=None: 4 blocks of 32


def test_sum_of_a_device_array_and_a_reused_plan():
    from numba import cuda

    x = _data(37, seed=2)
    d_x = cuda.to_device(x)
    plan = r.SumPlan(x.size, x.dtype, "shared_tree", threads=32, blocks=2)
    for _ in range(2):  # the atomic counter is zeroed on every launch
        plan(d_x)
        _assert_sum(plan.result(), x)
    assert "2 blocks x 32 threads" in plan.describe()


def test_two_pass_is_deterministic():
    x = _data(1001, seed=3)
    a = r.reduce_sum(x, "two_pass", threads=32, blocks=3)
    b = r.reduce_sum(x, "two_pass", threads=32, blocks=3)
    assert a == b


def test_sum_tolerance_follows_n_eps():
    x = np.ones(1000, dtype=np.float32)
    assert r.sum_tolerance(x) == pytest.approx(999 * np.finfo(np.float32).eps * 1000)
    assert r.sum_tolerance(x, dtype=np.float64) < r.sum_tolerance(x) * 1e-8
    assert r.sum_tolerance(x, chain=10) == pytest.approx(r.sum_tolerance(x) * 10 / 999)
    assert r.sum_tolerance(np.ones(1)) > 0
    with pytest.raises(UsageError, match="chain=0"):
        r.sum_tolerance(x, chain=0)


@pytest.mark.parametrize("method", ["atomic", "shared_tree", "two_pass"])
def test_chain_bound_is_shorter_than_n_and_holds(method):
    from numba import cuda

    x = np.random.default_rng(7).random(1001).astype(np.float32)
    plan = r.SumPlan(x.size, x.dtype, method, threads=32, blocks=3)
    plan(cuda.to_device(x))
    assert plan.chain < x.size - 1
    exact = np.sum(x, dtype=np.float64)
    assert abs(plan.result() - exact) <= r.sum_tolerance(x, chain=plan.chain)
    big = r.SumPlan(1 << 26, np.float32, method, threads=256, blocks=1056)
    assert big.chain < {"atomic": 300_000, "shared_tree": 1400, "two_pass": 300}[method]


def test_benchmark_launches_reports_time_per_launch():
    calls = []
    t = r.benchmark_launches(lambda: calls.append(1), launches=4, warmup=1, repeats=2)
    assert len(calls) == 4 * 3 and t.repeats == 2 and t.warmup == 1
    assert t.simulator == ON_SIM
    with pytest.raises(UsageError, match="launches=0"):
        r.benchmark_launches(lambda: None, launches=0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"threads": 0}, "threads=0"), ({"threads": -32}, "threads=-32"),
    ({"threads": 2048}, "limit of 1024"), ({"threads": 48}, "power of two"),
    ({"threads": 32, "blocks": 0}, "blocks=0"), ({"method": "bogus"}, "method='bogus'"),
])
def test_bad_sum_configurations_name_the_parameter(kwargs, fragment):
    kwargs = {"method": "shared_tree", **kwargs}
    with pytest.raises(UsageError, match=fragment):
        r.reduce_sum(_data(37), kwargs.pop("method"), **kwargs)


def test_atomic_accepts_any_block_size_and_shuffle_needs_whole_warps():
    x = _data(37)
    _assert_sum(r.reduce_sum(x, "atomic", threads=48, blocks=1), x)
    with pytest.raises(UsageError, match="multiple of the warp size"):
        r.SumPlan(37, np.float32, "warp_shuffle", threads=48)
    assert r.check_sum_threads(96, "warp_shuffle") == 96
    with pytest.raises(UsageError, match="THREADS=96 is not valid for method='two_pass'"):
        r.check_sum_threads(96, "two_pass", name="THREADS")


@pytest.mark.parametrize("x, fragment", [
    (np.zeros(0, np.float32), "non-empty 1-D"), (np.zeros((3, 3), np.float32), "1-D"),
    (np.arange(5), "float32 or float64"),
])
def test_bad_sum_inputs(x, fragment):
    with pytest.raises(UsageError, match=fragment):
        r.reduce_sum(x)


def test_bad_plan_sizes():
    with pytest.raises(UsageError, match="n=0"):
        r.SumPlan(0, np.float32)
    with pytest.raises(UsageError, match="dtype=int32"):
        r.SumPlan(10, np.int32)


@pytest.mark.skipif(not ON_SIM, reason="checks the simulator's refusal")
def test_warp_shuffle_refused_on_the_simulator_with_a_reason():
    with pytest.raises(CourseError, match="no warp shuffles"):
        r.reduce_sum(_data(37), "warp_shuffle", threads=32)


@pytest.mark.gpu
@pytest.mark.parametrize("threads", [32, 64, 96])
@pytest.mark.parametrize("n", ODD_SIZES + (1 << 20,))
def test_warp_shuffle_matches_numpy_on_a_gpu(n, threads):
    x = _data(n, seed=n)
    _assert_sum(r.reduce_sum(x, "warp_shuffle", threads=threads), x)
    _assert_sum(r.reduce_sum(x, "warp_shuffle", threads=threads, blocks=3), x)


@pytest.mark.gpu
def test_full_wave_grid_and_events_on_a_gpu():
    from numba import cuda

    x = _data(1 << 22, seed=5)
    d_x = cuda.to_device(x)
    plan = r.SumPlan(x.size, x.dtype, "shared_tree", threads=256)
    assert 1 <= plan.blocks <= x.size // 256
    timing = r.event_benchmark(lambda: plan(d_x), warmup=1, repeats=3)
    assert timing.meaningful and timing.synced == "cuda events" and timing.median > 0
    _assert_sum(plan.result(), x)
    assert r.peak_bandwidth_gbps() is None or r.peak_bandwidth_gbps() > 10


def test_copy_for_bandwidth_copies_odd_sizes():
    from numba import cuda

    x = _data(37)
    d_x, d_y = cuda.to_device(x), cuda.device_array_like(x)
    r.copy_for_bandwidth[2, 32](d_x, d_y)
    np.testing.assert_array_equal(d_y.copy_to_host(), x)


def test_grid_blocks():
    assert r.grid_blocks(1001, 64, 4) == 4
    assert r.grid_blocks(37, 64, 4) == 1  # never more blocks than one thread per element
    if ON_SIM:
        assert r.grid_blocks(1001, 64, None) == 16
        assert r.resident_blocks(r.sum_atomic, (), 64) is None
    with pytest.raises(UsageError, match="blocks=-1"):
        r.grid_blocks(10, 32, -1)


@pytest.mark.parametrize("method", r.HIST_METHODS)
@pytest.mark.parametrize("threads", [32, 64])
@pytest.mark.parametrize("n", ODD_SIZES)
def test_histograms_match_bincount_on_odd_sizes(n, threads, method):
    values = r.skewed_values(n, 256, hot_fraction=0.3, seed=n)
    got = r.histogram(values, 256, method, threads=threads, blocks=3)
    np.testing.assert_array_equal(got, np.bincount(values, minlength=256))


@pytest.mark.parametrize("method", r.HIST_METHODS)
def test_histogram_with_odd_bins_and_wide_values(method):
    values = np.random.default_rng(0).integers(0, 7, size=101).astype(np.int64)
    got = r.histogram(values, 7, method, threads=32, blocks=2)
    np.testing.assert_array_equal(got, np.bincount(values, minlength=7))


@pytest.mark.parametrize("args, kwargs, fragment", [
    ((np.arange(5), 0), {}, "nbins=0"), ((np.arange(5), 2000), {}, "nbins=2000"),
    ((np.arange(5), 4), {}, "max 4"), ((np.array([-1, 2]), 4), {}, "min -1"),
    ((np.zeros(3, np.float32), 4), {}, "integer dtype"),
    ((np.arange(5), 8, "bogus"), {}, "method='bogus'"),
    ((np.arange(5), 8), {"threads": 0}, "threads=0"),
    ((np.arange(5), 8), {"blocks": 0}, "blocks=0"),
])
def test_bad_histogram_inputs(args, kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        r.histogram(*args, **kwargs)


def test_skewed_values():
    values = r.skewed_values(10_000, 256, hot_fraction=0.9, seed=1)
    assert values.dtype == np.uint8 and values.max() < 256
    assert 0.88 < np.mean(values == 0) < 0.93
    assert r.skewed_values(10, 1000, hot_fraction=0.0).dtype == np.uint16
    with pytest.raises(UsageError, match="hot_fraction=1.5"):
        r.skewed_values(10, 8, hot_fraction=1.5)


def test_chunk_bounds_cover_odd_sizes():
    bounds = r.chunk_bounds(37, 4)
    assert bounds[0][0] == 0 and bounds[-1][1] == 37
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert {hi - lo for lo, hi in bounds} <= {9, 10}
    with pytest.raises(UsageError, match="chunks=40"):
        r.chunk_bounds(37, 40)
    with pytest.raises(UsageError, match="chunks=0"):
        r.chunk_bounds(37, 0)


def test_stream_pipeline_matches_reference_and_one_stream():
    x = _data(101, seed=4)
    overlapped = r.StreamPipeline(101, chunks=3, streams=2, iters=5, threads=32).run(x)
    sequential = r.StreamPipeline(101, chunks=1, streams=1, iters=5, threads=32).run(x)
    np.testing.assert_array_equal(overlapped, sequential)  # same arithmetic, same bits
    np.testing.assert_allclose(overlapped, r.dial_reference(x, 5, 0.999, 0.001),
                               rtol=0, atol=r.dial_tolerance(x, 5, 0.999, 0.001))


def test_dial_tolerance_is_bounded_by_the_contraction():
    x = np.ones(3)
    eps = np.finfo(np.float32).eps
    assert r.dial_tolerance(x, 10, 0.5, 0.0) == pytest.approx(2 * 2 * eps * 1.0)
    assert r.dial_tolerance(x, 10**6, 0.999, 0.001) < 2 * 1001 * eps * 1.01
    assert r.dial_tolerance(x, 4, 1.0, 1.0) == pytest.approx(2 * 4 * eps * 6.0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"streams": 0}, "streams=0"), ({"iters": -1}, "iters=-1"),
    ({"chunks": 200}, "chunks=200"), ({"threads": 4096}, "limit of 1024"),
    ({"dtype": np.int32}, "dtype=int32"),
])
def test_bad_pipeline_configurations(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        r.StreamPipeline(101, **kwargs)


def test_pipeline_rejects_wrong_shape():
    with pytest.raises(UsageError, match="shape"):
        r.StreamPipeline(10, chunks=2, streams=1).run(np.zeros(11, np.float32))


def test_dial_reference_closed_form():
    x = np.array([0.0, 2.0])
    v = x.copy()
    for _ in range(10):
        v = 0.9 * v + 0.5
    np.testing.assert_allclose(r.dial_reference(x, 10, 0.9, 0.5), v)
    np.testing.assert_allclose(r.dial_reference(x, 3, 1.0, 0.5), x + 1.5)


@pytest.mark.skipif(not ON_SIM, reason="checks the simulator's refusal")
def test_event_timing_refused_on_the_simulator():
    with pytest.raises(CourseError, match="events"):
        r.event_benchmark(lambda: None)
    assert r.peak_bandwidth_gbps() is None


def test_one_thread_per_element_atomics_need_a_float64_counter_to_be_checkable():
    """2**26 atomics into one float32 counter: the rounding bound exceeds the sum itself
    (a check that cannot fail), and on a GPU the counter stops growing at 2**24. A float64
    counter keeps the bound meaningful."""
    from numba import cuda

    n = 1 << 26
    blocks = n // 256
    f32 = r.SumPlan(n, np.float32, "atomic", threads=256, blocks=blocks)
    f64 = r.SumPlan(n, np.float32, "atomic", threads=256, blocks=blocks,
                    counter_dtype=np.float64)
    ones = np.ones(4, dtype=np.float32)  # the bound is proportional to sum |x|: 4 here
    assert f32.tolerance(ones) > ones.sum()  # vacuous
    assert f64.tolerance(ones) < 1e-5 * ones.sum()
    x = np.random.default_rng(3).random(1001).astype(np.float32)
    plan = r.SumPlan(x.size, x.dtype, "atomic", threads=32, blocks=-(-x.size // 32),
                     counter_dtype=np.float64)
    plan(cuda.to_device(x))
    exact = np.sum(x, dtype=np.float64)
    assert abs(plan.result() - exact) <= plan.tolerance(x) < 1e-5 * exact
    with pytest.raises(UsageError, match="counter_dtype"):
        r.SumPlan(10, np.float32, "two_pass", threads=32, counter_dtype=np.float64)


def test_the_runtime_copy_is_timed_per_copy_and_copies():
    from numba import cuda

    from course_utils.gpu import launch

    src = cuda.to_device(np.arange(37, dtype=np.float32))
    dst = cuda.device_array_like(src)
    t = launch.benchmark_runtime_copy(src, dst, launches=3, warmup=1, repeats=2)
    assert t.repeats == 2 and t.meaningful == (not ON_SIM)  # simulator times mean nothing
    np.testing.assert_array_equal(dst.copy_to_host(), np.arange(37, dtype=np.float32))
    with pytest.raises(UsageError, match="equal arrays"):
        launch.benchmark_runtime_copy(src, cuda.device_array(36, np.float32))
