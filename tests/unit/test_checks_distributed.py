"""course_utils.checks.distributed: lab 4's checks pass a correct answer and explain wrong ones.

Fast tests feed the notebook-side verdicts with made-up job results; the tests marked
``slow`` launch real Gloo jobs (5 launches in all, each a few seconds on an idle machine):
a correct ring (sending with dist.send, dist.isend or dist.batch_isend_irecv, by world
size: every message is counted) and training loop; a ring that drops the remainder on 2
ranks, deadlocks on 3 and runs one ring per tensor on 4; a loop that sums gradients
instead of averaging them; one all-reduce per parameter and a ring made of a library call,
in the training loop; and every other door to a collective.
"""

import textwrap

import pytest

from course_utils.checks import distributed as d
from course_utils.errors import UsageError
from course_utils.training import dist

RING = '''
import torch
import torch.distributed as dist


def chunk_bounds(n, world_size, align):
    units = -(-n // align)
    base, extra = divmod(units, world_size)
    bounds, start = [], 0
    for k in range(world_size):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((min(start * align, n), min(stop * align, n)))
        start = stop
    return bounds


def ring_all_reduce(tensors, align=4):
    rank, world = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % world, (rank - 1) % world
    flat = torch.cat([t.reshape(-1) for t in tensors])
    bounds = chunk_bounds(flat.numel(), world, align)
    MODE = {2: "send", 3: "isend"}.get(world, "batch")

    def exchange(send, recv):
        (a, b), (c, e) = send, recv
        got = torch.empty(e - c, dtype=flat.dtype)
        if MODE == "recv first":
            if e > c:
                dist.recv(got, left)
        elif MODE == "send":  # blocking send and recv, ordered by rank parity
            for action in (("send", "recv") if rank % 2 == 0 else ("recv", "send")):
                if action == "send" and b > a:
                    dist.send(flat[a:b], right)
                if action == "recv" and e > c:
                    dist.recv(got, left)
        elif MODE == "isend":
            request = dist.isend(flat[a:b], right) if b > a else None
            if e > c:
                dist.recv(got, left)
            if request is not None:
                request.wait()
        else:
            ops = []
            if b > a:
                ops.append(dist.P2POp(dist.isend, flat[a:b], right))
            if e > c:
                ops.append(dist.P2POp(dist.irecv, got, left))
            for work in dist.batch_isend_irecv(ops) if ops else []:
                work.wait()
        return got

    for step in range(world - 1):
        a, b = bounds[(rank - step - 2) % world]
        flat[a:b] += exchange(bounds[(rank - step - 1) % world], (a, b))
    for step in range(world - 1):
        a, b = bounds[(rank - step - 1) % world]
        flat[a:b] = exchange(bounds[(rank - step) % world], (a, b))
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors
'''

# On 2 ranks the chunks hold units // p units each: the last units % p units are never
# reduced. On 3 ranks every rank first waits to receive: a deadlock. On 4 ranks the sums
# are right, but from one ring per tensor: 2 (p - 1) messages per tensor.
BROKEN_RING = RING.replace(
    "    base, extra = divmod(units, world_size)\n",
    "    base, extra = (units // world_size, 0) if world_size == 2 else divmod(units, "
    "world_size)\n").replace(
    '    MODE = {2: "send", 3: "isend"}.get(world, "batch")\n',
    '    MODE = "recv first" if world == 3 else "batch"\n').replace(
    "    flat = torch.cat(",
    "    if world == 4 and len(tensors) > 1:  # one ring per tensor\n"
    "        for t in tensors:\n"
    "            ring_all_reduce([t], align)\n"
    "        return tensors\n"
    "    flat = torch.cat(")

DP = '''
import torch
import torch.distributed as dist
import torch.nn.functional as F


def average_gradients(model, all_reduce):
    world = dist.get_world_size()
    grads = [param.grad for param in model.parameters()]
    all_reduce(grads)
    for grad in grads:
        grad /= world


def train_data_parallel(model, X, y, *, steps, batch_size, lr, all_reduce):
    rank, world = dist.get_rank(), dist.get_world_size()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with torch.no_grad():
        for param in model.parameters():
            dist.broadcast(param, src=0)
    for step in range(steps):
        first = (step * world + rank) * batch_size
        optimizer.zero_grad()
        F.cross_entropy(model(X[first:first + batch_size]),
                        y[first:first + batch_size]).backward()
        average_gradients(model, all_reduce)
        optimizer.step()
    return model
'''

UNFINISHED = '''
def chunk_bounds(n, world_size, align):
    """Docstring."""
    # YOUR CODE HERE
    raise NotImplementedError("Lab answer: write your code here")


def ring_all_reduce(tensors, align=4):
    rank = 0
    # YOUR CODE HERE
    raise NotImplementedError("Lab answer: write your code here")
    return tensors
'''


def _write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    d._RUNS.clear()
    yield
    d._RUNS.clear()


