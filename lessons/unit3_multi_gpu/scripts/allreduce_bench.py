"""Time all-reduce against message size: ``dist.all_reduce``, naive and ring (lesson 12).

For each message size (``--min-bytes`` to ``--max-bytes``, times ``--factor``, as
nccl-tests' ``-b -e -f``) every rank times ``--iters`` back-to-back all-reduces of a
float32 tensor with ``course_utils.benchmark`` (``sync="torch"``: on GPUs the clock
stops only when the GPU is done), after a barrier so that all ranks start together, for
each algorithm: the library's ``dist.all_reduce`` (``builtin``) and the ``naive`` and
``ring`` all-reduce of ``course_utils.training.collectives``, written with send/recv. It saves
each rank's median and minimum seconds per all-reduce; the notebook takes the slowest
rank (an all-reduce is over when the last rank has its result) and turns times into
algorithm and bus bandwidths.

By hand, from the repository root (Gloo on CPUs, NCCL with one GPU per rank)::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=2 \\
        lessons/unit3_multi_gpu/scripts/allreduce_bench.py --max-bytes 4194304

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, args=[...])``.
"""

import argparse
import os

import torch
import torch.distributed as tdist

from course_utils import benchmark
from course_utils.training import collectives as coll
from course_utils.training import dist

ALGORITHMS = {
    "builtin": lambda t: tdist.all_reduce(t),
    "naive": coll.naive_all_reduce,
    "ring": coll.ring_all_reduce,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-bytes", type=int, default=1024)
    parser.add_argument("--max-bytes", type=int, default=4 * 2**20)
    parser.add_argument("--factor", type=int, default=8, help="size step (x factor)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed samples per size")
    parser.add_argument("--repeats", type=int, default=3, help="timed samples per size")
    parser.add_argument("--iters", type=int, default=3,
                        help="all-reduces per timed sample (fewer for large messages)")
    parser.add_argument("--sample-bytes", type=int, default=2**26,
                        help="at most this many bytes all-reduced per timed sample")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS),
                        choices=list(ALGORITHMS))
    args = parser.parse_args()

    info = dist.init()
    sizes = coll.message_sizes(args.min_bytes, args.max_bytes, args.factor)
    print(f"rank {info.rank} of {info.world_size}: backend {info.backend}, "
          f"device {info.device}, {len(sizes)} sizes, {os.cpu_count()} CPU cores")
    median = {name: [] for name in args.algorithms}
    fastest = {name: [] for name in args.algorithms}
    elements = []
    for n_bytes in sizes:
        numel = max(1, n_bytes // 4)
        elements.append(numel)
        tensor = torch.zeros(numel, dtype=torch.float32, device=info.device)
        iters = max(1, min(args.iters, args.sample_bytes // (4 * numel)))
        for name in args.algorithms:
            all_reduce = ALGORITHMS[name]

            def sample(all_reduce=all_reduce, tensor=tensor, iters=iters):
                for _ in range(iters):
                    all_reduce(tensor)

            tdist.barrier()
            timing = benchmark(sample, warmup=args.warmup, repeats=args.repeats,
                               sync="torch")
            median[name].append(timing.median / iters)
            fastest[name].append(timing.min / iters)
        line = "  ".join(f"{name} {median[name][-1] * 1e6:9.1f} us" for name in median)
        print(f"rank {info.rank}: {coll.format_bytes(4 * numel):>9}  {line}")
    dist.save_result({"rank": info.rank, "world_size": info.world_size,
                      "backend": info.backend, "device": info.device,
                      "cpu_cores": os.cpu_count(), "n_bytes": [4 * n for n in elements],
                      "median_s": median, "min_s": fastest})
    dist.finish()


if __name__ == "__main__":
    main()
