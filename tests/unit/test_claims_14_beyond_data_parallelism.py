"""Lesson 14's "Try it" numbers, held to the course code here: an assert in the notebook
would give the exercises' answers away (docs/claims/14_beyond_data_parallelism.yml)."""

import pytest
import torch

from course_utils import models
from course_utils.profiles import PROFILES
from course_utils.training import parallelism


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_try_it_1_one_of_3_ranks_holds_no_rows_of_the_4_by_7_weight(profile):
    """WIDTHS = [50, 7, 4]: the third Linear's weight is 4 x 7, and torch.chunk's rows
    over 3 ranks (2, 2, 0) leave one rank without any."""
    cfg = PROFILES[profile]["beyond_dp"]
    net = models.mlp(cfg["in_features"], [50, 7, 4], cfg["classes"])
    weights = [tuple(m.weight.shape) for m in net if isinstance(m, torch.nn.Linear)]
    assert weights[2] == (4, 7)
    held = [parallelism.fsdp_local_numel((4, 7), 3, rank) for rank in range(3)]
    assert sum(held) == 4 * 7 and held.count(0) == 1


def test_try_it_3_a_70b_model_on_80_gb_gpus_with_30_percent_left_needs_zero3():
    """70 billion parameters, mixed-precision Adam, 70 % of 80 GB per GPU for the state:
    DDP, ZeRO-1 and ZeRO-2 never fit (16, 4 and 2 bytes per parameter stay on every
    rank), ZeRO-3 fits from some number of GPUs on."""
    psi, budget = 70e9, 80e9 * 7 / 10  # exact: 56 GB
    for strategy in ("ddp", "zero1", "zero2"):
        assert parallelism.memory_per_rank(psi, 10**9, strategy).total > budget
    fits = [n for n in range(1, 1000)
            if parallelism.memory_per_rank(psi, n, "zero3").total <= budget]
    assert fits and fits[0] == 20  # 16 * 70 GB / 56 GB: exactly at the limit
