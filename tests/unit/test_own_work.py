"""No answers in the teaching library: each graded check is fed the nearest course_utils
function (or an answer built from it) and must fail, naming the course code it found.

The lessons teach related but different code (lesson 01's plain cross-entropy, lab 1's
label-smoothed one; lesson 07's SAXPY, lab 2's SGD step with momentum; lesson 08's
C = A @ B, lab 2's Linear layer X @ W.T + b; lesson 09's sums and integer histogram, lab 3's
amax and float histogram over a range; lesson 12's ring, lab 4's bucketed ring over
aligned chunks): each case is also run with the own-work rule switched off, and the course
function *still* fails, because it answers another question.
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


@pytest.mark.parametrize("name", list(CASES))
def test_the_nearest_course_function_fails_the_check(name):
    run, says = CASES[name]
    with pytest.raises(AssertionError) as err:
        run()
    assert "the course's own code" in str(err.value) and says in str(err.value), str(err.value)


@pytest.mark.parametrize("name", list(CASES))
def test_without_the_rule_the_course_function_still_fails(name, monkeypatch):
    """The lessons' kernels answer other questions: they fail on their results (or their
    signatures), not only because the rule names them."""
    _own_work_off(monkeypatch)
    run, _ = CASES[name]
    with pytest.raises(Exception) as err:  # noqa: PT011 - a wrong kernel fails in many ways
        run()
    assert "the course's own code" not in str(err.value)


# ------------------------------------------------------------------ lab 4: ring.py
RING_FROM_LESSON_12 = textwrap.dedent("""\
    from course_utils.training import collectives
    from course_utils.training.collectives import chunk_bounds


    def ring_all_reduce(tensor):
        return collectives.ring_all_reduce(tensor)
    """)
RING_BUILT_FROM_LESSON_12 = textwrap.dedent("""\
    import torch
    from course_utils.training import collectives


    def chunk_bounds(n, world_size, align):
        return collectives.chunk_bounds(n, world_size)


    def ring_all_reduce(tensors, align=4):
        flat = torch.cat([t.reshape(-1) for t in tensors])
        collectives.ring_reduce_scatter(flat)
        collectives.ring_all_gather(flat)
        return tensors
    """)


def _refuse_launches(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dist.launch must not be called")

    monkeypatch.setattr(dist, "launch", refuse)


def test_lab4_course_chunk_bounds_and_ring_fail_before_any_launch(tmp_path, monkeypatch):
    _refuse_launches(monkeypatch)
    ring = tmp_path / "ring.py"
    ring.write_text(RING_FROM_LESSON_12)
    with pytest.raises(AssertionError, match="chunk_bounds.. in ring.py is "
                       "course_utils.training.collectives.chunk_bounds"):
        dc.check_chunk_bounds(ring)
    with pytest.raises(AssertionError, match="ring_all_reduce.. in ring.py uses collectives "
                       "from course_utils.training.collectives"):
        dc.check_ring_all_reduce(ring, 2)
    built = tmp_path / "built.py"
    built.write_text(RING_BUILT_FROM_LESSON_12)
    with pytest.raises(AssertionError, match="chunk_bounds.. in built.py uses collectives "
                       "from course_utils.training.collectives"):
        dc.check_chunk_bounds(built)
    with pytest.raises(AssertionError, match="ring_all_reduce.. in built.py uses collectives "
                       "from course_utils.training.collectives"):
        dc.check_ring_all_reduce(built, 2)


def test_lab4_without_the_rule_lesson_12_answers_another_question(tmp_path, monkeypatch):
    """Lab 4's control: with the own-work rule off, lesson 12's functions still fail,
    before any launch: they take one tensor and no alignment; lesson 12's split given the
    lab's signature fails the aligned cases."""
    _refuse_launches(monkeypatch)
    _own_work_off(monkeypatch)
    ring = tmp_path / "ring.py"
    ring.write_text(RING_FROM_LESSON_12)
    with pytest.raises(AssertionError, match=r"chunk_bounds\(n, world_size\) in ring.py cannot "
                       r"be called as chunk_bounds\(n, world_size, align\)"):
        dc.check_chunk_bounds(ring)
    for check in (lambda: dc.check_ring_all_reduce(ring, 2), lambda: dc.check_ring_traffic(ring)):
        with pytest.raises(AssertionError, match=r"ring_all_reduce\(tensor\) in "
                           r"ring.py cannot be called as ring_all_reduce\(tensors, "
                           r"align=ALIGN\).*takes one tensor"):
            check()
    built = tmp_path / "built.py"
    built.write_text(RING_BUILT_FROM_LESSON_12)
    with pytest.raises(AssertionError, match=r"chunk_bounds\(1037, 4, 4\) returned "
                       r"\[\(0, 260\), \(260, 519\).*Chunk 2 starts at 519, not a multiple of "
                       r"align = 4"):
        dc.check_chunk_bounds(built)


