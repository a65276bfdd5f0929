"""Labs 2 and 3 graded from their masters: wrong kernels cannot score, on a CPU.

Each submission below is the master's answers with ONE mistake (the tampering ones add a
wrong answer to the tampering, since tampering alone changes nothing: the grader runs the
master's checks). Each must lose exactly the checks its mistake touches. The simulator
runs one block at a time, so several of these kernels give the *right* numbers here: the
access checker behind the checks (course_utils.gpu.sanitizer) is what makes them lose, as
a GPU would. Masters scoring full marks and untouched student notebooks scoring 0 are
tests/notebooks/test_labs_e2e.py's.
"""

import pytest

from tests.notebooks import submissions as sub

pytestmark = pytest.mark.slow

LAB2, LAB3 = "lab2_cuda_kernels", "lab3_reduction_histogram"
SGD = "SGD with momentum: a grid-stride update in place"
BLUR = "2-D blur with clamped edges"
LIN = "Tiled linear layer in shared memory"
LIN_TRAFFIC = "Tiled linear layer: each element of X and W read once per block"
SPEED = "Tiled linear layer faster than naive by MIN_SPEEDUP (GPU)"
AMAX, TWO_PASS = "Block amax with a shared-memory tree", "Two-pass amax"
AMAX_TRAFFIC = "Block amax: x read once, partial written once per block"
HIST, HIST_TRAFFIC = "Shared-memory histogram", "Histogram: one global update per bin per block"
SYNC4 = "        cuda.syncthreads()  # 4. everyone done before the next loads overwrite the tiles\n"
TREE_SYNC = ("        cuda.syncthreads()  # this step done before the next one reads its "
             "results\n")


# ------------------------------------------------------------------ lab 2
def lab2_sgd_one_past_the_end():
    return sub.edit(sub.correct(LAB2), "def sgd_momentum", "range(first, w.size, step)",
                    "range(first, w.size + 1, step)")


def lab2_sgd_block_stride():
    """Strides by the block, not the grid: blocks update each other's elements."""
    return sub.edit(sub.correct(LAB2), "def sgd_momentum", "step = cuda.gridsize(1)",
                    "step = cuda.blockDim.x")


def lab2_sgd_old_velocity():
    """w takes its step with the old velocity."""
    return sub.edit(sub.correct(LAB2), "def sgd_momentum",
                    "        v[i] = velocity\n        w[i] -= lr * velocity",
                    "        w[i] -= lr * v[i]\n        v[i] = velocity")


def lab2_linear_missing_barrier():
    """No barrier after the inner product: the next loads overwrite tiles still read."""
    return sub.edit(sub.correct(LAB2), "def linear_tiled", SYNC4, "")


def lab2_linear_from_global_memory():
    """Loads the tiles but multiplies from global memory: right values, untiled traffic."""
    return sub.edit(sub.correct(LAB2), "def linear_tiled", "acc += sX[ty, j] * sW[tx, j]",
                    "acc += X[row, k0 + j] * W[col, k0 + j] if row < M and col < N "
                    "and k0 + j < K else float32(0.0)")


def lab2_linear_is_the_given_naive_kernel():
    """The answer cell hands in the given naive kernel instead of a tiled one."""
    return sub.append(sub.correct(LAB2), "def linear_tiled", "linear_tiled = linear_naive")


def lab2_no_bias_check_cells_deleted():
    """The bias forgotten, and every check cell deleted (the master's checks still run)."""
    nb = sub.edit(sub.correct(LAB2), "def linear_tiled", "Y[row, col] = acc + b[col]",
                  "Y[row, col] = acc")
    return sub.delete_check_cells(nb)


def lab2_blur_copy_behind_a_patched_check():
    """No blur at all (a copy), hidden behind a patched check function, edited points and
    fake check outputs."""
    nb = sub.edit(sub.correct(LAB2), "def blur", "out[row, col] = total / float32(9.0)",
                  "out[row, col] = img[row, col]")
    sub.append(nb, "def blur", "cuda_checks.check_blur = lambda *args, **kwargs: None")
    sub.fake_outputs(nb, "def sgd_momentum", [SGD, BLUR, LIN, LIN_TRAFFIC])
    return sub.edit_points(nb)


