"""Per-rank memory of DDP, ZeRO-1 and FSDP2 (``fully_shard``), measured, on one MLP.

Every rank trains the same MLP (``course_utils.models.mlp``, fp32, Adam) for a few steps
four times, on the same global batch (each rank reads its own ``--batch-per-rank`` rows):

1. a single process on the whole global batch (the reference, computed on every rank);
2. ``DistributedDataParallel``: a full copy of parameters, gradients and Adam's state;
3. ZeRO stage 1: DDP with ``ZeroRedundancyOptimizer`` (Adam's state sharded by parameter);
4. FSDP2: ``fully_shard`` on every ``Linear``, then on the whole model (parameters,
   gradients and Adam's state sharded, row-wise, as DTensors).

Then it runs the four trainings once more in float64 with plain SGD (``--sgd-lr``), the
exactness check: there only the order of the additions differs between the runs (the
all-reduce and the reduce-scatter sum the ranks' gradients in another order than one
process sums its batch), so the final parameters must agree to about 1e-15 relative; Adam
(the memory runs) divides by the root of each element's running mean square and so
amplifies rounding where a gradient is almost zero, which makes it a poor test of
equivalence.

After the last step it counts the bytes this rank holds in parameters, gradients and
optimizer state (``parallelism.training_state_bytes``: a DTensor counts its local shard)
and, on a GPU, the peak of ``torch.cuda.max_memory_allocated`` of each phase. It saves
the losses of every step, the bytes, the parameter shapes, and the largest (and the
relative) difference between each run's final parameters and the reference's.

By hand, from the repository root (Gloo on CPUs, NCCL with one GPU per rank)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        lessons/unit3_multi_gpu/scripts/beyond_fsdp_memory.py --widths 50 30 20

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, args=[...])``.
"""

import argparse
import gc

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils import models
from course_utils.training import dist, parallelism


def make_model(args, device: str) -> torch.nn.Module:
    """The same initial MLP on every rank and in every phase (same seed)."""
    torch.manual_seed(args.seed)
    return models.mlp(args.in_features, args.widths, args.classes).to(device)


