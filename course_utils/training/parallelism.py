"""Beyond data parallelism (lesson 14): the memory model of ZeRO/FSDP, the pipeline bubble,
and tensor-parallel (Megatron-LM) linear layers.

* **Memory per rank** (``bytes_per_parameter``, ``memory_per_rank``): data parallelism
  keeps a full copy of everything on every rank. Rajbhandari et al. (2020), "ZeRO: Memory
  Optimizations Toward Training Trillion Parameter Models", count, for a model of ``Ψ``
  parameters trained with mixed-precision Adam, ``2Ψ`` bytes of fp16 parameters, ``2Ψ`` of
  fp16 gradients and ``KΨ = 12Ψ`` of optimizer state (fp32 master parameters, momentum and
  variance): ``16Ψ`` per rank. ZeRO stage 1 shards the optimizer state over the ``N``
  ranks, stage 2 also the gradients, stage 3 (= PyTorch's FSDP) also the parameters. In
  plain fp32 the three parts are ``4Ψ + 4Ψ + 8Ψ``.
* **FSDP's shards** (``fsdp_local_numel``, ``fsdp_rank_bytes``): FSDP2's ``fully_shard``
  cuts every tensor along its first dimension like ``torch.chunk``: ``ceil(d0 / N)`` rows
  per rank, the last ranks get fewer (or none). The sum over ranks is exact; each rank's
  share differs from ``Ψ / N`` by at most one row per tensor (``fsdp_padding_bound``).
* **Counting bytes** (``tensor_bytes``, ``training_state_bytes``): the bytes a rank really
  holds in parameters, gradients and optimizer state (a DTensor counts its local shard).
* **Pipeline parallelism** (``bubble_fraction``, ``gpipe_schedule``, ``pipeline_time``):
  with ``p`` stages and ``m`` micro-batches, GPipe's schedule takes ``m + p - 1`` slots
  during which every stage works ``m``: the idle ("bubble") fraction is
  ``(p - 1) / (m + p - 1)`` (Huang et al. 2019, "GPipe").
* **Tensor parallelism** (``split_sizes``, ``shard_range``, ``column_parallel_shard``,
  ``row_parallel_shard``, ``copy_to_parallel``, ``reduce_from_parallel``,
  ``TensorParallelMLP``): Shoeybi et al. (2019), "Megatron-LM": the first linear layer of an
  MLP split by output features (column-parallel), the second by input features
  (row-parallel), so the hidden activation never leaves its rank and one all-reduce of the
  output per forward pass (one of the input gradient per backward pass) suffices.

Every function validates its arguments and raises ``UsageError`` naming the bad one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError, check_choice, check_ints

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp")
PRECISIONS = ("mixed", "fp32")
OPTIMIZERS = ("adam", "momentum", "sgd")
ACTIVATIONS = ("relu", "gelu")

# bytes of optimizer *state* per parameter, without a master copy
_STATE_BYTES = {"adam": 8, "momentum": 4, "sgd": 0}


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int (Python or NumPy integer) >= ``minimum``, else a UsageError."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or \
            operator.index(value) < minimum:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= {minimum}")
    return operator.index(value)


# ------------------------------------------------------------------------- memory model
@dataclass(frozen=True)
class Memory:
    """Bytes one rank holds in parameters, gradients and optimizer state."""

    params: float
    grads: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer

    def as_dict(self) -> dict[str, float]:
        return {"params": self.params, "grads": self.grads, "optimizer": self.optimizer,
                "total": self.total}


def bytes_per_parameter(precision: str = "mixed", optimizer: str = "adam"
                        ) -> tuple[int, int, int]:
    """(parameter, gradient, optimizer-state) bytes per parameter, unsharded.

    ``"mixed"``: fp16/bf16 parameters and gradients (2 + 2) and, in the optimizer, an fp32
    master copy (4) plus the optimizer's fp32 state (Adam: momentum and variance, 8), which
    is ZeRO's ``K = 12``. ``"fp32"``: 4 + 4 and the state alone (Adam: 8).
    """
    check_choice("precision", precision, PRECISIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    state = _STATE_BYTES[optimizer]
    if precision == "mixed":
        return 2, 2, 4 + state
    return 4, 4, state


def memory_per_rank(n_params: float, world_size: int, strategy: str = "ddp",
                    precision: str = "mixed", optimizer: str = "adam") -> Memory:
    """Model-state bytes per rank (no activations, buffers or fragmentation).

    ``ddp``: everything replicated. ``zero1``: optimizer state / N. ``zero2``: gradients
    and optimizer state / N. ``zero3`` = ``fsdp``: everything / N.
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or n_params < 0:
        raise UsageError(f"n_params={n_params!r} is not valid; it must be a number >= 0")
    world_size = _check_int("world_size", world_size, minimum=1)
    check_choice("strategy", strategy, STRATEGIES)
    p, g, o = (b * n_params for b in bytes_per_parameter(precision, optimizer))
    level = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[strategy]
    return Memory(params=p / world_size if level >= 3 else p,
                  grads=g / world_size if level >= 2 else g,
                  optimizer=o / world_size if level >= 1 else o)