@pytest.fixture
def no_launch(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dist.launch must not be called here")

    monkeypatch.setattr(dist, "launch", refuse)


# --------------------------------------------------------------------------- settings
def _cfg(**changes):
    from course_utils import profiles

    cfg = dict(profiles.PROFILES["quick"]["lab4_distributed"])
    cfg.update(changes)
    return cfg


def test_settings_from_both_profiles():
    """Both profiles' buckets are divisible by none of their world sizes nor by the
    alignment (the lab's markdown says so for the quick profile: 37, 41, 1037)."""
    from course_utils import profiles

    for name in ("quick", "full"):
        s = d.settings(profiles.PROFILES[name]["lab4_distributed"], seed=3)
        assert s.seed == 3 and min(s.world_sizes) >= 2 and s.group_timeout < s.timeout
        assert s.align == 4
        sizes = [sum(d.math.prod(shape) for shape in bucket) for bucket in d.cases(s)]
        assert all(n % p for n in sizes for p in (*s.world_sizes, s.align)), sizes
    quick = d.settings(profiles.PROFILES["quick"]["lab4_distributed"])
    assert [sum(d.math.prod(x) for x in b) for b in d.cases(quick)] == [37, 41, 1037]
    assert d.bucket_shapes(5) == [(5, 7), (5,), ()]


@pytest.mark.parametrize("knob, value, fragment", [
    ("world_sizes", (1, 2), "world_sizes=(1, 2) is not valid; give integers from 2 to 8"),
    ("world_sizes", (2, 16), "world_sizes"), ("world_sizes", [], "world_sizes"),
    ("lengths", (0,), "lengths=(0,) is not valid"), ("dp_world_sizes", "2,x", "dp_world_sizes"),
    ("align", 0, "align=0 is not valid; it must be an integer >= 1"),
    ("align", 2.5, "align=2.5 is not valid"),
    ("dp_steps", 0, "dp_steps=0 is not valid; it must be an integer >= 1"),
    ("dp_batch", 2.5, "dp_batch"), ("dp_lr", -0.1, "dp_lr=-0.1 is not valid"),
    ("timeout", "long", "timeout='long' is not valid"),
    ("group_timeout", 500, "group_timeout=500 is not valid; it must be less than timeout"),
])
def test_bad_settings_name_the_knob(knob, value, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        d.settings(_cfg(**{knob: value}))


def test_reference_chunks_and_traffic_bounds():
    assert d.reference_chunk_bounds(1001, 4) == [(0, 251), (251, 501), (501, 751), (751, 1001)]
    assert d.reference_chunk_bounds(1, 3) == [(0, 1), (1, 1), (1, 1)]
    # the lab's table: align 1 is an even split; align 4 cuts whole units, the last short
    assert d.reference_chunk_bounds(10, 3, 1) == [(0, 4), (4, 7), (7, 10)]
    assert d.reference_chunk_bounds(10, 3, 4) == [(0, 4), (4, 8), (8, 10)]
    assert d.reference_chunk_bounds(10, 4, 4) == [(0, 4), (4, 8), (8, 10), (10, 10)]
    assert d.reference_chunk_bounds(1037, 4, 4) == [(0, 260), (260, 520), (520, 780),
                                                    (780, 1037)]
    assert d.reference_chunk_bounds(0, 3, 4) == [(0, 0)] * 3
    assert d.reference_chunk_bounds(3, 2, 4) == [(0, 3), (3, 3)]
    for n, p, align in d.CHUNK_CASES:
        bounds = d.reference_chunk_bounds(n, p, align)
        assert len(bounds) == p and bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a % align == 0 or a == n for a, _ in bounds)
        assert all(b - a <= -(-n // p) + align for a, b in bounds)
    aligned = {(n, p, a) for n, p, a in d.CHUNK_CASES}
    assert {1, 3, 4} == {a for _, _, a in aligned} and any(n < a for n, _, a in aligned)
    assert any(n == 0 for n, _, _ in aligned) and any(p == 1 for _, p, _ in aligned)
    # a rank sends all chunks but its own, then all but its right neighbour's
    assert (d.ring_send_floor(1037, 4, 4), d.ring_send_bound(1037, 4, 4)) == (1554, 1560)
    assert (d.ring_send_floor(1001, 3), d.ring_send_bound(1001, 3)) == (1334, 1336)
    assert d.ring_message_bound(4) == 6


def test_the_alignment_the_lab_cites():
    """The lab says: FSDP starts every parameter in its flat buffer on a 16-byte boundary
    (``_get_aligned_numel``), 4 float32 values, the profiles' ALIGN."""
    import torch
    from torch.distributed.fsdp import _flat_param

    assert _flat_param._get_aligned_numel(torch.float32) == 4
    assert torch.empty(0, dtype=torch.float32).element_size() * 4 == 16


def test_the_data_parallel_model_is_one_bucket_of_four_tensors():
    """The lab says: Linear(5, 7), Tanh, Linear(7, 3), four parameter tensors."""
    model = d.dp_model(0)
    assert [tuple(p.shape) for p in model.parameters()] == [(7, 5), (7,), (3, 7), (3,)]


def test_lab_folder_is_under_build_and_per_kernel():
    folder = d.lab_folder()
    assert folder.is_dir() and folder.parent.name == "lab4_distributed"
    assert folder.parent.parent.name == "build" and folder.name.startswith("kernel-")


# --------------------------------------------------------------------------- scripts
def test_unfinished_reads_the_function_body(tmp_path):
    path = _write(tmp_path, "ring.py", UNFINISHED)
    assert d.unfinished(path, "chunk_bounds") and d.unfinished(path, "ring_all_reduce")
    assert not d.unfinished(_write(tmp_path, "ok.py", RING), "ring_all_reduce")
    with pytest.raises(AssertionError, match="has no function average_gradients"):
        d.unfinished(path, "average_gradients")
    with pytest.raises(AssertionError, match="run the %%writefile cell"):
        d.unfinished(tmp_path / "missing.py", "ring_all_reduce")
    bad = _write(tmp_path, "bad.py", "def ring_all_reduce(t):\n    return t +\n")
    with pytest.raises(AssertionError, match="bad.py line 2: SyntaxError"):
        d.unfinished(bad, "ring_all_reduce")


def test_import_error_names_the_line(tmp_path):
    path = _write(tmp_path, "ring.py", "import torch\nx = 1 / 0\n")
    with pytest.raises(AssertionError, match=r"ZeroDivisionError.*ring.py line 2: `x = 1 / 0`"):
        d.load_module(path)


def test_chunk_bounds_check(tmp_path):
    d.check_chunk_bounds(_write(tmp_path, "ring.py", RING))
    d.check_chunk_bounds(_write(tmp_path, "ring5.py", RING), align=5)
    with pytest.raises(AssertionError, match=r"chunk_bounds\(3, 2, 4\) returned "
                                             r"\[\(0, 0\), \(0, 0\)\].*They end at 0, not "
                                             r"at n = 3: every element"):
        d.check_chunk_bounds(_write(tmp_path, "floor.py", BROKEN_RING))
    with pytest.raises(NotImplementedError):
        d.check_chunk_bounds(_write(tmp_path, "todo.py", UNFINISHED))
    none = RING.replace("    return bounds\n", "")
    with pytest.raises(AssertionError, match="returned None"):
        d.check_chunk_bounds(_write(tmp_path, "none.py", none))


def test_chunk_bounds_that_ignore_the_alignment_fail(tmp_path):
    """An even split in elements (align treated as 1) passes the align-1 cases only."""
    ignored = RING.replace("    units = -(-n // align)\n", "    align = 1\n    units = n\n")
    with pytest.raises(AssertionError) as info:
        d.check_chunk_bounds(_write(tmp_path, "even.py", ignored))
    msg = str(info.value)
    assert msg.startswith("chunk_bounds(1037, 4, 4) returned [(0, 260), (260, 519)"), msg
    assert "Chunk 2 starts at 519, not a multiple of align = 4" in msg, msg
    assert "ceil(n / align) = 260 unit(s) of 4 element(s)" in msg, msg
    odd = RING.replace("    units = -(-n // align)\n",  # the odd alignment ignored
                       "    align = 1 if align == 3 else align\n    units = -(-n // align)\n")
    with pytest.raises(AssertionError, match=r"chunk_bounds\(1001, 4, 3\) returned .*not a "
                                             r"multiple of align = 3"):
        d.check_chunk_bounds(_write(tmp_path, "odd.py", odd))
    wrong_share = RING.replace("(1 if k < extra else 0)", "(1 if k >= world_size - extra else 0)")
    with pytest.raises(AssertionError, match=r"the first units % p = 1 chunk\(s\) get one unit "
                                             r"more"):
        d.check_chunk_bounds(_write(tmp_path, "share.py", wrong_share))


def test_lesson_12_signatures_fail_before_any_launch(tmp_path, no_launch):
    """chunk_bounds(n, world_size) and ring_all_reduce(tensor) answer lesson 12's
    question, not the lab's: they cannot even be called as the lab calls them."""
    lesson12 = RING.replace("def chunk_bounds(n, world_size, align):",
                            "def chunk_bounds(n, world_size):\n    align = 1")
    lesson12 = lesson12.replace("def ring_all_reduce(tensors, align=4):",
                                "def ring_all_reduce(tensors):\n    align = 1")
    ring = _write(tmp_path, "ring.py", lesson12)
    with pytest.raises(AssertionError, match=r"chunk_bounds\(n, world_size\) in ring.py cannot "
                                             r"be called as chunk_bounds\(n, world_size, "
                                             r"align\).*lesson 12's"):
        d.check_chunk_bounds(ring)
    for check in (lambda: d.check_ring_all_reduce(ring, 2), lambda: d.check_ring_traffic(ring),
                  lambda: d.check_data_parallel(_write(tmp_path, "dp_train.py", DP), ring)):
        with pytest.raises(AssertionError, match=r"ring_all_reduce\(tensors\) in ring.py "
                                                 r"cannot be called as ring_all_reduce\("
                                                 r"tensors, align=ALIGN\).*a bucket"):
            check()


def test_unfinished_answers_fail_fast_without_a_launch(tmp_path, no_launch):
    ring = _write(tmp_path, "ring.py", UNFINISHED)
    dp = _write(tmp_path, "dp_train.py", DP.replace(
        "    world = dist.get_world_size()\n    grads",
        "    raise NotImplementedError('todo')\n    grads"))
    with pytest.raises(NotImplementedError):
        d.check_ring_all_reduce(ring, 2)
    with pytest.raises(NotImplementedError):
        d.check_ring_traffic(ring)
    with pytest.raises(NotImplementedError):
        d.check_average_gradients(dp, ring)
    with pytest.raises(NotImplementedError):  # the loop is done, but the ring it uses is not
        d.check_data_parallel(_write(tmp_path, "dp2.py", DP), ring)


def test_world_size_must_be_one_of_the_settings(tmp_path, no_launch):
    with pytest.raises(UsageError, match="world_size=5 is not valid; choose one of: 2, 3, 4"):
        d.check_ring_all_reduce(_write(tmp_path, "ring.py", RING), 5)


# --------------------------------------------------------------------------- ring verdicts
SETTINGS = d.Settings(world_sizes=(2, 3), lengths=(1, 5, 1001), align=4, dp_world_sizes=(2,),
                      group_timeout=3, timeout=120)


def _ring_traffic(n, world, rank, align):
    """What rank ``rank`` of a correct ring sends: (elements, messages, sizes)."""
    sizes = d.chunk_sizes(n, world, align)
    sent = [sizes[k] for k in range(world) if k != rank] + \
        [sizes[k] for k in range(world) if k != (rank + 1) % world]
    sent = [m for m in sent if m]
    return sum(sent), len(sent), sorted(set(sent))


def _case(shapes, status="ok", world=2, rank=0, **extra):
    n = sum(d.math.prod(shape) for shape in shapes)
    sent, messages, sizes = _ring_traffic(n, world, rank, SETTINGS.align)
    case = {"shapes": [list(s) for s in shapes], "n": n, "status": status, "seconds": 0.01,
            "sent": sent, "messages": messages, "sizes": sizes,
            "dests": [(rank + 1) % world]}
    case.update(extra)
    return case


def _ring_outputs(world_cases):
    """{rank: {str(world): {"cases": [...]}}} from {world: {rank: [cases]}}."""
    outputs = {}
    for world, ranks in world_cases.items():
        for rank, cases in ranks.items():
            outputs.setdefault(rank, {})[str(world)] = {"cases": cases}
    return outputs


def _all_ok(world, **last):
    """Every rank right on every bucket, with a correct ring's traffic; ``last``: what
    to change in the largest bucket's record, as {field: {rank: value}}."""
    cases = {}
    for r in range(world):
        row = [_case(shapes, world=world, rank=r) for shapes in d.cases(SETTINGS)]
        for key, per_rank in last.items():
            if r in per_rank:
                row[-1][key] = per_rank[r]
        cases[r] = row
    return cases


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """Make the ring/dp jobs return a given Run; returns (setter, ring path, dp path)."""
    box = {}
    monkeypatch.setattr(d, "_launch", lambda *a, **k: box["run"])
    ring, dp = _write(tmp_path, "ring.py", RING), _write(tmp_path, "dp_train.py", DP)

    def set_run(outputs, failure="", message=""):
        box["run"] = d.Run(outputs=outputs, failure=failure, message=message)

    return set_run, ring, dp


BUCKET = d.bucket_shapes(1001)  # [5 x 7, 1001, scalar]: 1037 elements


def test_mismatch_message_names_world_bucket_tensor_index_and_chunk_hint(fake_run):
    set_run, ring, _ = fake_run
    cases = _all_ok(2)
    mismatch = {"count": 1, "index": 1036, "got": 3.5, "expected": 7.25, "tensor": 2,
                "tensor_index": 0, "wrong_tensors": [2], "chunk_index": 1,
                "chunk": [520, 1037], "run": [1036, 1037], "subset": [1],
                "unchanged_all": False, "replaced": False, "returned_ok": False,
                "zeros": False, "tail_only": True, "tail_from": 1036}
    cases[1][-1] = _case(BUCKET, "mismatch", mismatch=mismatch)
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError) as info:
        d.check_ring_all_reduce(ring, 2, SETTINGS)
    msg = str(info.value)
    for fragment in ("on 2 ranks, the bucket [5 x 7, 1001, scalar] (1037 elements): rank 1",
                     "first in tensor 2 (a scalar) at index 0 (element 1036 of the bucket)",
                     "got 3.5", "expected 7.25",
                     "in chunk 1 (elements 520..1036) of chunk_bounds(1037, 2, 4)",
                     "Only tensor(s) [2] of the bucket are wrong", "hold rank 1's own input",
                     "Only elements from 1036 on are wrong",
                     "It works for the bucket [5 x 7, 1, scalar] (37 elements)",
                     "chunk boundaries", "WHOLE bucket"):
        assert fragment in msg, (fragment, msg)


def test_partial_sum_in_place_and_replaced_hints(fake_run):
    set_run, ring, _ = fake_run
    base = {"count": 5, "index": 0, "got": 1.0, "expected": 2.0, "tensor": 0,
            "tensor_index": 0, "wrong_tensors": [0, 1, 2], "chunk_index": 0,
            "chunk": [0, 2], "run": [0, 5], "returned_ok": False, "zeros": False,
            "replaced": False, "tail_only": False, "tail_from": 41}
    shapes = d.bucket_shapes(5)
    cases = _all_ok(3)
    cases[0][1] = _case(shapes, "mismatch", mismatch={**base, "subset": [0, 2],
                                                      "unchanged_all": False})
    set_run(_ring_outputs({3: cases}))
    with pytest.raises(AssertionError, match=r"flat index 0 \(element 0 of the bucket\).*sum "
                                             r"over ranks \[0, 2\] only, a partial sum"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)
    d._RUNS.clear()
    cases[0][1] = _case(shapes, "mismatch", mismatch={**base, "subset": [0],
                                                      "unchanged_all": True,
                                                      "returned_ok": True})
    set_run(_ring_outputs({3: cases}))
    with pytest.raises(AssertionError, match="works in place.*returning new tensors"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)
    d._RUNS.clear()
    cases[0][1] = _case(shapes, "mismatch", mismatch={**base, "subset": [0],
                                                      "unchanged_all": True, "replaced": True})
    set_run(_ring_outputs({3: cases}))
    with pytest.raises(AssertionError, match="do not replace the list's items"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)


def test_timeout_forbidden_raised_and_not_implemented_in_a_rank(fake_run):
    set_run, ring, _ = fake_run
    first = d.bucket_shapes(1)
    error = {"type": "RuntimeError", "message": "Timed out waiting 3000ms for recv",
             "where": " (ring.py line 9: `dist.recv(got, left)`)"}
    cases = {r: [_case(first, "timeout", error=error)] for r in range(2)}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match=r"waited more than 3 s .*line 9.*deadlocks"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {0: [_case(first, "forbidden", error={"message": "all_reduce"})],
             1: [_case(first, "peer", error={"type": "RuntimeError",
                                             "message": "Connection closed by peer"})]}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match="called torch.distributed.all_reduce.*point-to"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {0: [_case(first, "peer", error={"type": "RuntimeError",
                                             "message": "Connection reset by peer"})],
             1: [_case(first, "raised", error={"type": "IndexError", "where": "",
                                               "message": "list index out of range"})]}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match="rank 1 raised IndexError: list index"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {r: [_case(first, "not implemented", error={"message": ""})] for r in range(2)}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(NotImplementedError):
        d.check_ring_all_reduce(ring, 2, SETTINGS)


def test_a_stopped_job_fails_with_the_deadlock_hint(fake_run):
    set_run, ring, _ = fake_run
    partial = {r: {"3": {"cases": [_case(d.bucket_shapes(1), world=3, rank=r)]},
                   "running": {"world": 3, "shapes": [[5, 7], [5], []]}} for r in range(3)}
    set_run(partial, failure="timeout", message="the grading job ran past its timeout")
    with pytest.raises(AssertionError, match=r"did not finish: the grading job ran past its "
                                             r"timeout, while 3 ranks were running "
                                             r"ring_all_reduce on the bucket \[5 x 7, 5, "
                                             r"scalar\] \(41 elements\)\. Did you send"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)
    with pytest.raises(AssertionError, match="did not finish"):  # 2 ranks never ran
        d.check_ring_all_reduce(ring, 2, SETTINGS)
    set_run({}, failure="rank failed", message="a process of the grading job died: rank 0")
    with pytest.raises(AssertionError, match="did not run to the end: a process .* died"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)


def test_launch_timeout_becomes_a_run_failure(monkeypatch, tmp_path):
    ring = _write(tmp_path, "ring.py", RING)
    result = dist.LaunchResult(command=[], returncode=-9, seconds=1.0, out_dir=tmp_path,
                               launcher_output="", outputs={})
    calls = []

    def fake_launch(script, **kwargs):
        calls.append(kwargs)
        raise dist.LaunchTimeout("too slow", result)

    monkeypatch.setattr(dist, "launch", fake_launch)
    run = d.ring_run(ring, SETTINGS)
    assert run.failure == "timeout" and "timeout of 120 s" in run.message
    assert calls[0]["nproc"] == 3 and calls[0]["group_timeout"] == 3
    assert calls[0]["args"][:1] == ["ring"] and "3,2" in calls[0]["args"]
    assert calls[0]["args"][calls[0]["args"].index("--align") + 1] == "4"
    assert d.ring_run(ring, SETTINGS) is run and len(calls) == 1  # cached
    ring.write_text(RING + "\n# changed\n")
    d.ring_run(ring, SETTINGS)
    assert len(calls) == 2  # the script changed: a new launch
    assert (tmp_path / "grader_worker.py").read_text() == d.WORKER_STUB


def test_traffic_verdicts(fake_run):
    set_run, ring, _ = fake_run
    set_run(_ring_outputs({2: _all_ok(2), 3: _all_ok(3)}))
    seen = {}
    table = d.check_ring_traffic(ring, SETTINGS, result=seen)
    assert table == seen and table[3]["n"] == 1037
    assert table[3]["sent"] == [1378, 1385, 1385] and table[3]["messages"] == [4, 4, 4]
    assert (table[3]["floor"], table[3]["bound"], table[3]["max_messages"]) == (1378, 1392, 4)
    assert table[3]["naive_root"] == 2 * 1037
    d._RUNS.clear()
    set_run(_ring_outputs({2: _all_ok(2),
                           3: _all_ok(3, sent={0: 2074}, dests={0: [1, 2]})}))
    seen = {}
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, SETTINGS, result=seen)
    assert "rank 0 sent to rank(s) [1, 2]" in str(info.value)
    assert "rank 0 sent 2074 elements" in str(info.value) and "not whole tensors" in str(
        info.value)
    assert "at most 2 (N - smallest chunk) = 1392" in str(info.value)
    assert seen[3]["sent"] == [2074, 1385, 1385]  # filled in before the assertion


def test_traffic_counts_messages_per_bucket(fake_run):
    """One ring per tensor: right sums, right neighbour, but 2 (p - 1) messages per tensor,
    of the tensors' chunks, not the bucket's."""
    set_run, ring, _ = fake_run
    set_run(_ring_outputs({2: _all_ok(2),
                           3: _all_ok(3, messages={1: 9}, sizes={1: [1, 12, 252, 253]})}))
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, SETTINGS)
    msg = str(info.value)
    assert ("on 3 ranks, rank 1 sent 9 messages for ONE all-reduce of the bucket [5 x 7, "
            "1001, scalar] (1037 elements), 3 tensors; a ring sends at most 2 (p - 1) = 4 "
            "messages") in msg, msg
    assert "latency alpha" in msg and "DDP puts its gradients into buckets" in msg
    assert ("rank 1 sent messages of [1, 12, 252, 253] elements" in msg
            and "chunk_bounds(1037, 3, 4), of [341, 348] elements" in msg), msg


