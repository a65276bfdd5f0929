"""What this machine is and what it can run: a fingerprint, and a checklist with fixes.

The fingerprint goes into every ``results.json`` so that a number is never separated from
the hardware and software it was measured on. ``hpdl env`` prints the checklist: each
missing piece with the command that fixes it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

from . import cudasim
from .device import cuda_gpu_count

PACKAGES = ("torch", "numba", "numba-cuda", "numpy", "papermill", "nbval", "mpi4py")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """Cores this process may use (respects affinity / container limits where known)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_info() -> list[dict]:
    """Name, memory and compute capability of each CUDA GPU PyTorch sees (empty if none)."""
    if cuda_gpu_count() == 0:
        return []
    try:
        import torch

        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                {
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}",
                    "multiprocessors": props.multi_processor_count,
                }
            )
        return gpus
    except Exception:  # noqa: BLE001 - CPU-only torch on a GPU machine
        return [{"name": "CUDA GPU (not visible to PyTorch)"}]


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def fingerprint() -> dict:
    """Hardware and package versions, as a JSON-able dict (goes into results.json)."""
    import psutil

    torch_cuda = None
    try:
        import torch

        torch_cuda = torch.version.cuda
    except ImportError:  # pragma: no cover
        pass
    gpus = gpu_info()
    return {
        "hardware": hardware_label(gpus),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "nvidia_driver": nvidia_driver(),
        "torch_cuda": torch_cuda,
        "cuda_simulator": cudasim.on_simulator(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def hardware_label(gpus: list[dict] | None = None) -> str:
    """One line naming the hardware a number came from, e.g. ``NVIDIA H100 80GB HBM3``.

    On a machine without a GPU: the CPU and its core count. Simulator runs say so,
    because their kernel timings are meaningless.
    """
    gpus = gpu_info() if gpus is None else gpus
    if gpus:
        names = sorted({g["name"] for g in gpus})
        count = f"{len(gpus)}x " if len(gpus) > 1 else ""
        return count + ", ".join(names)
    label = f"CPU: {cpu_model()} ({cpu_cores()} cores)"
    return label


@dataclass
class Check:
    """One line of the ``hpdl env`` checklist."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _numba_sees_gpu() -> tuple[bool, str]:
    """Ask Numba, in a fresh process with the simulator off, whether it sees a GPU."""
    code = (
        "from numba import cuda\n"
        "ok = cuda.is_available()\n"
        "print(cuda.get_current_device().name.decode() if ok and "
        "isinstance(cuda.get_current_device().name, bytes) else "
        "(cuda.get_current_device().name if ok else 'none'))"
    )
    env = {**os.environ, cudasim.ENV_VAR: "0"}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not ask numba: {exc}"
    name = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode == 0 and name and name != "none":
        return True, name
    return False, "numba.cuda.is_available() is False"


def _kernel_installed() -> tuple[bool, str]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return False, f"no 'python3' Jupyter kernel ({type(exc).__name__})"
    argv0 = spec.argv[0] if spec.argv else "?"
    if argv0 in ("python", "python3"):  # jupyter_client runs these with sys.executable
        argv0 = sys.executable
    return True, f"python3 kernel -> {argv0}"


def checklist() -> list[Check]:
    """What the course needs, found or missing, each with its fix."""
    checks: list[Check] = []
    n_gpu = cuda_gpu_count()
    checks.append(Check(
        "GPU seen by PyTorch", n_gpu > 0,
        f"{n_gpu} CUDA GPU(s): {hardware_label()}" if n_gpu else "no CUDA GPU (CPU only)",
        "Fine on a laptop: lessons run on the CPU. For GPU numbers run on a GPU node "
        "with a CUDA build of PyTorch (README: GPU machines).",
    ))
    if n_gpu:
        ok, detail = _numba_sees_gpu()
        checks.append(Check(
            "GPU seen by Numba", ok, detail,
            "pip install numba-cuda[cu12] (or [cu13] to match the driver); check nvidia-smi.",
        ))
    else:
        checks.append(Check("GPU seen by Numba", False, "no GPU on this machine",
                            "Kernels run on Numba's CUDA simulator instead (correct "
                            "answers, meaningless timings)."))
    sim = cudasim.on_simulator()
    checks.append(Check(
        "CUDA simulator", True,
        "ON: kernels run as Python threads; their timings mean nothing" if sim
        else "off: kernels run on the real GPU",
    ))
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    checks.append(Check(
        "C++ compiler (torch.compile)", cxx is not None, cxx or "not found",
        "sudo apt install g++  (or: conda install -c conda-forge gxx); lessons that use "
        "torch.compile skip it without one.",
    ))
    mpi_version = _version("mpi4py")
    mpiexec = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpiexec is None and mpi_version:
        candidate = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        mpiexec = candidate if os.path.exists(candidate) else None
    checks.append(Check(
        "MPI (mpi4py + mpiexec)", bool(mpi_version and mpiexec),
        f"mpi4py {mpi_version}, {mpiexec}" if mpi_version and mpiexec
        else f"mpi4py: {mpi_version or 'missing'}, mpiexec: {mpiexec or 'missing'}",
        "pip install -e '.[mpi]'  (mpi4py with the MPICH wheel); MPI cells skip without it.",
    ))
    ok, detail = _kernel_installed()
    checks.append(Check(
        "Jupyter kernel", ok, detail,
        "python -m ipykernel install --user --name python3", required=True,
    ))
    return checks


def report(as_json: bool = False) -> str:
    """The text (or JSON) that ``hpdl env`` prints."""
    fp = fingerprint()
    checks = checklist()
    if as_json:
        return json.dumps({"fingerprint": fp, "checks": [asdict(c) for c in checks]}, indent=2)
    lines = [f"hardware : {fp['hardware']}",
             f"python   : {fp['python']} on {fp['platform']}",
             f"memory   : {fp['memory_gib']} GiB, {fp['cpu_cores']} CPU cores",
             "packages : " + ", ".join(f"{k} {v or '-'}" for k, v in fp["packages"].items()),
             ""]
    for c in checks:
        mark = "ok " if c.ok else "-- "
        lines.append(f"[{mark}] {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"       fix: {c.fix}")
    return "\n".join(lines)
