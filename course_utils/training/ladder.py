"""The optimisation ladder of lesson 11: training throughput of one model, step by step.

One model and one data pipeline are trained under a sequence of configurations, each
adding one optimisation to the one before (NERSC's *deep learning at scale* tutorial
style): DataLoader workers, pinned memory with non-blocking copies, channels-last memory
layout, TF32, automatic mixed precision (bf16, or fp16 with a gradient scaler),
``torch.compile`` and CUDA graphs. ``measure`` trains a fresh copy of the model under one
``LadderConfig`` and returns its samples per second, with what is needed to check that the
configuration still trains and computes the same thing as the baseline.

Every configuration runs the *same* training step (``train_step``): eager, compiled, or
captured once into a CUDA graph and replayed. Loading the data is part of what is timed:
``AugmentedImages`` does real per-sample CPU work (random crop, flip, conversion to
float, normalisation), as a real image pipeline does, which is what DataLoader workers are
for. It lives in this module (not in a notebook) so that worker processes can import it.

A configuration that cannot run on this device (CUDA graphs or pinned memory on a CPU,
bf16 on a GPU without it) is not an error: ``measure`` returns ``Skipped(reason)`` and the
lesson prints the reason. Contradictory or malformed configurations raise ``UsageError``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.utils.data import DataLoader, Dataset

from .. import tf32
from ..errors import UsageError, check_choice, check_positive
from ..timing import Timing, benchmark

AMP_MODES = (None, "bf16", "fp16")
REGIONS = ("data", "to_device", "forward", "backward", "optimizer")
"""The labelled parts of a training step (``torch.profiler`` shows them by these names)."""

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured
_WORKERS = object()  # in LADDER: "the number of workers build_ladder is given"


# ------------------------------------------------------------------ data
class AugmentedImages(Dataset):
    """uint8 images with per-sample augmentation, like a CIFAR training pipeline.

    ``__getitem__`` does, in NumPy, for one image: reflect-pad by ``pad`` pixels, crop a
    random window of the original size, flip left-right with probability 1/2, convert to
    float32 and normalise to about zero mean and unit variance. That per-sample CPU work
    is what a DataLoader's worker processes run in parallel with the training step.
    Random numbers come from PyTorch's generator, which the DataLoader seeds differently
    in every worker.
    """

    MEAN = 0.5
    STD = 0.25

    def __init__(self, images: np.ndarray, labels: np.ndarray, pad: int = 4):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise UsageError(f"images must be uint8 of shape (n, C, H, W); got "
                             f"{images.dtype} {images.shape}")
        if len(labels) != len(images):
            raise UsageError(f"{len(images)} images but {len(labels)} labels")
        check_positive("pad", pad, allow_zero=True)
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pad = int(pad)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def _normalise(self, img: np.ndarray) -> torch.Tensor:
        x = (img.astype(np.float32) / 255.0 - self.MEAN) / self.STD
        return torch.from_numpy(np.ascontiguousarray(x))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.pad:
            _, h, w = img.shape
            p = self.pad
            padded = np.pad(img, ((0, 0), (p, p), (p, p)), mode="reflect")
            dy, dx, flip = torch.randint(0, 2 * p + 1, (3,)).tolist()
            img = padded[:, dy:dy + h, dx:dx + w]
            if flip % 2:
                img = img[:, :, ::-1]
        return self._normalise(img), int(self.labels[index])

    def plain(self, indices: range | list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` normalised but not augmented (a fixed batch for checks)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        x = torch.stack([self._normalise(self.images[i]) for i in idx])
        return x, torch.from_numpy(self.labels[idx])


def augmented_images(n: int, *, shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10,
                     seed: int = 0, pad: int = 4) -> AugmentedImages:
    """``data.synthetic_images`` (learnable class templates plus noise) stored as uint8,
    as image files decode, wrapped in ``AugmentedImages``."""
    from ..data import synthetic_images

    X, y = synthetic_images(n, shape=shape, n_classes=n_classes, seed=seed)
    images = np.clip(np.rint(X * 40.0 + 128.0), 0, 255).astype(np.uint8)
    return AugmentedImages(images, y, pad=pad)


# ------------------------------------------------------------------ configurations
@dataclass(frozen=True)
class LadderConfig:
    """One rung of the ladder: how the training step is fed and run.

    * ``num_workers``: DataLoader worker processes (0: the training process loads data);
    * ``pin_memory``: batches in page-locked host memory (fast, asynchronous copies);
    * ``non_blocking``: host-to-GPU copies that return at once (needs pinned memory);
    * ``channels_last``: NHWC memory layout for images and convolution weights;
    * ``tf32``: let fp32 matrix products and convolutions use TF32 tensor cores;
    * ``amp``: automatic mixed precision, ``None``, ``"bf16"`` or ``"fp16"`` (with a
      gradient scaler);
    * ``compile``: ``torch.compile`` the model (Inductor: fused, generated kernels);
    * ``cuda_graphs``: capture the whole training step once, replay it every step.
    """

    num_workers: int = 0
    pin_memory: bool = False
    non_blocking: bool = False
    channels_last: bool = False
    tf32: bool = False
    amp: str | None = None
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise UsageError(f"num_workers={self.num_workers!r} is not valid; "
                             "it must be an integer >= 0")
        check_positive("num_workers", self.num_workers, allow_zero=True)
        check_choice("amp", self.amp, AMP_MODES)
        for name in ("pin_memory", "non_blocking", "channels_last", "tf32", "compile",
                     "cuda_graphs"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name}={getattr(self, name)!r} is not valid; "
                                 "it must be True or False")
        if self.cuda_graphs and self.amp == "fp16":
            raise UsageError(
                "cuda_graphs=True with amp='fp16' is not valid: the GradScaler checks the "
                "gradients for inf/NaN on the CPU every step, which a captured graph cannot "
                "do; use amp='bf16' (no scaler needed) with CUDA graphs")

    def describe(self) -> str:
        """A short text, e.g. ``workers=4, pinned, channels_last, bf16``."""
        parts = [f"workers={self.num_workers}"]
        parts += [name for name, on in (("pinned", self.pin_memory),
                                        ("non_blocking", self.non_blocking),
                                        ("channels_last", self.channels_last),
                                        ("tf32", self.tf32)) if on]
        parts.append(self.amp or "fp32")
        parts += [name for name, on in (("compile", self.compile),
                                        ("cuda_graphs", self.cuda_graphs)) if on]
        return ", ".join(parts)


@dataclass(frozen=True)
class Skipped:
    """A rung that does not run on this device, and why."""

    reason: str

    def __str__(self) -> str:
        return f"skipped: {self.reason}"


def skip_reason(config: LadderConfig, device: torch.device | str) -> str | None:
    """Why ``config`` cannot run on ``device`` (``None`` when it can)."""
    device = torch.device(device)
    if device.type == "cpu":
        if config.cuda_graphs:
            return ("CUDA graphs record and replay GPU kernel launches; on the CPU there "
                    "are no kernel launches to replay")
        if config.pin_memory or config.non_blocking:
            return ("pinned memory and non-blocking copies speed up copies from the host "
                    "to a GPU; on the CPU the batch is already where it is used")
        if config.tf32:
            return ("TF32 is a tensor-core format of NVIDIA GPUs (Ampere and newer); the "
                    "CPU computes fp32 in fp32")
        if config.amp == "fp16":
            return ("fp16 autocast with a GradScaler is the GPU recipe; CPUs use bf16 "
                    "(same range as fp32, no scaler needed)")
    elif device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if config.tf32 and major < 8:
            return f"TF32 needs an Ampere or newer GPU (this one is sm_{major}x)"
        if config.amp == "bf16" and major < 8:
            return (f"this GPU (sm_{major}x) has no native bf16 (needs Ampere or newer); "
                    "the fp16 rung applies")
    else:
        return f"the ladder runs on 'cpu' or 'cuda', not {device.type!r}"
    if config.compile:
        from ..foundations.frameworks import compiler_status

        ok, why = compiler_status(device)
        if not ok:
            return f"torch.compile cannot run here: {why}"
    return None


@dataclass(frozen=True)
class Rung:
    """A named step of the ladder: its configuration, or why it is skipped here."""

    name: str
    what: str
    config: LadderConfig
    skipped: Skipped | None = None

    @property
    def runs(self) -> bool:
        return self.skipped is None


# name, what it adds, change to the configuration, carried on to the next rungs?
LADDER: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("baseline", "fp32, the training process loads every batch", {}, True),
    ("workers", "DataLoader worker processes load and augment batches", {"num_workers": _WORKERS},
     True),
    ("pinned", "pinned host memory, non-blocking host-to-GPU copies",
     {"pin_memory": True, "non_blocking": True}, True),
    ("channels_last", "NHWC layout for images and weights", {"channels_last": True}, True),
    ("tf32", "TF32 tensor cores for fp32 convolutions and matmuls", {"tf32": True}, True),
    ("bf16", "autocast to bf16", {"amp": "bf16"}, True),
    ("fp16", "autocast to fp16 with a GradScaler (instead of bf16)", {"amp": "fp16"}, False),
    ("compile", "torch.compile: Inductor's fused kernels", {"compile": True}, True),
    ("cuda_graphs", "the whole step captured once as a CUDA graph, then replayed",
     {"cuda_graphs": True}, True),
)
RUNG_NAMES = tuple(name for name, *_ in LADDER)


def build_ladder(device: torch.device | str, *, num_workers: int,
                 compile: bool = True) -> list[Rung]:
    """The rungs of the ladder for ``device``, each adding its change to the last rung that
    runs here (so a rung skipped on this device is not part of the ones after it).

    ``fp16`` is a side branch (the alternative to bf16), not carried on. ``compile=False``
    skips the compile rung (its first step compiles for about a minute on a small CPU).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int):
        raise UsageError(f"num_workers={num_workers!r} is not valid; it must be an integer > 0")
    check_positive("num_workers", num_workers)
    rungs: list[Rung] = []
    current: LadderConfig | None = None
    for name, what, change, carry in LADDER:
        change = {k: (num_workers if v is _WORKERS else v) for k, v in change.items()}
        candidate = replace(current, **change) if current is not None else LadderConfig()
        reason = skip_reason(candidate, device)
        if reason is None and name == "compile" and not compile:
            reason = ("switched off in this profile (COMPILE=False): compiling the training "
                      "step is the slow part on a small CPU (Inductor writes C++ for every "
                      "fused kernel and g++ compiles it); set COMPILE = True to run it")
        rungs.append(Rung(name, what, candidate, Skipped(reason) if reason else None))
        if reason is None and carry:
            current = candidate
    return rungs