def test_traffic_waits_for_correct_runs(fake_run):
    set_run, ring, _ = fake_run
    three = _all_ok(3)
    three[1][-1] = _case(BUCKET, "mismatch", mismatch={})
    set_run(_ring_outputs({2: _all_ok(2), 3: three}))
    with pytest.raises(AssertionError, match="buckets is not correct yet on 3 ranks"):
        d.check_ring_traffic(ring, SETTINGS)


def test_traffic_must_go_right_and_carry_the_sums(fake_run):
    """Sending to the left neighbour, or fewer than 2 (N - largest chunk) elements (the
    sums travelled some other way), fails the traffic check."""
    set_run, ring, _ = fake_run
    set_run(_ring_outputs({2: _all_ok(2), 3: _all_ok(3, dests={0: [2], 1: [0], 2: [1]})}))
    with pytest.raises(AssertionError, match=r"rank 0 sent to rank\(s\) \[2\].*right neighbour"):
        d.check_ring_traffic(ring, SETTINGS)
    d._RUNS.clear()
    set_run(_ring_outputs({2: _all_ok(2), 3: _all_ok(3, sent={1: 7})}))
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, SETTINGS)
    assert "rank 1 sent only 7 elements" in str(info.value)
    assert "at least 2 (N - largest chunk) = 1378" in str(info.value)


