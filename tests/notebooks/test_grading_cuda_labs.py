"""Labs 2 and 3 graded from their masters: wrong kernels cannot score, on a CPU.

Each submission below carries one or more independent mistakes, each in its own part of
the lab, so that one graded run shows the verdict of several mutants (the parts' checks
are independent; which checks a submission must lose is spelled out). The simulator runs
one block at a time, so several of these kernels give the *right* numbers here: the access
checker behind the checks (course_utils.gpu.sanitizer) is what makes them lose, as a GPU
would. Masters scoring full marks and untouched student notebooks scoring 0 are
tests/notebooks/test_labs_e2e.py's.
"""

import pytest

from tests.notebooks import submissions as sub

pytestmark = pytest.mark.slow

LAB2, LAB3 = "lab2_cuda_kernels", "lab3_reduction_histogram"
SAXPY, BLUR = "SAXPY with a grid-stride loop", "2-D blur with clamped edges"
TILED = "Tiled matrix product in shared memory"
TILED_TRAFFIC = "Tiled product: each element of A and B read once per block"
SPEED = "Tiled product faster than naive by MIN_SPEEDUP (GPU)"
BLOCK_SUMS, TWO_PASS = "Block sums with a shared-memory tree", "Two-pass sum"
BLOCK_TRAFFIC = "Block sums: x read once, partial written once per block"
HIST, HIST_TRAFFIC = "Shared-memory histogram", "Histogram: one global update per bin per block"


def lab2_bounds_xy_barrier():
    """SAXPY one past the end; blur with x and y swapped; tiled matmul without the barrier
    after the inner product (a race on the shared tiles)."""
    nb = sub.correct(LAB2)
    sub.edit(nb, "def saxpy_grid_stride", "range(first, out.size, step)",
             "range(first, out.size + 1, step)")
    sub.edit(nb, "def blur", "col, row = cuda.grid(2)", "row, col = cuda.grid(2)")
    sub.edit(nb, "def matmul_tiled",
             "        cuda.syncthreads()  # 4. everyone done before the next loads overwrite "
             "the tiles\n", "")
    return nb


def lab2_race_traffic_deleted_checks():
    """SAXPY strides by the block, not the grid (blocks write each other's elements: a race
    between blocks); a 'tiled' product that loads the tiles but multiplies from global
    memory (right values, untiled traffic); and every check cell deleted."""
    nb = sub.correct(LAB2)
    sub.edit(nb, "def saxpy_grid_stride", "step = cuda.gridsize(1)", "step = cuda.blockDim.x")
    sub.edit(nb, "def matmul_tiled", "acc += sA[ty, j] * sB[j, tx]",
             "acc += A[row, k0 + j] * B[k0 + j, col] if row < M and col < N and k0 + j < K "
             "else float32(0.0)")
    return sub.delete_check_cells(nb)


def lab2_tampered():
    """No blur at all (a copy), hidden behind a patched check function, edited points and
    fake check outputs."""
    nb = sub.correct(LAB2)
    sub.edit(nb, "def blur", "out[row, col] = total / float32(9.0)",
             "out[row, col] = img[row, col]")
    sub.append(nb, "def blur", "cuda_checks.check_blur = lambda *args, **kwargs: None")
    sub.fake_outputs(nb, "def saxpy_grid_stride", [SAXPY, BLUR, TILED, TILED_TRAFFIC])
    return sub.edit_points(nb)


def lab3_tree_without_barrier():
    """The block tree without the barrier inside its loop: a race in shared memory."""
    nb = sub.correct(LAB3)
    return sub.edit(nb, "def block_sum",
                    "        cuda.syncthreads()  # this step done before the next one reads "
                    "its results\n", "")


def lab3_plain_publish_library_sum():
    """The histogram publishes with `+=` instead of an atomic: right counts on the
    simulator (one block at a time), lost counts on a GPU; the checker names the race.
    And reduce_sum calls lesson 09's reduce_sum instead of launching block_sum."""
    nb = sub.correct(LAB3)
    sub.edit(nb, "def reduce_sum", "    partial = cuda.device_array(blocks, dtype=np.float32)",
             "    from course_utils.gpu.kernels import reductions\n"
             "    return reductions.reduce_sum(x, threads=THREADS, blocks=blocks)\n"
             "    partial = cuda.device_array(blocks, dtype=np.float32)")
    return sub.edit(nb, "def histogram_shared", "cuda.atomic.add(bins, b, local[b])",
                    "bins[b] += local[b]")


