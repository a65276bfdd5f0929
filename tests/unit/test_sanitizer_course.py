"""Every kernel of course_utils runs clean under the access checker (no false alarm), on
odd sizes with several blocks; the one kernel that is wrong on purpose is caught."""

import numpy as np
import pytest

from course_utils import cudasim

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from course_utils.gpu import sanitizer  # noqa: E402
from course_utils.gpu.kernels import basics, memory, reductions  # noqa: E402

pytestmark = pytest.mark.skipif(
    not cudasim.on_simulator(),
    reason="the checker watches the CUDA simulator; on a GPU use compute-sanitizer")

rng = np.random.default_rng(11)
X = rng.standard_normal(37).astype(np.float32)
IMG = rng.standard_normal((7, 9)).astype(np.float32)
A = rng.standard_normal((9, 11)).astype(np.float32)
B = rng.standard_normal((11, 13)).astype(np.float32)
VALUES = rng.integers(0, 19, 53).astype(np.int32)

# host function -> the kernels it must launch (so that a kernel cannot go unchecked)
RUNS = {
    "index_1d": (lambda: basics.run_index_1d(37, 16), {"index_1d"}),
    "index_2d": (lambda: basics.run_index_2d((7, 9), (4, 4)), {"index_2d"}),
    "saxpy": (lambda: basics.run_saxpy(2.0, X, X, threads=16), {"saxpy"}),
    "saxpy grid-stride": (lambda: basics.run_saxpy(2.0, X, X, threads=8, grid_stride=True,
                                                   max_blocks=2), {"saxpy_grid_stride"}),
    "copy": (lambda: basics.run_copy(X, threads=16), {"copy"}),
    "blur": (lambda: basics.run_blur(IMG, threads=(4, 4)), {"blur"}),
    "coalesced copy": (lambda: memory.copy(X, threads=16), {"copy_coalesced"}),
    "strided copy": (lambda: memory.strided_copy(X, 3, threads=8), {"copy_strided"}),
    "transposes": (lambda: [memory.transpose(IMG, v, threads=(8, 4), tile=8)
                            for v in memory.TRANSPOSE_VARIANTS],
                   {"transpose_naive", "transpose_tiled"}),
    "matmuls": (lambda: [memory.matmul(A, B, v, threads=(8, 8), tile=t)
                         for v, t in (("naive", None), ("tiled", 8),
                                      ("register_blocked", 16))],
                {"matmul_naive", "matmul_tiled", "matmul_register_blocked"}),
    "sums": (lambda: [reductions.reduce_sum(X, m, threads=8, blocks=3)
                      for m in ("atomic", "shared_tree", "two_pass")],
             {"fill_zero", "sum_atomic", "sum_shared_tree", "block_sums"}),
    "histograms": (lambda: [reductions.histogram(VALUES, 19, m, threads=8, blocks=3)
                            for m in reductions.HIST_METHODS],
                   {"fill_zero", "histogram_global_atomics", "histogram_shared_atomics"}),
    "bandwidth copy": (lambda: reductions.launcher(reductions.copy_for_bandwidth, 3, 8)(
        X, np.zeros_like(X)), {"copy_for_bandwidth"}),
    "stream pipeline": (lambda: reductions.StreamPipeline(37, chunks=3, streams=2, iters=2,
                                                          threads=8).run(X), {"dial_work"}),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_course_kernel_is_clean(name):
    run, kernels = RUNS[name]
    with sanitizer.watch() as log:
        run()
    launched = {launch.kernel for launch in log.launches}
    assert kernels <= launched, f"expected launches of {kernels}, saw {launched}"
    assert log.clean, log.report()


def test_every_simulator_kernel_of_course_utils_is_checked():
    """A new kernel in gpu/kernels must be added to RUNS above (warp shuffles excepted:
    the simulator has none)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    defined = set()
    for module in (basics, memory, reductions):
        for value in vars(module).values():
            if isinstance(value, FakeCUDAKernel) and not value._device:
                defined.add(value.fn.__name__)
    defined |= {"transpose_tiled", "matmul_tiled", "matmul_register_blocked"}  # factories
    checked = set().union(*(kernels for _, kernels in RUNS.values()))
    wrong_on_purpose = {"fill_unguarded"}
    gpu_only = {"sum_warp_shuffle"}
    assert defined - checked - wrong_on_purpose - gpu_only == set()


def test_the_kernel_that_is_wrong_on_purpose_is_caught():
    out = np.zeros(37, np.float32)
    with sanitizer.watch() as log, pytest.raises(IndexError, match="outside its shape"):
        basics.fill_unguarded[3, 16](out, np.float32(1))
    assert {p.kind for p in log.problems} == {"out of bounds"}