def test_errors_point_at_the_innermost_student_line(tmp_path):
    ring = _write(tmp_path, "ring.py", "def ring_all_reduce(t):\n    return 1 / 0\n")
    dp = _write(tmp_path, "dp_train.py", "def train(f):\n    return f(2)\n")
    try:
        d.load_module(dp, "m_dp").train(d.load_module(ring, "m_ring").ring_all_reduce)
    except ZeroDivisionError as exc:
        record = d._error_record(exc, [dp.resolve(), ring.resolve()])
    assert record["type"] == "ZeroDivisionError"
    assert record["where"] == " (ring.py line 2: `return 1 / 0`)"


def test_diagnose_a_bucket(tmp_path):
    """The worker's diagnosis, on made-up results (no process group needed)."""
    import torch

    shapes = d.bucket_shapes(5)  # 41 elements: chunks (0, 24), (24, 41) on 2 ranks
    inputs = [[d.ring_input(s, 0, 2, r, j) for j, s in enumerate(shapes)] for r in range(2)]
    expected = [a + b for a, b in zip(*inputs, strict=True)]
    got = [t.clone() for t in expected]
    got[2] = inputs[0][2].clone()  # the scalar: rank 0's own value, the last unit dropped
    m = d._diagnose(got, expected, inputs, 0, 2, 4, None, False)
    assert (m["index"], m["tensor"], m["tensor_index"], m["wrong_tensors"]) == (40, 2, 0, [2])
    assert m["chunk"] == [24, 41] and m["subset"] == [0] and m["tail_only"]
    assert m["tail_from"] == 40 and not m["unchanged_all"]
    m = d._diagnose([t.clone() for t in inputs[1]], expected, inputs, 1, 2, 4, expected, True)
    assert m["unchanged_all"] and m["returned_ok"] and m["replaced"]
    assert torch.equal(got[0], expected[0])
    big = d.ring_input((3,), 2**31 - 1, 4, 3, 2)  # any grading seed (hpdl grade draws them)
    assert big.shape == (3,) and not torch.equal(big, d.ring_input((3,), 2**31 - 1, 4, 3, 1))


