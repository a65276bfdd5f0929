"""Data-parallel training with DistributedDataParallel (DDP): the script of lesson 13.

Every rank joins the process group (``dist.init``: Gloo on CPUs, NCCL with a GPU per
rank), builds the same model from the same seed, reads its own share of the data through
``DistributedSampler`` (``set_epoch`` every epoch), and trains with DDP: after each
backward pass the gradients are averaged over the ranks by all-reduce, bucket by bucket
(``--bucket-cap-mb``), while the backward pass is still running. Options:

* ``--accum-steps K [K ...]``: accumulate gradients over K micro-batches per optimizer
  step, the first K-1 under ``no_sync()`` (no all-reduce); one training run per value;
* ``--lr``, ``--base-batch``, ``--warmup-steps``: the linear scaling rule with warm-up
  (``course_utils.training.ddp.LinearScalingSchedule``): the global batch sets the peak rate;
* ``--checkpoint PATH --checkpoint-every S``: rank 0 saves model, optimizer and step
  atomically every S steps; ``--resume`` continues from it (mid-epoch too);
* ``--die-at-step K --die-rank R``: rank R SIGKILLs itself when it reaches step K (only
  in the first attempt of a launch, so torchrun's ``--max-restarts`` can recover).

Each rank saves (``dist.save_result``) its parameter digests, a per-rank random draw and,
on rank 0, the loss and learning rate of every step; rank 0 writes the final model of
each run to ``final_accum<K>.pt`` in the launch's output folder.

By hand, from the repository root (Gloo on CPUs, NCCL with one GPU per rank)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        lessons/unit3_multi_gpu/scripts/ddp_train.py --epochs 2 --accum-steps 1 2 \\
        --checkpoint build/ddp/ckpt.pt

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, args=[...])``.
"""

