"""No answers in the teaching library: each graded check is fed the nearest course_utils
function (or an answer built from it) and must fail, naming the course code it found.

The lessons teach related but different kernels (lesson 07's SAXPY, lab 2's SGD step with
momentum; lesson 08's C = A @ B, lab 2's Linear layer X @ W.T + b; lesson 09's sums and
integer histogram, lab 3's amax and float histogram over a range): each case is also run
with the own-work rule switched off, and the course function *still* fails, because it
answers another question. Lab 1's layers are the exception still (lesson 01 computes the
same softmax cross-entropy): there the rule alone stops the course function.
"""

import contextlib
import textwrap

import numpy as np
import pytest

from course_utils import cudasim

cudasim.configure()  # simulator unless a real GPU is present, before numba is imported

from numba import cuda  # noqa: E402

from course_utils.checks import backprop, own_work  # noqa: E402
from course_utils.checks import cuda as cc  # noqa: E402
from course_utils.checks import distributed as dc  # noqa: E402
from course_utils.foundations import numpy_mlp  # noqa: E402
from course_utils.gpu.kernels import basics, memory, reductions  # noqa: E402
from course_utils.training import dist  # noqa: E402

THREADS = 32
TILE = 16
NBINS = 45


def _own_work_off(monkeypatch):
    """The same checks without the own-work rule (for the control runs)."""
    for module in (cc, dc, backprop, own_work):
        monkeypatch.setattr(module, "require_own", lambda obj, what: None, raising=False)
        monkeypatch.setattr(module, "no_course_calls",
                            lambda what: contextlib.nullcontext(), raising=False)


# ------------------------------------------------------------------ lab 1: layers
class SoftmaxCrossEntropyFromLesson01:
    """Lab 1's layer answered with lesson 01's function."""

    def forward(self, logits, y):
        self.loss, self.grad = numpy_mlp.softmax_cross_entropy(logits, y)
        return self.loss

    def backward(self):
        return self.grad


# ------------------------------------------------------------------ lab 3: host code
def reduce_amax_via_lesson09(x, blocks):
    return reductions.reduce_sum(x, "shared_tree", threads=THREADS, blocks=blocks)


def _aliased_reduce_sum():
    """The same, with the course function captured in a closure (no global to see)."""
    hidden = getattr(__import__("course_utils.gpu.kernels.reductions",
                                fromlist=["x"]), "reduce_" + "sum")

    def reduce_amax(x, blocks):
        return hidden(x, "shared_tree", threads=THREADS, blocks=blocks)
    return reduce_amax


@cuda.jit
def block_amax_with_lesson09_tree(x, partial):
    cache = cuda.shared.array(1024, dtype=partial.dtype)
    t = cuda.threadIdx.x
    cache[t] = reductions.thread_sum(x)
    cuda.syncthreads()
    reductions.block_tree(cache)
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


CASES = {
    "lab1 SoftmaxCrossEntropy = numpy_mlp.softmax_cross_entropy": (
        lambda: backprop.check_softmax_ce_forward(SoftmaxCrossEntropyFromLesson01),
        "numpy_mlp"),
    "lab2 sgd_momentum = basics.saxpy_grid_stride": (
        lambda: cc.check_sgd_momentum(basics.saxpy_grid_stride, threads=THREADS),
        "course_utils.gpu.kernels.basics.saxpy_grid_stride"),
    "lab2 linear_tiled = memory.matmul_tiled_kernel": (
        lambda: cc.check_linear_tiled(memory.matmul_tiled_kernel(TILE), tile=TILE),
        "course_utils.gpu.kernels.memory"),
    "lab2 linear traffic = memory.matmul_tiled_kernel": (
        lambda: cc.check_linear_traffic(memory.matmul_tiled_kernel(TILE), tile=TILE),
        "course_utils.gpu.kernels.memory"),
    "lab3 block_amax = reductions.block_sums": (
        lambda: cc.check_block_amax(reductions.block_sums, threads=THREADS),
        "course_utils.gpu.kernels.reductions.block_sums"),
    "lab3 block_amax built on reductions.block_tree": (
        lambda: cc.check_block_amax(block_amax_with_lesson09_tree, threads=THREADS),
        "uses reductions from course_utils.gpu.kernels"),
    "lab3 reduce_amax = reductions.reduce_sum": (
        lambda: cc.check_reduce_amax(reduce_amax_via_lesson09, threads=THREADS),
        "uses reductions from course_utils.gpu.kernels"),
    "lab3 reduce_amax = an alias of reductions.reduce_sum": (
        lambda: cc.check_reduce_amax(_aliased_reduce_sum(), threads=THREADS),
        "ran course_utils.gpu.kernels.reductions.reduce_sum"),
    "lab3 histogram_shared = reductions.histogram_shared_atomics": (
        lambda: cc.check_histogram(reductions.histogram_shared_atomics, threads=THREADS,
                                   nbins=NBINS),
        "course_utils.gpu.kernels.reductions.histogram_shared_atomics"),
}
RULE_ONLY = {"lab1 SoftmaxCrossEntropy = numpy_mlp.softmax_cross_entropy"}