# --------------------------------------------------------------------------- dp verdicts
def _dp_outputs(world, average=None, train=None):
    outputs = {}
    for r in range(world):
        rec = {}
        if average is not None:
            rec["average"] = average(r)
        if train is not None:
            rec["train"] = train(r)
        outputs[r] = {str(world): rec}
    return outputs


def _average(r, out=None, buckets=(3,)):
    grads_in = [[1.0 + r, 2.0 * r], [float(r)]]
    return {"status": "ok", "calls": len(buckets), "buckets": list(buckets),
            "names": [["w", 2], ["b", 1]], "grads_in": grads_in,
            "grads_out": out(r, grads_in) if out else [[1.5, 1.0], [0.5]],
            "params_changed": False}


def _train(r, params=None, rows=None, calls=3, ok=None):
    ddp = [0.5, -0.25, 1.0]
    return {"status": "ok", "calls": calls, "rows": rows or [3] * 5, "ddp": ddp,
            "params": params or ddp, "names": [["0.weight", 2, [1, 2]], ["0.bias", 1, [1]]],
            "torch_all_reduce_ok": ok}


DP_SETTINGS = d.Settings(dp_world_sizes=(2,), dp_steps=5, dp_batch=3)


def test_average_gradients_verdicts(fake_run):
    set_run, ring, dp = fake_run
    set_run(_dp_outputs(2, average=_average))
    d.check_average_gradients(dp, ring, DP_SETTINGS)
    d._RUNS.clear()
    set_run(_dp_outputs(2, average=lambda r: _average(r, out=lambda r, g: [[3.0, 2.0], [1.0]])))
    with pytest.raises(AssertionError, match=r"rank 0's gradient of w .*got 3, expected 1\.5\. "
                                             r"That is the SUM over the ranks"):
        d.check_average_gradients(dp, ring, DP_SETTINGS)
    d._RUNS.clear()
    set_run(_dp_outputs(2, average=lambda r: _average(r, buckets=())))
    with pytest.raises(AssertionError, match="never called all_reduce"):
        d.check_average_gradients(dp, ring, DP_SETTINGS)
    d._RUNS.clear()
    set_run(_dp_outputs(2, average=lambda r: _average(r, buckets=(2, 1))))
    with pytest.raises(AssertionError, match=r"rank 0 called all_reduce 2 times, on buckets of "
                                             r"\[2, 1\] values: the means are right.*ONE "
                                             r"bucket"):
        d.check_average_gradients(dp, ring, DP_SETTINGS)
    d._RUNS.clear()
    set_run(_dp_outputs(2, average=lambda r: _average(
        r, buckets=(2,), out=lambda r, g: [[1.5, 1.0], g[1]])))
    with pytest.raises(AssertionError, match=r"gradient of b .*own gradient, unchanged.*The "
                                             r"buckets given to all_reduce held 2 of the "
                                             r"model's 3"):
        d.check_average_gradients(dp, ring, DP_SETTINGS)


