"""What each notebook parameter may be: one rule per knob of the profile table.

A notebook's parameters (``HIDDEN = None``, ``WORLD_SIZES = None``, ...) reach
``ctx.sizes(key, knob=VALUE)``; every value given there (not ``None``) is checked against
its rule before anything runs, and a bad one raises a ``UsageError`` that names the
parameter as the student writes it (``HIDDEN=0 is not valid; it must be an integer >= 1``).
Rules are about one value (type and range); what depends on several knobs (``CHUNKS`` at
most ``STREAM_N``, ``TP_SIZES`` dividing ``TP_WORLD``) is checked by the lesson's own code
after this.

List knobs accept what ``hpdl run -p NAME VALUE`` and papermill pass: ``1,2,7``,
``[1, 2, 7]``, ``"1 2 7"`` or a real list; they come back as tuples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .errors import UsageError, as_list, check_choice, check_choices, check_ints


class Rule:
    """One knob's rule: ``check`` returns the value normalised or raises ``UsageError``."""

    allows_zero = False

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError


def _bad(name: str, value: Any, allowed: str) -> UsageError:
    return UsageError(f"{name}={value!r} is not valid; it must be {allowed}")


@dataclass(frozen=True)
class Int(Rule):
    """An integer in ``[minimum, maximum]``; ``2.0`` or ``1e6`` count as integers."""

    minimum: int = 1
    maximum: int | None = None

    @property
    def allows_zero(self) -> bool:  # type: ignore[override]
        return self.minimum <= 0

    def check(self, name: str, value: Any) -> int:
        allowed = (f"an integer from {self.minimum} to {self.maximum}" if self.maximum
                   else f"an integer >= {self.minimum}")
        if isinstance(value, Real) and not isinstance(value, (bool, Integral)) \
                and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise _bad(name, value, allowed)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise _bad(name, value, allowed)
        return int(value)


@dataclass(frozen=True)
class Number(Rule):
    """A finite real number above ``minimum`` (or from it, with ``inclusive``), and at
    most ``maximum`` (or below it, with ``below``)."""

    minimum: float = 0.0
    inclusive: bool = False
    maximum: float | None = None
    below: bool = False

    @property
    def allows_zero(self) -> bool:  # type: ignore[override]
        return self.inclusive and self.minimum == 0

    def _allowed(self) -> str:
        low = f"{'>=' if self.inclusive else '>'} {self.minimum:g}"
        if self.maximum is None:
            return f"a number {low}"
        return (f"a number {low} and {'<' if self.below else '<='} {self.maximum:g}")

    def check(self, name: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, Real) \
                or not math.isfinite(value):
            raise _bad(name, value, self._allowed())
        low_ok = value >= self.minimum if self.inclusive else value > self.minimum
        high_ok = (self.maximum is None
                   or (value < self.maximum if self.below else value <= self.maximum))
        if not (low_ok and high_ok):
            raise _bad(name, value, self._allowed())
        return value


@dataclass(frozen=True)
class Choice(Rule):
    """One of a few names."""

    names: tuple[str, ...]

    def check(self, name: str, value: Any) -> str:
        return check_choice(name, value, self.names)


@dataclass(frozen=True)
class Flag(Rule):
    """``True`` or ``False`` (``-p NAME True`` gives a bool)."""

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(name, value, "True or False")
        return value


@dataclass(frozen=True)
class Ints(Rule):
    """One or more integers >= ``minimum`` (distinct ones with ``distinct``)."""

    minimum: int = 1
    distinct: bool = False

    @property
    def allows_zero(self) -> bool:  # type: ignore[override]
        return self.minimum <= 0

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        items = [int(v) if isinstance(v, float) and v.is_integer() else v
                 for v in as_list(value)]
        example = ",".join(str(self.minimum + i) for i in range(2))
        try:
            return tuple(check_ints(name, items, minimum=self.minimum,
                                    distinct=self.distinct, example=example))
        except UsageError:
            what = "distinct integers" if self.distinct else "integers"
            raise _bad(name, value, f"one or more {what} >= {self.minimum}, "
                       f"e.g. -p {name} {example}") from None


@dataclass(frozen=True)
class Numbers(Rule):
    """One or more numbers > 0."""

    def check(self, name: str, value: Any) -> tuple[float, ...]:
        items = as_list(value)
        if not items or any(isinstance(v, bool) or not isinstance(v, Real)
                            or not math.isfinite(v) or not v > 0 for v in items):
            raise _bad(name, value, f"one or more numbers > 0, e.g. -p {name} 1,25")
        return tuple(float(v) for v in items)


@dataclass(frozen=True)
class Choices(Rule):
    """One or more of a few names, in the order given."""

    names: tuple[str, ...]

    def check(self, name: str, value: Any) -> tuple[str, ...]:
        return check_choices(name, value, self.names)


