"""course_utils.training.collectives: chunking, bandwidths, the alpha-beta model and its fit,
and the naive and ring all-reduce (launched on 2 and 3 Gloo processes, one launch each)."""

import math
import textwrap

import numpy as np
import pytest
import torch

from course_utils.errors import UsageError
from course_utils.training import collectives as coll


# ------------------------------------------------------------------------ pure functions
@pytest.mark.parametrize("n, p", [(0, 1), (1, 1), (1, 4), (7, 2), (7, 3), (1001, 4), (12, 4)])
def test_chunk_bounds_cover_the_tensor_like_tensor_split(n, p):
    bounds = coll.chunk_bounds(n, p)
    assert len(bounds) == p and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [len(c) for c in torch.tensor_split(torch.arange(n), p)]


@pytest.mark.parametrize("n, p, fragment", [(-1, 2, "n="), (3, 0, "world_size"),
                                            (2.5, 2, "n="), (3, True, "world_size")])
def test_chunk_bounds_bad_arguments(n, p, fragment):
    with pytest.raises(UsageError, match=fragment):
        coll.chunk_bounds(n, p)


def test_bus_factors_and_bandwidths_follow_nccl_tests():
    assert coll.bus_factor("all_reduce", 4) == pytest.approx(1.5)
    assert coll.bus_factor("all_reduce", 1) == 0.0
    assert coll.bus_factor("reduce_scatter", 4) == pytest.approx(0.75)
    assert coll.bus_factor("all_gather", 8) == pytest.approx(7 / 8)
    assert coll.bus_factor("broadcast", 8) == 1.0
    assert coll.algbw(2e9, 2.0) == pytest.approx(1e9)
    assert coll.busbw(2e9, 2.0, 4) == pytest.approx(1.5e9)
    np.testing.assert_allclose(coll.busbw([1e6, 2e6], [1e-3, 1e-3], 2), [1e9, 2e9])
    with pytest.raises(UsageError, match="collective='allreduce'"):
        coll.bus_factor("allreduce", 2)


def test_message_sizes_and_their_validation():
    assert coll.message_sizes(1024, 4 * 2**20, 8) == [2**10, 2**13, 2**16, 2**19, 2**22]
    assert coll.message_sizes(8, 8, 2) == [8]
    assert coll.message_sizes(3, 20, 2) == [3, 6, 12]
    for args, fragment in [((0, 8, 2), "min_bytes=0"), ((8, -1, 2), "max_bytes=-1"),
                           ((16, 8, 2), "max_bytes=8"), ((8, 64, 1), "size_factor=1"),
                           ((8, 64, 2.5), "size_factor=2.5")]:
        with pytest.raises(UsageError, match=fragment):
            coll.message_sizes(*args)


def test_world_sizes_lengths_backend_and_bench_ranks_are_validated():
    assert coll.check_world_sizes((2, 3, 4)) == [2, 3, 4]
    assert coll.check_lengths([1, 7]) == [1, 7]
    assert coll.check_world_sizes("2,3,4") == [2, 3, 4]  # as `hpdl run -p` passes it
    assert coll.check_world_sizes("[3]") == [3] and coll.check_world_sizes(5) == [5]
    assert coll.check_lengths("(1, 7, 1001)") == [1, 7, 1001]
    for bad in ([], [1, 2], ["2"], 1, "2,x", "", None):
        with pytest.raises(UsageError, match="world_sizes="):
            coll.check_world_sizes(bad)
    for bad in ([], [0], [3.5], "1,-2"):
        with pytest.raises(UsageError, match="lengths="):
            coll.check_lengths(bad)
    assert coll.pick_backend(2, 0) == "gloo"
    assert coll.pick_backend(2, 2) == "nccl"
    assert coll.pick_backend(4, 2) == "gloo"  # NCCL needs a GPU per rank
    assert coll.pick_backend(2, 8, "gloo") == "gloo"
    with pytest.raises(UsageError, match="backend='nccl' needs one GPU per rank"):
        coll.pick_backend(4, 2, "nccl")
    with pytest.raises(UsageError, match="backend='mpi' is not valid"):
        coll.pick_backend(2, 0, "mpi")
    assert coll.bench_world_size("auto", 8) == 8
    assert coll.bench_world_size("auto", 1) == 2
    assert coll.bench_world_size(3, 0) == 3
    for bad in (1, "all", 2.0):
        with pytest.raises(UsageError, match="bench_nproc="):
            coll.bench_world_size(bad, 0)


