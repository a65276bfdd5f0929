"""``hpdl run``: execute lessons and labs with papermill into ``build/``, never the sources.

Each notebook is executed in a copy under the output folder (mirroring the source tree,
and with that copy's folder as the working directory), with ``PROFILE``, ``DEVICE`` and any
``-p NAME VALUE`` injected as parameters. A failing notebook is reported with its cell and
error, and the others still run. The result of a run (see ``RESULTS_SCHEMA``) is written to
``results.json`` and ``report.html`` by ``course_utils.hpdl.report``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import paths, profiles
from ..device import DEVICE_CHOICES, gpu_available, resolve_device
from ..errors import UsageError, check_choice
from .execution import (
    KERNEL_ARGUMENTS,
    checks_from_notebook,
    environment,
    kernel_log,
    kernel_manager_logging_to,
)

RESULTS_SCHEMA = """\
results.json (schema "hpdl-results/1"):
{
  "schema": "hpdl-results/1",
  "created": ISO-8601 time the run started,
  "fingerprint": {hardware, python, platform, cpu, cpu_cores, memory_gib, gpus: [...],
                  nvidia_driver, torch_cuda, cuda_simulator, packages: {name: version}},
  "profile": "quick" | "full"          (as resolved; "auto" is never stored),
  "device": "cpu" | "cuda"             (as resolved),
  "parameters": {NAME: value}          (the -p overrides),
  "total_seconds": float,
  "summary": {"passed": int, "failed": int, "timeout": int},
  "notebooks": [{
     "path": "lessons/...ipynb"        (source, relative to the repository when inside it),
     "output": "build/lessons/...ipynb" (the executed copy),
     "status": "passed" | "failed" | "timeout",
     "seconds": float,
     "metrics": {name: {"value": float, "unit": str, "hardware": str, "meaningful": bool}},
     "checks": [{"name", "points", "max_points", "passed", "message"}]  (labs only),
     "error": null | {"cell": int, "message": str, "traceback": str}
  }]
}"""

DEFAULT_TARGETS = ("lessons", "labs/solutions")
SCHEMA_ID = "hpdl-results/1"  # results.json; compare and site read it
RESULTS_KEYS = ("created", "fingerprint", "profile", "device", "summary", "notebooks")
RESERVED_PARAMETERS = ("PROFILE", "DEVICE")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class NotebookResult:
    """What happened to one notebook."""

    path: str
    output: str
    status: str
    seconds: float
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None


@dataclass
class RunResult:
    """A whole ``hpdl run``: what results.json holds."""

    fingerprint: dict[str, Any]
    profile: str
    device: str
    parameters: dict[str, Any]
    created: str
    total_seconds: float = 0.0
    notebooks: list[NotebookResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "timeout": 0}
        for nb in self.notebooks:
            counts[nb.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return all(nb.status == "passed" for nb in self.notebooks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID, "created": self.created,
            "fingerprint": self.fingerprint, "profile": self.profile, "device": self.device,
            "parameters": self.parameters, "total_seconds": round(self.total_seconds, 2),
            "summary": self.counts, "notebooks": [asdict(nb) for nb in self.notebooks],
        }


# --------------------------------------------------------------------------- validation
def parse_parameter(name: str, raw: str) -> tuple[str, Any]:
    """``-p NAME VALUE``: NAME must be an identifier; VALUE is read as YAML (1, 0.5, true, x)."""
    import yaml

    if not name.isidentifier():
        raise UsageError(f"-p {name!r}: a parameter name must be a Python identifier, "
                         "e.g. -p NUM_EPOCHS 10")
    if name in RESERVED_PARAMETERS:
        raise UsageError(f"-p {name}: use --{name.lower()} instead")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, list)) or value is None and raw.strip() not in ("null", "~"):
        value = raw
    return name, value


def parameters_of(notebook: Path) -> list[str]:
    """The names the notebook's cell tagged ``parameters`` assigns (empty if it has none)."""
    import ast

    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return [t.id for node in ast.parse(cell.source).body
                    if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def check_parameter_names(notebooks: list[Path], parameters: dict[str, Any]) -> dict[Path, set]:
    """Which ``-p`` names each notebook has; a name that none of them has is a UsageError
    (papermill would add it as a new variable that nothing reads, silently)."""
    known = {nb: set(parameters_of(nb)) for nb in notebooks}
    everything = set().union(*known.values()) if known else set()
    for name in parameters:
        if name not in everything:
            where = (_relative(notebooks[0]).as_posix() if len(notebooks) == 1
                     else f"any of the {len(notebooks)} notebooks selected")
            listed = ", ".join(sorted(everything - set(RESERVED_PARAMETERS))) or "none"
            raise UsageError(f"-p {name}: {where} has no parameter {name}; "
                             f"its parameters are: {listed}")
    return known


def read_results(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Read and validate a ``results.json`` written by :func:`run` (or the folder holding
    it); return its path and contents. ``hpdl compare`` and ``hpdl site`` read runs with it.

    A missing file, text that is not JSON, another schema, a missing top-level key or a
    malformed metric raises one UsageError naming the file and what to do.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / "results.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such file; run `hpdl run` first, or give the "
                         "results.json (or the folder) it wrote, e.g. build/results.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc}); give the results.json that "
                         "`hpdl run` wrote") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise UsageError(f"{path}: not an `hpdl run` results file (schema {found!r}, "
                         f"expected {SCHEMA_ID!r}; see `hpdl run --help`)")
    notebooks = data.get("notebooks")
    if not isinstance(notebooks, list):
        raise UsageError(f"{path}: malformed results file: 'notebooks' is not a list")
    for i, nb in enumerate(notebooks):
        if not isinstance(nb, dict) or not isinstance(nb.get("path"), str) \
                or not isinstance(nb.get("metrics", {}), dict):
            raise UsageError(f"{path}: malformed results file: notebook {i} needs a 'path' "
                             "and a 'metrics' object")
        for name, m in nb.get("metrics", {}).items():
            ok = isinstance(m, dict) and isinstance(m.get("unit"), str) \
                and isinstance(m.get("value"), (int, float)) \
                and not isinstance(m.get("value"), bool)
            if not ok:
                raise UsageError(f"{path}: malformed results file: metric {name!r} of "
                                 f"{nb['path']} needs a numeric 'value' and a 'unit'")
    missing = [key for key in RESULTS_KEYS if key not in data]
    if missing:
        raise UsageError(f"{path}: malformed results file: lacks "
                         f"{', '.join(map(repr, missing))} (see `hpdl run --help`)")
    return path, data


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(paths.REPO_ROOT)
    except ValueError:
        return Path(path.name)


def discover(targets: list[str] | None) -> list[Path]:
    """Notebooks named by ``targets`` (files or folders, searched recursively), sorted.

    A missing path, a file that is not a .ipynb, or a folder without notebooks is a
    UsageError, raised before anything runs.
    """
    if not targets:
        targets = [str(paths.REPO_ROOT / t) for t in DEFAULT_TARGETS]
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if not path.exists():
            raise UsageError(f"{target}: no such file or folder (give a notebook or a folder "
                             "of notebooks, e.g. lessons/)")
        if path.is_dir():
            notebooks = sorted(p for p in path.rglob("*.ipynb")
                               if ".ipynb_checkpoints" not in p.parts)
            if not notebooks:
                raise UsageError(f"{target}: folder holds no .ipynb notebooks")
            found.extend(notebooks)
        elif path.suffix != ".ipynb":
            raise UsageError(f"{target}: not a Jupyter notebook (expected a .ipynb file)")
        else:
            found.append(path)
    unique: dict[Path, None] = dict.fromkeys(p.resolve() for p in found)
    return list(unique)


def _check_out_dir(out: Path) -> Path:
    out = out.resolve()
    for protected in (paths.LESSONS_DIR, paths.LABS_DIR):
        if out == protected or protected in out.parents:
            raise UsageError(f"--out {out}: refusing to write into {protected.name}/ "
                             "(sources are never modified); use build/ or another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    return out


# --------------------------------------------------------------------------- execution
def _error_from_exception(exc: BaseException) -> dict[str, Any]:
    cell = getattr(exc, "cell_index", None)
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename is not None:
        message = f"{ename}: {evalue}"
        tb = "\n".join(getattr(exc, "traceback", []) or [])
    else:
        message = f"{type(exc).__name__}: {exc}"
        tb = ""
    return {"cell": cell, "message": _ANSI.sub("", message).strip(),
            "traceback": _ANSI.sub("", tb)}


def _finish_output(output: Path, status: str, error: dict | None) -> tuple[dict, list]:
    """Gather metrics and checks from the executed copy; store them in its metadata."""
    import nbformat

    from ..record import metrics_from_notebook

    if not output.exists():
        return {}, []
    nb = nbformat.read(output, as_version=4)
    metrics = metrics_from_notebook(nb)
    checks = checks_from_notebook(nb)
    nb.metadata["hpdl"] = {"status": status, "metrics": metrics, "checks": checks,
                           "error": error}
    nbformat.write(nb, output)
    return metrics, checks


def run_one(source: Path, output: Path, parameters: dict[str, Any],
            timeout: float) -> NotebookResult:
    """Execute one notebook with papermill; never raises for a notebook's own failure."""
    import papermill
    from nbclient.exceptions import CellTimeoutError

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    deadline = start + timeout
    status, error = "passed", None
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=str(output.parent), log_output=False,
            timeout_func=lambda cell: max(1.0, deadline - time.perf_counter()),
            extra_arguments=KERNEL_ARGUMENTS,
            kernel_manager_class=kernel_manager_logging_to(kernel_log(output)),
        )
    except CellTimeoutError:
        status = "timeout"
        error = {"cell": None, "message": f"the notebook ran past its {timeout:g} s limit "
                 "(raise it with --timeout)", "traceback": ""}
    except Exception as exc:  # noqa: BLE001 - a failing notebook must not stop the run
        status, error = "failed", _error_from_exception(exc)
    seconds = time.perf_counter() - start
    metrics, checks = _finish_output(output, status, error)
    rel = _relative(source)
    if status == "passed" and rel.parts[:2] == ("labs", "solutions"):
        failed = [c for c in checks if not c.get("passed")]
        if failed:
            status = "failed"
            error = {"cell": None, "traceback": "",
                     "message": "graded check(s) failed in a lab master: "
                     + "; ".join(f"{c['name']}: {c['message']}" for c in failed)}
    return NotebookResult(path=rel.as_posix(), output=str(output), status=status,
                          seconds=round(seconds, 2), metrics=metrics, checks=checks,
                          error=error)


def run(targets: list[str] | None = None, *, profile: str = "auto", device: str = "auto",
        out: str | Path | None = None, timeout: float = 600,
        parameters: dict[str, Any] | None = None, progress: bool = True) -> RunResult:
    """Validate everything, then execute each notebook; return the RunResult.

    Bad input raises UsageError (or DeviceUnavailableError) before anything is written.
    """
    from tqdm.auto import tqdm

    from ..env import fingerprint

    check_choice("--profile", profile, profiles.PROFILE_CHOICES)
    check_choice("--device", device, DEVICE_CHOICES)
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout}: must be a positive number of seconds")
    resolved_device = resolve_device(device)
    resolved_profile = profiles.resolve_profile(profile, gpu_available=gpu_available())
    out_dir = _check_out_dir(Path(out) if out else paths.BUILD_DIR)
    notebooks = discover(targets)
    parameters = dict(parameters or {})
    known = check_parameter_names(notebooks, parameters)
    common = {"PROFILE": resolved_profile, "DEVICE": resolved_device}

    result = RunResult(fingerprint=fingerprint(), profile=resolved_profile,
                       device=resolved_device, parameters=parameters,
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this environment: the profile, so that a notebook's subprocesses
    # agree with it, and matplotlib's inline backend, so that executed notebooks keep their
    # figures (for the report and `hpdl site`) even where MPLBACKEND=Agg is exported (CI).
    kernel_env = {profiles.ENV_VAR: resolved_profile, "MPLBACKEND": INLINE_BACKEND}
    start = time.perf_counter()
    with environment(kernel_env):
        bar = tqdm(notebooks, unit="notebook", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for source in bar:
            rel = _relative(source)
            bar.set_postfix_str(rel.as_posix())
            injected = {**common, **{name: value for name, value in parameters.items()
                                     if name in known[source]}}
            nb_result = run_one(source, out_dir / rel, injected, timeout)
            result.notebooks.append(nb_result)
            tail = "" if nb_result.error is None else f"  ({nb_result.error['message'][:120]})"
            bar.write(f"{nb_result.status:<8}{nb_result.seconds:7.1f} s  {nb_result.path}{tail}",
                      file=sys.stderr)
    result.total_seconds = time.perf_counter() - start
    return result


def summary_table(result: RunResult, report_path: Path | None = None) -> str:
    """The plain-text table ``hpdl run`` prints at the end."""
    width = max([len(nb.path) for nb in result.notebooks] + [8])
    lines = [f"{'notebook':<{width}}  {'status':<8} {'seconds':>8}  metrics"]
    for nb in result.notebooks:
        shown = ", ".join(
            f"{k}={v['value']:.4g} {v['unit']}"
            + ("" if v.get("meaningful", True) else " (simulator: not performance)")
            for k, v in nb.metrics.items())
        lines.append(f"{nb.path:<{width}}  {nb.status:<8} {nb.seconds:8.1f}  {shown}")
        if nb.error:
            cell = f"cell {nb.error['cell']}: " if nb.error.get("cell") is not None else ""
            lines.append(f"{'':<{width}}  -> {cell}{nb.error['message'][:200]}")
    c = result.counts
    lines.append("")
    lines.append(f"{c['passed']} passed, {c['failed']} failed, {c['timeout']} timeout; "
                 f"total {result.total_seconds:.1f} s | profile {result.profile} | device "
                 f"{result.device} | {result.fingerprint.get('hardware')}")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)
