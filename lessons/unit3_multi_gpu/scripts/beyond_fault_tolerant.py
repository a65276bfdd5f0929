"""Fault-tolerant data-parallel training: checkpoint every step, survive a killed rank.

A small MLP (float64, SGD with momentum) trains with DDP on the two spirals, each rank on
its half of the data. After every step rank 0 writes a checkpoint *atomically* (model,
optimizer state with the momentum buffers, and the number of steps done:
``course_utils.training.ddp.save_checkpoint`` writes a temporary file and renames it), then every
rank waits at a barrier, so that all of them know which step is safely on disk.

With ``--kill-step K``, rank ``--kill-rank`` kills itself with SIGKILL (no Python
exception, no clean-up: like a node lost or a process killed by the out-of-memory killer)
at the start of step ``K``, but only on the first attempt (``TORCHELASTIC_RESTART_COUNT``
is ``"0"``). Launched with ``torchrun --max-restarts=1``, the other rank fails in its next
all-reduce, torchrun stops it, starts all ranks again, and the new ranks resume from the
checkpoint. At the end, rank 0 trains the same model in one process without interruption
and compares the final parameters.

By hand, from the repository root::

    rm -f build/ckpt.pt; PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        --max-restarts=1 lessons/unit3_multi_gpu/scripts/beyond_fault_tolerant.py \\
        --checkpoint build/ckpt.pt --kill-step 4

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, max_restarts=1, ...)``.
"""

import argparse
import os
import signal
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils import data, models
from course_utils.errors import UsageError
from course_utils.training import ddp, dist


def make(args) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(args.seed)
    model = models.mlp(2, args.hidden, 2).double()
    return model, torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--kill-step", type=int, default=-1, help="-1: nobody is killed")
    parser.add_argument("--kill-rank", type=int, default=1)
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 16])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    info = dist.init()
    rank, world = info.rank, info.world_size
    print(f"rank {rank} of {world}, attempt {attempt}: backend {info.backend}, pid "
          f"{os.getpid()}")
    X, y = data.two_spirals(args.n_per_class, seed=args.seed)
    X, y = torch.from_numpy(X).double(), torch.from_numpy(y)
    if len(y) % world:
        raise UsageError(f"{len(y)} rows cannot be split evenly over {world} ranks "
                         "(DDP averages the ranks' gradients); change --n-per-class")
    X_local, y_local = X.tensor_split(world)[rank], y.tensor_split(world)[rank]

    model, optimizer = make(args)
    start = 0
    if args.checkpoint.exists():
        state = ddp.load_checkpoint(args.checkpoint, model=model, optimizer=optimizer)
        start = state["step"]
        print(f"rank {rank}: resumed from checkpoint {args.checkpoint.name} after step "
              f"{start} (optimizer state included)")
    net = DDP(model)
    losses = {}
    for step in range(start, args.steps):
        if attempt == 0 and rank == args.kill_rank and step == args.kill_step:
            print(f"rank {rank}: step {step}: SIGKILL to myself (first attempt only)",
                  flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X_local), y_local)
        loss.backward()  # DDP averages the gradients over the ranks here
        optimizer.step()
        losses[step] = loss.item()
        print(f"rank {rank}: step {step} done, local loss {loss.item():.6f}")
        if rank == 0:
            ddp.save_checkpoint(args.checkpoint, model=net, optimizer=optimizer,
                                step=step + 1)
        tdist.barrier()  # nobody starts step + 1 before checkpoint step + 1 is on disk

    result = {"attempt": attempt, "resumed_from": start, "steps": args.steps,
              "losses": losses, "world_size": world}
    if rank == 0:  # the same training in one process, never interrupted
        ref, ref_opt = make(args)
        for _ in range(args.steps):
            ref_opt.zero_grad()
            F.cross_entropy(ref(X), y).backward()
            ref_opt.step()
        result["max_diff_vs_uninterrupted"] = ddp.max_abs_difference(model, ref)
        result["final_checkpoint_step"] = ddp.load_checkpoint(args.checkpoint)["step"]
        print(f"rank 0: final parameters vs an uninterrupted single process: largest "
              f"difference {result['max_diff_vs_uninterrupted']:.2e}")
    dist.save_result(result)
    dist.finish()


if __name__ == "__main__":
    main()
    dist.exit_now()  # skip the interpreter's teardown of Gloo threads: see its docstring
