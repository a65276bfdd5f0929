"""course_utils.gpu.kernels.basics: lesson 07's kernels against NumPy, on odd sizes.

Runs on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, what CI sets) and unchanged on
a real GPU. Sizes are tiny, because the simulator runs every CUDA thread as a Python thread,
and deliberately not multiples of the block size, so the bounds guards are exercised.
"""

import numpy as np
import pytest

from course_utils import cudasim
from course_utils.errors import UsageError

cudasim.configure()  # simulator or GPU, decided before numba is imported
from course_utils.gpu.kernels import basics  # noqa: E402  (needs configure() first)

pytestmark = pytest.mark.filterwarnings("ignore:Grid size")  # tiny grids, on purpose


def _rng(seed=0):
    return np.random.default_rng(seed)


def _vec(n, seed):
    return _rng(seed).standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("n, threads", [(1, 32), (37, 32), (37, 64), (999, 128), (1000, 64)])
def test_saxpy_matches_numpy_on_odd_sizes(n, threads):
    x, y = _vec(n, 1), _vec(n, 2)
    out = basics.run_saxpy(2.5, x, y, threads=threads)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (n,)
    np.testing.assert_allclose(out, basics.saxpy_reference(2.5, x, y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n, threads, max_blocks", [(1000, 32, 3), (37, 64, 1), (257, 16, 5)])
def test_grid_stride_covers_n_with_fewer_threads(n, threads, max_blocks):
    blocks, _ = basics.launch.grid_1d(n, threads, max_blocks=max_blocks)
    assert blocks * threads < n or n <= threads  # fewer threads than elements
    x, y = _vec(n, 3), _vec(n, 4)
    out = basics.run_saxpy(-1.5, x, y, threads=threads, grid_stride=True,
                           max_blocks=max_blocks)
    np.testing.assert_allclose(out, basics.saxpy_reference(-1.5, x, y), rtol=1e-6, atol=1e-6)


def test_one_element_per_thread_with_too_few_blocks_would_miss_elements():
    with pytest.raises(UsageError, match="grid_stride=True"):
        basics.run_saxpy(1.0, _vec(100, 0), _vec(100, 1), threads=32, max_blocks=1)


def test_device_arrays_stay_on_the_device_and_in_place_works():
    from numba import cuda

    x, y = _vec(77, 5), _vec(77, 6)
    d_x, d_y = cuda.to_device(x), cuda.to_device(y)
    d_out = basics.run_saxpy(3.0, d_x, d_y, d_y, threads=32)  # in place: y = 3x + y
    assert basics.is_device_array(d_out) and d_out is d_y
    np.testing.assert_allclose(d_y.copy_to_host(), basics.saxpy_reference(3.0, x, y),
                               rtol=1e-6, atol=1e-6)
    host_out = np.zeros(77, np.float32)
    assert basics.run_saxpy(3.0, x, y, host_out, threads=32) is host_out
    np.testing.assert_allclose(host_out, basics.saxpy_reference(3.0, x, y), rtol=1e-6)


@pytest.mark.parametrize("n, threads", [(1, 32), (1000, 128)])
def test_copy(n, threads):
    src = _vec(n, 7)
    np.testing.assert_array_equal(basics.run_copy(src, threads=threads), src)


def test_blur_reference_by_hand():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = basics.blur_reference(img)
    assert ref[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 neighbours
    assert ref[0, 1] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6) / 6)  # edge: 6
    assert ref[1, 1] == pytest.approx(img[0:3, 0:3].mean())  # interior: 9
    assert basics.blur_reference(np.full((5, 3), 2.0)).tolist() == np.full((5, 3), 2.0).tolist()
    np.testing.assert_allclose(basics.blur_reference(np.ones((1, 1))), [[1.0]])


@pytest.mark.parametrize("shape, threads", [((7, 13), (8, 8)), ((33, 17), (16, 4)),
                                            ((1, 5), (8, 8)), ((9, 1), (4, 4))])
def test_blur_matches_numpy_on_odd_shapes(shape, threads):
    img = _rng(8).random(shape, dtype=np.float32)
    out = basics.run_blur(img, threads=threads)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, basics.blur_reference(img), rtol=1e-5, atol=1e-6)