def lab3_one_pass_not_zeroed():
    """reduce_sum stops after the first pass (block 0's partial sum); the shared histogram
    is never zeroed (an uninitialised shared read)."""
    nb = sub.correct(LAB3)
    sub.edit(nb, "def reduce_sum", "return float(total.copy_to_host()[0])",
             "return float(partial.copy_to_host()[0])")
    return sub.edit(nb, "def histogram_shared",
                    "    for b in range(t, NBINS, cuda.blockDim.x):  # 1. zero it (NBINS may "
                    "exceed the block)\n        local[b] = 0\n", "")


def lab3_traffic_emptied_checks():
    """Right sums and counts with wasteful global traffic: block_sum reads each value
    twice, the histogram adds every value into global memory (the shared copy stays zero);
    every check cell emptied and every points edited."""
    nb = sub.correct(LAB3)
    sub.edit(nb, "def block_sum", "        acc += x[i]\n",
             "        acc += x[i] * float32(0.5)\n        acc += x[i] * float32(0.5)\n")
    sub.edit(nb, "def histogram_shared", "cuda.atomic.add(local, data[i], 1)",
             "cuda.atomic.add(bins, data[i], 1)")
    return sub.edit_points(sub.empty_check_cells(nb))


SUBMISSIONS = {
    "lab2_bounds_xy_barrier": (lab2_bounds_xy_barrier, {SAXPY, BLUR, TILED, TILED_TRAFFIC}),
    "lab2_race_traffic_deleted_checks": (lab2_race_traffic_deleted_checks,
                                         {SAXPY, TILED_TRAFFIC}),
    "lab2_tampered": (lab2_tampered, {BLUR}),
    "lab3_tree_without_barrier": (lab3_tree_without_barrier,
                                  {BLOCK_SUMS, TWO_PASS, BLOCK_TRAFFIC}),
    "lab3_plain_publish_library_sum": (lab3_plain_publish_library_sum,
                                       {TWO_PASS, HIST, HIST_TRAFFIC}),
    "lab3_one_pass_not_zeroed": (lab3_one_pass_not_zeroed, {TWO_PASS, HIST, HIST_TRAFFIC}),
    "lab3_traffic_emptied_checks": (lab3_traffic_emptied_checks,
                                    {BLOCK_TRAFFIC, HIST_TRAFFIC}),
}
CHECKS = {LAB2: [SAXPY, BLUR, TILED, TILED_TRAFFIC],
          LAB3: [BLOCK_SUMS, BLOCK_TRAFFIC, TWO_PASS, HIST, HIST_TRAFFIC]}
MAX = {LAB2: 12.0, LAB3: 13.0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    builders = {name: build for name, (build, _lost) in SUBMISSIONS.items()}
    return sub.grade_folder(tmp_path_factory.mktemp("cuda-class"), builders,
                            timeout=400, cell_timeout=120)


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_each_mutant_loses_exactly_the_checks_of_its_mistakes(graded, name):
    report = graded[name]
    lab = name.split("_")[0] + ("_cuda_kernels" if name.startswith("lab2")
                                else "_reduction_histogram")
    assert report.lab == f"{lab}.ipynb"
    assert [c.name for c in report.checks] == CHECKS[lab], report.table()
    assert report.max_score == MAX[lab], report.table()  # the master's points
    assert report.not_graded == ([SPEED] if lab == LAB2 else []), report.table()
    lost = {c.name for c in report.checks if not c.passed}
    assert lost == SUBMISSIONS[name][1], report.table()
    assert report.score < report.max_score


def test_races_the_simulator_hides_are_named(graded):
    def message(name, check):
        return next(c.message for c in graded[name].checks if c.name == check)

    plain = message("lab3_plain_publish_library_sum", HIST)
    assert "race: global `bins`" in plain and "different blocks" in plain
    stride = message("lab2_race_traffic_deleted_checks", SAXPY)
    assert "race: global `out`" in stride
    tree = message("lab3_tree_without_barrier", BLOCK_SUMS)
    assert "race" in tree or "syncthreads" in tree
    assert "uninitialised shared read" in message("lab3_one_pass_not_zeroed", HIST) \
        or "zeroed" in message("lab3_one_pass_not_zeroed", HIST)
    assert "in global memory by the threads of block" in message(
        "lab3_traffic_emptied_checks", HIST_TRAFFIC)
    library = message("lab3_plain_publish_library_sum", TWO_PASS)
    assert "course_utils.gpu.kernels.reductions.reduce_sum, the course's own code" in library