@pytest.mark.parametrize("name", list(CASES))
def test_the_nearest_course_function_fails_the_check(name):
    run, says = CASES[name]
    with pytest.raises(AssertionError) as err:
        run()
    assert "the course's own code" in str(err.value) and says in str(err.value), str(err.value)


@pytest.mark.parametrize("name", [n for n in CASES if n not in RULE_ONLY])
def test_without_the_rule_the_course_function_still_fails(name, monkeypatch):
    """The lessons' kernels answer other questions: they fail on their results (or their
    signatures), not only because the rule names them."""
    _own_work_off(monkeypatch)
    run, _ = CASES[name]
    with pytest.raises(Exception) as err:  # noqa: PT011 - a wrong kernel fails in many ways
        run()
    assert "the course's own code" not in str(err.value)


@pytest.mark.parametrize("name", sorted(RULE_ONLY))
def test_where_a_lesson_computes_the_answer_only_the_rule_stops_it(name, monkeypatch):
    """Control for lab 1: lesson 01's function is a real answer, and the rule stops it."""
    _own_work_off(monkeypatch)
    run, _ = CASES[name]
    run()


# ------------------------------------------------------------------ lab 4: ring.py
RING_FROM_LESSON_12 = textwrap.dedent("""\
    import torch.distributed as dist
    from course_utils.training.collectives import chunk_bounds
    from course_utils.training import collectives


    def ring_all_reduce(tensor):
        collectives.ring_reduce_scatter(tensor)
        return collectives.ring_all_gather(tensor)
    """)


def test_lab4_course_chunk_bounds_and_ring_fail_before_any_launch(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dist.launch must not be called")

    monkeypatch.setattr(dist, "launch", refuse)
    ring = tmp_path / "ring.py"
    ring.write_text(RING_FROM_LESSON_12)
    with pytest.raises(AssertionError, match="chunk_bounds.. in ring.py is "
                       "course_utils.training.collectives.chunk_bounds"):
        dc.check_chunk_bounds(ring)
    with pytest.raises(AssertionError, match="ring_all_reduce.. in ring.py uses collectives "
                       "from course_utils.training.collectives"):
        dc.check_ring_all_reduce(ring, 2)
    _own_work_off(monkeypatch)
    dc.check_chunk_bounds(ring)  # control: lesson 12's chunk_bounds is the lab's answer


def test_a_wrapper_reaching_course_code_at_run_time_is_caught(tmp_path):
    ring = tmp_path / "ring.py"
    ring.write_text(textwrap.dedent("""\
        import importlib


        def chunk_bounds(n, world_size):
            lib = importlib.import_module("course_utils.training." + "collectives")
            return lib.chunk_bounds(n, world_size)


        def ring_all_reduce(tensor):
            raise NotImplementedError
        """))
    with pytest.raises(AssertionError, match="ran course_utils.training.collectives"
                       ".chunk_bounds"):
        dc.check_chunk_bounds(ring)


def test_own_code_with_course_helpers_that_are_not_answers_passes():
    """Using the course's launch helpers, NumPy and the student's own functions is fine."""
    from course_utils.gpu import launch

    def helper(n):
        return launch.grid_1d(n, THREADS)

    def answer(n):
        return helper(n), np.zeros(n)

    own_work.require_own(answer, "answer")
    with own_work.no_course_calls("answer"):
        answer(5)


@cuda.jit
def block_amax_importing_lesson09_inside(x, partial):
    # runs on the simulator only (Python inside the kernel): no global names the module
    lesson09 = __import__("course_utils.gpu.kernels.reductions", fromlist=["block_tree"])

    cache = cuda.shared.array(1024, dtype=partial.dtype)
    t = cuda.threadIdx.x
    cache[t] = lesson09.thread_sum(x)
    cuda.syncthreads()
    lesson09.block_tree(cache)
    if t == 0:
        partial[cuda.blockIdx.x] = cache[0]


@pytest.mark.skipif(not cudasim.on_simulator(), reason="Python inside a kernel: simulator")
def test_a_kernel_importing_course_device_functions_is_caught_when_it_runs():
    with pytest.raises(AssertionError, match="ran course_utils.gpu.kernels.reductions"):
        cc.check_block_amax(block_amax_importing_lesson09_inside, threads=THREADS)


check = own_work  # a global that happens to share a name with an attribute below


class LayerWithAttributeNamedLikeACourseModule:
    """``self.check`` is an attribute, not the global ``check`` (a course module here)."""

    def __init__(self):
        self.check = 0

    def forward(self, x):
        self.check += 1
        return np.maximum(x, 0.0)


def test_attribute_names_are_not_taken_for_course_globals():
    own_work.require_own(LayerWithAttributeNamedLikeACourseModule, "ReLU")
    with pytest.raises(AssertionError, match="uses check"):
        own_work.require_own(lambda x: check.answer_module(x), "answer")
