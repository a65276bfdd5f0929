"""Lab 4 graded from its master: a ring that is not a point-to-point ring cannot score.

Three submissions, each with mistakes in independent parts (which checks each must lose
is spelled out): a "ring" that calls a coalesced all-reduce plus gradients summed instead
of averaged; a correct ring turned the wrong way round (right sums, wrong neighbour) with
every check cell deleted; and chunk boundaries that drop the remainder, with edited
points. Masters scoring full marks and untouched student notebooks 0 are
tests/notebooks/test_labs_e2e.py's.
"""

import pytest

from tests.notebooks import submissions as sub

pytestmark = pytest.mark.slow

LAB = "lab4_distributed"
CHUNKS = "chunk_bounds: one chunk per rank, any length"
SMALLEST, EVERY = ("Ring all-reduce on the smallest world size",
                   "Ring all-reduce on every world size")
TRAFFIC = "Ring traffic: right neighbour only, 2(p-1)/p of the data"
AVERAGE = "average_gradients: the mean gradient over the ranks"
DDP = "Data-parallel training matches DDP"
CHECKS = [CHUNKS, SMALLEST, EVERY, TRAFFIC, AVERAGE, DDP]
RING_CELL, DP_CELL = "def ring_all_reduce", "def average_gradients"


def coalesced_and_summed():
    nb = sub.correct(LAB)
    cell = sub.code_cell(nb, RING_CELL)
    start = cell.source.index("    def exchange(")
    end = cell.source.index("        flat[a:b] = exchange(bounds[(rank - step) % world], (a, b))")
    end += len("        flat[a:b] = exchange(bounds[(rank - step) % world], (a, b))")
    cell.source = (cell.source[:start] + "    dist.all_reduce_coalesced([tensor])"
                   + cell.source[end:])
    return sub.edit(nb, DP_CELL, "            param.grad /= world\n", "")


def turned_left():
    """The same ring, mirrored: send to the left, receive from the right; chunk_bounds
    answered by lesson 12's (imported inside the answer)."""
    nb = sub.correct(LAB)
    sub.edit(nb, RING_CELL, "    base, extra = divmod(n, world_size)\n",
             "    from course_utils.training.collectives import chunk_bounds as lesson12\n"
             "    return lesson12(n, world_size)\n")
    sub.edit(nb, RING_CELL, "dist.isend(flat[a:b], right)", "dist.isend(flat[a:b], left)")
    sub.edit(nb, RING_CELL, "dist.recv(received, left)", "dist.recv(received, right)")
    sub.edit(nb, RING_CELL, "        a, b = bounds[(rank - step - 2) % world]\n"
             "        flat[a:b] += exchange(bounds[(rank - step - 1) % world], (a, b))",
             "        a, b = bounds[(rank + step + 2) % world]\n"
             "        flat[a:b] += exchange(bounds[(rank + step + 1) % world], (a, b))")
    sub.edit(nb, RING_CELL, "        a, b = bounds[(rank - step - 1) % world]\n"
             "        flat[a:b] = exchange(bounds[(rank - step) % world], (a, b))",
             "        a, b = bounds[(rank + step + 1) % world]\n"
             "        flat[a:b] = exchange(bounds[(rank + step) % world], (a, b))")
    return sub.delete_check_cells(nb)


def remainder_dropped():
    nb = sub.correct(LAB)
    sub.edit(nb, RING_CELL, "base, extra = divmod(n, world_size)",
             "base, extra = n // world_size, 0")
    return sub.edit_points(nb)


SUBMISSIONS = {
    "coalesced_and_summed": (coalesced_and_summed, {SMALLEST, EVERY, TRAFFIC, AVERAGE, DDP}),
    "turned_left": (turned_left, {CHUNKS, TRAFFIC}),
    "remainder_dropped": (remainder_dropped, {CHUNKS, SMALLEST, EVERY, TRAFFIC, DDP}),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    builders = {name: build for name, (build, _lost) in SUBMISSIONS.items()}
    return sub.grade_folder(tmp_path_factory.mktemp("lab4-class"), builders,
                            timeout=500, cell_timeout=240)


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_each_mutant_loses_exactly_the_checks_of_its_mistakes(graded, name):
    report = graded[name]
    assert [c.name for c in report.checks] == CHECKS, report.table()
    assert report.max_score == 10.0, report.table()
    lost = {c.name for c in report.checks if not c.passed}
    assert lost == SUBMISSIONS[name][1], report.table()


def test_messages_say_what_is_wrong(graded):
    def message(name, check):
        return next(c.message for c in graded[name].checks if c.name == check)

    assert "all_reduce_coalesced" in message("coalesced_and_summed", SMALLEST)
    assert "point-to-point" in message("coalesced_and_summed", SMALLEST)
    assert "right neighbour" in message("turned_left", TRAFFIC)
    assert "ran course_utils.training.collectives.chunk_bounds, the course's own code" in \
        message("turned_left", CHUNKS)
