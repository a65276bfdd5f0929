"""course_utils.checks.distributed: lab 4's checks pass a correct answer and explain wrong ones.

Fast tests feed the notebook-side verdicts with made-up job results; the tests marked
``slow`` launch real Gloo jobs (4 launches in all, each a few seconds on an idle machine):
a correct ring and training loop, a ring that drops the remainder on 2 ranks and deadlocks
on 3, and a loop that sums gradients instead of averaging them.
"""

import textwrap

import pytest

from course_utils.checks import distributed as d
from course_utils.errors import UsageError
from course_utils.training import dist

RING = '''
import torch
import torch.distributed as dist


def chunk_bounds(n, world_size):
    base, extra = divmod(n, world_size)
    bounds, start = [], 0
    for k in range(world_size):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def ring_all_reduce(tensor):
    rank, world = dist.get_rank(), dist.get_world_size()
    flat = tensor.view(-1)
    bounds = chunk_bounds(flat.numel(), world)
    right, left = (rank + 1) % world, (rank - 1) % world
    MODE = None

    def exchange(send, recv):
        (a, b), (c, e) = send, recv
        got = torch.empty(e - c, dtype=flat.dtype)
        if MODE == "recv first" and e > c:
            dist.recv(got, left)
        ops = []
        if b > a:
            ops.append(dist.P2POp(dist.isend, flat[a:b], right))
        if e > c and MODE != "recv first":
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
    return tensor
'''

# On 3 ranks every rank first waits to receive: a deadlock. On 2 ranks the chunks are
# n // p elements each: the last n % p elements are never reduced.
BROKEN_RING = RING.replace("    MODE = None\n", '    MODE = "recv first" if world == 3 else None\n'
                           ).replace("base, extra = divmod(n, world_size)",
                                     "base, extra = n // world_size, 0")