def default_workers(requested: int) -> int:
    """``requested`` worker processes, but no more than this machine's cores minus one
    (the training process needs one); at least 1."""
    check_positive("num_workers", requested)
    return max(1, min(int(requested), (os.cpu_count() or 2) - 1))


def model_factory(width: int, blocks: int, device: torch.device | str,
                  n_classes: int = 10) -> Callable[[], nn.Module]:
    """A function that builds ``models.SmallResNet(n_classes, width, blocks)``, the ladder's
    model, after checking the sizes.

    On the CPU ``width`` must be at least 8: PyTorch's CPU backward of a channels-last 1×1
    convolution with stride 2 and fewer than 8 input channels (the ResNet's shortcut)
    corrupts memory and kills the process (seen with PyTorch 2.13).
    """
    from ..models import SmallResNet

    for name, value in (("width", width), ("blocks", blocks)):
        _check_count(name, value)
    if torch.device(device).type == "cpu" and width < 8:
        raise UsageError(f"width={width!r} is not valid on the CPU; it must be >= 8 (PyTorch's "
                         "CPU channels-last 1x1 strided convolution crashes below 8 channels)")
    SmallResNet(n_classes=n_classes, width=width, blocks=blocks)  # validates the rest

    def build() -> nn.Module:
        return SmallResNet(n_classes=n_classes, width=width, blocks=blocks)

    return build


