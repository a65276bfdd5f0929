"""Lab 3's claims that the course's code holds (docs/claims/lab3_reduction_histogram.yml).

The tree drawn in the prose, the sizes it names (the checks' cases, the quick profile's
bins and threads), and what the master's ``block_amax`` does per value, counted by the
access checker on the CUDA simulator: the kernel is taken from the master's cell.
"""

import ast
import inspect
import re

import nbformat
import numpy as np
import pytest

from course_utils import cudasim, profiles

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from numba import cuda, float32  # noqa: E402

from course_utils.checks import cuda as cc  # noqa: E402
from course_utils.gpu import sanitizer  # noqa: E402
from tests.conftest import REPO  # noqa: E402

MASTER = REPO / "labs" / "solutions" / "lab3_reduction_histogram.ipynb"
PROFILES = [profiles.sizes(p, "lab3_reduction_histogram") for p in ("quick", "full")]
needs_simulator = pytest.mark.skipif(not cudasim.on_simulator(),
                                     reason="the access checker watches the simulator")


def master_cell(defines: str) -> str:
    (source,) = [c.source for c in nbformat.read(MASTER, as_version=4).cells
                 if f"def {defines}(" in c.source]
    return source


def test_the_tree_drawn_for_8_threads():
    """Each line of the drawing is the previous one combined pairwise at stride s."""
    (markdown,) = [c.source for c in nbformat.read(MASTER, as_version=4).cells
                   if "For 8 threads:" in c.source]
    drawing = markdown.split("For 8 threads:")[1].split("```")[1]
    levels = [[int(v) for v in re.findall(r"\d+", line.split("s =")[0].split("cache[")[0])]
              for line in drawing.strip().splitlines()]
    assert len(levels[0]) == 8 and len(levels) == 1 + 3  # log2(8) halving steps
    for before, after in zip(levels, levels[1:], strict=False):
        stride = len(before) // 2
        assert after == [max(before[t], before[t + stride]) for t in range(stride)]
    assert levels[-1] == [max(levels[0])]


@pytest.mark.parametrize("threads", sorted({p["threads"] for p in PROFILES}))
def test_the_amax_checks_run_the_three_cases_of_the_prose(threads):
    """(1 value, 1 block), (37 values, 2 blocks), (about 5 values per thread, 3 blocks)."""
    (n_a, b_a), (n_b, b_b), (n_c, b_c) = cc.reduce_cases(threads)
    assert (n_a, b_a, n_b, b_b, b_c) == (1, 1, 37, 2, 3)
    assert round(n_c / (b_c * threads)) == 5


def test_the_histogram_checks_bins_and_cases():
    """lo = -2 and inv_width = 4; in the first case n is not a multiple of the grid; then
    37 values over 2 blocks; then a single value in the last bin; NBINS = 100 bins and
    THREADS = 64 threads in the quick profile."""
    assert (cc.HIST_LO, cc.HIST_INV_WIDTH) == (-2.0, 4.0)
    quick = PROFILES[0]
    assert (quick["nbins"], quick["threads"]) == (100, 64)
    for sizes in PROFILES:
        nbins, threads = sizes["nbins"], sizes["threads"]
        (first, b1), (second, b2), (last, b3) = cc.histogram_cases(
            nbins, np.random.default_rng(0))
        assert first.size % (b1 * threads) and (second.size, b2) == (37, 2) and b3 == 1
        assert cc.bin_of(last, cc.HIST_LO, cc.HIST_INV_WIDTH, nbins).tolist() == [nbins - 1]
        bins = cc.bin_of(first, cc.HIST_LO, cc.HIST_INV_WIDTH, nbins)
        counts = np.bincount(bins[bins >= 0], minlength=nbins)
        assert counts.min() >= 1 and {0, nbins - 1} <= set(np.argsort(counts)[-2:])


def test_block_amax_does_2_operations_per_value():
    """abs and max, in the grid-stride loop of the master's block_amax."""
    tree = ast.parse(master_cell("block_amax"))
    loop = next(node for node in ast.walk(tree) if isinstance(node, ast.For))
    calls = [node.func.id for stmt in loop.body for node in ast.walk(stmt)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert sorted(calls) == ["abs", "max"]


@needs_simulator
def test_block_amax_reads_each_4_byte_value_once():
    threads = 8
    namespace = {"cuda": cuda, "float32": float32, "cfg": {"threads": threads}}
    exec(compile(master_cell("block_amax"), str(MASTER), "exec"), namespace)
    x = np.random.default_rng(0).standard_normal(5 * 2 * threads + 3).astype(np.float32)
    partial = cuda.device_array(2, np.float32)
    with sanitizer.watch() as log:
        namespace["block_amax"][2, threads](cuda.to_device(x), partial)
    reads = {sum(not a.write for a in accesses)
             for _, _, accesses in log.last.arrays["x"].elements()}
    assert reads == {1} and len(log.last.arrays["x"].accesses) == x.size
    assert x.itemsize == 4 and partial.copy_to_host().max() == np.abs(x).max()


def test_the_tree_ends_with_6_steps_of_one_warp_that_5_shuffles_replace():
    """Try it 4: with 64 or more threads the strides 32 to 1 are 6 steps of the first warp
    alone; lesson 09's warp_sum combines a warp's 32 lanes in 5 shuffles (16 down to 1)."""
    from course_utils.gpu.kernels import reductions

    for sizes in PROFILES:
        strides, stride = [], sizes["threads"] // 2
        while stride > 0:
            strides.append(stride)
            stride //= 2
        assert [s for s in strides if s <= reductions.WARP_SIZE] == [32, 16, 8, 4, 2, 1]
    offsets, offset = [], reductions.WARP_SIZE // 2  # as warp_sum's loop
    while offset > 0:
        offsets.append(offset)
        offset //= 2
    assert reductions.WARP_SIZE == 32 and offsets == [16, 8, 4, 2, 1]
    assert "offset = WARP_SIZE // 2" in inspect.getsource(reductions.warp_sum.py_func)
