"""The one table of run-size presets: ``quick`` and ``full``.

*quick* is for CI, laptops and the CUDA simulator: every notebook finishes in well under a
minute on a 2-core CPU. *full* is for a real GPU: the sizes the lessons' claims are about.
``"auto"`` means *full* when a CUDA GPU is present and *quick* otherwise; the environment
variable ``HPDL_PROFILE`` overrides ``"auto"`` (so that nbval and CI get quick sizes even
on a GPU runner, or full sizes on purpose).

A notebook asks for its sizes with ``ctx.size("lesson_key", "knob", override)``: an
explicit parameter (not ``None``) wins, else the profile's value is used.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import UsageError, check_choice

PROFILE_NAMES = ("quick", "full")
PROFILE_CHOICES = ("auto", *PROFILE_NAMES)
ENV_VAR = "HPDL_PROFILE"

# lesson/lab key -> knob -> value. Keep both profiles' keys identical (a test checks).
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "dnn_from_scratch": {
            "n_per_class": 500,
            "hidden": 32,
            "num_epochs": 300,
            "batch_size": 64,
            "lr": 0.2,
            "activation": "relu",
            "min_accuracy": 0.95,
        },
        "lab1_backprop": {
            "n_per_class": 300,
            "hidden": 32,
            "lr": 0.2,
            "num_epochs": 600,
            "batch_size": 64,
        },
        "start_here": {"matmul_n": 256},
        "autograd_frameworks": {"unset": None},  # quick: autograd_frameworks
        "playground": {"unset": None},  # quick: playground
        "real_data": {"unset": None},  # quick: real_data
        "hardware": {"unset": None},  # quick: hardware
        "parallel_cpu": {"unset": None},  # quick: parallel_cpu
        "cuda_model": {"unset": None},  # quick: cuda_model
        "memory_hierarchy": {"unset": None},  # quick: memory_hierarchy
        "reductions": {"unset": None},  # quick: reductions
        "roofline_profiling": {"unset": None},  # quick: roofline_profiling
        "lab2_cuda_kernels": {"unset": None},  # quick: lab2_cuda_kernels
        "lab3_reduction_histogram": {"unset": None},  # quick: lab3_reduction_histogram
    },
    "full": {
        "dnn_from_scratch": {
            "n_per_class": 2000,
            "hidden": 64,
            "num_epochs": 800,
            "batch_size": 128,
            "lr": 0.2,
            "activation": "relu",
            "min_accuracy": 0.98,
        },
        "lab1_backprop": {
            "n_per_class": 1000,
            "hidden": 64,
            "lr": 0.2,
            "num_epochs": 800,
            "batch_size": 64,
        },
        "start_here": {"matmul_n": 4096},
        "autograd_frameworks": {"unset": None},  # full: autograd_frameworks
        "playground": {"unset": None},  # full: playground
        "real_data": {"unset": None},  # full: real_data
        "hardware": {"unset": None},  # full: hardware
        "parallel_cpu": {"unset": None},  # full: parallel_cpu
        "cuda_model": {"unset": None},  # full: cuda_model
        "memory_hierarchy": {"unset": None},  # full: memory_hierarchy
        "reductions": {"unset": None},  # full: reductions
        "roofline_profiling": {"unset": None},  # full: roofline_profiling
        "lab2_cuda_kernels": {"unset": None},  # full: lab2_cuda_kernels
        "lab3_reduction_histogram": {"unset": None},  # full: lab3_reduction_histogram
    },
}


def resolve_profile(name: str | None, *, gpu_available: bool) -> str:
    """Turn ``"auto"``/``None`` into ``"quick"`` or ``"full"``; validate the name.

    ``HPDL_PROFILE`` (if set) replaces ``"auto"``; an explicit ``quick``/``full`` wins.
    """
    name = "auto" if name is None else str(name).strip().lower()
    check_choice("PROFILE", name, PROFILE_CHOICES)
    if name != "auto":
        return name
    from_env = os.environ.get(ENV_VAR, "").strip().lower()
    if from_env and from_env != "auto":
        if from_env not in PROFILE_NAMES:
            raise UsageError(
                f"environment variable {ENV_VAR}={from_env!r} is not valid; "
                f"choose one of: {', '.join(PROFILE_CHOICES)}"
            )
        return from_env
    return "full" if gpu_available else "quick"


def sizes(profile: str, key: str) -> dict[str, Any]:
    """All knobs of one lesson (``key``) in a resolved profile."""
    check_choice("profile", profile, PROFILE_NAMES)
    table = PROFILES[profile]
    if key not in table:
        raise UsageError(
            f"no sizes for {key!r} in the profile table; known keys: {', '.join(sorted(table))}"
        )
    return dict(table[key])


def size(profile: str, key: str, knob: str, override: Any = None) -> Any:
    """One knob: ``override`` if it is not ``None``, else the profile's value."""
    if override is not None:
        return override
    values = sizes(profile, key)
    if knob not in values:
        raise UsageError(
            f"{key!r} has no knob {knob!r} in the profile table; known: {', '.join(values)}"
        )
    return values[knob]
