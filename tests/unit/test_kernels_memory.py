"""course_utils.gpu.kernels.memory: lesson 08's kernels against NumPy on odd sizes.

On a CPU machine they run on the CUDA simulator (every GPU thread is a Python thread), so
the sizes are tiny; they are still chosen so that no dimension is a multiple of a block
or tile size, and some span several blocks, to exercise every bounds guard.
"""

import numpy as np
import pytest

import course_utils
from course_utils.errors import UsageError

CTX = course_utils.setup("quick", "auto", 0, verbose=False)  # before numba is imported

from numba import cuda  # noqa: E402

from course_utils.gpu.kernels import memory  # noqa: E402


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ copies


@pytest.mark.parametrize("n", [1, 37])
def test_copy_matches_input(n):
    src = _rand(n)
    np.testing.assert_array_equal(memory.copy(src, threads=16), src)


@pytest.mark.parametrize("stride", [1, 2, 3, 8, 33, 50])
def test_strided_copy_is_a_numpy_slice(stride):
    src = np.arange(45, dtype=np.float32)
    np.testing.assert_array_equal(memory.strided_copy(src, stride, threads=8), src[::stride])


def test_device_in_device_out_and_out_argument():
    src = _rand(29)
    d_src = cuda.to_device(src)
    d_out = cuda.device_array(15, dtype=np.float32)
    result = memory.strided_copy(d_src, 2, out=d_out)
    assert result is d_out and hasattr(result, "copy_to_host")
    np.testing.assert_array_equal(result.copy_to_host(), src[::2])
    with pytest.raises(UsageError, match="out has shape"):
        memory.strided_copy(d_src, 3, out=d_out)


@pytest.mark.parametrize("stride", [0, -2, 1.5, True])
def test_strided_copy_rejects_bad_strides(stride):
    with pytest.raises(UsageError, match="stride="):
        memory.strided_copy(np.zeros(8, np.float32), stride)


@pytest.mark.parametrize("threads", [0, -32, 2048])
def test_copy_rejects_bad_block_sizes(threads):
    with pytest.raises(UsageError, match="threads per block"):
        memory.copy(np.zeros(8, np.float32), threads=threads)


# ------------------------------------------------------------------ transposes


@pytest.mark.parametrize("variant", memory.TRANSPOSE_VARIANTS)
@pytest.mark.parametrize("shape", [(7, 13), (33, 17)])
def test_transpose_matches_numpy(variant, shape):
    a = _rand(*shape)
    np.testing.assert_array_equal(memory.transpose(a, variant), a.T)


@pytest.mark.parametrize("variant", ["tiled", "tiled_padded"])
def test_small_tile_transpose_over_several_blocks(variant):
    a = _rand(19, 26)  # 3 x 4 blocks of 8 x 8, the last row and column of blocks partial
    np.testing.assert_array_equal(memory.transpose(a, variant, tile=8), a.T)


def test_naive_transpose_with_an_odd_block():
    a = _rand(9, 14)
    np.testing.assert_array_equal(memory.transpose(a, "naive", threads=(5, 3)), a.T)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"variant": "diagonal"}, "variant='diagonal' is not valid; choose one of: naive"),
    ({"variant": "tiled", "tile": 0}, "tile=0 is not valid"),
    ({"variant": "tiled", "tile": -8}, "tile=-8 is not valid"),
    ({"variant": "tiled_padded", "tile": 64}, "tile=64 is not valid; the compiled tile"),
    ({"variant": "naive", "threads": (0, 8)}, "threads per block=(0, 8) is not valid"),
    ({"variant": "naive", "threads": (64, 32)}, "2048 threads"),
])
def test_transpose_rejects_bad_configurations(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        memory.transpose(np.zeros((4, 5), np.float32), **kwargs)


def test_transpose_rejects_bad_arrays():
    with pytest.raises(UsageError, match="2-D"):
        memory.transpose(np.zeros(5, np.float32))
    with pytest.raises(UsageError, match="every dimension must be > 0"):
        memory.transpose(np.zeros((0, 5), np.float32))


# ------------------------------------------------------------------ matrix products


@pytest.mark.parametrize("variant", memory.MATMUL_VARIANTS)
@pytest.mark.parametrize("m, k, n", [(5, 7, 3), (17, 33, 9)])
def test_matmul_matches_numpy(variant, m, k, n):
    A, B = _rand(m, k, seed=1), _rand(k, n, seed=2)
    C = memory.matmul(A, B, variant)
    assert C.shape == (m, n) and C.dtype == np.float32
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant, tile, m, k, n", [("tiled", 8, 17, 19, 20),
                                                    ("register_blocked", 16, 33, 19, 35)])
