"""Data-parallel training (lesson 13): what its scripts and its notebook share.

* ``LinearScalingSchedule``: the linear scaling rule with gradual warm-up of Goyal et al.
  (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour": ``k`` times the
  batch, ``k`` times the learning rate, reached by a linear ramp over the first steps.
* ``global_order``, ``rank_indices``, ``step_samples``: the arithmetic of
  ``DistributedSampler``. Rank ``r`` of ``N`` reads every ``N``-th index of one shared
  permutation, so in every step the ``N`` ranks together read one contiguous slice of it:
  exactly the batch a single process with ``N`` times the batch size would read.
* ``spirals_problem``, ``reference_training``: the deterministic model, data and
  single-process training that the data-parallel runs are checked against.
* ``parameter_digest``, ``flat_parameters``, ``max_abs_difference``: compare parameters
  across processes and runs.
* ``save_checkpoint``, ``load_checkpoint``: a checkpoint written atomically (a crash while
  writing leaves the previous one intact) and loaded into a plain or a wrapped model.
* ``backend_for``, ``bench_backend``, ``make_train_step``, ``ddp_buckets``: small pieces
  the launches and the benchmark need; ``check_config``: the lesson's knobs, validated.

Every function validates its arguments and raises ``UsageError`` naming the bad one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError, check_choice, check_ints, check_numbers, check_positive

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHECKPOINT_FORMAT = "hpdl-ddp-checkpoint/1"


def _check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` if it is an integer >= ``minimum``; else a UsageError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer >= {minimum}")
    return int(value)


def dtype_of(name: str) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` from its name (``DTYPE`` knobs, script options)."""
    check_choice("dtype", name, tuple(DTYPES))
    return DTYPES[name]


