"""Tensor parallelism from scratch: Megatron-LM's MLP, checked against one process.

``Y = fc2(relu(fc1(X)))`` with ``fc1`` split by output features (column-parallel: rank
``r`` holds rows ``r`` of ``W1`` and ``b1``) and ``fc2`` by input features (row-parallel: the
matching columns of ``W2``). Each rank computes its hidden features from the full input,
multiplies them by its columns of ``W2``, and one all-reduce sums the partial outputs
(``parallelism.TensorParallelMLP``). In the backward pass the output gradient needs no
communication, the weight gradients are local, and one all-reduce sums the input gradient.

Every tensor-parallel size in ``--tp-sizes`` that divides the world size is checked, on
every group of consecutive ranks of that size (with 4 ranks and size 2: groups {0, 1} and
{2, 3}, built with ``new_group``, as a real job combines tensor and data parallelism), and
for every hidden size in ``--hidden`` (sizes the group does not divide give shards that
differ by one feature). Every rank also computes the whole MLP itself and compares: the
output, the input gradient, and its shards of the weight gradients. It saves the largest
differences, its shard sizes, and the bytes the two all-reduces carried.

By hand, from the repository root::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=4 \\
        lessons/unit3_multi_gpu/scripts/beyond_tensor_parallel.py --hidden 16 10

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=4, args=[...])``.
"""

import argparse

import torch
import torch.distributed as tdist

from course_utils.training import dist, parallelism


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().cpu(), want.detach().cpu()
    return float((got - want).abs().max()) if got.shape == want.shape else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=12, help="input = output features")
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 10])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--tp-sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    info = dist.init()
    rank, world, device = info.rank, info.world_size, info.device
    dtype = getattr(torch, args.dtype)
    print(f"rank {rank} of {world}: backend {info.backend}, device {device}")
    # every rank must create every group, in the same order, even those it is not in
    groups = {}
    for tp in args.tp_sizes:
        if world % tp:
            print(f"tensor-parallel size {tp} does not divide world size {world}: skipped")
            continue
        for first in range(0, world, tp):
            ranks = list(range(first, first + tp))
            group = tdist.new_group(ranks) if tp < world else None  # None: the whole world
            if rank in ranks:
                groups[tp] = (group, ranks)

    checks = []
    for tp, (group, ranks) in groups.items():
        tp_rank = ranks.index(rank)
        for hidden in args.hidden:
            torch.manual_seed(args.seed)  # the same full MLP and data on every rank
            fc1 = torch.nn.Linear(args.features, hidden).to(device, dtype)
            fc2 = torch.nn.Linear(hidden, args.features).to(device, dtype)
            x = torch.randn(args.batch, args.features, device=device, dtype=dtype)
            target = torch.randn(args.batch, args.features, device=device, dtype=dtype)

            # the single-process reference
            x_ref = x.clone().requires_grad_()
            y_ref = fc2(torch.relu(fc1(x_ref)))
            ((y_ref - target) ** 2).mean().backward()

            # this rank's shard of the tensor-parallel MLP
            tp_mlp = parallelism.TensorParallelMLP(fc1, fc2, tp_rank, tp, group)
            x_tp = x.clone().requires_grad_()
            y_tp = tp_mlp(x_tp)
            ((y_tp - target) ** 2).mean().backward()

            start, stop = tp_mlp.hidden_range
            errors = {
                "output": max_error(y_tp, y_ref),
                "grad input": max_error(x_tp.grad, x_ref.grad),
                "grad W1 rows": max_error(tp_mlp.w1.grad, fc1.weight.grad[start:stop]),
                "grad b1": max_error(tp_mlp.b1.grad, fc1.bias.grad[start:stop]),
                "grad W2 columns": max_error(tp_mlp.w2.grad, fc2.weight.grad[:, start:stop]),
                "grad b2": max_error(tp_mlp.b2.grad, fc2.bias.grad),
            }
            local = sum(p.numel() for p in tp_mlp.parameters())
            full = sum(p.numel() for p in (*fc1.parameters(), *fc2.parameters()))
            checks.append({"tp": tp, "group": ranks, "tp_rank": tp_rank, "hidden": hidden,
                           "hidden_range": [start, stop], "errors": errors,
                           "local_params": local, "full_params": full,
                           "allreduce_bytes": 2 * y_tp.numel() * y_tp.element_size()})
            print(f"rank {rank}: tp={tp} group {ranks} hidden={hidden}: features "
                  f"[{start}, {stop}), largest error {max(errors.values()):.2e}")
    dist.save_result({"world_size": world, "backend": info.backend, "dtype": args.dtype,
                      "checks": checks})
    dist.finish()


if __name__ == "__main__":
    main()