# ------------------------------------------------------------------ lab 3
def lab3_tree_without_barrier():
    """The block tree without the barrier inside its loop: a race in shared memory."""
    return sub.edit(sub.correct(LAB3), "def block_amax", TREE_SYNC, "")


def lab3_max_without_abs():
    return sub.edit(sub.correct(LAB3), "def block_amax", "acc = max(acc, abs(x[i]))",
                    "acc = max(acc, x[i])")


def lab3_one_pass():
    """reduce_amax stops after the first pass (block 0's result)."""
    return sub.edit(sub.correct(LAB3), "def reduce_amax",
                    "return float(result.copy_to_host()[0])",
                    "return float(partial.copy_to_host()[0])")


def lab3_lesson09_sum_emptied_checks():
    """reduce_amax answered with lesson 09's reduce_sum (imported inside the answer), every
    check cell emptied and every points edited."""
    nb = sub.edit(sub.correct(LAB3), "def reduce_amax",
                  "    partial = cuda.device_array(blocks, dtype=np.float32)",
                  "    from course_utils.gpu.kernels import reductions\n"
                  "    return reductions.reduce_sum(x, threads=THREADS, blocks=blocks)\n"
                  "    partial = cuda.device_array(blocks, dtype=np.float32)")
    return sub.edit_points(sub.empty_check_cells(nb))


def lab3_plain_publish():
    """Publishes with `+=` instead of an atomic: right counts on the simulator (one block
    at a time), lost counts on a GPU; the checker names the race."""
    return sub.edit(sub.correct(LAB3), "def histogram_shared",
                    "cuda.atomic.add(bins, b, local[b])", "bins[b] += local[b]")


def lab3_not_zeroed():
    return sub.edit(sub.correct(LAB3), "def histogram_shared",
                    "    for b in range(t, NBINS, cuda.blockDim.x):  # 1. zero it (NBINS may "
                    "exceed the block)\n        local[b] = 0\n", "")


def lab3_last_bin_lost():
    return sub.edit(sub.correct(LAB3), "def histogram_shared",
                    "for b in range(t, NBINS, cuda.blockDim.x):  # 5. publish",
                    "for b in range(t, NBINS - 1, cuda.blockDim.x):  # 5. publish")


def lab3_global_atomic_per_value():
    """Right counts, every value added into global memory (the shared copy stays zero)."""
    return sub.edit(sub.correct(LAB3), "def histogram_shared",
                    "cuda.atomic.add(local, b, 1)", "cuda.atomic.add(bins, b, 1)")


SUBMISSIONS = {
    "lab2_sgd_one_past_the_end": (lab2_sgd_one_past_the_end, {SGD}),
    "lab2_sgd_block_stride": (lab2_sgd_block_stride, {SGD}),
    "lab2_sgd_old_velocity": (lab2_sgd_old_velocity, {SGD}),
    "lab2_linear_missing_barrier": (lab2_linear_missing_barrier, {LIN, LIN_TRAFFIC}),
    "lab2_linear_from_global_memory": (lab2_linear_from_global_memory, {LIN_TRAFFIC}),
    "lab2_linear_is_the_given_naive_kernel": (lab2_linear_is_the_given_naive_kernel,
                                              {LIN, LIN_TRAFFIC}),
    "lab2_no_bias_check_cells_deleted": (lab2_no_bias_check_cells_deleted, {LIN, LIN_TRAFFIC}),
    "lab2_blur_copy_behind_a_patched_check": (lab2_blur_copy_behind_a_patched_check, {BLUR}),
    "lab3_tree_without_barrier": (lab3_tree_without_barrier, {AMAX, TWO_PASS, AMAX_TRAFFIC}),
    "lab3_max_without_abs": (lab3_max_without_abs, {AMAX, TWO_PASS, AMAX_TRAFFIC}),
    "lab3_one_pass": (lab3_one_pass, {TWO_PASS}),
    "lab3_lesson09_sum_emptied_checks": (lab3_lesson09_sum_emptied_checks, {TWO_PASS}),
    "lab3_plain_publish": (lab3_plain_publish, {HIST, HIST_TRAFFIC}),
    "lab3_not_zeroed": (lab3_not_zeroed, {HIST, HIST_TRAFFIC}),
    "lab3_last_bin_lost": (lab3_last_bin_lost, {HIST, HIST_TRAFFIC}),
    "lab3_global_atomic_per_value": (lab3_global_atomic_per_value, {HIST_TRAFFIC}),
}
CHECKS = {LAB2: [SGD, BLUR, LIN, LIN_TRAFFIC],
          LAB3: [AMAX, AMAX_TRAFFIC, TWO_PASS, HIST, HIST_TRAFFIC]}
