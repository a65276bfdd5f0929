"""TensorFloat-32 switches, read and set with the API this PyTorch has.

TF32 (NVIDIA Ampere, compute capability 8.0, and later) computes float32 matrix products
and convolutions with a 10-bit mantissa on the tensor cores. PyTorch has two ways to ask
for it: the legacy flags (``torch.backends.cuda.matmul.allow_tf32``,
``torch.backends.cudnn.allow_tf32``) and, from PyTorch 2.9, the ``fp32_precision``
settings (``torch.backends.cuda.matmul.fp32_precision = "tf32" | "ieee"``,
``torch.backends.cudnn.conv.fp32_precision``). Once the new settings are used, reading a
legacy flag raises RuntimeError ("mix of the legacy and new APIs"), so the course reads and
writes only the new ones where they exist, and the legacy flags on older PyTorch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

PRECISIONS = ("tf32", "ieee")


def new_api() -> bool:
    """Whether this PyTorch has the ``fp32_precision`` settings (2.9 and later)."""
    import torch

    return (hasattr(torch.backends.cuda.matmul, "fp32_precision")
            and hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision"))


def _resolved(value: str, parent: Any) -> str:
    """``"none"`` means: inherit from the parent setting (``torch.backends``); its own
    ``"none"`` is full float32 (``"ieee"``)."""
    if value != "none":
        return value
    inherited = getattr(parent, "fp32_precision", "none")
    return inherited if inherited in PRECISIONS else "ieee"


def state() -> dict[str, str]:
    """``{"matmul": "tf32" | "ieee", "conv": "tf32" | "ieee"}``: whether float32 matrix
    products (cuBLAS) and convolutions (cuDNN) may use TF32 right now."""
    import torch

    if new_api():
        return {"matmul": _resolved(torch.backends.cuda.matmul.fp32_precision, torch.backends),
                "conv": _resolved(torch.backends.cudnn.conv.fp32_precision, torch.backends)}
    return {"matmul": "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee",
            "conv": "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"}


def _raw() -> tuple[Any, Any]:
    import torch

    if new_api():
        return (torch.backends.cuda.matmul.fp32_precision,
                torch.backends.cudnn.conv.fp32_precision)
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _set_raw(matmul: Any, conv: Any) -> None:
    import torch

    if new_api():
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv
    else:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """TF32 on (or off) for float32 matrix products and convolutions inside the block;
    the previous settings come back on exit, also after an error."""
    saved = _raw()
    try:
        if new_api():
            _set_raw("tf32" if on else "ieee", "tf32" if on else "ieee")
        else:
            _set_raw(bool(on), bool(on))
        yield
    finally:
        _set_raw(*saved)
