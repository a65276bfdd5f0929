"""Every collective of lesson 12, checked against its definition on one world size.

Each rank can compute every rank's input (``collectives.rank_input``: small integers, so
every sum is exact), so it checks each result against the definition locally:
send/recv around a ring; broadcast, reduce, all-reduce, all-gather and reduce-scatter of
``torch.distributed``; the naive and ring all-reduce of ``course_utils.training.collectives``
(written with send/recv) against ``dist.all_reduce``; the ring's reduce-scatter and
all-gather halves; and, with 3 or more ranks, the ring on a sub-group (the even ranks).
It saves the largest absolute error of every check (0.0 = exact) and the bytes each
hand-written all-reduce sent, for the notebook to assert.

By hand, from the repository root (Gloo on CPUs, NCCL with one GPU per rank)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=3 \\
        lessons/unit3_multi_gpu/scripts/collectives_demo.py --lengths 1 7 1001

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=3, args=[...])``.
"""

import argparse

import torch
import torch.distributed as tdist

from course_utils.training import collectives as coll
from course_utils.training import dist


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference (inf if the shapes differ)."""
    got, want = got.detach().cpu(), want.detach().cpu()
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max()) if got.numel() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 7, 1001],
                        help="tensor lengths (elements) to check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bug-rank", type=int, default=-1,
                        help="put a deliberate bug on this rank (the failure demo)")
    args = parser.parse_args()

    info = dist.init()
    rank, p, device = info.rank, info.world_size, info.device
    print(f"rank {rank} of {p}: backend {info.backend}, device {device}")
    errors: dict[str, float] = {}
    sent: dict[str, int] = {}

    if rank == args.bug_rank:  # a deliberate off-by-one: the last chunk is number p - 1
        last_start, last_stop = coll.chunk_bounds(args.lengths[0], p)[p]

    # send/recv: a token goes once around the ring 0 -> 1 -> ... -> p-1 -> 0, and every
    # rank adds its rank number to it.
    token = torch.zeros(1, device=device)
    if rank == 0:
        tdist.send(token, dst=1)
        tdist.recv(token, src=p - 1)
        errors["send/recv token ring"] = max_error(token, torch.tensor([p * (p - 1) / 2]))
    else:
        tdist.recv(token, src=rank - 1)
        token += rank
        tdist.send(token, dst=(rank + 1) % p)
    print(f"rank {rank}: token {token.item():g}")

    evens = tdist.new_group(ranks=list(range(0, p, 2))) if p >= 3 else None
    for n in args.lengths:
        inputs = [coll.rank_input(n, k, args.seed) for k in range(p)]
        total = coll.reference_all_reduce(inputs)
        mine = inputs[rank].to(device)

        t = mine.clone()
        tdist.broadcast(t, src=p - 1)  # everyone gets the last rank's tensor
        errors[f"broadcast n={n}"] = max_error(t, inputs[p - 1])

        t = mine.clone()
        tdist.reduce(t, dst=0)  # only rank 0's result is defined
        if rank == 0:
            errors[f"reduce n={n}"] = max_error(t, total)

        builtin = mine.clone()
        tdist.all_reduce(builtin)
        errors[f"all_reduce n={n}"] = max_error(builtin, total)

        parts = [torch.empty_like(mine) for _ in range(p)]
        tdist.all_gather(parts, mine)
        errors[f"all_gather n={n}"] = max_error(torch.cat(parts),
                                                coll.reference_all_gather(inputs))

        chunks = [mine[a:b].clone() for a, b in coll.chunk_bounds(n, p)]  # uneven sizes
        out = torch.empty_like(chunks[rank])
        tdist.reduce_scatter(out, chunks)
        errors[f"reduce_scatter n={n}"] = max_error(
            out, coll.reference_reduce_scatter(inputs, rank))

        for name, all_reduce in (("naive", coll.naive_all_reduce),
                                 ("ring", coll.ring_all_reduce)):
            coll.TRAFFIC.reset()
            t = mine.clone()
            all_reduce(t)
            sent[f"{name} n={n}"] = coll.TRAFFIC.sent
            errors[f"{name} vs dist.all_reduce n={n}"] = max_error(t, builtin)

        t = mine.clone()
        own = coll.ring_reduce_scatter(t)
        errors[f"ring_reduce_scatter n={n}"] = max_error(
            own, coll.reference_reduce_scatter(inputs, rank))
        start, stop = coll.chunk_bounds(n, p)[rank]
        t = torch.zeros_like(mine)
        t[start:stop] = mine[start:stop]  # each rank brings only its own chunk
        coll.ring_all_gather(t)
        errors[f"ring_all_gather n={n}"] = max_error(t, torch.cat(
            [inputs[k][a:b] for k, (a, b) in enumerate(coll.chunk_bounds(n, p))]))

        if evens is not None and rank % 2 == 0:  # a sub-group: ranks 0, 2, 4, ...
            t, want = mine.clone(), mine.clone()
            coll.ring_all_reduce(t, group=evens)
            tdist.all_reduce(want, group=evens)
            errors[f"ring on the even ranks n={n}"] = max_error(t, want)
            errors[f"even ranks' sum n={n}"] = max_error(want, sum(inputs[0::2]))

    worst = max(errors.values())
    print(f"rank {rank}: {len(errors)} checks, largest error {worst:g}")
    dist.save_result({"rank": rank, "world_size": p, "backend": info.backend,
                      "device": device, "errors": errors, "sent_bytes": sent,
                      "element_size": 4})
    dist.finish()


if __name__ == "__main__":
    main()
