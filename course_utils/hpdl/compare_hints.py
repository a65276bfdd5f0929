"""What a far-off number usually means: the data ``hpdl compare`` draws its hints from.

``HINTS`` is searched in order and the first entry whose pattern matches the metric's name
(``fnmatch`` with ``*`` only) and whose direction fits wins: specific entries come first,
generic ones last. ``direction`` says on which side of the reference the value is:
``"below"`` (smaller), ``"above"`` (larger) or ``"either"``. ``speed=True`` marks hints
about speed, which another machine explains by itself; on different hardware
``hpdl compare`` says that instead.

``ALLOWANCES`` are metrics that measure an error (ideally 0): a value at or under the
limit is ok whatever its ratio, because the ratio of two numbers near zero says nothing.

Every pattern must match a metric name that some lesson or lab records (a unit test checks
it, so a renamed metric cannot leave a hint behind).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """A likely cause for metrics matching ``patterns`` that are far ``direction``."""

    patterns: tuple[str, ...]
    direction: str
    text: str
    speed: bool = True


@dataclass(frozen=True)
class Allowance:
    """Metrics matching ``patterns`` are ok while their value is at most ``limit``."""

    patterns: tuple[str, ...]
    limit: float
    why: str


_TF32_FLAGS = "torch.backends.cuda.matmul.allow_tf32 / torch.backends.cudnn.allow_tf32"

HINTS: tuple[Hint, ...] = (
    # ---- precision switches
    Hint(("matmul_fp32_gflops", "hw_matmul_fp32_gflops", "hw_matmul_fp32_tf32off_gflops",
          "*cublas_fp32_gflops"), "above",
         "fp32 matmul faster than the reference: TF32 left on (torch.backends.cuda.matmul."
         "allow_tf32 = True or torch.set_float32_matmul_precision('high')), so this is not "
         "a true fp32 number"),
    Hint(("hw_matmul_tf32_gflops", "ladder_tf32_speedup", "ladder_tf32_samples_per_s"),
         "below",
         f"TF32 not in effect: {_TF32_FLAGS} not set, or a GPU before Ampere (no TF32 "
         "tensor cores)"),
    Hint(("ladder_bf16_speedup", "ladder_fp16_speedup", "ladder_bf16_samples_per_s",
          "ladder_fp16_samples_per_s"), "below",
         "AMP speed-up low: autocast not around the forward pass (torch.autocast('cuda', "
         "dtype=torch.bfloat16)), a model too small to be compute-bound, or no bf16/fp16 "
         "tensor cores on this GPU"),
    # ---- data loading and host-device copies
    Hint(("ladder_pinned_speedup", "ladder_pinned_samples_per_s"), "below",
         "pinned memory gives little: the DataLoader is not pinning (pin_memory=True) or "
         "the copies are not asynchronous (.to(device, non_blocking=True))"),
    Hint(("ladder_workers_speedup", "ladder_workers_samples_per_s",
          "mnist1d_dataloader_batched_samples_per_s",
          "mnist1d_dataloader_per_sample_samples_per_s"), "below",
         "data loading slow: fewer CPU cores for num_workers than on the reference (see "
         "`hpdl env`), workers restarted every epoch (persistent_workers=True), or other "
         "programs on the CPU"),
    Hint(("h2d_pinned_gbps", "hw_h2d_pinned_gbps"), "below",
         "host-to-device copies slow: the host buffer is not really pinned (torch: "
         "pin_memory=True / tensor.pin_memory(); Numba: cuda.pinned_array), the GPU sits "
         "in a narrower or older PCIe slot (nvidia-smi -q | grep -A3 'Link Width'), or the "
         "process runs on the CPU socket far from the GPU (numactl)"),
    Hint(("h2d_pageable_gbps", "hw_h2d_pageable_gbps"), "below",
         "pageable copies go through a staging buffer: slow host memory, a CPU socket far "
         "from the GPU (numactl), or a busy host; pin the buffers that matter "
         "(pin_memory=True)"),
    Hint(("saxpy_transfer_over_kernel",), "above",
         "transfers weigh more than on the reference: pageable host arrays (use "
         "cuda.pinned_array / pin_memory=True) or a slower PCIe link"),
    Hint(("streams_overlap_speedup",), "below",
         "copies do not overlap the kernels: pageable host buffers make copies synchronous "
         "(use cuda.pinned_array), or all the work went to one stream"),
    Hint(("streams_overlapped_ms",), "above",
         "copies do not overlap the kernels: pageable host buffers make copies synchronous "
         "(use cuda.pinned_array), or all the work went to one stream"),
    # ---- compilers
    Hint(("compile_speedup", "ladder_compile_speedup", "ladder_cuda_graphs_speedup"), "below",
         "torch.compile / CUDA graphs give less: recompilations or graph breaks "
         "(TORCH_LOGS=recompiles,graph_breaks), or compile time inside the timed steps"),
    Hint(("compile_s", "njit_compile_s", "ladder_compile_first_step_s"), "above",
         "compiling took longer: a cold compiler cache (a second run is faster), fewer or "
         "slower CPU cores (compiling is CPU work), or another compiler version (see the "
         "versions line)"),
    # ---- communication and scaling
    Hint(("allreduce_*busbw*",), "below",
         "all-reduce bandwidth low: NCCL not using NVLink/InfiniBand (NCCL_DEBUG=INFO names "
         "the transport), NCCL_P2P_DISABLE or NCCL_IB_DISABLE set, or Gloo instead of NCCL"),
    Hint(("allreduce_alpha_us",), "above",
         "all-reduce latency high: the transport (NCCL_DEBUG=INFO), Gloo instead of NCCL, "
         "or a busy network"),
    Hint(("*scaling_efficiency*", "kde_weak_efficiency", "ddp_throughput_*",
          "kde_strong_speedup", "mixed_scaled_speedup"), "below",
         "scaling worse: fewer free cores or GPUs than workers (other jobs), a slower "
         "interconnect, or too small a batch per worker to hide the communication"),
    Hint(("kde_*_mpairs_per_s", "njit_speedup_vs_python"), "below",
         "CPU kernels slower: fewer cores or threads (NUMBA_NUM_THREADS, taskset), another "
         "program on the CPU, or compilation inside the timing (no warm-up)"),
    # ---- kernels and the hardware's limits
    Hint(("cuda_add_one_kernel_us", "eager_step_us", "compiled_step_us",
          "streams_sequential_ms"), "above",
         "slower steps or kernels: a busy or shared GPU (nvidia-smi; MIG or vGPU slice), "
         "clocks throttled (nvidia-smi -q -d PERFORMANCE), or the first call's compilation "
         "inside the timing"),
    Hint(("*_fraction_of_*",), "below",
         "further from the hardware's limit than on the reference: launch configuration "
         "(threads per block), uncoalesced access, or caches that treat this size "
         "differently"),
    Hint(("hw_cpu_copy_bandwidth_gbps", "hw_cpu_matmul_fp32_gflops"), "below",
         "the host CPU is slower: fewer threads (torch.get_num_threads()), NUMA placement, "
         "or other programs on it"),
    Hint(("*matmul*_gflops", "*cublas*_gflops"), "below",
         "matmul slow: GPU clocks or power capped (nvidia-smi -q -d CLOCK,POWER), other "
         "jobs on the GPU, or a smaller matrix (profile)"),
    Hint(("*_gbps", "*_gbps_*", "*_bandwidth*"), "below",
         "memory bandwidth low: other jobs on the GPU (nvidia-smi), clocks or power capped, "
         "ECC or MIG settings, or arrays too small (profile) to fill the GPU"),
    Hint(("*_per_s", "*_rate"), "below",
         "throughput low: other jobs on the machine, clocks or power capped, or a smaller "
         "size (profile)"),
    # ---- not about speed
    Hint(("*_accuracy", "*near_zero_weights"), "either",
         "differs from the reference: another seed, profile (epochs, sizes) or -p "
         "parameters, or a changed lesson; speed plays no part", speed=False),
    Hint(("*_abs_error", "*_param_diff", "*_param_diff_vs_*"), "above",
         "a larger numerical difference: another reduction order (TF32, non-deterministic "
         "kernels, world size) or a real bug; the notebook's own assertion is the judge",
         speed=False),
    Hint(("*_peak_mib_*",), "either",
         "peak memory differs: other sizes (profile, -p parameters) or another PyTorch "
         "version's allocator (see the versions line)", speed=False),
)

ALLOWANCES: tuple[Allowance, ...] = (
    Allowance(("*_abs_error", "*_param_diff", "*_param_diff_vs_*"), 1e-9,
              "numerically zero"),
    Allowance(("pipeline_bubble_max_deviation",), 0.06,
              "inside the lesson's own tolerance (sleep-based timing)"),
)