def test_data_parallel_verdicts(fake_run):
    set_run, ring, dp = fake_run
    set_run(_dp_outputs(2, train=_train))
    seen = {}
    assert d.check_data_parallel(dp, ring, DP_SETTINGS, result=seen) == {2: 0.0} == seen
    cases = [
        (lambda r: _train(r, calls=0), "never called all_reduce"),
        (lambda r: _train(r, rows=[6] * 5), r"6 rows.*batch_size x world_size"),
        (lambda r: _train(r, params=[0.5, -0.25, 1.5], ok=True),
         r"first at 0\.bias\[0\]: got 1\.5, expected 1 .*comes from ring_all_reduce"),
        (lambda r: _train(r, params=[0.5, -0.25 + r, 1.0], ok=False),
         r"first at 0\.weight\[0, 1\].*different parameters.*look at the loop"),
        (lambda r: {"status": "forbidden", "error": {"message": "all_reduce_coalesced",
                                                     "type": "Forbidden", "where": ""}},
         r"train_data_parallel on 2 ranks: rank 0: your ring_all_reduce called "
         r"torch\.distributed\.all_reduce_coalesced: write the ring yourself"),
    ]
    for train, pattern in cases:
        d._RUNS.clear()
        set_run(_dp_outputs(2, train=train))
        with pytest.raises(AssertionError, match=pattern):
            d.check_data_parallel(dp, ring, DP_SETTINGS)