import argparse
import itertools
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_utils.train import make_optimizer
from course_utils.training import ddp, dist


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=360, help="spiral points per class")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32],
                        help="hidden layer widths of the MLP")
    parser.add_argument("--dtype", choices=sorted(ddp.DTYPES), default="float64")
    parser.add_argument("--batch-size", type=int, default=30, help="samples per rank per "
                        "micro-batch")
    parser.add_argument("--accum-steps", type=int, nargs="+", default=[1],
                        help="micro-batches per optimizer step (one run per value)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate for --base-batch")
    parser.add_argument("--base-batch", type=int, default=30,
                        help="batch size that --lr is tuned for (linear scaling rule)")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--bucket-cap-mb", type=float, default=25.0,
                        help="DDP's gradient bucket size in MB (PyTorch's default: 25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="steps between saves")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--die-at-step", type=int, default=-1,
                        help="SIGKILL rank --die-rank when it reaches this step")
    parser.add_argument("--die-rank", type=int, default=1)
    args = parser.parse_args()
    for name in ("n_per_class", "batch_size", "epochs", "base_batch", "threads",
                 "checkpoint_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.accum_steps) < 1:
        parser.error("--accum-steps must be >= 1")
    if args.checkpoint is not None and len(args.accum_steps) > 1:
        parser.error("--checkpoint works with one --accum-steps value")
    return args


def train(args: argparse.Namespace, info: dist.DistInfo, accum_steps: int) -> dict:
    """One data-parallel training run; returns what this rank saw."""
    rank, world, device = info.rank, info.world_size, torch.device(info.device)
    # 1. The same seed on every rank: identical initial weights. (DDP would broadcast
    #    rank 0's weights anyway; the data order needs the shared seed for real.)
    model, X, y = ddp.spirals_problem(args.n_per_class, args.hidden, seed=args.seed,
                                      dtype=args.dtype)
    init_digest = ddp.parameter_digest(model)
    model.to(device)
    ddp_model = DDP(model, device_ids=[device] if device.type == "cuda" else None,
                    bucket_cap_mb=args.bucket_cap_mb)
    # 2. A random stream of its own per rank, for augmentation or dropout (none here),
    #    re-seeded every step from (seed, rank, step) so a resumed run draws the same.
    torch.manual_seed(ddp.rank_seed(args.seed, rank, 0))
    random_draw = float(torch.rand(1))

    # 3. Each rank reads every world-th sample of one shared, per-epoch permutation.
    dataset = TensorDataset(X, y)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                 seed=args.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    per_epoch = len(loader) // accum_steps
    total_steps = args.epochs * per_epoch
    if per_epoch < 1:
        raise ValueError(f"{len(X)} samples are too few for {world} ranks x batch "
                         f"{args.batch_size} x {accum_steps} micro-batches")

    # 4. The linear scaling rule: the learning rate follows the global batch.
    schedule = ddp.LinearScalingSchedule(
        base_lr=args.lr, base_batch=args.base_batch,
        global_batch=world * args.batch_size * accum_steps, warmup_steps=args.warmup_steps)
    opt = make_optimizer(ddp_model, "sgd", schedule(0), args.weight_decay, args.momentum)

    step = 0
    if args.resume and args.checkpoint is not None and args.checkpoint.exists():
        state = ddp.load_checkpoint(args.checkpoint, model=ddp_model, optimizer=opt,
                                    map_location=device)
        if state["extra"].get("world_size") != world:  # steps would mean other samples
            raise ValueError(f"{args.checkpoint} was written by {state['extra'].get('world_size')}"
                             f" ranks; resume it with as many (this launch has {world})")
        step = state["step"]
        print(f"rank {rank}: resumed from {args.checkpoint} at step {step}")
    start_step = step
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    losses, lrs = [], []
    start = time.perf_counter()
    while step < total_steps:
        epoch, done_in_epoch = divmod(step, per_epoch)
        sampler.set_epoch(epoch)  # a new shared permutation every epoch
        batches = itertools.islice(iter(loader), done_in_epoch * accum_steps, None)
        for _ in range(done_in_epoch, per_epoch):
            if step == args.die_at_step and rank == args.die_rank and attempt == 0:
                print(f"rank {rank}: SIGKILL at step {step} (wall clock {time.time():.3f})",
                      flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            torch.manual_seed(ddp.rank_seed(args.seed, rank, step))
            lr = schedule(step)
            ddp.set_lr(opt, lr)
            opt.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), dtype=X.dtype, device=device)
            for micro in range(accum_steps):
                xb, yb = next(batches)
                last = micro == accum_steps - 1
                # no_sync: backward only adds into .grad; the last backward all-reduces
                # the accumulated sum (one communication per optimizer step).
                with nullcontext() if last else ddp_model.no_sync():
                    out = ddp_model(xb.to(device))
                    loss = nn.functional.cross_entropy(out, yb.to(device)) / accum_steps
                    loss.backward()
                step_loss += loss.detach()
            opt.step()
            tdist.all_reduce(step_loss)  # for the log only: the mean over all ranks
            losses.append(float(step_loss) / world)
            lrs.append(lr)
            step += 1
            if rank == 0 and args.checkpoint is not None and step % args.checkpoint_every == 0:
                ddp.save_checkpoint(args.checkpoint, model=ddp_model, optimizer=opt, step=step,
                                    extra={"epoch": epoch, "world_size": world})
    seconds = time.perf_counter() - start
    if rank == 0:
        out_dir = Path(os.environ.get(dist.ENV_OUT, "."))
        ddp.save_checkpoint(out_dir / f"final_accum{accum_steps}.pt", model=ddp_model,
                            step=step)
    print(f"rank {rank}: accum_steps={accum_steps}: steps {start_step}..{step} "
          f"in {seconds:.2f} s, last loss {losses[-1] if losses else float('nan'):.4f}")
    return {"accum_steps": accum_steps, "init_digest": init_digest,
            "final_digest": ddp.parameter_digest(ddp_model), "random_draw": random_draw,
            "start_step": start_step, "steps": step, "steps_per_epoch": per_epoch,
            "global_batch": schedule.global_batch, "peak_lr": schedule.peak_lr,
            "buckets": ddp.ddp_buckets(ddp_model),
            "loss": losses if rank == 0 else [], "lr": lrs if rank == 0 else []}


def main() -> None:
    args = parse_args()
    info = dist.init()
    if info.device == "cpu":
        torch.set_num_threads(args.threads)  # one core per rank: a fair worker
    print(f"rank {info.rank} of {info.world_size}: backend {info.backend}, "
          f"device {info.device}, attempt {os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}")
    runs = [train(args, info, k) for k in args.accum_steps]
    dist.save_result({"rank": info.rank, "world_size": info.world_size,
                      "backend": info.backend, "device": info.device, "runs": runs})
    dist.finish()


if __name__ == "__main__":
    main()
    dist.exit_now()  # skip the interpreter's teardown of Gloo threads: see its docstring