# ------------------------------------------------------------------ the training step
def _autocast(device: torch.device, amp: str | None):
    """Autocast for ``amp``; the weight-cast cache is off, as CUDA graph capture needs."""
    if amp is None:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               x: torch.Tensor, y: torch.Tensor, amp: str | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the batch ``(x, y)``: forward (under autocast), cross-entropy,
    backward, optimizer. Returns the loss and the logits. Every rung runs this function;
    it never reads a value back to the CPU, so the GPU can run ahead of Python."""
    opt.zero_grad(set_to_none=True)
    with record_function("forward"), _autocast(x.device, amp):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
    with record_function("backward"):
        scaler.scale(loss).backward()
    with record_function("optimizer"):
        scaler.step(opt)
        scaler.update()
    return loss, logits


class _Stepper:
    """Runs ``train_step`` for one configuration: eager, compiled, or as a CUDA graph."""

    def __init__(self, model: nn.Module, config: LadderConfig, device: torch.device, lr: float):
        self.config, self.device = config, device
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        self.model = torch.compile(model) if config.compile else model
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        self.graph: Any = None

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with record_function("to_device"):
            x = x.to(self.device, non_blocking=self.config.non_blocking)
            y = y.to(self.device, non_blocking=self.config.non_blocking)
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return train_step(self.model, self.opt, self.scaler, x, y, self.config.amp)

    def first(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first step, never from a graph (for a compiled model: where it compiles)."""
        loss, logits = self._eager(*self.to_device(x, y))
        return loss.detach().float(), logits.detach().float()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # PyTorch's "whole-network capture" recipe: static inputs, a few eager steps on a
        # side stream (the optimizer creates its state, cuDNN picks its algorithms), then
        # capture one step with gradients set to None, so replays write fresh gradients.
        self.static_x, self.static_y = (t.clone() for t in self.to_device(x, y))
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self._eager(self.static_x, self.static_y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.opt.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss, _ = self._eager(self.static_x, self.static_y)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step on a batch from the loader; the loss (on the device)."""
        if not self.config.cuda_graphs:
            loss, _ = self._eager(*self.to_device(x, y))
            return loss.detach()
        if self.graph is None:
            self._capture(x, y)
        with record_function("to_device"):
            self.static_x.copy_(x, non_blocking=self.config.non_blocking)
            self.static_y.copy_(y, non_blocking=self.config.non_blocking)
        with record_function("graph_replay"):
            self.graph.replay()
        return self.static_loss.detach().clone()  # the next replay overwrites static_loss


class _Batches:
    """Endless batches from a DataLoader (a new epoch starts when one ends)."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self._it = iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        with record_function("data"):
            try:
                return next(self._it)
            except StopIteration:
                self._it = iter(self.loader)
                return next(self._it)


@contextmanager
def _backend_flags(config: LadderConfig, device: torch.device):
    """TF32 as the configuration says, cuDNN autotuning on a GPU; restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    try:
        with tf32.enabled(config.tf32):  # the API this PyTorch has (course_utils.tf32)
            torch.backends.cudnn.benchmark = True
            yield
    finally:
        torch.backends.cudnn.benchmark = saved


@dataclass
class Throughput:
    """What ``measure`` found for one configuration."""

    config: LadderConfig
    samples_per_s: float
    timing: Timing  # seconds per ``steps`` training steps
    first_step: Timing  # the first step alone (compilation happens there)
    first_loss: float  # loss of the first step on the check batch
    first_logits: torch.Tensor  # its logits (float32, on the CPU)
    losses: np.ndarray = field(repr=False)  # loss of every step, in order
    batch_size: int = 0
    steps: int = 0

    @property
    def trains(self) -> bool:
        """Whether the loss fell: the mean of the last quarter of the steps is below the
        mean of the first quarter."""
        q = max(1, len(self.losses) // 4)
        return bool(np.all(np.isfinite(self.losses))
                    and self.losses[-q:].mean() < self.losses[:q].mean())


def _check_count(name: str, value: int, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        bound = ">= 0" if allow_zero else "> 0"
        raise UsageError(f"{name}={value!r} is not valid; it must be an integer {bound}")
    return int(check_positive(name, value, allow_zero=allow_zero))


class _Run:
    """A fresh model, optimizer, loader and stepper for one configuration."""

    def __init__(self, config: LadderConfig, dataset: AugmentedImages, *,
                 model_fn: Callable[[], nn.Module], batch_size: int, device: torch.device,
                 lr: float, seed: int):
        torch.manual_seed(seed)  # the same initial weights on every rung
        model = model_fn().to(device)
        model.train()
        self.stepper = _Stepper(model, config, device, lr)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                            num_workers=config.num_workers, pin_memory=config.pin_memory,
                            persistent_workers=config.num_workers > 0,
                            generator=torch.Generator().manual_seed(seed))
        self.batches = _Batches(loader)
        self.losses: list[torch.Tensor] = []

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.losses.append(self.stepper(*self.batches.next()))

    def close(self) -> None:
        """Stop the worker processes and free the GPU memory of this run."""
        self.batches = None  # type: ignore[assignment]  # the last reference to the loader
        self.stepper = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _validate(batch_size: int, steps: int, warmup: int, repeats: int, lr: float) -> None:
    _check_count("batch_size", batch_size)
    _check_count("steps", steps)
    _check_count("warmup", warmup, allow_zero=True)
    _check_count("repeats", repeats)
    check_positive("lr", lr)


def measure(config: LadderConfig, dataset: AugmentedImages, *,
            model_fn: Callable[[], nn.Module], batch_size: int, steps: int, warmup: int = 1,
            repeats: int = 3, device: torch.device | str = "cpu", lr: float = 0.05,
            seed: int = 0, check_batch: tuple[torch.Tensor, torch.Tensor] | None = None
            ) -> Throughput | Skipped:
    """Training throughput of ``config``: samples per second of ``steps`` training steps,
    batches drawn from a DataLoader over ``dataset`` (loading is part of what is timed).

    A fresh ``model_fn()`` (seeded with ``seed``, so every rung starts from the same
    weights) first takes one step on ``check_batch`` (default: the first ``batch_size``
    images, not augmented), which gives the loss and logits to compare with the baseline
    and, for a compiled model, is where compilation happens. Then ``benchmark`` runs
    ``warmup`` untimed and ``repeats`` timed calls of ``steps`` steps each, synchronising
    the GPU around each; the median gives the throughput. Returns ``Skipped`` when the
    configuration cannot run on ``device``.
    """
    _validate(batch_size, steps, warmup, repeats, lr)
    device = torch.device(device)
    reason = skip_reason(config, device)
    if reason is not None:
        return Skipped(reason)
    if check_batch is None:
        check_batch = dataset.plain(range(min(batch_size, len(dataset))))
    if len(dataset) < batch_size:
        raise UsageError(f"batch_size={batch_size} is larger than the data set "
                         f"({len(dataset)} images)")
    from ..foundations.frameworks import first_call

    with _backend_flags(config, device):
        run = _Run(config, dataset, model_fn=model_fn, batch_size=batch_size, device=device,
                   lr=lr, seed=seed)
        try:
            (first_loss, first_logits), first_timing = first_call(
                lambda: run.stepper.first(*check_batch), sync="torch")
            run.losses.append(first_loss)
            timing = benchmark(lambda: run.steps(steps), warmup=warmup, repeats=repeats,
                               sync="torch")
            losses = torch.stack(run.losses).float().cpu().numpy()
        finally:
            run.close()
    return Throughput(config=config, samples_per_s=steps * batch_size / timing.median,
                      timing=timing, first_step=first_timing, first_loss=float(first_loss),
                      first_logits=first_logits.cpu(), losses=losses,
                      batch_size=batch_size, steps=steps)


def graph_replay_check(config: LadderConfig, dataset: AugmentedImages, *,
                       model_fn: Callable[[], nn.Module], batch_size: int,
                       device: torch.device | str, lr: float = 0.05, seed: int = 0,
                       steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The losses of ``steps`` CUDA-graph replays, and of the eager steps they stand for.

    A replay runs kernels recorded once, on whatever the static tensors hold: if the inputs
    were not copied in, or the optimizer's update were not part of the graph, it would
    still run, silently training on the wrong thing. So the same model (same seed) is
    trained twice on the same plain batches: with ``config`` (CUDA graphs) and eagerly with
    the same settings. Capturing first runs ``GRAPH_WARMUP_STEPS`` eager steps on the first
    batch (they update the weights) and records one step without running it; the replays
    then start on the first batch. The eager reference therefore takes
    ``GRAPH_WARMUP_STEPS + 1`` steps on the first batch and one on each next batch; its
    losses from there on must equal the replays' up to rounding.
    """
    device = torch.device(device)
    if not config.cuda_graphs:
        raise UsageError(f"graph_replay_check needs cuda_graphs=True, not {config.describe()}")
    reason = skip_reason(config, device)
    if reason is not None:
        raise UsageError(f"cannot check CUDA-graph replays on {device}: {reason}")
    _validate(batch_size, steps, 0, 1, lr)
    if len(dataset) < steps * batch_size:
        raise UsageError(f"{steps} steps of {batch_size} images need {steps * batch_size} "
                         f"images; the data set has {len(dataset)}")
    batches = [dataset.plain(range(i * batch_size, (i + 1) * batch_size))
               for i in range(steps)]
    schedules = ((config, batches),
                 (replace(config, cuda_graphs=False),
                  [batches[0]] * GRAPH_WARMUP_STEPS + batches))
    losses = []
    with _backend_flags(config, device):
        for run_config, schedule in schedules:
            torch.manual_seed(seed)
            model = model_fn().to(device)
            model.train()
            stepper = _Stepper(model, run_config, device, lr)
            run_losses = [stepper(x, y) for x, y in schedule]
            losses.append(torch.stack(run_losses).float().cpu().numpy())
            del stepper, model
            gc.collect()
    graph_losses, eager_losses = losses
    return graph_losses, eager_losses[GRAPH_WARMUP_STEPS:]


def profile_steps(config: LadderConfig, dataset: AugmentedImages, *,
                  model_fn: Callable[[], nn.Module], batch_size: int, steps: int = 3,
                  warmup: int = 2, device: torch.device | str = "cpu", lr: float = 0.05,
                  seed: int = 0) -> torch.profiler.profile:
    """Run ``warmup`` steps, then ``steps`` steps under ``torch.profiler``; the profiler.

    The step's parts are labelled (``REGIONS``: data, to_device, forward, backward,
    optimizer), so ``time_split`` and the profiler's tables show where the time goes.
    """
    _validate(batch_size, steps, warmup, 1, lr)
    device = torch.device(device)
    reason = skip_reason(config, device)
    if reason is not None:
        raise UsageError(f"cannot profile {config.describe()} on {device}: {reason}")
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with _backend_flags(config, device):
        run = _Run(config, dataset, model_fn=model_fn, batch_size=batch_size, device=device,
                   lr=lr, seed=seed)
        try:
            run.steps(warmup)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            with profile(activities=activities) as prof:
                run.steps(steps)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
        finally:
            run.close()
    return prof


def time_split(prof: torch.profiler.profile) -> dict[str, float]:
    """Seconds of the training process's time (wall time on its thread) spent in each
    labelled part of the step (``REGIONS``, plus ``graph_replay`` for a CUDA-graph rung,
    whose forward, backward and optimizer run inside the replay), from ``profile_steps``."""
    totals = {name: 0.0 for name in (*REGIONS, "graph_replay")}
    for event in prof.key_averages():
        if event.key in totals:
            totals[event.key] += event.cpu_time_total / 1e6
    if not totals["graph_replay"]:
        del totals["graph_replay"]
    return totals


def speedups(results: dict[str, Throughput | Skipped], baseline: str = "baseline"
             ) -> dict[str, float]:
    """samples/s of each rung that ran, divided by the baseline's."""
    base = results.get(baseline)
    if not isinstance(base, Throughput):
        raise UsageError(f"the {baseline!r} rung did not run; no speed-ups without it")
    return {name: r.samples_per_s / base.samples_per_s
            for name, r in results.items() if isinstance(r, Throughput)}


def tolerance(config: LadderConfig) -> dict[str, float]:
    """``rtol``/``atol`` for comparing ``config``'s first-step logits with the fp32
    baseline's: summation order (channels_last, compile) changes the last bits of fp32;
    TF32 keeps 10 mantissa bits, bf16 7 and fp16 10 (with fp16 activations)."""
    if config.amp is not None:
        return {"rtol": 5e-2, "atol": 5e-2}
    if config.tf32:
        return {"rtol": 1e-2, "atol": 1e-2}
    if config.channels_last or config.compile:
        return {"rtol": 1e-3, "atol": 1e-3}
    return {"rtol": 1e-5, "atol": 1e-5}