def test_the_bucket_all_reduce_of_the_checks_wants_a_list():
    import torch

    with pytest.raises(TypeError, match="takes a bucket, a list of tensors, not Tensor"):
        d.torch_bucket_all_reduce()(torch.zeros(3))


# --------------------------------------------------------------------------- real launches
@pytest.mark.slow
def test_correct_answers_pass_and_every_message_is_counted(tmp_path):
    """dist.send (2 ranks), dist.isend (3 ranks) and dist.batch_isend_irecv (4 ranks):
    each message counted once, 2 (p - 1) per bucket, of the bucket's aligned chunks."""
    ring, dp = _write(tmp_path, "ring.py", RING), _write(tmp_path, "dp_train.py", DP)
    settings = d.Settings(world_sizes=(2, 3, 4), lengths=(1, 5, 1001), align=4,
                          dp_world_sizes=(2,), dp_steps=3, timeout=180, group_timeout=20)
    assert d.check_ring_all_reduce(ring, 2, settings)["cases"] == [
        [[5, 7], [n], []] for n in (1, 5, 1001)]
    d.check_ring_all_reduce(ring, 3, settings)
    d.check_ring_all_reduce(ring, 4, settings)
    table = d.check_ring_traffic(ring, settings)
    for world in (2, 3, 4):
        expected = [_ring_traffic(1037, world, r, 4) for r in range(world)]
        assert table[world]["sent"] == [e[0] for e in expected], (world, table[world])
        assert table[world]["messages"] == [2 * (world - 1)] * world, (world, table[world])
    assert table[3]["sent"] == [1378, 1385, 1385]  # every chunk but its own, then but right's
    run = d.ring_run(ring, settings)
    for world in (2, 3, 4):  # the small buckets too: every rank, every bucket
        for rank, record in d._world_records(run, world).items():
            for case in record["cases"]:
                sent, messages, sizes = _ring_traffic(case["n"], world, rank, 4)
                assert (case["sent"], case["messages"], case["sizes"]) == (
                    sent, messages, sizes), (world, rank, case)
    d.check_average_gradients(dp, ring, settings)
    assert d.check_data_parallel(dp, ring, settings)[2] < 1e-12
    assert len(d._RUNS) == 2  # one launch per part


@pytest.mark.slow
def test_dropped_remainder_deadlock_and_a_ring_per_tensor_in_one_job(tmp_path):
    ring = _write(tmp_path, "ring.py", BROKEN_RING)
    settings = d.Settings(world_sizes=(2, 3, 4), lengths=(1, 5), timeout=120, group_timeout=4)
    with pytest.raises(AssertionError) as info:  # 3 ranks: all wait in recv
        d.check_ring_all_reduce(ring, 3, settings)
    assert "on 3 ranks" in str(info.value) and "waited more than 4 s" in str(info.value)
    assert "deadlocks" in str(info.value)
    with pytest.raises(AssertionError) as info:  # 2 ranks, after the deadlock: wrong chunks
        d.check_ring_all_reduce(ring, 2, settings)
    msg = str(info.value)
    assert ("on 2 ranks, the bucket [5 x 7, 5, scalar] (41 elements): rank 0 holds wrong "
            "values: 1 of 41 differ; first in tensor 2 (a scalar)") in msg, msg
    assert "Only elements from 40 on are wrong" in msg and "It works for the bucket" in msg
    assert "chunk boundaries" in msg
    d.check_ring_all_reduce(ring, 4, settings)  # one ring per tensor: the sums are right
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, settings)
    msg = str(info.value)
    assert "on 4 ranks, rank 0 sent 8 messages for ONE all-reduce of the bucket [5 x 7, 1, " \
        "scalar] (37 elements), 3 tensors; a ring sends at most 2 (p - 1) = 6" in msg, msg
    assert "DDP puts its gradients into buckets" in msg
    assert "not correct yet on 2, 3 ranks" in msg and "correct runs only" in msg


