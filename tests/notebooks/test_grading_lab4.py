"""Lab 4 graded from its master: each single mistake loses exactly the checks it touches.

Every submission below is the student notebook with the master's answers typed in and ONE
mistake, as a student would make it: in chunk_bounds (the remainder dropped; lesson 12's
split imported inside the answer), in the ring (one ring per tensor; turned the wrong way
round; a library call; no reduce-scatter), in the data-parallel part (gradients summed;
no common start), or an answer that patches the grader while a ring that does nothing
waits for the checks (one all-reduce per parameter instead of one bucket is
tests/unit/test_checks_distributed.py's). Each is held to the set of checks it
must lose (and so scores below full marks), and the key messages say what is wrong.
Masters scoring full marks and untouched student notebooks 0 are
tests/notebooks/test_labs_e2e.py's.

Grading launches processes (a ring job and a data-parallel job per submission, about 20 s
on 2 idle cores, so nine submissions take about three minutes), and no mistake here waits
for a timeout: each fails as fast as the right answer passes.
"""

import pytest

from tests.notebooks import submissions as sub

pytestmark = pytest.mark.slow

LAB = "lab4_distributed"
CHUNKS = "chunk_bounds: aligned chunks, one per rank, any length"
SMALLEST, EVERY = ("Bucket all-reduce on the smallest world size",
                   "Bucket all-reduce on every world size")
TRAFFIC = "Ring traffic: right neighbour only, 2(p-1) aligned chunks per bucket"
AVERAGE = "average_gradients: the mean gradient over the ranks"
DDP = "Data-parallel training matches DDP"
CHECKS = [CHUNKS, SMALLEST, EVERY, TRAFFIC, AVERAGE, DDP]
FULL = 10.0
RING_CELL, DP_CELL = "def ring_all_reduce", "def average_gradients"
RS_LOOP = ("    for step in range(world - 1):  # reduce-scatter: rank r ends with the sum of "
           "chunk r\n"
           "        a, b = bounds[(rank - step - 2) % world]\n"
           "        flat[a:b] += exchange(bounds[(rank - step - 1) % world], (a, b))\n")


def remainder_dropped():
    """chunk_bounds gives every chunk units // p units: the last units % p are lost."""
    return sub.edit(sub.correct(LAB), RING_CELL, "    base, extra = divmod(units, world_size)\n",
                    "    base, extra = units // world_size, 0\n")


def lesson12_chunk_bounds():
    """chunk_bounds answered by lesson 12's (imported inside the answer): even chunks of
    elements, not aligned ones. The ring's sums stay right."""
    return sub.edit(sub.correct(LAB), RING_CELL,
                    "    units = -(-n // align)  # ceil(n / align): the last unit may be short\n",
                    "    from course_utils.training.collectives import chunk_bounds as lesson12\n"
                    "    return lesson12(n, world_size)\n")


def ring_per_tensor():
    """The right ring, run once per tensor of the bucket: 2 (p - 1) messages per tensor."""
    return sub.edit(sub.correct(LAB), RING_CELL, "    flat = torch.cat(",
                    "    if len(tensors) > 1:  # one ring per tensor\n"
                    "        for t in tensors:\n"
                    "            ring_all_reduce([t], align)\n"
                    "        return tensors\n"
                    "    flat = torch.cat(")


def turned_left():
    """The same ring, mirrored: send to the left, receive from the right (right sums)."""
    nb = sub.correct(LAB)
    sub.edit(nb, RING_CELL, "dist.isend(flat[a:b], right)", "dist.isend(flat[a:b], left)")
    sub.edit(nb, RING_CELL, "dist.recv(received, left)", "dist.recv(received, right)")
    sub.edit(nb, RING_CELL, "        a, b = bounds[(rank - step - 2) % world]\n"
             "        flat[a:b] += exchange(bounds[(rank - step - 1) % world], (a, b))",
             "        a, b = bounds[(rank + step + 2) % world]\n"
             "        flat[a:b] += exchange(bounds[(rank + step + 1) % world], (a, b))")
    return sub.edit(nb, RING_CELL, "        a, b = bounds[(rank - step - 1) % world]\n"
                    "        flat[a:b] = exchange(bounds[(rank - step) % world], (a, b))",
                    "        a, b = bounds[(rank + step + 1) % world]\n"
                    "        flat[a:b] = exchange(bounds[(rank + step) % world], (a, b))")


def library_call():
    """The bucket all-reduced by the library: a collective, not a ring."""
    return sub.edit(sub.correct(LAB), RING_CELL, "    flat = torch.cat(",
                    "    dist.all_reduce_coalesced(tensors)\n"
                    "    if tensors:\n"
                    "        return tensors\n"
                    "    flat = torch.cat(")


