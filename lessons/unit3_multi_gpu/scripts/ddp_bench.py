"""Throughput of data-parallel training: DDP training steps per second, per bucket size.

Each rank trains ``course_utils.models.SmallResNet`` on its own fixed batch of synthetic
images (``course_utils.data.synthetic_images``, seeded per rank; no data loading): weak
scaling, the batch per rank stays the same as ranks are added. For every
``--bucket-cap-mb`` the script wraps a fresh model in DDP with that bucket size and times
training steps with ``course_utils.benchmark`` (warm-up steps first, the GPU synchronised
around each step); then it times the same step under ``no_sync()``, which skips the
gradient all-reduce: the compute alone, a floor for the step time. Each rank saves its
median and best step times, the samples per second of all ranks together and the sizes
of the buckets DDP built.

By hand, from the repository root (Gloo on CPUs, NCCL with one GPU per rank)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        lessons/unit3_multi_gpu/scripts/ddp_bench.py --width 16 --blocks 1 --batch-size 16

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, args=[...])``.
"""

import argparse

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils import data, models
from course_utils.timing import benchmark
from course_utils.train import make_optimizer
from course_utils.training import ddp, dist


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16, help="SmallResNet width")
    parser.add_argument("--blocks", type=int, default=1, help="SmallResNet blocks per stage")
    parser.add_argument("--batch-size", type=int, default=16, help="images per rank per step")
    parser.add_argument("--bucket-cap-mb", nargs="+", default=["default"],
                        help="DDP bucket sizes to time, in MiB, or 'default': PyTorch's "
                             "own choice (bucket_cap_mb=None: 25 MiB, but a first bucket "
                             "of 1 MiB; an explicit 25 makes the first bucket 25 MiB too)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("width", "blocks", "batch_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    caps = []
    for cap in args.bucket_cap_mb:
        try:
            value = None if cap == "default" else float(cap)
        except ValueError:
            parser.error(f"--bucket-cap-mb {cap!r}: give numbers of MiB or 'default'")
        if value is not None and value <= 0:
            parser.error("--bucket-cap-mb must be > 0")
        caps.append(value)
    args.bucket_cap_mb = caps
    return args


def main() -> None:
    args = parse_args()
    info = dist.init()
    device = torch.device(info.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)  # a worker = a fixed number of cores
    else:
        torch.backends.cudnn.benchmark = True
    X, y = data.synthetic_images(args.batch_size, seed=args.seed + info.rank)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    print(f"rank {info.rank} of {info.world_size}: backend {info.backend}, device {device}, "
          f"{torch.get_num_threads()} threads")
    runs = []
    for cap in args.bucket_cap_mb:
        torch.manual_seed(args.seed)
        net = models.SmallResNet(width=args.width, blocks=args.blocks).to(device)
        # broadcast_buffers=False: no broadcast of the batch-norm buffers before each
        # forward (DDP's default), so that the step's communication is the gradient
        # all-reduce alone, which is what the bucket sizes change.
        model = DDP(net, device_ids=[device] if device.type == "cuda" else None,
                    bucket_cap_mb=cap, broadcast_buffers=False)
        opt = make_optimizer(model, "sgd", 0.01, 0.0, 0.9)
        step = ddp.make_train_step(model, opt, X, y)
        timing = benchmark(step, warmup=args.warmup, repeats=args.repeats, sync="torch")

        def local_step(step=step, model=model) -> None:
            with model.no_sync():  # no all-reduce: the compute alone
                step()

        compute = benchmark(local_step, warmup=1, repeats=args.repeats, sync="torch")
        label = "default" if cap is None else cap
        runs.append({"bucket_cap_mb": label, "median_s": timing.median, "min_s": timing.min,
                     "samples_per_s": info.world_size * args.batch_size / timing.median,
                     "compute_median_s": compute.median, "buckets": ddp.ddp_buckets(model)})
        print(f"rank {info.rank}: bucket_cap_mb={label}: step {timing}; "
              f"compute only {compute}; buckets {runs[-1]['buckets']}")
    params = models.count_parameters(net)
    dist.save_result({"rank": info.rank, "world_size": info.world_size,
                      "backend": info.backend, "device": info.device, "params": params,
                      "batch_size": args.batch_size, "runs": runs})
    dist.finish()


if __name__ == "__main__":
    main()
    dist.exit_now()  # skip the interpreter's teardown of Gloo threads: see its docstring