def test_format_bytes():
    assert coll.format_bytes(512) == "512 B"
    assert coll.format_bytes(1024) == "1 KiB"
    assert coll.format_bytes(3 * 2**20) == "3 MiB"
    assert coll.format_bytes(2**30) == "1 GiB"


def test_alpha_beta_model_of_naive_and_ring():
    alpha, beta, n = 10e-6, 1 / 25e9, 100e6
    assert coll.ring_all_reduce_time(n, 1, alpha, beta) == 0.0
    assert coll.naive_all_reduce_time(n, 4, alpha, beta) == pytest.approx(6 * (alpha + n * beta))
    assert coll.ring_all_reduce_time(n, 4, alpha, beta) == pytest.approx(
        6 * alpha + 1.5 * n * beta)
    for p in (2, 3, 8, 64):  # ring never slower; its bandwidth term stays below 2 n beta
        ring = coll.ring_all_reduce_time(n, p, alpha, beta)
        assert ring <= coll.naive_all_reduce_time(n, p, alpha, beta)
        assert ring - 2 * (p - 1) * alpha < 2 * n * beta
    # without latency, naive / ring = p: the root does p times a ring rank's work
    assert coll.naive_all_reduce_time(n, 8, 0, beta) / coll.ring_all_reduce_time(
        n, 8, 0, beta) == pytest.approx(8)