def test_index_1d_mapping():
    n, threads = 37, 8
    ids = basics.run_index_1d(n, threads)
    i = np.arange(n)
    np.testing.assert_array_equal(ids["global"], i)
    np.testing.assert_array_equal(ids["block"], i // threads)
    np.testing.assert_array_equal(ids["thread"], i % threads)


def test_index_2d_mapping_x_along_columns():
    shape, (tx, ty) = (7, 13), (4, 2)
    ids = basics.run_index_2d(shape, (tx, ty))
    rows, cols = np.indices(shape)
    blocks_x = -(-shape[1] // tx)
    np.testing.assert_array_equal(ids["row"], rows)
    np.testing.assert_array_equal(ids["col"], cols)
    np.testing.assert_array_equal(ids["block"], (rows // ty) * blocks_x + cols // tx)


@pytest.mark.parametrize("threads", [0, -1, 2048])
def test_bad_block_sizes_are_clear_errors(threads):
    x = _vec(10, 0)
    for call in (lambda: basics.run_saxpy(1.0, x, x, threads=threads),
                 lambda: basics.run_saxpy(1.0, x, x, threads=threads, grid_stride=True),
                 lambda: basics.run_copy(x, threads=threads),
                 lambda: basics.run_index_1d(10, threads)):
        with pytest.raises(UsageError, match=f"threads per block={threads}"):
            call()


@pytest.mark.parametrize("threads, fragment", [((0, 8), "between 1 and"), ((64, 32), "2048"),
                                               ((-1, 4), "between 1 and"), (16, "2-D block")])
def test_bad_2d_blocks_are_clear_errors(threads, fragment):
    img = np.zeros((5, 7), np.float32)
    with pytest.raises(UsageError, match=fragment):
        basics.run_blur(img, threads=threads)


def test_bad_arrays_are_clear_errors():
    x = _vec(10, 0)
    with pytest.raises(UsageError, match="same shape"):
        basics.run_saxpy(1.0, x, _vec(11, 0))
    with pytest.raises(UsageError, match="float32"):
        basics.run_saxpy(1.0, x.astype(np.float64), x)
    with pytest.raises(UsageError, match="1-D"):
        basics.run_copy(np.zeros((2, 3), np.float32))
    with pytest.raises(UsageError, match="2-D image"):
        basics.run_blur(x)
    with pytest.raises(UsageError, match="n=0"):
        basics.run_saxpy(1.0, x[:0], x[:0])
    with pytest.raises(UsageError, match="max_blocks"):
        basics.run_saxpy(1.0, x, x, grid_stride=True, max_blocks=0)


@pytest.mark.skipif(not cudasim.on_simulator(), reason="out-of-bounds writes are undefined "
                    "behaviour on a real GPU; the simulator checks them")
def test_missing_bounds_guard_is_caught_by_the_simulator():
    from numba import cuda

    buf = cuda.to_device(np.zeros(13, np.float32))
    with pytest.raises(IndexError, match="out of bounds"):
        basics.fill_unguarded[2, 8](buf, np.float32(1.0))


@pytest.mark.parametrize("value", [0, -3, 2.5, "abc", True, None])
def test_check_count_names_the_parameter(value):
    with pytest.raises(UsageError, match=r"^N=.* is not valid; it must be an integer > 0$"):
        basics.check_count("N", value)
    assert basics.check_count("N", np.int64(7)) == 7


@pytest.mark.parametrize("value", [0, -0.5, 1.5, "high", None, False])
def test_check_fraction_names_the_parameter(value):
    with pytest.raises(UsageError, match=r"^MIN=.* is not valid; it must be a number in"):
        basics.check_fraction("MIN", value)
    assert basics.check_fraction("MIN", 0.8) == 0.8 and basics.check_fraction("MIN", 1) == 1.0
