"""course_utils.gpu.launch: launch configurations are validated with clear messages."""

import pytest

from course_utils.errors import UsageError
from course_utils.gpu import launch


def test_grid_1d_covers_odd_sizes():
    assert launch.grid_1d(1000, 128) == (8, 128)
    assert launch.grid_1d(1, 32) == (1, 32)
    assert launch.grid_1d(10**6, 256, max_blocks=40) == (40, 256)


def test_grid_2d_x_runs_along_columns():
    (bx, by), (tx, ty) = launch.grid_2d((33, 70), (16, 8))
    assert (bx, by) == (5, 5) and (tx, ty) == (16, 8)


@pytest.mark.parametrize("threads, fragment", [
    (0, "between 1 and 1024"), (-32, "between 1 and 1024"), (2048, "limit of 1024"),
    ((64, 32), "2048 threads"), ((1, 1, 65), "limit of 64"), ("32", "integer"),
    (True, "integer"),
])
def test_check_block_rejects_bad_sizes(threads, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        launch.check_block(threads, name="THREADS")
    assert "THREADS" in str(info.value)


def test_other_bad_inputs():
    with pytest.raises(UsageError, match="n=0"):
        launch.grid_1d(0, 32)
    with pytest.raises(UsageError, match="max_blocks"):
        launch.grid_1d(10, 32, max_blocks=0)
    with pytest.raises(UsageError, match="2-D block"):
        launch.grid_2d((4, 4), 16)


def test_limits_and_occupancy():
    limits = launch.device_limits()
    assert limits["max_threads_per_block"] >= 1024 or not limits["simulator"]
    assert launch.check_block(96, limits=limits) == (96,)
    assert launch.occupancy_blocks_per_sm(256) == 8
    assert launch.occupancy_blocks_per_sm(1024) == 2
    assert launch.occupancy_blocks_per_sm(80) == 21  # 3 whole warps per block
    assert launch.occupancy_blocks_per_sm(128, shared_bytes=48 * 1024) == 4
