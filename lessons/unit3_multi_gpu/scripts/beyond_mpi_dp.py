"""Data-parallel SGD the HPC way: NumPy, mpi4py and ``Allreduce`` (Horovod's pattern).

No PyTorch at all: the network is lesson 01's NumPy MLP (``course_utils.foundations.numpy_mlp``) on
the two spirals, in float64. Every MPI rank

1. initialises the parameters with its *own* seed, then receives rank 0's with ``Bcast``
   (Horovod's ``broadcast_parameters``: every rank must start from the same point);
2. takes its contiguous shard of the data (``np.array_split``: shards may differ by one row);
3. in every step computes the gradient of the mean loss on its shard, scales it by its
   share of the rows, ``n_r / n``, packs all gradients into one flat buffer (Horovod's
   *tensor fusion*: one large message instead of one per tensor), and sums the buffers of
   all ranks with ``comm.Allreduce`` (in place); the sum is exactly the gradient of the
   mean loss on the whole data set, whatever the shard sizes;
4. takes the same SGD step as every other rank.

It saves the parameters at the start and the end, the loss of every step (the global
loss, from an ``allreduce`` of the weighted local losses), and the median time of one
gradient ``Allreduce``.

By hand, from the repository root (MPICH or Open MPI, with mpi4py)::

    PYTHONPATH=. mpiexec -n 2 python lessons/unit3_multi_gpu/scripts/beyond_mpi_dp.py

From a notebook: ``course_utils.training.dist.launch(<this file>, nproc=2, launcher="mpiexec")``.
"""

import argparse

import numpy as np
from mpi4py import MPI

from course_utils import benchmark, data
from course_utils.foundations import numpy_mlp
from course_utils.training import dist


def flatten(grads: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.concatenate([grads[k].ravel() for k in names])


def unflatten(flat: np.ndarray, like: dict[str, np.ndarray], names: list[str]
              ) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for k in names:
        out[k] = flat[start:start + like[k].size].reshape(like[k].shape)
        start += like[k].size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=200)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    print(f"rank {rank} of {size}: MPI {MPI.Get_library_version().splitlines()[0]}")
    X, y = data.two_spirals(args.n_per_class, seed=args.seed)
    X = X.astype(np.float64)
    sizes = [2, *args.hidden, 2]
    params = numpy_mlp.init_params(sizes, np.random.default_rng(args.seed + rank),
                                   dtype=np.float64)
    names = sorted(params)
    for k in names:  # every rank starts from rank 0's parameters
        comm.Bcast(params[k], root=0)
    initial = {k: v.tolist() for k, v in params.items()}

    X_local = np.array_split(X, size)[rank]
    y_local = np.array_split(y, size)[rank]
    share = len(y_local) / len(y)
    print(f"rank {rank}: {len(y_local)} of {len(y)} rows")

    buffer = np.empty(sum(params[k].size for k in names))
    losses = []
    for step in range(args.steps):
        loss, grads = numpy_mlp.loss_and_grads(params, X_local, y_local)
        buffer[:] = flatten(grads, names) * share
        comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)  # the sum over ranks
        total = unflatten(buffer, params, names)
        for k in names:
            params[k] -= args.lr * total[k]
        losses.append(comm.allreduce(loss * share, op=MPI.SUM))
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}: loss {losses[-1]:.6f}")

    probe = buffer.copy()
    timing = benchmark(lambda: comm.Allreduce(MPI.IN_PLACE, probe, op=MPI.SUM),
                       warmup=2, repeats=5, sync="none")
    dist.save_result({"size": size, "rows": len(y_local), "initial": initial,
                      "final": {k: v.tolist() for k, v in params.items()},
                      "losses": losses, "allreduce_s": timing.median,
                      "allreduce_bytes": int(buffer.nbytes)})


if __name__ == "__main__":
    main()