@dataclass(frozen=True)
class AutoOr(Rule):
    """``"auto"`` (the lesson decides at run time) or what ``rule`` allows."""

    rule: Rule

    @property
    def allows_zero(self) -> bool:  # type: ignore[override]
        return self.rule.allows_zero

    def check(self, name: str, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return self.rule.check(name, value)
        except UsageError as exc:
            raise UsageError(f"{exc} (or 'auto')") from None


@dataclass(frozen=True)
class Computed(Rule):
    """What ``rule`` allows; the profile may hold ``None``: the lesson sizes it at run
    time (one full wave of the GPU, say)."""

    rule: Rule

    @property
    def allows_zero(self) -> bool:  # type: ignore[override]
        return self.rule.allows_zero

    def check(self, name: str, value: Any) -> Any:
        return self.rule.check(name, value)


POSITIVE = Number()
FRACTION = Number(maximum=1.0)             # (0, 1]
SHARE = Number(inclusive=True, maximum=1.0)  # [0, 1]
COUNT = Int(1)
COUNT0 = Int(0)
BLOCK = Int(1, 1024)                       # threads of one block dimension
SECONDS = Number()
# Names shared with the lessons' own lists (a test keeps them equal): this module is in
# the core layer and cannot import them.
NUMPY_ACTIVATIONS = ("relu", "tanh")
TORCH_OPTIMIZERS = ("sgd", "adam", "adamw")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
DTYPE_NAMES = ("fp64", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "gloo", "nccl")

RULES: dict[str, dict[str, Rule]] = {
    "start_here": {"matmul_n": COUNT},
    "dnn_from_scratch": {
        "n_per_class": COUNT, "hidden": COUNT, "num_epochs": COUNT, "batch_size": COUNT,
        "lr": POSITIVE, "activation": Choice(NUMPY_ACTIVATIONS), "min_accuracy": FRACTION},
    "lab1_backprop": {
        "n_per_class": COUNT, "hidden": COUNT, "lr": POSITIVE, "num_epochs": COUNT,
        "batch_size": COUNT},
    "autograd_frameworks": {
        "n_per_class": COUNT, "hidden": COUNT, "activation": Choice(NUMPY_ACTIVATIONS),
        "optimizer": Choice(TORCH_OPTIMIZERS), "lr": POSITIVE, "num_epochs": COUNT,
        "batch_size": COUNT, "min_accuracy": FRACTION, "bench_hidden": COUNT,
        "bench_batch": COUNT, "bench_repeats": COUNT,
        "compile_step": Choice(("forward", "train")), "compile_mode": Choice(COMPILE_MODES),
        "cpu_threads": COUNT0},
    "playground": {
        "n_points": Int(4), "batch_size": COUNT, "lr": POSITIVE, "num_epochs": COUNT,
        "spiral_epochs": COUNT, "app_epochs": COUNT},
    "real_data": {
        "models": Choices(("logistic", "mlp", "cnn")), "num_epochs": COUNT,
        "batch_size": COUNT, "lr": POSITIVE, "paper_tolerance": Computed(FRACTION),
        "bench_repeats": COUNT, "digits_epochs": COUNT, "digits_batch_size": COUNT,
        "digits_min_accuracy": FRACTION, "cpu_threads": COUNT},
    "hardware": {
        "matmul_n": COUNT, "dtypes": Choices(DTYPE_NAMES), "stream_mb": COUNT,
        "h2d_mb": COUNT, "check_n": COUNT, "cpu_matmul_n": COUNT, "repeats": COUNT},
    "parallel_cpu": {
        "n_queries": COUNT, "n_points": COUNT, "python_queries": COUNT,
        "serial_share": Number(inclusive=True, maximum=1.0, below=True),
        "weak_queries": COUNT, "sum_size": COUNT, "gelu_size": COUNT, "ln_rows": COUNT,
        "ln_features": COUNT, "repeats": COUNT, "max_threads": Computed(COUNT)},
    "cuda_model": {
        "n": COUNT, "threads_per_block": BLOCK, "grid_stride_blocks": COUNT,
        "blur_rows": COUNT, "blur_cols": COUNT, "blur_block_x": BLOCK,
        "blur_block_y": BLOCK, "repeats": COUNT, "min_copy_fraction": FRACTION},
    "memory_hierarchy": {
        "copy_n": COUNT, "max_stride": COUNT, "transpose_rows": COUNT,
        "transpose_cols": COUNT, "check_m": COUNT, "check_k": COUNT, "check_n": COUNT,
        "matmul_n": COUNT, "warmup": COUNT0, "repeats": COUNT, "launches": COUNT,
        "min_fraction_of_cublas": SHARE},
    "reductions": {
        "n": COUNT, "threads": BLOCK, "blocks": Computed(COUNT), "launches": COUNT,
        "warmup": COUNT0, "repeats": COUNT, "nbins": BLOCK, "hist_n": COUNT,
        "hot_fraction": SHARE, "stream_n": COUNT, "chunks": COUNT, "streams": COUNT,
        "compute_iters": Computed(COUNT0), "min_copy_fraction": FRACTION},
    "roofline_profiling": {
        "n": COUNT, "threads": BLOCK, "blocks": Computed(COUNT), "stride": COUNT,
        "blur_rows": COUNT, "blur_cols": COUNT, "transpose_rows": COUNT,
        "transpose_cols": COUNT, "matmul_n": COUNT, "hist_n": COUNT, "nbins": BLOCK,
        "cublas_n": COUNT, "launches": COUNT, "warmup": COUNT0, "repeats": COUNT,
        "roof_tolerance": Number(1.0, inclusive=True), "ncu_timeout": Number(inclusive=True)},
    "lab2_cuda_kernels": {
        "threads": BLOCK, "block_x": BLOCK, "block_y": BLOCK, "sgd_n": COUNT,
        "sgd_blocks": COUNT, "image_rows": COUNT, "image_cols": COUNT, "speed_n": COUNT,
        "min_speedup": POSITIVE, "warmup": COUNT0, "repeats": COUNT, "launches": COUNT},
    "lab3_reduction_histogram": {
        "threads": BLOCK, "blocks": COUNT, "nbins": COUNT, "amax_n": COUNT, "hist_n": COUNT,
        "warmup": COUNT0, "repeats": COUNT, "launches": COUNT},
    "single_gpu_perf": {
        "width": COUNT, "blocks": COUNT, "batch_size": COUNT, "n_images": COUNT,
        "steps": COUNT, "warmup": COUNT0, "repeats": COUNT, "num_workers": COUNT,
        "lr": POSITIVE, "compile": Flag(), "cpu_threads": COUNT0, "profile_steps": COUNT,
        "min_amp_speedup": Computed(POSITIVE), "min_amp_over_tf32": Computed(POSITIVE)},
    "lab4_distributed": {
        "world_sizes": Ints(2, distinct=True), "lengths": Ints(1), "align": COUNT,
        "dp_world_sizes": Ints(2, distinct=True), "dp_steps": COUNT, "dp_batch": COUNT,
        "dp_lr": POSITIVE, "timeout": SECONDS, "group_timeout": SECONDS},
    "data_parallel": {
        "n_per_class": COUNT, "hidden": Ints(1), "dtype": Choice(("float64", "float32")),
        "batch_size": COUNT, "epochs": COUNT, "lr": POSITIVE, "base_batch": COUNT,
        "warmup_steps": COUNT0, "momentum": Number(inclusive=True, maximum=1.0, below=True),
        "world_sizes": Ints(2, distinct=True), "accum_steps": Int(2), "die_at_step": COUNT,
        "restart_demo": Flag(), "lr_demo_workers": COUNT, "lr_demo_epochs": COUNT,
        "bench_world_sizes": AutoOr(Ints(1, distinct=True)), "bench_width": COUNT,
        "bench_blocks": COUNT, "bench_batch": COUNT, "bucket_caps_mb": Numbers(),
        "bench_warmup": COUNT0, "bench_repeats": COUNT, "timeout": SECONDS},
    "collectives": {
        "backend": Choice(BACKENDS), "world_sizes": Ints(2, distinct=True),
        "lengths": Ints(1), "bench_nproc": AutoOr(Int(2)), "min_bytes": COUNT,
        "max_bytes": COUNT, "gloo_max_bytes": COUNT, "size_factor": Int(2),
        "warmup": COUNT0, "repeats": COUNT, "iters": COUNT, "timeout": SECONDS},
    "beyond_dp": {
        "backend": Choice(BACKENDS), "fsdp_world_sizes": Ints(2, distinct=True),
        "in_features": COUNT, "widths": Ints(1), "classes": Int(2), "batch_per_rank": COUNT,
        "steps": COUNT, "lr": POSITIVE, "tp_world": Int(2), "tp_sizes": Ints(1),
        "tp_features": COUNT, "tp_hidden": Ints(1), "tp_batch": COUNT, "stages": Int(2),
        "micro_batches": Ints(1), "stage_ms": POSITIVE,
        "bubble_tolerance": Number(maximum=1.0, below=True), "pp_repeats": COUNT,
        "mpi_nproc": COUNT, "mpi_steps": COUNT, "mpi_n_per_class": COUNT,
        "ft_steps": Int(2), "ft_kill_step": COUNT, "timeout": SECONDS},
}


def rule(key: str, knob: str) -> Rule:
    """The rule of one knob; a knob without one is a mistake in the course."""
    try:
        return RULES[key][knob]
    except KeyError:
        raise UsageError(f"no parameter rule for {key}.{knob}: add one to "
                         "course_utils/parameters.py") from None


def allows_zero(key: str, knob: str) -> bool:
    """Whether 0 is a valid value of the knob (a count of warm-up runs, say)."""
    return rule(key, knob).allows_zero


def check(key: str, knob: str, value: Any) -> Any:
    """``value`` checked against the knob's rule, normalised; the error names the
    parameter as the notebook spells it (``knob.upper()``)."""
    return rule(key, knob).check(knob.upper(), value)


def check_overrides(key: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every override that is not ``None``, checked and normalised."""
    return {knob: check(key, knob, value) for knob, value in overrides.items()
            if value is not None}