def fsdp_local_numel(shape: Sequence[int], world_size: int, rank: int) -> int:
    """Elements of a tensor of ``shape`` that FSDP2 stores on ``rank``.

    ``fully_shard`` splits dim 0 like ``torch.chunk``: chunks of ``ceil(d0 / N)`` rows, so
    the last ranks may get fewer rows, or none (a 0-d tensor counts as one row).
    """
    world_size = _check_int("world_size", world_size, minimum=1)
    rank = _check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise UsageError(f"rank={rank} is not valid; it must be < world_size={world_size}")
    shape = [_check_int("shape entry", d, minimum=0) for d in shape]
    rows = shape[0] if shape else 1
    rest = math.prod(shape[1:])
    chunk = math.ceil(rows / world_size)
    return max(0, min(chunk, rows - rank * chunk)) * rest


def fsdp_rank_bytes(shapes: Iterable[Sequence[int]], world_size: int, rank: int,
                    precision: str = "fp32", optimizer: str = "adam") -> Memory:
    """Exact model-state bytes FSDP2 leaves on ``rank`` for parameters of ``shapes``."""
    numel = sum(fsdp_local_numel(s, world_size, rank) for s in shapes)
    p, g, o = bytes_per_parameter(precision, optimizer)
    return Memory(params=p * numel, grads=g * numel, optimizer=o * numel)


def fsdp_padding_bound(shapes: Iterable[Sequence[int]]) -> int:
    """Largest amount (elements) by which a rank's share can exceed ``Ψ / N``: one row of
    every tensor (the ``ceil`` in ``ceil(d0 / N)``)."""
    return sum(math.prod(list(s)[1:]) for s in shapes)


# ------------------------------------------------------------------------ counting bytes
def tensor_bytes(t: torch.Tensor | None) -> int:
    """Bytes a tensor occupies on this rank: a DTensor counts its local shard only."""
    if t is None:
        return 0
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer
                         ) -> dict[str, int]:
    """Bytes this rank holds in ``params``, ``grads``, ``optimizer`` state tensors shaped like
    their parameter (Adam's momentum and variance), and ``optimizer_steps`` (the scalar step
    counters, counted apart because the ZeRO model leaves them out).

    Works for plain models, DDP, FSDP2 (DTensor shards) and ``ZeroRedundancyOptimizer``
    (whose local optimizer, ``.optim``, holds this rank's share of the state).
    """
    inner = getattr(optimizer, "optim", optimizer)
    params = list(model.parameters())
    state_bytes = steps = 0
    for state in inner.state.values():
        for value in state.values():
            if not isinstance(value, torch.Tensor):
                continue
            if value.dim() == 0:
                steps += tensor_bytes(value)
            else:
                state_bytes += tensor_bytes(value)
    return {"params": sum(tensor_bytes(p) for p in params),
            "grads": sum(tensor_bytes(p.grad) for p in params),
            "optimizer": state_bytes, "optimizer_steps": steps}


