"""Lab 4's claims that the course's code holds (docs/claims/lab4_distributed.yml)."""

from course_utils import profiles
from course_utils.checks import distributed as d


def test_the_data_parallel_check_trains_on_2_then_3_ranks_to_ddps_parameters():
    """Part 2: one grading job of 3 processes, groups of 2 ranks, then of 3, in both
    profiles; every parameter equal to DDP's within rtol 1e-10 (atol 1e-12)."""
    for name in ("quick", "full"):
        settings = d.settings(profiles.sizes(name, "lab4_distributed"))
        assert sorted(settings.dp_world_sizes) == [2, 3]
    assert (d.DP_RTOL, d.DP_ATOL) == (1e-10, 1e-12)
    assert d.DP_SIZES == (5, 7, 3)  # Linear(5, 7), Tanh, Linear(7, 3)