def test_small_tile_matmul_over_several_blocks(variant, tile, m, k, n):
    # 3 x 3 blocks, k spans several tiles; nothing is a multiple of the tile size
    A, B = _rand(m, k, seed=3), _rand(k, n, seed=4)
    C = memory.matmul(A, B, variant, tile=tile)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-5)


def test_naive_matmul_with_an_odd_block_and_device_arrays():
    A, B = _rand(11, 6, seed=5), _rand(6, 13, seed=6)
    d_C = memory.matmul(cuda.to_device(A), cuda.to_device(B), "naive", threads=(4, 3))
    np.testing.assert_allclose(d_C.copy_to_host(), A.astype(np.float64) @ B, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"variant": "strassen"}, "variant='strassen' is not valid"),
    ({"variant": "tiled", "tile": 0}, "tile=0 is not valid"),
    ({"variant": "tiled", "tile": 64}, "tile=64 is not valid; the compiled tile sizes"),
    ({"variant": "register_blocked", "tile": -128}, "tile=-128 is not valid"),
    ({"variant": "register_blocked", "tile": 256}, "tile=256 is not valid"),
    ({"variant": "register_blocked", "tile": True}, "tile=True is not valid"),
    ({"variant": "naive", "threads": (16, 0)}, "dimension y is 0"),
    ({"variant": "naive", "threads": (64, 64)}, "4096 threads"),
    ({"variant": "naive", "threads": 256}, "2-D block"),
])
def test_matmul_rejects_bad_configurations(kwargs, fragment):
    A, B = np.zeros((3, 4), np.float32), np.zeros((4, 5), np.float32)
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        memory.matmul(A, B, **kwargs)


def test_matmul_rejects_mismatched_shapes():
    with pytest.raises(UsageError, match=r"A.shape\[1\] == B.shape\[0\]"):
        memory.matmul(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))


def test_launch_configurations():
    launch = memory.matmul_launch(4096, 4096, 4096, "register_blocked")
    assert launch.blocks == (32, 32) and launch.threads == (16, 16)
    launch = memory.matmul_launch(100, 70, 5, "tiled", tile=32)
    assert launch.blocks == (3, 4) and launch.threads == (32, 32)
    launch = memory.matmul_launch(100, 70, 5, "naive", threads=(32, 8))
    assert launch.blocks == (3, 13) and launch.threads == (32, 8)
    launch = memory.transpose_launch((100, 70), "tiled")
    assert launch.blocks == (3, 4) and launch.threads == (32, 8)
    assert memory.copy_launch(1000, 256).blocks == (4,)
    with pytest.raises(UsageError, match="M=0"):
        memory.matmul_launch(0, 4, 4)
    # one compiled kernel per variant, shared with the module-level names
    assert memory.matmul_launch(9, 9, 9).kernel is memory.matmul_register_blocked
    assert memory.transpose_launch((9, 9), "tiled_padded").kernel is \
        memory.transpose_tiled_padded


# ------------------------------------------------------------------ hardware models


def test_warp_sectors():
    assert [memory.warp_sectors(s) for s in (1, 2, 4, 8, 16, 32)] == [4, 8, 16, 32, 32, 32]
    with pytest.raises(UsageError, match="stride=0"):
        memory.warp_sectors(0)


def test_bank_conflict_ways():
    assert memory.bank_conflict_ways(32) == 32  # a column of a 32 x 32 tile: one bank
    assert memory.bank_conflict_ways(33) == 1  # padded by one: 32 different banks
    assert memory.bank_conflict_ways(34) == 2
    assert memory.bank_conflict_ways(16) == 16


def test_simulator_size_guard():
    memory.check_simulator_size("MATMUL_N", 64, 64)
    if CTX.simulator:
        with pytest.raises(UsageError, match="MATMUL_N=4096 is too big for the CUDA sim"):
            memory.check_simulator_size("MATMUL_N", 4096, 64)


def test_register_blocked_factory_rejects_uneven_tiles():
    with pytest.raises(UsageError, match="split evenly"):
        memory.make_matmul_register_blocked(64, 64, 8, 3, 4)


def test_bank_ways_count_distinct_words_so_a_broadcast_is_free():
    from course_utils.gpu.kernels import memory as m

    assert m.warp_bank_ways([7] * 32) == 1          # one word, broadcast to every lane
    assert m.warp_bank_ways(list(range(32))) == 1   # 32 consecutive words: 32 banks
    assert m.warp_bank_ways([32 * i for i in range(32)]) == 32  # a column of a 32-wide tile
    assert m.warp_bank_ways([0, 32] * 16) == 2      # two words of bank 0, each read 16 times
    assert m.bank_conflict_ways(32) == 32 and m.bank_conflict_ways(33) == 1