# ---------------------------------------------------------------------- pipeline bubble
def _check_pipeline(stages: int, micro_batches: int) -> tuple[int, int]:
    return (_check_int("stages", stages, minimum=1),
            _check_int("micro_batches", micro_batches, minimum=1))


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction of every stage: ``(p - 1) / (m + p - 1)``."""
    p, m = _check_pipeline(stages, micro_batches)
    return (p - 1) / (m + p - 1)


def pipeline_time(stages: int, micro_batches: int, stage_time: float) -> float:
    """Time of one mini-batch through ``p`` stages when each stage needs ``stage_time`` for
    the whole mini-batch, cut into ``m`` equal micro-batches: ``(m + p - 1) stage_time / m``.
    """
    p, m = _check_pipeline(stages, micro_batches)
    if not stage_time >= 0:
        raise UsageError(f"stage_time={stage_time!r} is not valid; it must be >= 0")
    return (m + p - 1) * stage_time / m


def gpipe_schedule(stages: int, micro_batches: int) -> list[tuple[int, int, int]]:
    """GPipe's forward schedule as ``(stage, micro_batch, slot)``: stage ``s`` works on
    micro-batch ``j`` in time slot ``s + j``; there are ``m + p - 1`` slots."""
    p, m = _check_pipeline(stages, micro_batches)
    return [(s, j, s + j) for s in range(p) for j in range(m)]


def measured_bubble(total_seconds: float, busy_seconds: float) -> float:
    """Idle fraction of a stage that was busy ``busy_seconds`` out of ``total_seconds``."""
    if not total_seconds > 0 or not busy_seconds >= 0:
        raise UsageError(f"total_seconds={total_seconds!r} must be > 0 and "
                         f"busy_seconds={busy_seconds!r} >= 0")
    return 1.0 - busy_seconds / total_seconds


# -------------------------------------------------------------------- tensor parallelism
def split_sizes(n: int, world_size: int, *, require_divisible: bool = False,
                name: str = "n") -> list[int]:
    """Sizes of ``world_size`` contiguous parts of ``n`` (like ``torch.tensor_split``: the
    first ``n % world_size`` parts one larger). With ``require_divisible`` (Megatron-LM's
    rule), an ``n`` that ``world_size`` does not divide is a ``UsageError``."""
    n = _check_int(name, n, minimum=0)
    world_size = _check_int("world_size", world_size, minimum=1)
    if require_divisible and n % world_size:
        raise UsageError(f"{name}={n} is not divisible by the tensor-parallel size "
                         f"{world_size}; choose {name} as a multiple of {world_size} "
                         f"(e.g. {math.ceil(n / world_size) * world_size}, padding it), or "
                         "allow uneven shards")
    base, extra = divmod(n, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def shard_range(n: int, world_size: int, rank: int, *, require_divisible: bool = False,
                name: str = "n") -> tuple[int, int]:
    """``(start, stop)`` of ``rank``'s part of ``n`` (see ``split_sizes``)."""
    sizes = split_sizes(n, world_size, require_divisible=require_divisible, name=name)
    rank = _check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise UsageError(f"rank={rank} is not valid; it must be < world_size={world_size}")
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


