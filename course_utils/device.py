"""Pick the compute device, seed every random generator, switch determinism on or off.

``pick_device("auto")`` is d2l's ``try_gpu()``: the GPU when there is one, else the CPU,
so that the same notebook runs on a laptop and on a GPU node without edits.
"""

from __future__ import annotations

import ctypes
import functools
import os
import random

import numpy as np

from .errors import DeviceUnavailableError, check_choice

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@functools.lru_cache(maxsize=1)
def cuda_gpu_count() -> int:
    """Number of real CUDA GPUs, asked of the driver (works without importing numba.cuda).

    PyTorch is asked first; a CPU-only PyTorch build on a GPU machine falls back to the
    driver library itself (``libcuda``), so Numba kernels can still use the GPU.
    """
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken torch install must not hide the GPU
        pass
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return int(count.value)
        return 0
    return 0


def gpu_available() -> bool:
    """True when at least one real CUDA GPU can be used."""
    return cuda_gpu_count() > 0


def resolve_device(name: str | None) -> str:
    """``"auto"`` -> ``"cuda"`` or ``"cpu"``; ``"cuda"`` without a GPU is a clear error."""
    name = "auto" if name is None else str(name).strip().lower()
    check_choice("DEVICE", name, DEVICE_CHOICES)
    if name == "auto":
        return "cuda" if gpu_available() else "cpu"
    if name == "cuda" and not gpu_available():
        raise DeviceUnavailableError(
            "DEVICE='cuda' was asked for, but no CUDA GPU is visible on this machine "
            "(torch.cuda.is_available() is False and no CUDA driver answered). "
            "Use DEVICE='auto' or 'cpu', or run on a GPU node (see README: GPU machines)."
        )
    return name


def pick_device(name: str | None = "auto"):
    """The ``torch.device`` for ``name`` (``"auto"`` picks the GPU when present)."""
    import torch

    return torch.device(resolve_device(name))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) with one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def set_deterministic(enabled: bool = True) -> None:
    """Ask PyTorch for deterministic kernels (slower, bit-for-bit repeatable).

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for that, set here before any GPU work.
    ``warn_only`` keeps an operation without a deterministic version running, with a
    warning, instead of failing a lesson.
    """
    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if enabled:  # autotuning may pick a different algorithm from run to run
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = enabled  # off: cudnn.benchmark stays as it was