DP = '''
import torch
import torch.distributed as dist
import torch.nn.functional as F


def average_gradients(model, all_reduce):
    world = dist.get_world_size()
    for param in model.parameters():
        all_reduce(param.grad)
        param.grad /= world


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
def chunk_bounds(n, world_size):
    """Docstring."""
    # YOUR CODE HERE
    raise NotImplementedError("Lab answer: write your code here")


def ring_all_reduce(tensor):
    rank = 0
    # YOUR CODE HERE
    raise NotImplementedError("Lab answer: write your code here")
    return tensor
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
    from course_utils import profiles

    for name in ("quick", "full"):
        s = d.settings(profiles.PROFILES[name]["lab4_distributed"], seed=3)
        assert s.seed == 3 and min(s.world_sizes) >= 2 and s.group_timeout < s.timeout
        assert all(n % p for n in s.lengths for p in s.world_sizes if n > 1)


@pytest.mark.parametrize("knob, value, fragment", [
    ("world_sizes", (1, 2), "world_sizes=(1, 2) is not valid; give integers from 2 to 8"),
    ("world_sizes", (2, 16), "world_sizes"), ("world_sizes", [], "world_sizes"),
    ("lengths", (0,), "lengths=(0,) is not valid"), ("dp_world_sizes", "2,x", "dp_world_sizes"),
    ("dp_steps", 0, "dp_steps=0 is not valid; it must be an integer >= 1"),
    ("dp_batch", 2.5, "dp_batch"), ("dp_lr", -0.1, "dp_lr=-0.1 is not valid"),
    ("timeout", "long", "timeout='long' is not valid"),
    ("group_timeout", 500, "group_timeout=500 is not valid; it must be less than timeout"),
])
def test_bad_settings_name_the_knob(knob, value, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        d.settings(_cfg(**{knob: value}))


def test_reference_chunks_and_traffic_bound():
    assert d.reference_chunk_bounds(1001, 4) == [(0, 251), (251, 501), (501, 751), (751, 1001)]
    assert d.reference_chunk_bounds(1, 3) == [(0, 1), (1, 1), (1, 1)]
    assert d.ring_send_bound(1001, 4) == 2 * 3 * 251 and d.ring_send_bound(12, 3) == 16


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
    with pytest.raises(AssertionError, match=r"chunk_bounds\(1001, 4\) returned .* one "
                                             r"element more"):
        d.check_chunk_bounds(_write(tmp_path, "floor.py", BROKEN_RING))
    with pytest.raises(NotImplementedError):
        d.check_chunk_bounds(_write(tmp_path, "todo.py", UNFINISHED))
    none = RING.replace("    return bounds\n", "")
    with pytest.raises(AssertionError, match="returned None"):
        d.check_chunk_bounds(_write(tmp_path, "none.py", none))


def test_unfinished_answers_fail_fast_without_a_launch(tmp_path, no_launch):
    ring = _write(tmp_path, "ring.py", UNFINISHED)
    dp = _write(tmp_path, "dp_train.py", DP.replace(
        "    world = dist.get_world_size()\n    for",
        "    raise NotImplementedError('todo')\n    for"))
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
SETTINGS = d.Settings(world_sizes=(2, 3), lengths=(1, 5, 1001), dp_world_sizes=(2,),
                      group_timeout=3, timeout=120)


def _case(shape, status="ok", **extra):
    n = 1
    for s in shape:
        n *= s
    case = {"shape": list(shape), "n": n, "status": status, "seconds": 0.01,
            "sent": 0, "dests": []}
    case.update(extra)
    return case


def _ring_outputs(world_cases):
    """{rank: {str(world): {"cases": [...]}}} from {world: {rank: [cases]}}."""
    outputs = {}
    for world, ranks in world_cases.items():
        for rank, cases in ranks.items():
            outputs.setdefault(rank, {})[str(world)] = {"cases": cases}
    return outputs


def _all_ok(world, sent=None, dests=None):
    n = max(SETTINGS.lengths)
    cases = {}
    for r in range(world):
        row = [_case(shape) for shape in d.cases(SETTINGS)]
        row[-1] = _case((n,), sent=(sent or {}).get(r, 0),
                        dests=(dests or {}).get(r, [(r + 1) % world]))
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


def test_mismatch_message_names_world_length_index_and_chunk_hint(fake_run):
    set_run, ring, _ = fake_run
    cases = _all_ok(2)
    mismatch = {"count": 1, "index": 1000, "got": 3.5, "expected": 7.25, "chunk_index": 1,
                "chunk": [501, 1001], "run": [1000, 1001], "subset": [1],
                "unchanged_all": False, "returned_ok": False, "zeros": False,
                "tail_only": True}
    cases[1][-1] = _case((1001,), "mismatch", mismatch=mismatch)
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError) as info:
        d.check_ring_all_reduce(ring, 2, SETTINGS)
    msg = str(info.value)
    for fragment in ("on 2 ranks, length 1001: rank 1", "first at index 1000", "got 3.5",
                     "expected 7.25", "hold rank 1's own input", "last n % p = 1",
                     "It works for a 4 x 3 tensor", "chunk boundaries"):
        assert fragment in msg, (fragment, msg)


def test_partial_sum_and_in_place_hints(fake_run):
    set_run, ring, _ = fake_run
    base = {"count": 5, "index": 0, "got": 1.0, "expected": 2.0, "chunk_index": 0,
            "chunk": [0, 2], "run": [0, 5], "returned_ok": False, "zeros": False,
            "tail_only": False}
    cases = _all_ok(3)
    cases[0][2] = _case((5,), "mismatch", mismatch={**base, "subset": [0, 2],
                                                    "unchanged_all": False})
    set_run(_ring_outputs({3: cases}))
    with pytest.raises(AssertionError, match=r"sum over ranks \[0, 2\] only, a partial sum"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)
    d._RUNS.clear()
    cases[0][2] = _case((5,), "mismatch", mismatch={**base, "subset": [0],
                                                    "unchanged_all": True,
                                                    "returned_ok": True})
    set_run(_ring_outputs({3: cases}))
    with pytest.raises(AssertionError, match="must work in place.*returning a new tensor"):
        d.check_ring_all_reduce(ring, 3, SETTINGS)


def test_timeout_forbidden_raised_and_not_implemented_in_a_rank(fake_run):
    set_run, ring, _ = fake_run
    error = {"type": "RuntimeError", "message": "Timed out waiting 3000ms for recv",
             "where": " (ring.py line 9: `dist.recv(got, left)`)"}
    cases = {r: [_case(d.MATRIX_SHAPE, "timeout", error=error)] for r in range(2)}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match=r"waited more than 3 s .*line 9.*deadlocks"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {0: [_case(d.MATRIX_SHAPE, "forbidden", error={"message": "all_reduce"})],
             1: [_case(d.MATRIX_SHAPE, "peer", error={"type": "RuntimeError",
                                                       "message": "Connection closed by peer"})]}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match="called torch.distributed.all_reduce.*point-to"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {0: [_case(d.MATRIX_SHAPE, "peer", error={"type": "RuntimeError",
                                                       "message": "Connection reset by peer"})],
             1: [_case(d.MATRIX_SHAPE, "raised", error={"type": "IndexError", "where": "",
                                                         "message": "list index out of range"})]}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(AssertionError, match="rank 1 raised IndexError: list index"):
        d.check_ring_all_reduce(ring, 2, SETTINGS)

    cases = {r: [_case(d.MATRIX_SHAPE, "not implemented", error={"message": ""})]
             for r in range(2)}
    set_run(_ring_outputs({2: cases}))
    with pytest.raises(NotImplementedError):
        d.check_ring_all_reduce(ring, 2, SETTINGS)


def test_a_stopped_job_fails_with_the_deadlock_hint(fake_run):
    set_run, ring, _ = fake_run
    partial = {r: {"3": {"cases": [_case(d.MATRIX_SHAPE)]},
                   "running": {"world": 3, "shape": [1]}} for r in range(3)}
    set_run(partial, failure="timeout", message="the grading job ran past its timeout")
    with pytest.raises(AssertionError, match=r"did not finish: the grading job ran past its "
                                             r"timeout, while 3 ranks were running "
                                             r"ring_all_reduce on length 1\. Did you send"):
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
    assert d.ring_run(ring, SETTINGS) is run and len(calls) == 1  # cached
    ring.write_text(RING + "\n# changed\n")
    d.ring_run(ring, SETTINGS)
    assert len(calls) == 2  # the script changed: a new launch
    assert (tmp_path / "grader_worker.py").read_text() == d.WORKER_STUB


def test_traffic_verdicts(fake_run):
    set_run, ring, _ = fake_run
    n = max(SETTINGS.lengths)
    set_run(_ring_outputs({2: _all_ok(2, sent={0: 1001, 1: 1001}),
                           3: _all_ok(3, sent={0: 1334, 1: 1335, 2: 1335})}))
    table = d.check_ring_traffic(ring, SETTINGS)
    assert table[3]["bound"] == 1336 and table[3]["naive_root"] == 2 * n
    d._RUNS.clear()
    set_run(_ring_outputs({2: _all_ok(2, sent={0: 1001, 1: 1001}),
                           3: _all_ok(3, sent={0: 2002, 1: 1001, 2: 1001},
                                      dests={0: [1, 2], 1: [0], 2: [0]})}))
    seen = {}
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, SETTINGS, result=seen)
    assert "rank 0 sent to rank(s) [1, 2]" in str(info.value)
    assert "rank 0 sent 2002 elements" in str(info.value) and "not whole tensors" in str(
        info.value)
    assert seen[3]["sent"] == [2002, 1001, 1001]  # filled in before the assertion


def test_traffic_waits_for_correct_runs(fake_run):
    set_run, ring, _ = fake_run
    three = _all_ok(3)
    three[1][-1] = _case((1001,), "mismatch", mismatch={})
    set_run(_ring_outputs({2: _all_ok(2, sent={0: 1001, 1: 1001}), 3: three}))
    with pytest.raises(AssertionError, match="length 1001 is not correct yet on 3 ranks"):
        d.check_ring_traffic(ring, SETTINGS)


def test_errors_point_at_the_innermost_student_line(tmp_path):
    ring = _write(tmp_path, "ring.py", "def ring_all_reduce(t):\n    return 1 / 0\n")
    dp = _write(tmp_path, "dp_train.py", "def train(f):\n    return f(2)\n")
    try:
        d.load_module(dp, "m_dp").train(d.load_module(ring, "m_ring").ring_all_reduce)
    except ZeroDivisionError as exc:
        record = d._error_record(exc, [dp.resolve(), ring.resolve()])
    assert record["type"] == "ZeroDivisionError"
    assert record["where"] == " (ring.py line 2: `return 1 / 0`)"


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


def _average(r, out=None, calls=1):
    grads_in = [[1.0 + r, 2.0 * r], [float(r)]]
    return {"status": "ok", "calls": calls, "names": [["w", 2], ["b", 1]],
            "grads_in": grads_in, "grads_out": out(r, grads_in) if out else [[1.5, 1.0], [0.5]],
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
    set_run(_dp_outputs(2, average=lambda r: _average(r, calls=0)))
    with pytest.raises(AssertionError, match="never called all_reduce"):
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
    ]
    for train, pattern in cases:
        d._RUNS.clear()
        set_run(_dp_outputs(2, train=train))
        with pytest.raises(AssertionError, match=pattern):
            d.check_data_parallel(dp, ring, DP_SETTINGS)


# --------------------------------------------------------------------------- real launches
@pytest.mark.slow
def test_correct_answers_pass(tmp_path):
    ring, dp = _write(tmp_path, "ring.py", RING), _write(tmp_path, "dp_train.py", DP)
    settings = d.Settings(world_sizes=(2, 3), lengths=(1, 5, 1001), dp_world_sizes=(2,),
                          dp_steps=3, timeout=180, group_timeout=20)
    assert d.check_ring_all_reduce(ring, 2, settings)["cases"] == [[4, 3], [1], [5], [1001]]
    d.check_ring_all_reduce(ring, 3, settings)
    table = d.check_ring_traffic(ring, settings)
    assert table[3]["sent"] == [1334, 1335, 1335]  # every chunk but its own, then but right's
    d.check_average_gradients(dp, ring, settings)
    assert d.check_data_parallel(dp, ring, settings)[2] < 1e-12
    assert len(d._RUNS) == 2  # one launch per part


@pytest.mark.slow
def test_dropped_remainder_and_deadlock_in_one_job(tmp_path):
    ring = _write(tmp_path, "ring.py", BROKEN_RING)
    settings = d.Settings(world_sizes=(2, 3), lengths=(1, 5), timeout=120, group_timeout=4)
    with pytest.raises(AssertionError) as info:  # 3 ranks: all wait in recv
        d.check_ring_all_reduce(ring, 3, settings)
    assert "on 3 ranks" in str(info.value) and "waited more than 4 s" in str(info.value)
    assert "deadlocks" in str(info.value)
    with pytest.raises(AssertionError) as info:  # 2 ranks, after the deadlock: wrong chunks
        d.check_ring_all_reduce(ring, 2, settings)
    msg = str(info.value)
    assert "on 2 ranks, length 1: rank 0 holds wrong values" in msg, msg
    assert "first at index 0" in msg and "It works for a 4 x 3 tensor" in msg
    assert "chunk boundaries" in msg
    with pytest.raises(AssertionError, match="not correct yet on 2, 3 ranks .* correct runs only"):
        d.check_ring_traffic(ring, settings)


@pytest.mark.slow
def test_summed_gradients_fail_both_dp_checks(tmp_path):
    ring = _write(tmp_path, "ring.py", RING)
    dp = _write(tmp_path, "dp_train.py", DP.replace("        param.grad /= world\n", ""))
    settings = d.Settings(dp_world_sizes=(2,), dp_steps=3, timeout=120, group_timeout=20)
    with pytest.raises(AssertionError, match="That is the SUM over the ranks"):
        d.check_average_gradients(dp, ring, settings)
    with pytest.raises(AssertionError, match=r"differ from DDP's.*with torch\.distributed\."
                                             r"all_reduce too"):
        d.check_data_parallel(dp, ring, settings)


def test_traffic_must_go_right_and_carry_the_sums(fake_run):
    """Sending to the left neighbour, or fewer than 2 (p - 1) floor(n / p) elements (the
    sums travelled some other way), fails the traffic check."""
    set_run, ring, _ = fake_run
    set_run(_ring_outputs({2: _all_ok(2, sent={0: 1001, 1: 1001}),
                           3: _all_ok(3, sent={0: 1334, 1: 1335, 2: 1335},
                                      dests={0: [2], 1: [0], 2: [1]})}))
    with pytest.raises(AssertionError, match=r"rank 0 sent to rank\(s\) \[2\].*right neighbour"):
        d.check_ring_traffic(ring, SETTINGS)
    d._RUNS.clear()
    set_run(_ring_outputs({2: _all_ok(2, sent={0: 1001, 1: 1001}),
                           3: _all_ok(3, sent={0: 1334, 1: 7, 2: 1335})}))
    with pytest.raises(AssertionError) as info:
        d.check_ring_traffic(ring, SETTINGS)
    assert "rank 1 sent only 7 elements" in str(info.value)
    assert d.ring_send_floor(1001, 3) == 1332 and d.ring_send_bound(1001, 3) == 1336


# Every other door to an all-reduce, by world size (and by rank on 2): all must be shut.
# A forbidden call ends the world's cases, so each world shows its door on its first case.
DOORS = RING.replace("    MODE = None\n", '''    MODE = None
    if world == 2 and rank == 0:
        dist.all_reduce_coalesced([tensor])
        return tensor
    if world == 2:  # the process group's own method
        dist.group.WORLD.allreduce([tensor]).wait()
        return tensor
    if world == 3:
        import torch.distributed._functional_collectives as fc
        tensor.copy_(fc.all_reduce(tensor, "sum", dist.group.WORLD))
        return tensor
    if world == 4:
        from course_utils.training.collectives import ring_all_reduce as course_ring
        return course_ring(tensor)
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
            assert first["sent"] == 0
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