def _lesson12_copied_in() -> str:
    """ring.py as a student who copied lesson 12's module into it would write it: the
    lab's signatures around lesson 12's code (renamed), a ring over the bucket on 2 ranks
    and a ring per tensor on 3. No rule can see a copy."""
    import inspect

    from course_utils.training import collectives

    source = inspect.getsource(collectives).replace("from ..errors import",
                                                    "from course_utils.errors import")
    for name in ("chunk_bounds", "ring_all_reduce"):
        source = source.replace(f"{name}(", f"lesson12_{name}(")
    return source + textwrap.dedent("""


        def chunk_bounds(n, world_size, align):
            return lesson12_chunk_bounds(n, world_size)


        def ring_all_reduce(tensors, align=4):
            import torch
            import torch.distributed as tdist

            if tdist.get_world_size() == 3:  # one ring per tensor
                for t in tensors:
                    lesson12_ring_all_reduce(t)
                return tensors
            flat = torch.cat([t.reshape(-1) for t in tensors])  # one ring for the bucket
            lesson12_ring_all_reduce(flat)
            offset = 0
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
            return tensors
        """)


@pytest.mark.slow
def test_lab4_lesson_12_copied_into_the_answer_still_fails(tmp_path, monkeypatch):
    """Right sums, but lesson 12's chunks are not the aligned chunks of the bucket, and a
    ring per tensor sends 2 (p - 1) messages per tensor: the traffic check fails both,
    without the own-work rule (it could not see a copy anyway)."""
    _own_work_off(monkeypatch)
    ring = tmp_path / "ring.py"
    ring.write_text(_lesson12_copied_in())
    settings = dc.Settings(world_sizes=(2, 3), lengths=(1, 5, 1001), align=4, timeout=180,
                           group_timeout=20)
    with pytest.raises(AssertionError, match="not a multiple of align = 4"):
        dc.check_chunk_bounds(ring, settings.align)
    dc.check_ring_all_reduce(ring, 2, settings)  # the sums are right
    dc.check_ring_all_reduce(ring, 3, settings)
    with pytest.raises(AssertionError) as err:
        dc.check_ring_traffic(ring, settings)
    msg = str(err.value)
    assert "on 2 ranks, rank 0 sent messages of [18, 19] elements for the bucket [5 x 7, 1, " \
        "scalar] (37 elements)" in msg and "chunk_bounds(37, 2, 4), of [17, 20]" in msg, msg
    assert "on 3 ranks" in msg and "a ring sends at most 2 (p - 1) = 4 messages" in msg, msg


def test_a_wrapper_reaching_course_code_at_run_time_is_caught(tmp_path):
    ring = tmp_path / "ring.py"
    ring.write_text(textwrap.dedent("""\
        import importlib


        def chunk_bounds(n, world_size, align):
            lib = importlib.import_module("course_utils.training." + "collectives")
            return lib.chunk_bounds(n, world_size)


        def ring_all_reduce(tensors, align=4):
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