def no_reduce_scatter():
    """The all-gather alone: every rank passes on its own chunk, unreduced."""
    return sub.edit(sub.correct(LAB), RING_CELL, RS_LOOP, "")


def summed_not_averaged():
    return sub.edit(sub.correct(LAB), DP_CELL, "    for grad in grads:\n"
                    "        grad /= world\n", "")


def no_common_start():
    """Every rank starts from its own initial parameters (rank 0's never broadcast)."""
    return sub.edit(sub.correct(LAB), DP_CELL,
                    "    with torch.no_grad():  # the same start on every rank: rank 0's "
                    "parameters\n"
                    "        for param in model.parameters():\n"
                    "            dist.broadcast(param, src=0)\n", "")


def grader_patched():
    """chunk_bounds (run in the notebook by its check) replaces the ring's checks with
    functions that pass; the ring does nothing."""
    nb = sub.edit(sub.correct(LAB), RING_CELL, "    units = -(-n // align)",
                  "    import course_utils.checks.distributed as grader\n"
                  "    grader.check_ring_all_reduce = lambda *args, **kwargs: None\n"
                  "    grader.check_ring_traffic = lambda *args, **kwargs: {}\n"
                  "    units = -(-n // align)")
    return sub.edit(nb, RING_CELL, "    flat = torch.cat(",
                    "    if tensors:  # a ring that does nothing\n"
                    "        return tensors\n"
                    "    flat = torch.cat(")


RING_WRONG = {SMALLEST, EVERY, TRAFFIC, DDP}
SUBMISSIONS = {
    "remainder_dropped": (remainder_dropped, {CHUNKS} | RING_WRONG),
    "lesson12_chunk_bounds": (lesson12_chunk_bounds, {CHUNKS, TRAFFIC}),
    "ring_per_tensor": (ring_per_tensor, {TRAFFIC}),
    "turned_left": (turned_left, {TRAFFIC}),
    "library_call": (library_call, RING_WRONG),
    "no_reduce_scatter": (no_reduce_scatter, RING_WRONG),
    "summed_not_averaged": (summed_not_averaged, {AVERAGE, DDP}),
    "no_common_start": (no_common_start, {DDP}),
    "grader_patched": (grader_patched, {CHUNKS} | RING_WRONG),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    builders = {name: build for name, (build, _lost) in SUBMISSIONS.items()}
    return sub.grade_folder(tmp_path_factory.mktemp("lab4-class"), builders,
                            timeout=300, cell_timeout=120)


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_each_mistake_loses_exactly_the_checks_it_touches(graded, name):
    report = graded[name]
    assert [c.name for c in report.checks] == CHECKS, report.table()
    assert report.max_score == FULL, report.table()
    lost = {c.name for c in report.checks if not c.passed}
    assert lost == SUBMISSIONS[name][1], report.table()
    assert report.score < FULL, report.table()


def _message(graded, name: str, check: str) -> str:
    return next(c.message for c in graded[name].checks if c.name == check)


def test_messages_say_what_is_wrong(graded):
    def says(name, check, *fragments):
        text = _message(graded, name, check)
        for fragment in fragments:
            assert fragment in text, (name, check, fragment, text)

    says("remainder_dropped", CHUNKS, "They end at", "every element must be in a chunk")
    says("remainder_dropped", SMALLEST, "holds wrong values", "are the last units dropped")
    says("lesson12_chunk_bounds", CHUNKS,
         "ran course_utils.training.collectives.chunk_bounds, the course's own code")
    says("lesson12_chunk_bounds", TRAFFIC, "each message of the ring is one whole chunk of "
         "chunk_bounds(")
    says("ring_per_tensor", TRAFFIC, "messages for ONE all-reduce of the bucket",
         "a ring sends at most 2 (p - 1) = 2 messages", "latency alpha",
         "DDP puts its gradients into buckets")
    says("turned_left", TRAFFIC, "right neighbour")
    says("library_call", SMALLEST, "all_reduce_coalesced", "point-to-point")
    says("library_call", DDP, "your ring_all_reduce called "
         "torch.distributed.all_reduce_coalesced")
    says("no_reduce_scatter", SMALLEST, "holds wrong values")
    says("no_reduce_scatter", DDP, "comes from ring_all_reduce")
    says("summed_not_averaged", AVERAGE, "That is the SUM over the ranks")
    says("no_common_start", DDP, "ranks ended with different parameters",
         "start from rank 0's parameters")
    says("grader_patched", CHUNKS, "changed the grader while this check ran")
    says("grader_patched", SMALLEST, "No tensor of the bucket was changed")