@pytest.mark.slow
def test_summed_gradients_fail_both_dp_checks(tmp_path):
    ring = _write(tmp_path, "ring.py", RING)
    dp = _write(tmp_path, "dp_train.py", DP.replace("    for grad in grads:\n"
                                                    "        grad /= world\n", ""))
    settings = d.Settings(dp_world_sizes=(2,), dp_steps=3, timeout=120, group_timeout=20)
    with pytest.raises(AssertionError, match="That is the SUM over the ranks"):
        d.check_average_gradients(dp, ring, settings)
    with pytest.raises(AssertionError, match=r"differ from DDP's.*with torch\.distributed\."
                                             r"all_reduce too"):
        d.check_data_parallel(dp, ring, settings)


@pytest.mark.slow
def test_no_bucket_and_a_library_call_for_a_ring_in_one_job(tmp_path):
    """One all-reduce per parameter gives the right means but fails average_gradients's
    check; the training check runs the student's ring with the collectives switched off,
    as the ring's own checks do."""
    library = RING.replace("    flat = torch.cat(", "    dist.all_reduce_coalesced(tensors)\n"
                           "    return tensors\n    flat = torch.cat(")
    ring = _write(tmp_path, "ring.py", library)
    dp = _write(tmp_path, "dp_train.py", DP.replace(
        "    all_reduce(grads)\n", "    for grad in grads:\n        all_reduce([grad])\n"))
    settings = d.Settings(dp_world_sizes=(2,), dp_steps=2, timeout=120, group_timeout=20)
    with pytest.raises(AssertionError, match=r"average_gradients on 2 ranks: rank 0 called "
                                             r"all_reduce 4 times, on buckets of \[35, 7, 21, "
                                             r"3\] values: the means are right"):
        d.check_average_gradients(dp, ring, settings)
    with pytest.raises(AssertionError, match=r"train_data_parallel on 2 ranks: rank 0: your "
                                             r"ring_all_reduce called torch\.distributed\."
                                             r"all_reduce_coalesced: write the ring yourself"):
        d.check_data_parallel(dp, ring, settings)


# Every other door to an all-reduce, by world size (and by rank on 2): all must be shut.
# A forbidden call ends the world's cases, so each world shows its door on its first case.
DOORS = RING.replace('    MODE = {2: "send", 3: "isend"}.get(world, "batch")\n', '''\
    MODE = "batch"
    if world == 2 and rank == 0:
        dist.all_reduce_coalesced(tensors)
        return tensors
    if world == 2:  # the process group's own method
        dist.group.WORLD.allreduce([flat]).wait()
        return tensors
    if world == 3:
        import torch.distributed._functional_collectives as fc
        flat.copy_(fc.all_reduce(flat, "sum", dist.group.WORLD))
        return tensors
    if world == 4:
        from course_utils.training.collectives import ring_all_reduce as course_ring
        return course_ring(flat)
''')


@pytest.mark.slow
def test_every_collective_door_is_shut_while_the_ring_runs(tmp_path):
    ring = _write(tmp_path, "ring.py", DOORS)
    settings = d.Settings(world_sizes=(2, 3, 4), lengths=(5,), timeout=180, group_timeout=20)
    run = d.ring_run(ring, settings)
    doors = {(2, 0): "all_reduce_coalesced", (2, 1): "ProcessGroup.allreduce",
             **{(3, r): "_functional_collectives.all_reduce" for r in range(3)},
             **{(4, r): "course_utils.training.collectives.ring_all_reduce"
                for r in range(4)}}
    for world in (2, 3, 4):
        records = d._world_records(run, world)
        assert set(records) == set(range(world)), (world, run.failure, run.message)
        for rank, record in records.items():
            first = record["cases"][0]
            assert first["status"] == "forbidden", (world, rank, first)
            assert doors[world, rank] in first["error"]["message"], first["error"]
            assert first["sent"] == 0 and first["messages"] == 0
    with pytest.raises(AssertionError, match="write the ring yourself, with point-to-point"):
        d.check_ring_all_reduce(ring, 4, settings)


def test_list_settings_are_given_as_for_every_notebook():
    """`-p WORLD_SIZES 3,5` and `-p LENGTHS [1,2,7]` (text, as hpdl run passes them)."""
    from course_utils.profiles import PROFILES

    cfg = {**PROFILES["quick"]["lab4_distributed"], "world_sizes": "3,5",
           "lengths": "[1, 2, 7]", "dp_world_sizes": "2 3"}
    settings = d.settings(cfg)
    assert settings.world_sizes == (3, 5) and settings.lengths == (1, 2, 7)
    assert settings.dp_world_sizes == (2, 3)
