"""Collectives by hand: naive and ring all-reduce from send/recv, and their cost model.

Data-parallel training sums every gradient over all workers at every step: an
*all-reduce*. This module writes it twice with nothing but point-to-point messages, so a
lesson can check both against ``torch.distributed.all_reduce`` and explain the speed gap:

* ``naive_all_reduce``: every rank sends its tensor to a root, which adds them up and
  sends the sum back (a reduce, then a broadcast). The root moves ``2 (p - 1) n`` bytes
  while the others wait: the root is the bottleneck.
* ``ring_all_reduce``: a ring reduce-scatter (``ring_reduce_scatter``), then a ring
  all-gather (``ring_all_gather``). Every rank sends ``2 (p - 1) / p`` of the data, about
  twice the data whatever the number of ranks: bandwidth-optimal.

Both work in place on a contiguous tensor of any length (not only multiples of the world
size: chunks differ by at most one element) on Gloo (CPU) or NCCL (GPU), and count the
bytes they send in ``TRAFFIC``. Lesson 12 shows this ring; lab 4 asks students for its
relative, a ring over a bucket of tensors with aligned chunks (which this one fails).

The pure functions give the *alpha-beta* (latency-bandwidth) model of a message,
``t = alpha + n * beta``, the model times of both algorithms, a least-squares fit of
``alpha`` and ``beta`` to measured times, and bandwidths as ``nccl-tests`` reports them:
``algbw = bytes / time`` and ``busbw = algbw * factor`` (all-reduce: ``2 (p - 1) / p``),
so that ``busbw`` of a good implementation approaches the link speed whatever ``p`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError, check_choice, check_ints, check_positive

ALGORITHMS = ("naive", "ring")
BACKEND_CHOICES = ("auto", "gloo", "nccl")

# nccl-tests' bus-bandwidth factors (PERFORMANCE.md), as functions of the world size p.
BUS_FACTORS = {
    "all_reduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "all_gather": lambda p: (p - 1) / p,
    "all_to_all": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
    "send_recv": lambda p: 1.0,
}


# ------------------------------------------------------------------------ pure functions
def _check_world_size(world_size: int) -> int:
    if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) \
            or world_size < 1:
        raise UsageError(f"world_size={world_size!r} is not valid; it must be an integer >= 1")
    return int(world_size)


def chunk_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """Split ``n`` elements into ``world_size`` contiguous chunks ``(start, stop)``.

    The first ``n % world_size`` chunks get one element more (like ``torch.tensor_split``),
    so any length works; when ``n < world_size`` some chunks are empty.
    """
    p = _check_world_size(world_size)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UsageError(f"n={n!r} is not valid; it must be an integer >= 0")
    base, extra = divmod(int(n), p)
    bounds, start = [], 0
    for k in range(p):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def bus_factor(collective: str, world_size: int) -> float:
    """nccl-tests' factor from algorithm bandwidth to bus bandwidth for ``collective``.

    All-reduce: ``2 (p - 1) / p`` (each rank must send and receive that fraction of the
    data, whatever the algorithm); reduce-scatter, all-gather: ``(p - 1) / p``;
    broadcast, reduce: 1.
    """
    check_choice("collective", collective, tuple(BUS_FACTORS))
    return float(BUS_FACTORS[collective](_check_world_size(world_size)))


def algbw(n_bytes: float | np.ndarray, seconds: float | np.ndarray) -> float | np.ndarray:
    """Algorithm bandwidth in bytes/s: the message size over the time (nccl-tests).

    For all-gather and reduce-scatter, ``n_bytes`` is the *total* size (all ranks' parts).
    """
    return np.asarray(n_bytes, dtype=float) / np.asarray(seconds, dtype=float)


def busbw(n_bytes: float | np.ndarray, seconds: float | np.ndarray, world_size: int,
          collective: str = "all_reduce") -> float | np.ndarray:
    """Bus bandwidth in bytes/s: ``algbw * bus_factor(collective, world_size)``.

    It is comparable with the speed of the slowest link, whatever the number of ranks.
    """
    return algbw(n_bytes, seconds) * bus_factor(collective, world_size)


def message_sizes(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    """Message sizes ``min_bytes, min_bytes * factor, ...`` up to ``max_bytes`` (nccl-tests'
    ``-b``, ``-e``, ``-f``)."""
    check_positive("min_bytes", min_bytes)
    check_positive("max_bytes", max_bytes)
    if max_bytes < min_bytes:
        raise UsageError(f"max_bytes={max_bytes!r} is not valid; it must be >= "
                         f"min_bytes={min_bytes!r}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 2:
        raise UsageError(f"size_factor={factor!r} is not valid; it must be an integer >= 2")
    sizes, n = [], int(min_bytes)
    while n <= max_bytes:
        sizes.append(n)
        n *= int(factor)
    return sizes


def check_world_sizes(world_sizes: Sequence[int] | str) -> list[int]:
    """The world sizes of the correctness launches: integers >= 2 (a collective needs two).
    Text such as ``"2,3,4"`` is accepted too (see ``errors.as_list``)."""
    return check_ints("world_sizes", world_sizes, minimum=2, example="2,3,4")


def check_lengths(lengths: Sequence[int] | str) -> list[int]:
    """The tensor lengths (elements) the checks use: integers >= 1 (or text ``"1,7,1001"``)."""
    return check_ints("lengths", lengths, minimum=1, example="1,7,1001")


def pick_backend(nproc: int, gpus: int, requested: str = "auto") -> str:
    """The backend for a launch of ``nproc`` ranks on a machine with ``gpus`` usable GPUs.

    NCCL needs a GPU per rank (two ranks on one GPU are not supported), so ``"auto"`` gives
    NCCL only when ``gpus >= nproc``, else Gloo on the CPU. Asking for NCCL without enough
    GPUs is a usage error.
    """
    check_choice("backend", requested, BACKEND_CHOICES)
    nproc = _check_world_size(nproc)
    if requested == "nccl" and gpus < nproc:
        raise UsageError(f"backend='nccl' needs one GPU per rank: {nproc} ranks, {gpus} "
                         "GPU(s) here; use backend 'gloo' or 'auto'")
    if requested == "auto":
        return "nccl" if gpus >= nproc else "gloo"
    return requested


def bench_world_size(value: int | str, gpus: int) -> int:
    """Ranks of the bandwidth sweep: an integer >= 2, or ``"auto"`` (one rank per GPU when
    there are at least two GPUs, else 2 Gloo ranks on the CPU)."""
    if value == "auto":
        return gpus if gpus >= 2 else 2
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise UsageError(f"bench_nproc={value!r} is not valid; give an integer >= 2 or 'auto'")
    return int(value)


def format_bytes(n: float) -> str:
    """``1024 -> '1 KiB'``, ``3 * 2**20 -> '3 MiB'`` (binary units, like nccl-tests' sizes)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:.4g} B"


def naive_all_reduce_time(n_bytes: float | np.ndarray, world_size: int, alpha: float,
                          beta: float) -> float | np.ndarray:
    """Alpha-beta time of the naive all-reduce: the root receives ``p - 1`` messages of
    ``n`` bytes one after the other, then sends ``p - 1``: ``2 (p - 1) (alpha + n beta)``."""
    p = _check_world_size(world_size)
    return 2 * (p - 1) * (alpha + np.asarray(n_bytes, dtype=float) * beta)


def ring_all_reduce_time(n_bytes: float | np.ndarray, world_size: int, alpha: float,
                         beta: float) -> float | np.ndarray:
    """Alpha-beta time of the ring all-reduce: ``2 (p - 1)`` steps, each one message of
    ``n / p`` bytes to the right neighbour: ``2 (p - 1) (alpha + n beta / p)``."""
    p = _check_world_size(world_size)
    return 2 * (p - 1) * (alpha + np.asarray(n_bytes, dtype=float) / p * beta)


def elements_sent(algorithm: str, n: int, world_size: int, rank: int, root: int = 0) -> int:
    """Elements rank ``rank`` sends in one all-reduce of ``n`` elements (exact, any ``n``).

    Ring: all chunks but its own in the reduce-scatter, all but its right neighbour's in
    the all-gather, ``2 (p - 1) n / p`` when ``p`` divides ``n``. Naive: ``n`` for every
    rank but the root, which sends ``(p - 1) n``.
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    p = _check_world_size(world_size)
    if p == 1:
        return 0
    if algorithm == "naive":
        return (p - 1) * n if rank == root else n
    sizes = [stop - start for start, stop in chunk_bounds(n, p)]
    return (n - sizes[rank]) + (n - sizes[(rank + 1) % p])


@dataclass(frozen=True)
class AlphaBeta:
    """A fitted latency-bandwidth model ``t = alpha + n_bytes * factor * beta``.

    ``alpha`` in seconds (the fixed cost of one operation), ``beta`` in seconds per byte;
    ``bandwidth = 1 / beta`` in bytes/s (for all-reduce with its bus factor: the bus
    bandwidth that very large messages approach).
    """

    alpha: float
    beta: float
    factor: float = 1.0

    @property
    def bandwidth(self) -> float:
        return float("inf") if self.beta == 0 else 1.0 / self.beta

    def time(self, n_bytes: float | np.ndarray) -> float | np.ndarray:
        return self.alpha + np.asarray(n_bytes, dtype=float) * self.factor * self.beta

    def busbw(self, n_bytes: float | np.ndarray) -> float | np.ndarray:
        """Model bus bandwidth (bytes/s): ``n * factor / t(n)``."""
        return np.asarray(n_bytes, dtype=float) * self.factor / self.time(n_bytes)


def fit_alpha_beta(n_bytes: Sequence[float], seconds: Sequence[float],
                   factor: float = 1.0) -> AlphaBeta:
    """Least-squares fit of ``t = alpha + n_bytes * factor * beta`` to measured times.

    Times span orders of magnitude, so each equation is divided by its measured time
    (relative errors are minimised; plain least squares would fit only the largest
    messages). ``alpha`` and ``beta`` are kept >= 0.
    """
    n = np.asarray(n_bytes, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if n.shape != t.shape or n.ndim != 1:
        raise UsageError(f"n_bytes and seconds must be 1-D and of one length; got "
                         f"{n.shape} and {t.shape}")
    if len(np.unique(n)) < 2:
        raise UsageError("fit_alpha_beta needs times for at least two different sizes")
    if np.any(t <= 0) or np.any(n < 0):
        raise UsageError("fit_alpha_beta needs times > 0 and sizes >= 0")
    check_positive("factor", factor)
    x = n * factor
    A = np.stack([1 / t, x / t], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    if alpha < 0:  # refit through the origin
        alpha, beta = 0.0, float(np.sum(x / t) / np.sum((x / t) ** 2))
    elif beta < 0:  # latency only
        alpha, beta = float(np.sum(1 / t) / np.sum(1 / t**2)), 0.0
    return AlphaBeta(alpha=float(alpha), beta=float(beta), factor=float(factor))


# -------------------------------------------------------- reference results (one process)
def rank_input(n: int, rank: int, seed: int = 0, dtype: Any = None, device: Any = "cpu"):
    """The input tensor of ``rank`` in the checks: ``n`` integers in [-50, 50) as floats.

    Every rank can compute every other rank's input, so it can check a collective's
    result against its definition locally; integer values make all sums exact, whatever
    the order of the additions.
    """
    import torch

    generator = torch.Generator().manual_seed(1_000_003 * seed + rank)
    values = torch.randint(-50, 50, (n,), generator=generator)
    return values.to(dtype=dtype or torch.float32, device=device)


def reference_all_reduce(inputs: Sequence[Any]):
    """What every rank holds after an all-reduce (sum): the sum of all inputs."""
    import torch

    return torch.stack(list(inputs)).sum(dim=0)


def reference_reduce_scatter(inputs: Sequence[Any], rank: int):
    """What ``rank`` holds after a reduce-scatter: its chunk (``chunk_bounds``) of the sum."""
    total = reference_all_reduce(inputs)
    start, stop = chunk_bounds(total.numel(), len(inputs))[rank]
    return total[start:stop]


def reference_all_gather(inputs: Sequence[Any]):
    """What every rank holds after an all-gather: all inputs, rank 0's first."""
    import torch

    return torch.cat(list(inputs))


# ------------------------------------------------------ distributed (inside a launched rank)
@dataclass
class Traffic:
    """Bytes and messages this process sent and received through this module's
    send/recv, so a lesson can compare them with the cost model's count."""

    sent: int = 0
    received: int = 0
    messages: int = 0

    def reset(self) -> None:
        self.sent = self.received = self.messages = 0


TRAFFIC = Traffic()


def _group_info(group) -> tuple[int, int]:
    import torch.distributed as tdist

    if not tdist.is_initialized():
        raise UsageError("torch.distributed is not initialised: call "
                         "course_utils.training.dist.init() first (inside a script launched "
                         "with course_utils.training.dist.launch)")
    return tdist.get_rank(group), tdist.get_world_size(group)


def _global(group, group_rank: int) -> int:
    """The global rank of ``group_rank`` of ``group`` (send/recv address global ranks)."""
    import torch.distributed as tdist

    return group_rank if group is None else tdist.get_global_rank(group, group_rank)


def _flat(tensor):
    if not tensor.is_contiguous():
        raise UsageError("the all-reduce works in place on a contiguous tensor; "
                         "call .contiguous() first")
    return tensor.view(-1)


def _send(tensor, dst: int, group) -> None:
    import torch.distributed as tdist

    tdist.send(tensor, _global(group, dst), group=group)
    TRAFFIC.sent += tensor.numel() * tensor.element_size()
    TRAFFIC.messages += 1


def _recv(tensor, src: int, group) -> None:
    import torch.distributed as tdist

    tdist.recv(tensor, _global(group, src), group=group)
    TRAFFIC.received += tensor.numel() * tensor.element_size()


def _exchange(send_buf, dst: int, recv_buf, src: int, group) -> None:
    """Send to ``dst`` and receive from ``src`` at the same time (no deadlock when every
    rank of a ring does it at once). Empty chunks are skipped: every rank knows the chunk
    sizes, so sender and receiver skip the same message."""
    import torch.distributed as tdist

    ops = []
    if send_buf.numel():
        ops.append(tdist.P2POp(tdist.isend, send_buf, _global(group, dst), group))
        TRAFFIC.sent += send_buf.numel() * send_buf.element_size()
        TRAFFIC.messages += 1
    if recv_buf.numel():
        ops.append(tdist.P2POp(tdist.irecv, recv_buf, _global(group, src), group))
        TRAFFIC.received += recv_buf.numel() * recv_buf.element_size()
    if ops:
        for work in tdist.batch_isend_irecv(ops):
            work.wait()


def naive_all_reduce(tensor, group=None, root: int = 0):
    """Sum ``tensor`` over all ranks of ``group``, in place: reduce to ``root``, broadcast.

    Every rank sends its tensor to ``root``, which adds them in rank order and sends the
    sum back to each. Simple and correct, but ``root`` sends and receives ``(p - 1) n``
    bytes, one message after another, while the other ranks idle. Returns ``tensor``.
    """
    rank, world = _group_info(group)
    flat = _flat(tensor)
    if world == 1:
        return tensor
    if rank == root:
        buf = flat.new_empty(flat.shape)
        for peer in range(world):
            if peer != root:
                _recv(buf, peer, group)
                flat.add_(buf)
        for peer in range(world):
            if peer != root:
                _send(flat, peer, group)
    else:
        _send(flat, root, group)
        _recv(flat, root, group)
    return tensor


def ring_reduce_scatter(tensor, group=None):
    """Ring reduce-scatter in place: afterwards chunk ``rank`` of ``tensor`` (see
    ``chunk_bounds``) holds the sum over all ranks of that chunk; returns that chunk (a
    view). The other chunks hold partial sums.

    ``p - 1`` steps; at step ``s`` rank ``r`` sends chunk ``(r - s - 1) mod p`` to its
    right neighbour and adds the chunk ``(r - s - 2) mod p`` coming from its left one.
    """
    rank, p = _group_info(group)
    flat = _flat(tensor)
    bounds = chunk_bounds(flat.numel(), p)
    start, stop = bounds[rank]
    if p == 1:
        return flat[start:stop]
    right, left = (rank + 1) % p, (rank - 1) % p
    buf = flat.new_empty(max(b - a for a, b in bounds))
    for step in range(p - 1):
        s0, s1 = bounds[(rank - step - 1) % p]
        r0, r1 = bounds[(rank - step - 2) % p]
        incoming = buf[: r1 - r0]
        _exchange(flat[s0:s1], right, incoming, left, group)
        flat[r0:r1].add_(incoming)
    return flat[start:stop]


def ring_all_gather(tensor, group=None):
    """Ring all-gather in place: rank ``r`` brings chunk ``r`` of ``tensor``; afterwards
    every rank holds every rank's chunk. Returns ``tensor``.

    ``p - 1`` steps; at step ``s`` rank ``r`` sends chunk ``(r - s) mod p`` (its own at
    first, then the one it just received) and receives chunk ``(r - s - 1) mod p``.
    """
    rank, p = _group_info(group)
    flat = _flat(tensor)
    bounds = chunk_bounds(flat.numel(), p)
    right, left = (rank + 1) % p, (rank - 1) % p
    for step in range(p - 1):
        s0, s1 = bounds[(rank - step) % p]
        r0, r1 = bounds[(rank - step - 1) % p]
        _exchange(flat[s0:s1], right, flat[r0:r1], left, group)
    return tensor


def ring_all_reduce(tensor, group=None):
    """Sum ``tensor`` over all ranks of ``group``, in place: ring reduce-scatter, then ring
    all-gather (the algorithm of Baidu's ring all-reduce, Horovod and NCCL's rings).

    ``2 (p - 1)`` steps, each sending one chunk of about ``n / p`` elements to the right
    neighbour while receiving one from the left: every rank sends ``2 (p - 1) n / p``
    elements, all links busy at once, so the time hardly grows with ``p`` for large
    tensors. Any length works (chunks differ by at most one element). Returns ``tensor``.
    """
    ring_reduce_scatter(tensor, group)
    return ring_all_gather(tensor, group)
