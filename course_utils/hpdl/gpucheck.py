"""``hpdl gpu-check`` (``make gpu-check``): everything a GPU node can prove, in one command.

1. every lesson and lab master in the full profile on CUDA (``hpdl run``);
2. the tests marked ``gpu`` (pytest);
3. a collective smoke test on NCCL: one rank, and one rank per GPU when there are more;
4. every measured peak (matmul GFLOP/s, copy GB/s) against the GPU's data sheet
   (``course_utils.gpu.datasheet``): outside 40-105 % is a broken measurement.

It writes ``<out>/gpu-check.md`` (the report) and ``results/reference/<gpu>.json`` (the
run's results with the checks added, for ``hpdl compare`` and the course website), and
exits 0 only when every part passed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import UsageError

SMOKE_SCRIPT = paths.LESSONS_DIR / "unit3_multi_gpu" / "scripts" / "collective_smoke.py"


@dataclass
class GpuCheck:
    """The outcome of each part, and where the files went."""

    gpu: str
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> ok, detail
    peaks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(part["ok"] for part in self.parts.values())


def slug(gpu_name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"`` (the reference file name)."""
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")


def require_gpu() -> str:
    """The first CUDA GPU's name; a UsageError saying what to do where there is none."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError("hpdl gpu-check needs a CUDA GPU and a PyTorch built with CUDA "
                         f"(this one: {torch.__version__}, torch.cuda.is_available() is "
                         "False): on a GPU node, activate its environment (or `python3 -m "
                         "venv --system-site-packages .venv`) and run `make gpu-check` there; "
                         "on a CPU machine, `make test` is the check")
    return torch.cuda.get_device_name(0)


def peak_checks(results: dict[str, Any], gpu_name: str) -> list[dict[str, Any]]:
    """Every peak metric of a run's results against the data sheet of ``gpu_name`` (empty
    for a GPU the table does not know)."""
    from ..gpu import datasheet

    peaks = datasheet.lookup(gpu_name)
    if peaks is None:
        return []
    found = []
    for nb in results.get("notebooks", []):
        for name, metric in nb.get("metrics", {}).items():
            if not metric.get("meaningful", True):
                continue
            checked = datasheet.check(name, float(metric["value"]), peaks)
            if checked is not None:
                found.append({"notebook": nb["path"], "metric": name, "kind": checked.kind,
                              "measured": checked.measured, "peak": checked.peak,
                              "fraction": round(checked.fraction, 4), "ok": checked.ok,
                              "line": checked.line()})
    return found


def report_markdown(check: GpuCheck) -> str:
    """The report: one line per part, the peaks table, what to do about a failure."""
    lines = [f"# hpdl gpu-check on {check.gpu}", "",
             f"{'all parts passed' if check.ok else 'FAILED'} in {check.seconds:.0f} s", ""]
    for name, part in check.parts.items():
        lines.append(f"- **{name}**: {'ok' if part['ok'] else 'FAILED'}: {part['detail']}")
    lines += ["", "## Measured peaks against the data sheet", ""]
    if check.peaks:
        lines += ["```"] + [p["line"] for p in check.peaks] + ["```"]
    else:
        lines.append("no peak measured, or a GPU the data-sheet table does not know "
                     "(course_utils/gpu/datasheet.py)")
    return "\n".join(lines) + "\n"


def _notebooks(out: Path, timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
    from .report import write_results
    from .runner import run

    result = run(None, profile="full", device="cuda", out=out / "run", timeout=timeout,
                 progress=True)
    json_path, _ = write_results(result, out / "run")
    failed = [nb.path for nb in result.notebooks if nb.status != "passed"]
    detail = (f"{len(result.notebooks) - len(failed)} of {len(result.notebooks)} notebooks "
              f"passed in {result.total_seconds:.0f} s" + (f"; failed: {failed}" if failed
                                                          else ""))
    return {"ok": not failed, "detail": detail}, json.loads(json_path.read_text())


def _gpu_tests(timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"],
                          cwd=paths.REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"ok": proc.returncode == 0, "detail": f"pytest -m gpu: {tail}"}


def smoke(nproc: int, backend: str, timeout: float = 180) -> dict[str, Any]:
    """The collective smoke script on ``nproc`` ranks; ok and a one-line detail."""
    from ..training import dist

    start = time.perf_counter()
    result = dist.launch(SMOKE_SCRIPT, nproc=nproc, backend=backend, timeout=timeout,
                         show="failed", check=False,
                         out_dir=paths.BUILD_DIR / "gpu-check" / f"smoke-{backend}-{nproc}")
    ok = result.ok and len(result.outputs) == nproc and all(
        o.get("all_reduce") == nproc * (nproc + 1) / 2 for o in result.outputs.values())
    return {"ok": ok, "detail": f"{nproc} rank(s) on {backend}: process group, all_reduce, "
                                f"one DDP step in {time.perf_counter() - start:.1f} s"
                                + ("" if ok else f" (see {result.out_dir})")}


def gpu_check(out: str | Path | None = None, timeout: float = 600) -> GpuCheck:
    """Run every part (see the module docstring); write the report and the reference."""
    import torch

    gpu = require_gpu()
    out = Path(out) if out else paths.BUILD_DIR / "gpu-check"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    check = GpuCheck(gpu=gpu)
    check.parts["notebooks (full profile, CUDA)"], results = _notebooks(out, timeout)
    check.parts["tests marked gpu"] = _gpu_tests(timeout)
    check.parts["NCCL, 1 rank"] = smoke(1, "nccl")
    gpus = torch.cuda.device_count()
    if gpus > 1:
        check.parts[f"NCCL, {gpus} ranks"] = smoke(gpus, "nccl")
    check.peaks = peak_checks(results, gpu)
    broken = [p["metric"] for p in check.peaks if not p["ok"]]
    check.parts["peaks against the data sheet"] = {
        "ok": not broken, "detail": (f"{len(check.peaks)} measured peaks"
                                     + (f"; broken: {broken}" if broken else ", all plausible"))}
    check.seconds = time.perf_counter() - start
    (out / "gpu-check.md").write_text(report_markdown(check))
    reference = paths.REPO_ROOT / "results" / "reference" / f"{slug(gpu)}.json"
    results["gpu_check"] = {"ok": check.ok, "parts": check.parts, "peaks": check.peaks,
                            "seconds": round(check.seconds, 1)}
    reference.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return check
