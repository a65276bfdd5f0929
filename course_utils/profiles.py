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
        "autograd_frameworks": {
            "n_per_class": 500,
            "hidden": 32,
            "activation": "relu",
            "optimizer": "adam",
            "lr": 0.01,
            "num_epochs": 60,
            "batch_size": 64,
            "min_accuracy": 0.95,
            "bench_hidden": 32,
            "bench_batch": 64,
            "bench_repeats": 200,
            "compile_step": "forward",
            "compile_mode": "default",
            "cpu_threads": 1,
        },
        "playground": {
            "n_points": 300,
            "batch_size": 16,
            "lr": 0.03,
            "num_epochs": 20,
            "spiral_epochs": 40,
            "app_epochs": 20,
        },
        "real_data": {  # quick: real_data
            "models": ("logistic", "mlp", "cnn"),
            "num_epochs": 8,
            "batch_size": 100,
            "lr": 0.01,
            "paper_tolerance": None,  # too few epochs to compare with the paper
            "bench_repeats": 2,
            "digits_epochs": 6,
            "digits_batch_size": 64,
            "digits_min_accuracy": 0.9,
            "cpu_threads": 1,
        },
        "hardware": {  # quick: hardware
            "matmul_n": 512,
            "dtypes": "fp64,fp32,bf16",
            "stream_mb": 64,
            "h2d_mb": 64,
            "check_n": 256,
            "cpu_matmul_n": 512,
            "repeats": 3,
        },
        "parallel_cpu": {  # quick: parallel_cpu
            "n_queries": 1000,
            "n_points": 1000,
            "python_queries": 8,
            "serial_share": 0.2,
            "weak_queries": 250,
            "sum_size": 2_000_000,
            "gelu_size": 1_000_000,
            "ln_rows": 4096,
            "ln_features": 256,
            "repeats": 5,
            "max_threads": None,  # None: every thread Numba has
        },
        "cuda_model": {"n": 1000, "threads_per_block": 128, "grid_stride_blocks": 2,
                       "blur_rows": 20, "blur_cols": 30, "blur_block_x": 8,
                       "blur_block_y": 8, "repeats": 3, "min_copy_fraction": 0.8},
        "memory_hierarchy": {  # quick: memory_hierarchy (simulator: tiny, odd sizes)
            "copy_n": 999,
            "max_stride": 32,
            "transpose_rows": 17,
            "transpose_cols": 41,
            "check_m": 19,
            "check_k": 23,
            "check_n": 21,
            "matmul_n": 13,
            "warmup": 1,
            "repeats": 2,
            "launches": 1,
            "min_fraction_of_cublas": 0.0,
        },
        "reductions": {  # quick: reductions (simulator: a few hundred threads per launch)
            "n": 1001, "threads": 64, "blocks": 4, "launches": 1, "warmup": 0, "repeats": 1,
            "nbins": 256, "hist_n": 1001, "hot_fraction": 0.9,
            "stream_n": 1001, "chunks": 4, "streams": 2, "compute_iters": 8,
            "min_copy_fraction": 0.8,
        },
        "roofline_profiling": {  # quick: roofline_profiling (simulator: tiny, odd sizes)
            "n": 1001, "threads": 64, "blocks": 4, "stride": 4, "blur_rows": 20,
            "blur_cols": 30, "transpose_rows": 17, "transpose_cols": 41, "matmul_n": 13,
            "hist_n": 1001, "nbins": 64, "cublas_n": 256, "launches": 1, "warmup": 0,
            "repeats": 1, "roof_tolerance": 1.15, "ncu_timeout": 0.0,
        },
        "lab2_cuda_kernels": {  # quick: lab2_cuda_kernels (simulator: tiny grids)
            "threads": 64, "block_x": 8, "block_y": 8, "sgd_n": 1001, "sgd_blocks": 2,
            "image_rows": 16, "image_cols": 24, "speed_n": 2048, "min_speedup": 3.0,
            "warmup": 0, "repeats": 1, "launches": 1,
        },
        "lab3_reduction_histogram": {  # quick: lab3_reduction_histogram (simulator)
            "threads": 64, "blocks": 3, "nbins": 100, "amax_n": 1001, "hist_n": 1001,
            "warmup": 0, "repeats": 1, "launches": 1,
        },
        "single_gpu_perf": {  # quick: single_gpu_perf (CPU: the rungs that apply, no compile)
            "width": 8, "blocks": 1, "batch_size": 32, "n_images": 512, "steps": 5,
            "warmup": 1, "repeats": 3, "num_workers": 1, "lr": 0.05, "compile": False,
            "cpu_threads": 1, "profile_steps": 3, "min_amp_speedup": None,
            "min_amp_over_tf32": None},
        "lab4_distributed": {  # quick: lab4_distributed (Gloo processes on the CPU)
            "world_sizes": (2, 3, 4), "lengths": (1, 5, 1001), "align": 4,
            "dp_world_sizes": (2, 3), "dp_steps": 5, "dp_batch": 3, "dp_lr": 0.1,
            "timeout": 240.0, "group_timeout": 20.0},
        "data_parallel": {  # quick: data_parallel (Gloo processes on the CPU)
            "n_per_class": 360, "hidden": (32, 32), "dtype": "float64", "batch_size": 30,
            "epochs": 2, "lr": 0.1, "base_batch": 30, "warmup_steps": 5, "momentum": 0.9,
            "world_sizes": (2, 3), "accum_steps": 2, "die_at_step": 15, "restart_demo": False,
            "lr_demo_workers": 8, "lr_demo_epochs": 20, "bench_world_sizes": (1, 2),
            "bench_width": 16, "bench_blocks": 1, "bench_batch": 16,
            "bucket_caps_mb": (0.02, 25.0), "bench_warmup": 2, "bench_repeats": 5,
            "timeout": 300.0,
        },
        "collectives": {  # quick: collectives (Gloo processes on the CPU)
            "backend": "auto", "world_sizes": (2, 3, 4), "lengths": (1, 7, 1001),
            "bench_nproc": 2, "min_bytes": 2**10, "max_bytes": 2**22, "gloo_max_bytes": 2**22,
            "size_factor": 4, "warmup": 2, "repeats": 5, "iters": 3, "timeout": 180.0,
        },
        "beyond_dp": {  # quick: beyond_dp (Gloo processes on the CPU)
            "backend": "auto", "fsdp_world_sizes": (2,), "in_features": 20,
            "widths": (49, 31, 20), "classes": 10, "batch_per_rank": 8, "steps": 5, "lr": 1e-2,
            "tp_world": 4, "tp_sizes": (2, 4), "tp_features": 12, "tp_hidden": (16, 10),
            "tp_batch": 5, "stages": 4, "micro_batches": (1, 2, 4, 8), "stage_ms": 400.0,
            "bubble_tolerance": 0.06, "pp_repeats": 3, "mpi_nproc": 3, "mpi_steps": 30,
            "mpi_n_per_class": 200, "ft_steps": 8, "ft_kill_step": 4, "timeout": 300.0,
        },
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
        "autograd_frameworks": {
            "n_per_class": 2000,
            "hidden": 64,
            "activation": "relu",
            "optimizer": "adam",
            "lr": 0.01,
            "num_epochs": 100,
            "batch_size": 128,
            "min_accuracy": 0.98,
            "bench_hidden": 2048,
            "bench_batch": 4096,
            "bench_repeats": 30,
            "compile_step": "train",
            "compile_mode": "default",
            "cpu_threads": 0,
        },
        "playground": {
            "n_points": 500,
            "batch_size": 10,
            "lr": 0.03,
            "num_epochs": 40,
            "spiral_epochs": 100,
            "app_epochs": 40,
        },
        "real_data": {  # full: real_data
            "models": ("logistic", "mlp", "cnn"),
            "num_epochs": 150,  # the MNIST-1D paper's 6000 steps of 100
            "batch_size": 100,
            "lr": 0.01,
            "paper_tolerance": 0.06,
            "bench_repeats": 5,
            "digits_epochs": 30,
            "digits_batch_size": 64,
            "digits_min_accuracy": 0.94,
            "cpu_threads": 1,
        },
        "hardware": {  # full: hardware
            "matmul_n": 8192,
            "dtypes": "fp64,fp32,bf16,fp16",
            "stream_mb": 1024,
            "h2d_mb": 512,
            "check_n": 1024,
            "cpu_matmul_n": 2048,
            "repeats": 10,
        },
        "parallel_cpu": {  # full: parallel_cpu
            "n_queries": 8000,
            "n_points": 8000,
            "python_queries": 32,
            "serial_share": 0.2,
            "weak_queries": 1000,
            "sum_size": 20_000_000,
            "gelu_size": 20_000_000,
            "ln_rows": 65536,
            "ln_features": 512,
            "repeats": 5,
            "max_threads": None,
        },
        "cuda_model": {"n": 2**26, "threads_per_block": 256, "grid_stride_blocks": 1024,
                       "blur_rows": 4096, "blur_cols": 4096, "blur_block_x": 32,
                       "blur_block_y": 8, "repeats": 20, "min_copy_fraction": 0.8},
        "memory_hierarchy": {  # full: memory_hierarchy (one GPU; 4096^2 matmuls)
            "copy_n": 2**27 + 1,
            "max_stride": 32,
            "transpose_rows": 8191,
            "transpose_cols": 8193,
            "check_m": 1031,
            "check_k": 517,
            "check_n": 769,
            "matmul_n": 4096,
            "warmup": 2,
            "repeats": 10,
            "launches": 10,
            "min_fraction_of_cublas": 0.25,
        },
        "reductions": {  # full: reductions (blocks / compute_iters None: sized on the GPU)
            "n": 2**26, "threads": 256, "blocks": None, "launches": 20, "warmup": 2,
            "repeats": 7, "nbins": 256, "hist_n": 2**26, "hot_fraction": 0.9,
            "stream_n": 2**26, "chunks": 16, "streams": 4, "compute_iters": None,
            "min_copy_fraction": 0.8,
        },
        "roofline_profiling": {  # full: roofline_profiling (every array well above L2)
            "n": 2**26, "threads": 256, "blocks": None, "stride": 8, "blur_rows": 8192,
            "blur_cols": 8192, "transpose_rows": 8191, "transpose_cols": 8193,
            "matmul_n": 4096, "hist_n": 2**27, "nbins": 256, "cublas_n": 8192,
            "launches": 10, "warmup": 2, "repeats": 5, "roof_tolerance": 1.15,
            "ncu_timeout": 90.0,
        },
        "lab2_cuda_kernels": {  # full: lab2_cuda_kernels
            "threads": 256, "block_x": 16, "block_y": 16, "sgd_n": 2**24,
            "sgd_blocks": 1024, "image_rows": 2048, "image_cols": 2048, "speed_n": 2048,
            "min_speedup": 3.0, "warmup": 2, "repeats": 10, "launches": 20,
        },
        "lab3_reduction_histogram": {  # full: lab3_reduction_histogram
            "threads": 256, "blocks": 1024, "nbins": 100, "amax_n": 2**26, "hist_n": 2**26,
            "warmup": 2, "repeats": 10, "launches": 20,
        },
        "single_gpu_perf": {  # full: single_gpu_perf (one GPU, every rung)
            "width": 64, "blocks": 2, "batch_size": 256, "n_images": 8192, "steps": 20,
            "warmup": 1, "repeats": 5, "num_workers": 8, "lr": 0.05, "compile": True,
            "cpu_threads": 0, "profile_steps": 5, "min_amp_speedup": 2.0,
            # AMP's own gain over the TF32 rung below it (bf16 tensor cores: twice TF32's
            # peak, half the bytes). Not yet measured on a GPU: `make gpu-check` reports it.
            "min_amp_over_tf32": 1.25},
        "lab4_distributed": {  # full: lab4_distributed (Gloo processes, also on a GPU node)
            "world_sizes": (2, 3, 4), "lengths": (1, 5, 1001, 1_000_003), "align": 4,
            "dp_world_sizes": (2, 3), "dp_steps": 20, "dp_batch": 5, "dp_lr": 0.1,
            "timeout": 300.0, "group_timeout": 30.0},
        "data_parallel": {  # full: data_parallel (NCCL, a rank per GPU; else Gloo on CPUs)
            "n_per_class": 1200, "hidden": (64, 64), "dtype": "float64", "batch_size": 50,
            "epochs": 3, "lr": 0.1, "base_batch": 50, "warmup_steps": 10, "momentum": 0.9,
            "world_sizes": (2, 3, 4), "accum_steps": 4, "die_at_step": 40, "restart_demo": True,
            "lr_demo_workers": 8, "lr_demo_epochs": 40, "bench_world_sizes": "auto",
            "bench_width": 64, "bench_blocks": 2, "bench_batch": 256,
            "bucket_caps_mb": (1.0, 25.0, 100.0), "bench_warmup": 5, "bench_repeats": 20,
            "timeout": 300.0,
        },
        "collectives": {  # full: collectives (NCCL, a rank per GPU; Gloo under 2 GPUs)
            "backend": "auto", "world_sizes": (2, 3, 4), "lengths": (1, 7, 1001, 1_000_003),
            "bench_nproc": "auto", "min_bytes": 2**10, "max_bytes": 2**28,
            "gloo_max_bytes": 2**26, "size_factor": 4, "warmup": 2, "repeats": 5, "iters": 20,
            "timeout": 300.0,
        },
        "beyond_dp": {  # full: beyond_dp (NCCL with a GPU per rank, else Gloo on the CPU)
            "backend": "auto", "fsdp_world_sizes": (2, 4), "in_features": 1024,
            "widths": (2049, 2047, 2048), "classes": 1000, "batch_per_rank": 64, "steps": 10,
            "lr": 1e-4,
            "tp_world": 4, "tp_sizes": (2, 4), "tp_features": 1024, "tp_hidden": (4096, 4098),
            "tp_batch": 64, "stages": 4, "micro_batches": (1, 2, 4, 8, 16),
            "stage_ms": 480.0, "bubble_tolerance": 0.04, "pp_repeats": 3, "mpi_nproc": 4,
            "mpi_steps": 200, "mpi_n_per_class": 1000, "ft_steps": 20, "ft_kill_step": 10,
            "timeout": 600.0,
        },
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