MAX = {LAB2: 12.0, LAB3: 13.0}


def test_eight_or_more_separate_wrong_submissions_per_lab():
    for lab in (LAB2, LAB3):
        assert sum(name.startswith(lab[:5]) for name in SUBMISSIONS) >= 8


def _grade_lab(tmp_path_factory, lab):
    builders = {name: build for name, (build, _lost) in SUBMISSIONS.items()
                if name.startswith(lab[:5])}
    return sub.grade_folder(tmp_path_factory.mktemp(f"{lab}-class"), builders,
                            timeout=400, cell_timeout=120)


def _loses_exactly_its_checks(report, name):
    lab = LAB2 if name.startswith("lab2") else LAB3
    assert report.lab == f"{lab}.ipynb"
    assert [c.name for c in report.checks] == CHECKS[lab], report.table()
    assert report.max_score == MAX[lab], report.table()  # the master's points
    assert report.not_graded == ([SPEED] if lab == LAB2 else []), report.table()
    lost = {c.name for c in report.checks if not c.passed}
    assert lost == SUBMISSIONS[name][1], report.table()
    assert report.score < report.max_score


def _message(graded, name, check):
    return next(c.message for c in graded[name].checks if c.name == check)


class TestLab2:
    """One class per lab: pytest-xdist's loadscope grades the two classes on two workers."""

    @pytest.fixture(scope="class")
    @classmethod
    def graded(cls, tmp_path_factory):
        return _grade_lab(tmp_path_factory, LAB2)

    @pytest.mark.parametrize("name", sorted(n for n in SUBMISSIONS if n.startswith("lab2")))
    def test_each_mutant_loses_exactly_the_checks_of_its_mistake(self, graded, name):
        _loses_exactly_its_checks(graded[name], name)

    def test_the_messages_name_each_mistake(self, graded):
        def message(name, check):
            return _message(graded, name, check)

        assert "outside an array" in message("lab2_sgd_one_past_the_end", SGD)
        assert "two steps" in message("lab2_sgd_block_stride", SGD)
        assert "NEW v[i]" in message("lab2_sgd_old_velocity", SGD)
        assert "syncthreads" in message("lab2_linear_missing_barrier", LIN)
        assert "in global memory by the threads of block" in message(
            "lab2_linear_from_global_memory", LIN_TRAFFIC)
        assert "never calls cuda.shared.array" in message(
            "lab2_linear_is_the_given_naive_kernel", LIN)
        assert "without the bias" in message("lab2_no_bias_check_cells_deleted", LIN)


class TestLab3:
    @pytest.fixture(scope="class")
    @classmethod
    def graded(cls, tmp_path_factory):
        return _grade_lab(tmp_path_factory, LAB3)

    @pytest.mark.parametrize("name", sorted(n for n in SUBMISSIONS if n.startswith("lab3")))
    def test_each_mutant_loses_exactly_the_checks_of_its_mistake(self, graded, name):
        _loses_exactly_its_checks(graded[name], name)

    def test_the_messages_name_each_mistake(self, graded):
        def message(name, check):
            return _message(graded, name, check)

        tree = message("lab3_tree_without_barrier", AMAX)
        assert "race" in tree or "syncthreads" in tree
        assert "ABSOLUTE" in message("lab3_max_without_abs", AMAX)
        assert "block 0's result only" in message("lab3_one_pass", TWO_PASS)
        assert ("course_utils.gpu.kernels.reductions.reduce_sum, the course's own code"
                in message("lab3_lesson09_sum_emptied_checks", TWO_PASS))
        plain = message("lab3_plain_publish", HIST)
        assert "race: global `bins`" in plain and "different blocks" in plain
        not_zeroed = message("lab3_not_zeroed", HIST)
        assert "uninitialised shared read" in not_zeroed or "zeroed" in not_zeroed
        assert "Only the last bin" in message("lab3_last_bin_lost", HIST)
        assert "in global memory by the threads of block" in message(
            "lab3_global_atomic_per_value", HIST_TRAFFIC)