def column_parallel_shard(weight: torch.Tensor, bias: torch.Tensor | None, rank: int,
                          world_size: int, *, require_divisible: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``rank``'s rows of a linear layer's ``weight`` (out x in) and ``bias``: its share of
    the *output* features. Copies, so that they can become this rank's own parameters."""
    start, stop = shard_range(weight.shape[0], world_size, rank,
                              require_divisible=require_divisible, name="out_features")
    b = None if bias is None else bias.detach()[start:stop].clone()
    return weight.detach()[start:stop].clone(), b


def row_parallel_shard(weight: torch.Tensor, rank: int, world_size: int, *,
                       require_divisible: bool = False) -> torch.Tensor:
    """``rank``'s columns of ``weight`` (out x in): its share of the *input* features.
    The bias is not sharded: it is added once, after the all-reduce."""
    start, stop = shard_range(weight.shape[1], world_size, rank,
                              require_divisible=require_divisible, name="in_features")
    return weight.detach()[:, start:stop].clone()


def _all_reduce(x: torch.Tensor, group: Any) -> torch.Tensor:
    import torch.distributed as tdist

    if group is None and not tdist.is_initialized():
        return x  # a single process: the sum over one rank
    x = x.contiguous().clone()
    tdist.all_reduce(x, group=group)
    return x


class _CopyToParallel(torch.autograd.Function):
    """Megatron's ``f``: identity forward; all-reduce of the gradient backward (every rank
    used the same input, so its gradient is the sum of the ranks' contributions)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:  # noqa: D102
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return _all_reduce(grad, ctx.group), None


class _ReduceFromParallel(torch.autograd.Function):
    """Megatron's ``g``: all-reduce forward (sum the partial outputs); identity backward
    (every rank needs the same, full gradient of the output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:  # noqa: D102
        return _all_reduce(x, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return grad, None


def copy_to_parallel(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Identity forward, all-reduce backward (Megatron-LM's ``f``)."""
    return _CopyToParallel.apply(x, group)


def reduce_from_parallel(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """All-reduce forward, identity backward (Megatron-LM's ``g``)."""
    return _ReduceFromParallel.apply(x, group)


class TensorParallelMLP(nn.Module):
    """``rank``'s part of ``fc2(act(fc1(x)))`` split over ``world_size`` ranks (Megatron-LM).

    ``fc1`` is column-parallel (this rank computes ``h_r`` of the hidden features, with its
    rows of ``W1`` and ``b1``); ``fc2`` row-parallel (its columns of ``W2`` take exactly those
    ``h_r`` features). ``partial(x)`` is this rank's contribution to the output; ``forward``
    sums the contributions over ``group`` with one all-reduce and adds ``b2`` once. The
    hidden size need not be divisible by ``world_size`` (shards then differ by one feature)
    unless ``require_divisible``.
    """

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, rank: int, world_size: int,
                 group: Any = None, activation: str = "relu", *,
                 require_divisible: bool = False):
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        if fc1.out_features != fc2.in_features:
            raise UsageError(f"fc1.out_features={fc1.out_features} must equal "
                             f"fc2.in_features={fc2.in_features}")
        w1, b1 = column_parallel_shard(fc1.weight, fc1.bias, rank, world_size,
                                       require_divisible=require_divisible)
        self.w1 = nn.Parameter(w1)
        self.b1 = None if b1 is None else nn.Parameter(b1)
        self.w2 = nn.Parameter(row_parallel_shard(fc2.weight, rank, world_size,
                                                  require_divisible=require_divisible))
        self.b2 = None if fc2.bias is None else nn.Parameter(fc2.bias.detach().clone())
        self.rank, self.world_size, self.group = rank, world_size, group
        self.activation = activation
        self.hidden_range = shard_range(fc1.out_features, world_size, rank)

    def partial(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contribution to the output, before the all-reduce and ``b2``."""
        h = F.linear(x, self.w1, self.b1)
        h = F.relu(h) if self.activation == "relu" else F.gelu(h)
        return F.linear(h, self.w2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = reduce_from_parallel(self.partial(copy_to_parallel(x, self.group)), self.group)
        return y if self.b2 is None else y + self.b2


# ----------------------------------------------------------------- lesson 14's knobs
def check_lesson_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate lesson 14's knobs (profile ``beyond_dp``); return them normalised.

    Every bad value raises a ``UsageError`` that names the knob, its value and what is
    allowed, before any process is started.
    """
    out = dict(cfg)
    check_choice("backend", cfg["backend"], ("auto", "gloo", "nccl"))
    out["fsdp_world_sizes"] = check_ints("fsdp_world_sizes", cfg["fsdp_world_sizes"], minimum=2)
    out["widths"] = check_ints("widths", cfg["widths"], minimum=1)
    for name in ("in_features", "classes", "batch_per_rank", "steps", "tp_features",
                 "tp_batch", "pp_repeats", "mpi_nproc", "mpi_steps", "mpi_n_per_class"):
        out[name] = _check_int(name, cfg[name], minimum=1)
    out["tp_world"] = _check_int("tp_world", cfg["tp_world"], minimum=2)
    out["tp_sizes"] = check_ints("tp_sizes", cfg["tp_sizes"], minimum=1)
    bad = [t for t in out["tp_sizes"] if out["tp_world"] % t]
    if bad:
        raise UsageError(f"tp_sizes={cfg['tp_sizes']!r} is not valid: {bad} do not divide "
                         f"tp_world={out['tp_world']}; choose divisors of tp_world")
    out["tp_hidden"] = check_ints("tp_hidden", cfg["tp_hidden"], minimum=1)
    out["stages"] = _check_int("stages", cfg["stages"], minimum=2)
    out["micro_batches"] = sorted(set(check_ints("micro_batches", cfg["micro_batches"], minimum=1)))
    if isinstance(cfg["lr"], bool) or not isinstance(cfg["lr"], (int, float)) \
            or not cfg["lr"] > 0:
        raise UsageError(f"lr={cfg['lr']!r} is not valid; it must be a number > 0")
    if not isinstance(cfg["stage_ms"], (int, float)) or not cfg["stage_ms"] > 0:
        raise UsageError(f"stage_ms={cfg['stage_ms']!r} is not valid; it must be a number "
                         "of milliseconds > 0")
    tol = cfg["bubble_tolerance"]
    if not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise UsageError(f"bubble_tolerance={tol!r} is not valid; it must be in (0, 1)")
    out["ft_steps"] = _check_int("ft_steps", cfg["ft_steps"], minimum=2)
    kill = cfg["ft_kill_step"]
    if isinstance(kill, bool) or not isinstance(kill, int) or not 1 <= kill < out["ft_steps"]:
        raise UsageError(f"ft_kill_step={kill!r} is not valid; it must be an integer in "
                         f"[1, ft_steps - 1] = [1, {out['ft_steps'] - 1}] (a checkpoint "
                         "must exist before the kill)")
    if not isinstance(cfg["timeout"], (int, float)) or not cfg["timeout"] > 0:
        raise UsageError(f"timeout={cfg['timeout']!r} is not valid; it must be > 0 seconds")
    return out