@pytest.mark.parametrize("p", [2, 3, 4, 7])
@pytest.mark.parametrize("n", [1, 5, 840, 1001])
def test_elements_sent(n, p):
    ring = [coll.elements_sent("ring", n, p, r) for r in range(p)]
    naive = [coll.elements_sent("naive", n, p, r) for r in range(p)]
    assert sum(ring) == 2 * (p - 1) * n  # each chunk makes p - 1 hops, twice
    if n % p == 0:
        assert ring == [2 * (p - 1) * n // p] * p
    assert naive == [(p - 1) * n] + [n] * (p - 1)
    assert coll.elements_sent("ring", n, 1, 0) == 0
    with pytest.raises(UsageError, match="algorithm='tree'"):
        coll.elements_sent("tree", n, p, 0)


def test_fit_alpha_beta_recovers_the_model():
    n = np.array([2.0**k for k in range(10, 27, 2)])
    factor = coll.bus_factor("all_reduce", 4)
    t = 30e-6 + n * factor / 12e9
    fit = coll.fit_alpha_beta(n, t, factor)
    assert fit.alpha == pytest.approx(30e-6, rel=1e-9)
    assert fit.bandwidth == pytest.approx(12e9, rel=1e-9)
    np.testing.assert_allclose(fit.time(n), t)
    np.testing.assert_allclose(fit.busbw(n), coll.busbw(n, t, 4))
    assert fit.busbw(1e15) == pytest.approx(12e9, rel=1e-3)  # large messages: the link
    noisy = t * np.exp(np.random.default_rng(0).normal(scale=0.05, size=t.size))
    rough = coll.fit_alpha_beta(n, noisy, factor)
    assert 20e-6 < rough.alpha < 45e-6 and 10e9 < rough.bandwidth < 14e9


def test_fit_alpha_beta_keeps_parameters_non_negative_and_checks_input():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    fit = coll.fit_alpha_beta(n, n / 1e9 * np.array([1.0, 1.0, 1.1, 1.0]))  # no latency
    assert fit.alpha >= 0 and fit.beta > 0
    flat = coll.fit_alpha_beta(n, np.array([2e-5, 1e-5, 1e-5, 1e-5]))  # no bandwidth term
    assert flat.beta == 0 and flat.alpha > 0 and math.isinf(flat.bandwidth)
    with pytest.raises(UsageError, match="two different sizes"):
        coll.fit_alpha_beta([8, 8], [1.0, 2.0])
    with pytest.raises(UsageError, match="times > 0"):
        coll.fit_alpha_beta([8, 16], [1.0, 0.0])
    with pytest.raises(UsageError, match="one length"):
        coll.fit_alpha_beta([8, 16, 32], [1.0, 2.0])


def test_rank_inputs_and_references():
    a, b = coll.rank_input(1001, 0, seed=3), coll.rank_input(1001, 1, seed=3)
    assert a.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.equal(a, coll.rank_input(1001, 0, seed=3))
    assert torch.equal(a, a.round()) and a.abs().max() <= 50
    inputs = [coll.rank_input(7, r) for r in range(3)]
    total = coll.reference_all_reduce(inputs)
    assert torch.equal(total, inputs[0] + inputs[1] + inputs[2])
    assert torch.equal(torch.cat([coll.reference_reduce_scatter(inputs, r) for r in range(3)]),
                       total)
    assert torch.equal(coll.reference_all_gather(inputs)[7:14], inputs[1])


def test_distributed_functions_need_an_initialised_group():
    with pytest.raises(UsageError, match="dist.init"):
        coll.ring_all_reduce(torch.zeros(3))


# --------------------------------------------------------- distributed: one launch each
WORKER = """
import torch
import torch.distributed as tdist
from course_utils.training import collectives as coll, dist
from course_utils.errors import UsageError

info = dist.init()
rank, p = info.rank, info.world_size
out = {"exact": {}, "float": {}, "sent": {}, "group": {}}
for n in (1, 2, 5, 1001):
    inputs = [coll.rank_input(n, r, seed=1) for r in range(p)]
    total = coll.reference_all_reduce(inputs)
    for name, fn in (("naive", coll.naive_all_reduce), ("ring", coll.ring_all_reduce)):
        coll.TRAFFIC.reset()
        t = inputs[rank].clone()
        assert fn(t) is t
        out["exact"][f"{name} {n}"] = bool(torch.equal(t, total))
        out["sent"][f"{name} {n}"] = coll.TRAFFIC.sent
    t = inputs[rank].clone()
    own = coll.ring_reduce_scatter(t)
    out["exact"][f"reduce_scatter {n}"] = bool(
        torch.equal(own, coll.reference_reduce_scatter(inputs, rank)))
    a, b = coll.chunk_bounds(n, p)[rank]
    t = torch.full((n,), -1.0)
    t[a:b] = inputs[rank][a:b]
    coll.ring_all_gather(t)
    want = torch.cat([inputs[r][x:y] for r, (x, y) in enumerate(coll.chunk_bounds(n, p))])
    out["exact"][f"all_gather {n}"] = bool(torch.equal(t, want))
# random floats, a 2-D tensor: close to dist.all_reduce (the order of the sums differs)
x = torch.randn(33, 5, generator=torch.Generator().manual_seed(rank))
for name, fn in (("naive", coll.naive_all_reduce), ("ring", coll.ring_all_reduce)):
    y, ref = x.clone(), x.clone()
    fn(y)
    tdist.all_reduce(ref)
    out["float"][name] = float((y - ref).abs().max())
try:
    coll.ring_all_reduce(x.t())
except UsageError as err:
    out["non_contiguous"] = str(err)
if p >= 3:  # a sub-group whose group ranks differ from the global ones
    members = [1, 2]
    group = tdist.new_group(ranks=members)
    if rank in members:
        t = coll.rank_input(11, rank).clone()
        ref = t.clone()
        coll.ring_all_reduce(t, group=group)
        tdist.all_reduce(ref, group=group)
        out["group"]["ring"] = bool(torch.equal(t, ref))
        t = coll.rank_input(11, rank).clone()
        coll.naive_all_reduce(t, group=group)
        out["group"]["naive"] = bool(torch.equal(t, ref))
dist.save_result(out)
dist.finish()
"""


@pytest.mark.slow
@pytest.mark.parametrize("p", [2, 3])
def test_naive_and_ring_all_reduce_match_dist_all_reduce(tmp_path, p):
    from course_utils.training import dist

    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    result = dist.launch(script, nproc=p, backend="gloo", out_dir=tmp_path / "out",
                         timeout=150, show="failed")
    assert sorted(result.outputs) == list(range(p))
    for rank, out in result.outputs.items():
        assert out["exact"] and all(out["exact"].values()), (rank, out["exact"])
        assert max(out["float"].values()) < 1e-5, out["float"]
        assert "contiguous" in out["non_contiguous"]
        for key, sent in out["sent"].items():
            name, n = key.split()
            assert sent == 4 * coll.elements_sent(name, int(n), p, rank), (rank, key)
        if p >= 3 and rank in (1, 2):
            assert out["group"] == {"ring": True, "naive": True}
