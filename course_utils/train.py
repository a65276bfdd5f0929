"""One training loop for every lesson: data loaders, ``fit``, ``evaluate``, ``predict``.

``fit`` trains any classifier with cross-entropy, shows a progress bar (tqdm, which renders
as a widget in JupyterLab and as text under papermill), evaluates after every epoch, and
returns a ``History`` of losses, accuracies and throughput. Switches the later lessons use:
``amp="bf16"``/``"fp16"`` (automatic mixed precision; fp16 with a gradient scaler) and
``optimizer="sgd"``/``"adam"`` with ``weight_decay``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from .errors import UsageError, check_choice, check_positive

OPTIMIZERS = ("sgd", "adam", "adamw")
AMP_MODES = (None, "bf16", "fp16")


@dataclass
class History:
    """Per-epoch curves of a ``fit`` run, plus its training throughput."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    samples: int = 0
    train_seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        """Training samples processed per second (evaluation time excluded)."""
        return self.samples / self.train_seconds if self.train_seconds > 0 else float("nan")

    def curves(self, what: str = "loss") -> dict[str, list[float]]:
        """``{"train loss": [...], "test loss": [...]}`` for ``plots.curves``."""
        check_choice("what", what, ("loss", "accuracy"))
        out = {f"train {what}": getattr(self, f"train_{what}")}
        if getattr(self, f"test_{what}"):
            out[f"test {what}"] = getattr(self, f"test_{what}")
        return out


def tensor_loader(X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                  batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
                  pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over in-memory arrays; shuffling is reproducible from ``seed``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise UsageError(f"batch_size={batch_size!r} is not valid; it must be an integer > 0")
    check_positive("batch_size", batch_size)
    check_positive("num_workers", num_workers, allow_zero=True)
    dataset = TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
    generator = torch.Generator().manual_seed(seed)
    # Index the tensors with a whole batch of indices at once (a TensorDataset accepts a
    # list), instead of sample by sample followed by a collate: same batches, same order
    # as DataLoader(batch_size=..., shuffle=...), many times faster for small samples.
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(
        dataset)
    batches = BatchSampler(order, batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=num_workers,
                      pin_memory=pin_memory, generator=generator)


def loaders(X_train, y_train, X_test, y_test, *, batch_size: int, seed: int = 0,
            eval_batch_size: int = 1024, **kwargs: Any) -> tuple[DataLoader, DataLoader]:
    """Training loader (shuffled) and test loader (in order, large batches)."""
    train = tensor_loader(X_train, y_train, batch_size=batch_size, shuffle=True, seed=seed,
                          **kwargs)
    test = tensor_loader(X_test, y_test, batch_size=eval_batch_size, shuffle=False, **kwargs)
    return train, test


def make_optimizer(net: nn.Module, name: str = "adam", lr: float = 1e-3,
                   weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw``; rates validated."""
    check_choice("optimizer", name, OPTIMIZERS)
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    params = net.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def _autocast(device: torch.device, amp: str | None):
    if amp is None:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
             amp: str | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` over ``loader``."""
    device = torch.device(device)
    net.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = net(xb)
        total_loss += nn.functional.cross_entropy(logits.float(), yb, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yb).sum().item()
        count += len(yb)
    return total_loss / count, correct / count


def fit(net: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None = None, *,
        num_epochs: int, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
        device: torch.device | str = "cpu", amp: str | None = None, progress: bool = True,
        on_epoch: Callable[[int, History], None] | None = None,
        regularizer: Callable[[nn.Module], torch.Tensor] | None = None) -> History:
    """Train ``net`` with cross-entropy for ``num_epochs``; evaluate after each epoch.

    ``regularizer(net)`` (optional) is added to the loss, e.g. an L1 penalty;
    ``on_epoch(epoch, history)`` is called after each epoch (live plots, early stops).
    Returns the ``History``; the training throughput excludes evaluation.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int):
        raise UsageError(f"num_epochs={num_epochs!r} is not valid; it must be an integer > 0")
    check_positive("num_epochs", num_epochs)
    check_choice("amp", amp, AMP_MODES)
    device = torch.device(device)
    net.to(device)
    opt = make_optimizer(net, optimizer, lr, weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    history = History()
    bar = _progress(num_epochs * len(train_loader), progress, type(net).__name__)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for epoch in range(num_epochs):
        net.train()
        total_loss, correct, count = 0.0, 0, 0
        sync()
        start = time.perf_counter()
        for xb, yb in train_loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = net(xb)
                loss = nn.functional.cross_entropy(logits.float(), yb)
                if regularizer is not None:
                    loss = loss + regularizer(net)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total_loss += loss.detach() * len(yb)
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            count += len(yb)
            bar.update(1)
        sync()
        history.train_seconds += time.perf_counter() - start
        history.samples += count
        history.train_loss.append(float(total_loss) / count)
        history.train_accuracy.append(float(correct) / count)
        if test_loader is not None:
            test_loss, test_acc = evaluate(net, test_loader, device, amp)
            history.test_loss.append(test_loss)
            history.test_accuracy.append(test_acc)
            bar.set_postfix(test_acc=f"{test_acc:.3f}")
        if not np.isfinite(history.train_loss[-1]):
            bar.close()
            raise FloatingPointError(
                f"the training loss became {history.train_loss[-1]} in epoch {epoch + 1}: "
                f"the learning rate lr={lr} is probably too large")
        if on_epoch is not None:
            on_epoch(epoch, history)
    bar.close()
    return history


@torch.no_grad()
def predict(net: nn.Module, X: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
            batch_size: int = 4096) -> np.ndarray:
    """Class labels ``net`` predicts for the rows of ``X`` (a NumPy int64 array)."""
    device = torch.device(device)
    net.eval()
    X = torch.as_tensor(X)
    out = [net(X[i:i + batch_size].to(device)).argmax(dim=1).cpu()
           for i in range(0, len(X), batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise UsageError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    return np.bincount(n_classes * y_true + y_pred,
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)
