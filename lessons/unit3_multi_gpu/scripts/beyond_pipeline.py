"""Pipeline parallelism: GPipe's forward schedule over processes, and its bubble, measured.

Rank ``s`` is stage ``s`` of a model cut into ``p`` stages (one ``Linear + ReLU`` each). A
mini-batch is cut into ``m`` micro-batches; stage ``s`` receives micro-batch ``j`` from
stage ``s - 1`` (``recv``), computes, and sends the activation on to stage ``s + 1``
(``isend``: it does not wait for the next stage to take it), so that after a start-up of
``p - 1`` steps all stages work at once, on different micro-batches.

To give every stage a fixed, known cost even on a 2-core machine, a stage also *sleeps*
``--stage-ms / m`` milliseconds per micro-batch: a stand-in for GPU work that needs
``stage-ms`` for the whole mini-batch. A sleeping process uses no CPU, so four stages on two
cores still behave like four devices; real computation on oversubscribed cores would not.

For each ``m`` in ``--micro-batches`` every rank times (``course_utils.benchmark``):
* ``total``: one mini-batch through the pipeline, between two barriers;
* ``micro``: its own stage's work on one micro-batch, alone;
and the measured bubble of the stage is ``1 - m * micro / total``, to compare with
``(p - 1) / (m + p - 1)``. One more run with ``--trace-m`` micro-batches records when
each micro-batch started and ended on each stage (for the picture). The last stage checks
that the pipelined output equals the whole model applied to the whole batch.

By hand, from the repository root::

    PYTHONPATH=. torchrun --standalone --nproc-per-node=4 \\
        lessons/unit3_multi_gpu/scripts/beyond_pipeline.py --micro-batches 1 2 4 8

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=4, args=[...])``.
"""

import argparse
import time

import torch
import torch.distributed as tdist

from course_utils import benchmark
from course_utils.training import dist, parallelism


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--stage-ms", type=float, default=200.0,
                        help="cost of one stage for a whole mini-batch (milliseconds)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed pipeline runs before the measurements")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trace-m", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    info = dist.init()
    stage, p, device = info.rank, info.world_size, info.device
    print(f"stage {stage} of {p}: backend {info.backend}, device {device}")
    torch.manual_seed(args.seed)  # every rank builds every stage; it keeps its own
    stages = [torch.nn.Sequential(torch.nn.Linear(args.features, args.features),
                                  torch.nn.ReLU()).to(device) for _ in range(p)]
    layer = stages[stage]
    X = torch.randn(args.batch, args.features, device=device)

    def work(a: torch.Tensor, m: int) -> torch.Tensor:
        """This stage's computation on one micro-batch, plus its fixed cost."""
        with torch.no_grad():
            out = layer(a)
        time.sleep(args.stage_ms / 1000 / m)
        return out

    def run(m: int, trace: list | None = None) -> list[torch.Tensor]:
        """One mini-batch of ``m`` micro-batches through the pipeline (GPipe, forward)."""
        sizes = parallelism.split_sizes(args.batch, m, name="batch")
        chunks = X.tensor_split(m)
        outputs, pending = [], []
        start = time.perf_counter()
        for j, rows in enumerate(sizes):
            if stage == 0:
                a = chunks[j]
            else:
                a = torch.empty(rows, args.features, device=device)
                tdist.recv(a, src=stage - 1)
            t0 = time.perf_counter()
            out = work(a, m)
            if trace is not None:
                trace.append([j, t0 - start, time.perf_counter() - start])
            if stage < p - 1:
                pending.append((tdist.isend(out, dst=stage + 1), out))
            else:
                outputs.append(out)
        for request, _ in pending:
            request.wait()
        return outputs

    def timed(m: int) -> None:
        tdist.barrier()
        run(m)
        tdist.barrier()

    for _ in range(args.warmup):  # connections, allocations: once, with the most messages
        timed(max(args.micro_batches))
    results = {}
    for m in args.micro_batches:
        total = benchmark(lambda m=m: timed(m), warmup=0, repeats=args.repeats, sync="torch")
        a = torch.randn(parallelism.split_sizes(args.batch, m)[0], args.features,
                        device=device)
        micro = benchmark(lambda a=a, m=m: work(a, m), warmup=0, repeats=args.repeats,
                          sync="torch")
        # The fastest repeat of each: other programs on the machine (a busy laptop, a CI
        # runner) only ever add time, to the waits between stages most of all.
        results[m] = {"total_s": total.min, "micro_s": micro.min,
                      "busy_s": m * micro.min,
                      "bubble": parallelism.measured_bubble(total.min, m * micro.min),
                      "model": parallelism.bubble_fraction(p, m)}
        print(f"stage {stage}: m={m:3d} total {total.min * 1e3:7.1f} ms, busy "
              f"{m * micro.min * 1e3:7.1f} ms, bubble {results[m]['bubble']:.3f} "
              f"(model {results[m]['model']:.3f})")
    barrier = benchmark(tdist.barrier, warmup=1, repeats=args.repeats, sync="torch")

    trace: list = []
    tdist.barrier()
    outputs = run(args.trace_m, trace)
    error = None
    if stage == p - 1:  # the pipelined result against the whole model on the whole batch
        with torch.no_grad():
            want = X
            for s in stages:
                want = s(want)
        error = float((torch.cat(outputs) - want).abs().max())
        print(f"stage {stage}: pipelined output vs whole model: largest error {error:.2e}")
    dist.save_result({"stages": p, "backend": info.backend, "stage_ms": args.stage_ms,
                      "results": {str(m): r for m, r in results.items()},
                      "barrier_s": barrier.median, "trace_m": args.trace_m,
                      "trace": trace, "max_error": error})
    dist.finish()


if __name__ == "__main__":
    main()