# ------------------------------------------------------------------ learning-rate schedule
@dataclass(frozen=True)
class LinearScalingSchedule:
    """Goyal et al. (2017): the learning rate of each optimizer step for a large batch.

    ``base_lr`` is a learning rate that works for a batch of ``base_batch`` samples (one
    worker, or the paper's 0.1 for 256 images). With a global batch ``k`` times larger
    (``k = global_batch / base_batch``: ``N`` workers, gradient accumulation), the *linear
    scaling rule* uses ``k · base_lr``: a step then moves the weights about as far as the
    ``k`` small steps it replaces. Early in training the weights change fast and that
    approximation fails, so the rate starts at ``base_lr`` and grows linearly to
    ``k · base_lr`` over ``warmup_steps`` (*gradual warm-up*; the paper: 5 epochs). After
    each step number in ``milestones`` the rate is multiplied by ``gamma`` (step decay).
    """

    base_lr: float
    base_batch: int
    global_batch: int
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.base_lr, bool) or not isinstance(self.base_lr, (int, float)):
            raise UsageError(f"base_lr={self.base_lr!r} is not valid; it must be a number > 0")
        check_positive("base_lr", self.base_lr)
        _check_int("base_batch", self.base_batch)
        _check_int("global_batch", self.global_batch)
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        for m in self.milestones:
            _check_int("milestones", m, minimum=1)
        if list(self.milestones) != sorted(self.milestones):
            raise UsageError(f"milestones={self.milestones!r} is not valid; they must be "
                             "in increasing order")
        if not 0 < self.gamma <= 1:
            raise UsageError(f"gamma={self.gamma!r} is not valid; it must be in (0, 1]")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @property
    def scale(self) -> float:
        """``k``: how many times larger the global batch is than the base batch."""
        return self.global_batch / self.base_batch

    @property
    def peak_lr(self) -> float:
        """``k · base_lr``, the rate after the warm-up (before any decay)."""
        return self.base_lr * self.scale

    @property
    def start_lr(self) -> float:
        """The rate of step 0: ``base_lr`` with a warm-up (never above the peak)."""
        return min(self.base_lr, self.peak_lr) if self.warmup_steps else self.peak_lr

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0, 1, 2, ...)."""
        _check_int("step", step, minimum=0)
        if step < self.warmup_steps:
            lr = self.start_lr + (self.peak_lr - self.start_lr) * step / self.warmup_steps
        else:
            lr = self.peak_lr
        decays = sum(1 for m in self.milestones if step >= m)
        return lr * self.gamma ** decays

    def lrs(self, steps: int) -> np.ndarray:
        """The rates of steps ``0 .. steps - 1`` (for a plot)."""
        _check_int("steps", steps)
        return np.array([self(s) for s in range(steps)])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (called before each step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# ----------------------------------------------------------- DistributedSampler arithmetic
def global_order(n: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0) -> list[int]:
    """The permutation of ``range(n)`` that ``DistributedSampler`` shares out in ``epoch``.

    Every rank computes the same one (``torch.randperm`` seeded with ``seed + epoch``),
    which is why the sampler's ``seed`` must be the same on every rank and why
    ``set_epoch`` must be called each epoch (else every epoch has the same order).
    """
    _check_int("n", n)
    _check_int("epoch", epoch, minimum=0)
    if not shuffle:
        return list(range(n))
    generator = torch.Generator()
    generator.manual_seed(int(seed) + int(epoch))
    return torch.randperm(n, generator=generator).tolist()


def rank_indices(n: int, world_size: int, rank: int, *, shuffle: bool = True, seed: int = 0,
                 epoch: int = 0, drop_last: bool = True) -> list[int]:
    """The sample indices rank ``rank`` of ``world_size`` reads in ``epoch``: what
    ``DistributedSampler(dataset, world_size, rank, shuffle, seed, drop_last)`` yields.

    The shared order is cut (``drop_last``) or padded with its own first indices to a
    multiple of ``world_size``; then rank ``r`` takes positions ``r, r + N, r + 2N, ...``.
    """
    _check_int("world_size", world_size)
    _check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise UsageError(f"rank={rank!r} is not valid; it must be < world_size={world_size}")
    order = global_order(n, shuffle=shuffle, seed=seed, epoch=epoch)
    if drop_last:
        total = n - n % world_size
        order = order[:total]
    else:
        total = -(-n // world_size) * world_size
        while len(order) < total:
            order += order[:total - len(order)]
    return order[rank:total:world_size]


def steps_per_epoch(n: int, world_size: int, batch_size: int, accum_steps: int = 1) -> int:
    """Optimizer steps per epoch of ``N`` ranks reading ``batch_size`` samples per
    micro-batch, ``accum_steps`` micro-batches per step (the sampler and the loader both
    dropping incomplete batches): ``n // (N · batch_size · accum_steps)``."""
    _check_int("n", n)
    _check_int("world_size", world_size)
    _check_int("batch_size", batch_size)
    _check_int("accum_steps", accum_steps)
    return (n // world_size) // batch_size // accum_steps


def step_samples(order: Sequence[int], world_size: int, batch_size: int, step: int,
                 accum_steps: int = 1) -> list[int]:
    """The samples all ranks together read in optimizer step ``step`` of an epoch whose
    shared order is ``order``: one contiguous slice ``order[s·G : (s+1)·G]`` with
    ``G = N · batch_size · accum_steps``, the batch of a single process with batch ``G``.

    Why: rank ``r``'s ``j``-th sample is ``order[r + N·j]``; micro-batch ``m`` of step
    ``s`` holds ``j`` from ``(s·k + m)·b`` to ``(s·k + m + 1)·b - 1``, and as ``r`` and
    ``m`` run over their ranges, ``r + N·j`` covers every position of the slice once.
    """
    _check_int("world_size", world_size)
    _check_int("batch_size", batch_size)
    _check_int("step", step, minimum=0)
    _check_int("accum_steps", accum_steps)
    g = world_size * batch_size * accum_steps
    return list(order[step * g:(step + 1) * g])


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for rank ``rank``'s own random stream (augmentation, dropout) at ``step``.

    The model must start identical on every rank and the sampler needs one shared seed,
    but random augmentation must differ between ranks, or every rank would augment its
    samples the same way. Derived with NumPy's ``SeedSequence``, so the streams are
    independent and a resumed run can re-create them from ``(seed, rank, step)``.
    """
    _check_int("seed", seed, minimum=0)
    _check_int("rank", rank, minimum=0)
    _check_int("step", step, minimum=0)
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


# ------------------------------------------------------------ the problem and its reference
def spirals_problem(n_per_class: int, hidden: Sequence[int], *, seed: int = 0,
                    dtype: str = "float64") -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The deterministic problem of the equivalence checks: ``(model, X, y)``.

    Two spirals (``data.two_spirals``) and an MLP (``models.mlp``) with ReLU and no batch
    norm or dropout, so a sample's gradient depends only on that sample and the weights.
    ``torch.manual_seed(seed)`` before the model: every process that calls this with the
    same arguments gets bit-identical weights.
    """
    from .. import data, models

    _check_int("n_per_class", n_per_class)
    torch_dtype = dtype_of(dtype)
    X, y = data.two_spirals(n_per_class, seed=seed)
    torch.manual_seed(seed)
    model = models.mlp(2, tuple(hidden), 2).to(torch_dtype)
    return model, torch.as_tensor(X, dtype=torch_dtype), torch.as_tensor(y)


def reference_training(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                       global_batch: int, epochs: int, schedule: Callable[[int], float],
                       momentum: float = 0.0, weight_decay: float = 0.0,
                       shuffle: bool = True, seed: int = 0) -> dict[str, list[float]]:
    """Train ``model`` in this one process, ``global_batch`` samples per step, in the
    order ``DistributedSampler`` would share out (``global_order``), with cross-entropy and
    SGD at ``schedule(step)``. The data-parallel runs must end with the same parameters.

    Returns ``{"loss": [...], "lr": [...]}``, one entry per step (the loss before it).
    """
    _check_int("global_batch", global_batch)
    _check_int("epochs", epochs)
    from ..train import make_optimizer

    opt = make_optimizer(model, "sgd", schedule(0), weight_decay, momentum)
    history: dict[str, list[float]] = {"loss": [], "lr": []}
    step = 0
    for epoch in range(epochs):
        order = global_order(len(X), shuffle=shuffle, seed=seed, epoch=epoch)
        for s in range(len(order) // global_batch):
            idx = torch.as_tensor(order[s * global_batch:(s + 1) * global_batch])
            lr = schedule(step)
            set_lr(opt, lr)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            history["loss"].append(float(loss.detach()))
            history["lr"].append(lr)
            step += 1
    return history


# --------------------------------------------------------------------- comparing parameters
def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` or ``DataParallel`` wrapper.

    A wrapper's ``state_dict`` names every tensor ``module.<name>``; saving the inner
    model's keeps checkpoints loadable without the wrapper (in one process, for
    inference, with another number of workers).
    """
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters as one detached CPU vector (in ``named_parameters`` order)."""
    return torch.cat([p.detach().cpu().reshape(-1) for p in unwrap(model).parameters()])


def parameter_digest(model: nn.Module) -> str:
    """A short SHA-256 of the parameters' names and exact bytes: equal digests on two
    ranks mean bit-identical replicas (cheap to send as JSON)."""
    h = hashlib.sha256()
    for name, p in unwrap(model).named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def max_abs_difference(a: nn.Module | torch.Tensor | dict, b: nn.Module | torch.Tensor | dict
                       ) -> float:
    """Largest absolute difference between two models, state dicts or flat vectors."""
    def flat(x):
        if isinstance(x, nn.Module):
            return flat_parameters(x)
        if isinstance(x, dict):
            return torch.cat([v.detach().cpu().reshape(-1) for v in x.values()])
        return torch.as_tensor(x).detach().cpu().reshape(-1)

    fa, fb = flat(a), flat(b)
    if fa.shape != fb.shape:
        raise UsageError(f"the two models differ in size: {fa.numel()} and {fb.numel()} "
                         "numbers")
    return float((fa.double() - fb.double()).abs().max()) if fa.numel() else 0.0


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | os.PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then
    ``os.replace`` onto ``path``. A process killed while writing leaves the previous
    checkpoint intact, never a half-written one (a rename is atomic on POSIX file systems).

    Saves the unwrapped model's ``state_dict``, the optimizer's (momentum buffers), the
    number of optimizer steps done, ``extra`` (plain Python values) and the CPU RNG state.
    Call it on rank 0 only: after a step every replica holds the same weights.
    """
    _check_int("step", step, minimum=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "step": int(step),
             "model": unwrap(model).state_dict(),
             "optimizer": optimizer.state_dict() if optimizer is not None else None,
             "extra": dict(extra or {}), "cpu_rng": torch.get_rng_state()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint of ``save_checkpoint``; load it into ``model`` (plain or wrapped)
    and ``optimizer`` when given. Returns the whole checkpoint (``step``, ``extra``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} is not a checkpoint of course_utils.training.ddp.save_checkpoint")
    if model is not None:
        unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        if state["optimizer"] is None:
            raise UsageError(f"checkpoint {path} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    return state


# ------------------------------------------------------------------------------ benchmarks
def backend_for(nproc: int, device: str = "auto") -> str:
    """``"nccl"`` when every one of ``nproc`` ranks can have its own GPU (and ``device``
    allows the GPU), else ``"gloo"`` (the ranks then compute on the CPU)."""
    from ..device import cuda_gpu_count

    _check_int("nproc", nproc)
    check_choice("device", device, ("auto", "cpu", "cuda"))
    return "nccl" if device != "cpu" and 0 < nproc <= cuda_gpu_count() else "gloo"


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                    y: torch.Tensor) -> Callable[[], None]:
    """One training step on a fixed batch, as a function for ``benchmark`` (no data
    loading: the throughput of the model and of the gradient all-reduce alone)."""
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()

    return step


def ddp_buckets(model: nn.Module) -> list[int]:
    """Sizes in bytes of the gradient buckets a ``DistributedDataParallel`` model
    all-reduces, as rebuilt after its first step (``[]`` where PyTorch does not say).

    Uses DDP's own logging data, a private interface: for display only.
    """
    try:
        data = model._get_ddp_logging_data()
    except (AttributeError, RuntimeError):
        return []
    sizes = data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes") or ""
    return [int(s) for s in str(sizes).split(",") if s.strip()]


# ------------------------------------------------------------------ the lesson's knobs
def check_config(cfg: dict[str, Any], *, gpus: int = 0) -> dict[str, Any]:
    """Validate lesson 13's knobs (the profile's ``data_parallel`` entry with the
    notebook's overrides); return them normalised (tuples, ints). A bad knob raises one
    ``UsageError`` naming it, its value and what is allowed."""
    out = dict(cfg)
    for name in ("n_per_class", "batch_size", "epochs", "base_batch", "lr_demo_workers",
                 "lr_demo_epochs", "bench_width", "bench_blocks", "bench_batch",
                 "bench_repeats"):
        out[name] = _check_int(name, cfg[name])
    out["accum_steps"] = _check_int("accum_steps", cfg["accum_steps"], minimum=2)
    for name in ("warmup_steps", "bench_warmup", "die_at_step"):
        out[name] = _check_int(name, cfg[name], minimum=0)
    for name in ("lr", "momentum", "timeout"):
        value = cfg[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name}={value!r} is not valid; it must be a number")
        check_positive(name, value, allow_zero=name == "momentum")
    dtype_of(cfg["dtype"])
    out["hidden"] = tuple(check_ints("hidden", cfg["hidden"], minimum=1, example="64,64"))
    out["world_sizes"] = tuple(sorted(check_ints("world_sizes", cfg["world_sizes"],
                                                 minimum=2, distinct=True)))
    out["bucket_caps_mb"] = tuple(check_numbers("bucket_caps_mb", cfg["bucket_caps_mb"]))
    if not isinstance(cfg["restart_demo"], bool):
        raise UsageError(f"restart_demo={cfg['restart_demo']!r} is not valid; choose True "
                         "or False")
    n = 2 * out["n_per_class"]
    for world in out["world_sizes"]:
        for k in {1, out["accum_steps"]}:
            if steps_per_epoch(n, world, out["batch_size"], k) < 1:
                raise UsageError(
                    f"n_per_class={out['n_per_class']} gives {n} samples: too few for "
                    f"{world} ranks x batch_size={out['batch_size']} x {k} micro-batches; "
                    "raise n_per_class or lower batch_size")
    if n < out["lr_demo_workers"] * out["base_batch"]:
        raise UsageError(f"lr_demo_workers={out['lr_demo_workers']} x base_batch="
                         f"{out['base_batch']} is more than the {n} samples; lower one")
    first = out["world_sizes"][0]
    total = out["epochs"] * steps_per_epoch(n, first, out["batch_size"])
    if not 1 <= out["die_at_step"] < total:
        raise UsageError(f"die_at_step={out['die_at_step']!r} is not valid; the run on "
                         f"{first} ranks has {total} steps: choose 1 to {total - 1}")
    value = cfg["bench_world_sizes"]
    if value == "auto":
        out["bench_world_sizes"] = tuple(_auto_world_sizes(gpus))
    else:
        sizes = tuple(sorted(check_ints("bench_world_sizes", value, minimum=1,
                                        distinct=True)))
        if sizes[0] != 1:
            raise UsageError(f"bench_world_sizes={value!r} is not valid; it must start with "
                             "1 (the baseline of the scaling efficiency), e.g. (1, 2)")
        out["bench_world_sizes"] = sizes
    return out


def _auto_world_sizes(gpus: int) -> list[int]:
    """1, 2, 4, ... up to the GPUs present (and their number); (1, 2) without GPUs."""
    from .scaling import worker_counts

    return worker_counts(gpus) if gpus >= 1 else [1, 2]


def bench_backend(world_sizes: Sequence[int], device: str, gpus: int) -> str:
    """One backend for every run of a scaling study, so all points use the same
    hardware: NCCL when the device is the GPU and every run has a GPU per rank, else
    Gloo on the CPU."""
    check_choice("device", device, ("cpu", "cuda"))
    return "nccl" if device == "cuda" and max(world_sizes) <= gpus else "gloo"