def full_parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    """The whole parameters (an FSDP DTensor is all-gathered with ``full_tensor``)."""
    return [(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().cpu()
            for p in model.parameters()]


def difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> dict[str, float]:
    """Largest absolute and relative (L2 norm) difference of two lists of parameters."""
    x, y = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return {"max_abs": float((x - y).abs().max()),
            "relative": float((x - y).norm() / y.norm())}


def train(model, optimizer, X, y, steps: int, *, global_mean: bool) -> list[float]:
    """``steps`` optimizer steps on (X, y); with ``global_mean`` the loss reported is the
    mean over the ranks (= the global batch's loss, since every rank has as many rows)."""
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        value = loss.detach().clone()
        if global_mean:
            tdist.all_reduce(value)
            value /= tdist.get_world_size()
        losses.append(float(value))
    return losses


def peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def reset_peak(device: str) -> None:
    """Free what the previous phase left (DDP's reducer holds reference cycles) and start
    counting the peak again."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sharded(model: torch.nn.Module, device: str, world: int) -> torch.nn.Module:
    """``fully_shard`` on every ``Linear``, then on the whole model, over all ranks."""
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world,))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def sgd64_runs(args, device: str, world: int, X, y, X_all, y_all) -> dict:
    """The exactness check: single process, DDP, ZeRO-1 and FSDP2 again, in float64 with
    plain SGD; returns their losses and each run's difference from the single process."""
    def model64():
        return make_model(args, device).double()

    def sgd(params):
        return torch.optim.SGD(params, lr=args.sgd_lr)

    X, X_all = X.double(), X_all.double()
    out = {"losses": {}, "diff_vs_single": {}}
    ref = model64()
    out["losses"]["single"] = train(ref, sgd(ref.parameters()), X_all, y_all, args.steps,
                                    global_mean=False)
    ref_params = full_parameters(ref)
    zero1 = lambda params: ZeroRedundancyOptimizer(  # noqa: E731
        params, optimizer_class=torch.optim.SGD, lr=args.sgd_lr)
    for name, make_optimizer in (("ddp", sgd), ("zero1", zero1)):
        ddp = DDP(model64(), gradient_as_bucket_view=True)
        out["losses"][name] = train(ddp, make_optimizer(ddp.parameters()), X, y, args.steps,
                                    global_mean=True)
        out["diff_vs_single"][name] = difference(full_parameters(ddp), ref_params)
        del ddp
    model = sharded(model64(), device, world)
    out["losses"]["fsdp"] = train(model, sgd(model.parameters()), X, y, args.steps,
                                  global_mean=True)
    out["diff_vs_single"]["fsdp"] = difference(full_parameters(model), ref_params)
    return out


def run_fsdp(args, device: str, world: int, X, y, ref_params, result: dict) -> None:
    """Phase 4, FSDP2: every Linear is one unit (all-gathered just before its forward and
    backward, freed after), then the root takes whatever is left. The mesh (the ranks to
    shard over, and their device type) is explicit: by default FSDP would pick CUDA
    whenever PyTorch sees a GPU, even for Gloo ranks on the CPU."""
    model = sharded(make_model(args, device), device, world)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    result["losses"]["fsdp"] = train(model, opt, X, y, args.steps, global_mean=True)
    result["bytes"]["fsdp"] = parallelism.training_state_bytes(model, opt)
    result["peak_mb"]["fsdp"] = peak_mb(device)
    result["local_shapes"] = [list(p.to_local().shape) for p in model.parameters()]
    result["placements"] = str(next(model.parameters()).placements)
    result["diff_vs_single"]["fsdp"] = difference(full_parameters(model), ref_params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-features", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs="+", default=[50, 30, 20],
                        help="hidden layer widths of the MLP")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-per-rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's (the memory runs)")
    parser.add_argument("--sgd-lr", type=float, default=0.5,
                        help="plain SGD's, in the float64 exactness runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    info = dist.init()
    rank, world, device = info.rank, info.world_size, info.device
    print(f"rank {rank} of {world}: backend {info.backend}, device {device}")
    gen = torch.Generator().manual_seed(args.seed + 1)
    n = args.batch_per_rank * world
    X_all = torch.randn(n, args.in_features, generator=gen).to(device)
    y_all = torch.randint(0, args.classes, (n,), generator=gen).to(device)
    rows = slice(rank * args.batch_per_rank, (rank + 1) * args.batch_per_rank)
    X, y = X_all[rows], y_all[rows]
    result = {"world_size": world, "backend": info.backend, "device": device,
              "losses": {}, "bytes": {}, "peak_mb": {}, "diff_vs_single": {}}

    # 1. the reference: one process, the whole global batch
    reset_peak(device)
    ref = make_model(args, device)
    result["shapes"] = [list(p.shape) for p in ref.parameters()]
    result["n_params"] = sum(p.numel() for p in ref.parameters())
    opt = torch.optim.Adam(ref.parameters(), lr=args.lr)
    result["losses"]["single"] = train(ref, opt, X_all, y_all, args.steps, global_mean=False)
    result["bytes"]["single"] = parallelism.training_state_bytes(ref, opt)
    result["peak_mb"]["single"] = peak_mb(device)
    ref_params = full_parameters(ref)
    del ref, opt

    # 2. DDP: every rank holds all parameters, gradients and optimizer state.
    #    gradient_as_bucket_view: the gradients live in DDP's all-reduce buckets
    #    (otherwise DDP keeps a second copy of every gradient there)
    # 3. ZeRO-1: each rank keeps Adam's state of the parameters it owns, updates them,
    #    and broadcasts them to the other ranks after every step
    optimizers = {
        "ddp": lambda params: torch.optim.Adam(params, lr=args.lr),
        "zero1": lambda params: ZeroRedundancyOptimizer(
            params, optimizer_class=torch.optim.Adam, lr=args.lr),
    }
    for name, make_optimizer in optimizers.items():
        reset_peak(device)
        ddp = DDP(make_model(args, device), gradient_as_bucket_view=True)
        opt = make_optimizer(ddp.parameters())
        result["losses"][name] = train(ddp, opt, X, y, args.steps, global_mean=True)
        result["bytes"][name] = parallelism.training_state_bytes(ddp, opt)
        result["peak_mb"][name] = peak_mb(device)
        result["diff_vs_single"][name] = difference(full_parameters(ddp), ref_params)
        del ddp, opt

    # 4. FSDP2
    reset_peak(device)
    run_fsdp(args, device, world, X, y, ref_params, result)

    # 5. exactness: the same four trainings in float64 with plain SGD
    result["sgd64"] = sgd64_runs(args, device, world, X, y, X_all, y_all)

    for name, b in result["bytes"].items():
        print(f"rank {rank} {name:6s}: params {b['params']:8d} B, grads {b['grads']:8d} B, "
              f"optimizer {b['optimizer']:8d} B, losses "
              f"{[round(v, 5) for v in result['losses'][name]]}")
    dist.save_result(result)
    dist.finish()


if __name__ == "__main__":
    main()
    dist.exit_now()  # skip the interpreter's teardown of Gloo threads: see its docstring
