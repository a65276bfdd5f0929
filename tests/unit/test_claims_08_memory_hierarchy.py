"""Lesson 08's claims that the course's code holds (docs/claims/08_memory_hierarchy.yml)."""

from course_utils import profiles


def test_full_profile_copies_512_mib_and_multiplies_4096_matrices():
    """The introduction: on a GPU the cells copy 512 MiB and multiply 4096 x 4096 matrices,
    and the last cell asserts at least 25 % of cuBLAS there."""
    full = profiles.sizes("full", "memory_hierarchy")
    assert full["copy_n"] * 4 // 2**20 == 512  # float32
    assert full["matmul_n"] == 4096
    assert full["min_fraction_of_cublas"] == 0.25
