"""``hpdl kernels``: every Numba CUDA kernel of the course, compiled for real GPU targets.

The simulator accepts code that the CUDA compiler rejects, and says nothing about
registers, shared memory or spills. This module takes the launches that
``course_utils.launch_log`` recorded on the simulator (each kernel's source, the values of
the globals it reads, its device functions, argument types and block size), rebuilds each
kernel of the course as source in a process with the simulator off, compiles it with
Numba's real CUDA compiler (NVVM) to PTX for each compute capability asked for, and
assembles the PTX with ``ptxas``. No GPU or driver is needed: only the CUDA toolchain
wheels (``pip install -e ".[kernels]"``: nvidia-cuda-nvcc, -nvrtc, nvidia-nvvm).

One row per kernel, signature and target: registers per thread, static shared memory,
stack (local memory), spills, and the resident blocks per SM those allow at the block
size the course launches it with (the occupancy calculation of lesson 07, with registers).
A kernel that does not compile is a failed row carrying the compiler's message.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import launch_log, paths
from ..errors import UsageError
from ..gpu import launch
from ..gpu.profiling import count_instructions

SCHEMA = "hpdl-kernels/1"
INSTALL_HINT = ('install the CUDA toolchain wheels: pip install -e ".[kernels]" '
                "(or `make install`), or point CUDA_HOME at a CUDA toolkit")


@dataclass(frozen=True)
class Target:
    """Per-SM limits of one compute capability (CUDA C++ Programming Guide, "Technical
    Specifications per Compute Capability"); 1 KiB of shared memory per block is reserved
    by the system from compute capability 8.0 on."""

    gpu: str
    max_threads_per_sm: int
    max_blocks_per_sm: int
    shared_per_sm: int
    registers_per_sm: int = 65536
    reserved_shared_per_block: int = 1024


TARGETS = {
    80: Target("A100", 2048, 32, 164 * 1024),
    86: Target("RTX 30xx / A10", 1536, 16, 100 * 1024),
    89: Target("L4 / RTX 40xx", 1536, 24, 100 * 1024),
    90: Target("H100 / H200", 2048, 32, 228 * 1024),
}
DEFAULT_CCS = (80, 90)


@dataclass
class Row:
    """One kernel, one signature, one target."""

    kernel: str
    where: str
    signature: str
    cc: int
    key: str = ""  # the kernel's source, constants, device functions and argument types
    constants: dict[str, str] = field(default_factory=dict)  # e.g. a factory's TILE
    blocks: list[int] = field(default_factory=list)
    ok: bool = False
    registers: int | None = None
    shared_bytes: int | None = None
    stack_bytes: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    occupancy: dict[str, int] = field(default_factory=dict)
    instructions: dict[str, int] = field(default_factory=dict)
    ptx_file: str | None = None
    error: str | None = None


# ------------------------------------------------------------------ where a kernel lives


def _def_key(node: ast.FunctionDef) -> str:
    """A function definition without its decorators, independent of where it sits."""
    bare = copy.copy(node)
    bare.decorator_list = []
    return ast.dump(bare, annotate_fields=False)


def _defs_in(source: str) -> list[ast.FunctionDef]:
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def _course_functions(root: Path) -> list[tuple[ast.FunctionDef, str, str | None]]:
    """Every function the course defines (course_utils, lesson scripts, lesson notebooks,
    lab masters): its AST, where it is, and the module to import it from (or None)."""
    import nbformat

    found = []
    files = [*sorted((root / "course_utils").rglob("*.py")),
             *sorted((root / "lessons").rglob("*.py"))]
    for file in files:
        rel = file.relative_to(root)
        module = ".".join(rel.with_suffix("").parts) if rel.parts[0] == "course_utils" else None
        for node in _defs_in(file.read_text()):
            found.append((node, f"{rel}:{node.lineno}", module))
    notebooks = [*sorted((root / "lessons").rglob("*.ipynb")),
                 *sorted((root / "labs" / "solutions").glob("*.ipynb"))]
    for nb_path in notebooks:
        if ".ipynb_checkpoints" in nb_path.parts:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                for node in _defs_in(cell.source):
                    found.append((node, f"{nb_path.relative_to(root)} (cell {cell.get('id')})",
                                  None))
    return found


def course_definitions(root: Path = paths.REPO_ROOT) -> dict[str, str]:
    """Every function the course defines, by its decorator-less AST, mapped to where it is
    defined (the first place, when two define the same function)."""
    found: dict[str, str] = {}
    for node, where, _ in _course_functions(root):
        found.setdefault(_def_key(node), where)
    return found


def _is_kernel(node: ast.FunctionDef) -> bool:
    """Decorated with ``cuda.jit`` and not a device function."""
    return any("cuda.jit" in ast.unparse(d) and "device=True" not in ast.unparse(d)
               for d in node.decorator_list)


def course_kernels(root: Path = paths.REPO_ROOT) -> dict[str, str]:
    """The course's ``@cuda.jit`` kernels (not device functions), key -> where."""
    found: dict[str, str] = {}
    for node, where, _ in _course_functions(root):
        if _is_kernel(node):
            found.setdefault(_def_key(node), where)
    return found


def gpu_only_jobs(root: Path = paths.REPO_ROOT) -> list[dict]:
    """Jobs for the kernels the simulator cannot run (warp shuffles), from the argument
    types and block sizes their module declares in ``GPU_ONLY_LAUNCHES``."""
    jobs = []
    for node, where, module in _course_functions(root):
        if module is None or not _is_kernel(node):
            continue
        source = (root / where.split(":")[0]).read_text()
        declared: dict = {}
        for stmt in ast.parse(source).body:
            if isinstance(stmt, ast.Assign) and any(
                    getattr(t, "id", None) == "GPU_ONLY_LAUNCHES" for t in stmt.targets):
                declared = ast.literal_eval(stmt.value)
        for signature, threads in declared.get(node.name, []):
            key = hashlib.sha256(f"{module}.{node.name}{signature}".encode()).hexdigest()
            jobs.append({"key": key, "module": module, "where": where, "args": None,
                         "signature": signature, "error": None, "blocks": [(threads, 0)],
                         "def_key": _def_key(node),
                         "kernel": {"name": node.name, "qualname": node.name}})
    return jobs


def _source_key(source: str) -> str | None:
    defs = _defs_in(source)
    return _def_key(defs[0]) if defs else None


# ------------------------------------------------------------------------- the launches


def read_launches(path: str | Path) -> list[dict]:
    """The launch records of a ``HPDL_KERNEL_LOG`` file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--launches {path}: no such file; record launches by running the "
                         f"notebooks with {launch_log.ENV_VAR}={path} on the simulator, or "
                         "leave --launches out to have hpdl kernels run them")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not a launch record ({exc})") from None
        if record.get("schema") != launch_log.SCHEMA:
            raise UsageError(f"{path}:{number}: schema {record.get('schema')!r}, expected "
                             f"{launch_log.SCHEMA!r}")
        records.append(record)
    return records


def _portable(description: Any) -> Any:
    """A kernel's description without where its files were (which differs between two
    checkouts of the course), at every level of device functions."""
    if isinstance(description, dict):
        return {k: _portable(v) for k, v in description.items() if k not in ("file", "line")}
    if isinstance(description, list):
        return [_portable(v) for v in description]
    return description


def signature_text(args: list[dict]) -> str:
    parts = []
    for a in args:
        if "array" in a:
            dims = ", ".join(":" for _ in range(a["ndim"]))
            if a["layout"] in ("C", "F"):
                dims = ", ".join([":"] * (a["ndim"] - 1) + ["::1"]) if a["layout"] == "C" \
                    else ", ".join(["::1"] + [":"] * (a["ndim"] - 1))
            parts.append(f"{a['array']}[{dims}]")
        else:
            parts.append(a["scalar"])
    return f"({', '.join(parts)})"


def jobs_from(records: list[dict], definitions: dict[str, str]) -> tuple[list[dict], list[str]]:
    """Distinct (kernel, signature) pairs of course code, with the block sizes used; and
    what was left out (kernels defined outside the course: tests, mutated submissions)."""
    jobs: dict[str, dict] = {}
    skipped: set[str] = set()
    for record in records:
        kernel = record["kernel"]
        # Without its source (code run by exec under another file's name), a kernel cannot
        # be told apart from another: its other launches, with a source, stand for it.
        where = definitions.get(_source_key(kernel["source"]) or "") if "source" in kernel \
            else None
        if where is None or where.startswith(("tests/", "labs/lab")):
            skipped.add(f"{kernel['qualname']} ({kernel.get('file')})")
            continue
        key = hashlib.sha256(json.dumps([_portable(kernel), record["args"]], sort_keys=True)
                             .encode()).hexdigest()
        job = jobs.setdefault(key, {"key": key, "kernel": kernel, "where": where,
                                    "args": record["args"], "error": record.get("error"),
                                    "blocks": set()})
        threads = 1
        for d in record["block"]:
            threads *= d
        job["blocks"].add((threads, record.get("dynamic_shared_bytes", 0)))
    out = []
    for job in jobs.values():
        job["blocks"] = sorted(job["blocks"])
        out.append(job)
    out.sort(key=lambda j: (j["where"], j["kernel"]["qualname"], signature_text(j["args"])))
    return out, sorted(skipped)


# -------------------------------------------------------------- rebuilding the source


def module_source(kernel: dict) -> str:
    """Python source that defines ``kernel`` with its globals and device functions."""
    lines = ["import importlib", "import numpy", "import numba", "from numba import cuda", ""]
    defined: dict[str, str] = {}

    def assign(name: str, expr: str) -> None:
        if defined.get(name, expr) != expr:
            raise launch_log.Unsupported(f"two different values for global {name!r}")
        if name not in defined:
            defined[name] = expr
            lines.append(f"{name} = {expr}")

    def emit(description: dict) -> None:
        for name, value in sorted(description["globals"].items()):
            if "device_function" in value:
                device = value["device_function"]
                emit(device)
                lines.append(device["source"])
                assign(name, f"cuda.jit(device=True, fastmath={device['fastmath']!r})"
                             f"({device['name']})")
            elif "module" in value:
                assign(name, f"importlib.import_module({value['module']!r})")
            elif "numpy_scalar" in value:
                assign(name, f"numpy.{value['numpy_scalar']}({value['literal']})")
            elif "numpy_type" in value:
                assign(name, f"numpy.{value['numpy_type']}")
            elif "numpy_dtype" in value:
                assign(name, f"numpy.dtype({value['numpy_dtype']!r})")
            elif "numpy_array" in value:
                assign(name, f"numpy.array({value['numpy_array']!r}, "
                             f"dtype={value['dtype']!r})")
            elif "numba_type" in value:
                assign(name, f"numba.types.{value['numba_type']}")
            else:
                assign(name, value["literal"])

    emit(kernel)
    lines.append(kernel["source"])
    return "\n".join(lines) + "\n"


def _numba_signature(args: list[dict]) -> tuple:
    import numba
    import numpy as np

    sig = []
    for a in args:
        if "array" in a:
            sig.append(numba.types.Array(numba.from_dtype(np.dtype(a["array"])), a["ndim"],
                                         a["layout"]))
        else:
            name = {"bool": "boolean"}.get(a["scalar"], a["scalar"])
            sig.append(getattr(numba.types, name))
    return tuple(sig)


# ------------------------------------------------------------------- the toolchain


def toolchain_home() -> Path | None:
    """A CUDA toolkit with ptxas and libnvvm: CUDA_HOME, else the pip wheels."""
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]))
    try:
        import nvidia  # the namespace package of NVIDIA's wheels

        for base in nvidia.__path__:
            candidates += [Path(base) / "cu13", Path(base) / "cuda_nvcc"]
    except ImportError:
        pass
    for home in candidates:
        has_nvvm = any(home.glob("nvvm/lib64/libnvvm.so*")) or any(home.glob("lib/libnvvm.so*"))
        if (home / "bin" / "ptxas").is_file() and has_nvvm:
            return home
    return None


def toolchain_versions(home: Path) -> dict[str, str]:
    """numba-cuda's version and ptxas's release line: what produced the table."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        numba_cuda = version("numba-cuda")
    except PackageNotFoundError:  # pragma: no cover - numba-cuda is a dependency
        numba_cuda = "unknown"
    done = subprocess.run([str(home / "bin" / "ptxas"), "--version"], capture_output=True,
                          text=True)
    release = [ln for ln in done.stdout.splitlines() if "release" in ln]
    return {"numba-cuda": numba_cuda, "ptxas": release[-1].strip() if release else "unknown"}


def parse_ptxas(stderr: str) -> dict[str, int]:
    """Registers, shared memory, stack and spills from ``ptxas -v``."""
    def number(pattern: str) -> int:
        match = re.search(pattern, stderr)
        return int(match.group(1)) if match else 0

    if not re.search(r"Used (\d+) registers", stderr):
        raise ValueError(f"no resource usage in ptxas's output:\n{stderr}")
    return {"registers": number(r"Used (\d+) registers"),
            "shared_bytes": number(r"(\d+) bytes smem"),
            "stack_bytes": number(r"(\d+) bytes stack frame"),
            "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads")}


def blocks_per_sm(target: Target, threads: int, registers: int, shared_bytes: int) -> int:
    """Resident blocks per SM on ``target`` for a block of ``threads`` (lesson 07's
    calculation with the registers and shared memory ptxas reports)."""
    return launch.occupancy_blocks_per_sm(
        threads, max_threads_per_sm=target.max_threads_per_sm,
        max_blocks_per_sm=target.max_blocks_per_sm,
        shared_bytes=shared_bytes + target.reserved_shared_per_block,
        shared_per_sm=target.shared_per_sm, registers_per_thread=registers,
        registers_per_sm=target.registers_per_sm)


def _compile_one(job: dict, cc: int, home: Path, workdir: Path) -> Row:
    """Compile and assemble one job for one target (in a process without the simulator)."""
    import linecache

    from numba.cuda import compile_ptx

    kernel = job["kernel"]
    row = Row(kernel=kernel["qualname"], where=job["where"],
              signature=job.get("signature") or signature_text(job["args"]), cc=cc,
              key=job["key"], blocks=[threads for threads, _ in job["blocks"]],
              constants={name: value["literal"] for name, value in
                         kernel.get("globals", {}).items() if set(value) == {"literal"}})
    if job.get("error"):
        row.error = f"not rebuilt from the simulator run: {job['error']}"
        return row
    from numba.cuda import dispatcher as cuda_dispatcher

    # Numba compiles a device function, when a kernel calls it, for the compute capability
    # of the current GPU: with none here, it is told the target's (numba-cuda 0.30).
    current_device = cuda_dispatcher.get_current_device
    cuda_dispatcher.get_current_device = lambda: SimpleNamespace(
        compute_capability=(cc // 10, cc % 10))
    try:
        if job.get("module"):  # declared in GPU_ONLY_LAUNCHES: importable as it is
            import importlib

            import numba

            pyfunc = getattr(importlib.import_module(job["module"]), kernel["name"]).py_func
            signature = eval(job["signature"], {"__builtins__": {}},  # noqa: S307
                             vars(numba.types))
            signature = signature if isinstance(signature, tuple) else (signature,)
        else:
            text = module_source(kernel)
            filename = f"<hpdl kernels: {kernel['qualname']} from {job['where']}>"
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
            namespace: dict[str, Any] = {"__name__": f"hpdl_kernels_{job['key'][:12]}"}
            exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - course code
            pyfunc, signature = namespace[kernel["name"]], _numba_signature(job["args"])
        ptx, _ = compile_ptx(pyfunc, signature, cc=(cc // 10, cc % 10),
                             fastmath=kernel.get("fastmath", False))
    except Exception as exc:  # noqa: BLE001 - the compiler's message is the result
        row.error = f"{type(exc).__name__}: {exc}".strip()
        return row
    finally:
        cuda_dispatcher.get_current_device = current_device
    ptx_file = workdir / f"{kernel['name']}_{job['key'][:8]}_sm{cc}.ptx"
    ptx_file.write_text(ptx)
    row.instructions = count_instructions(ptx)
    row.ptx_file = ptx_file.name
    done = subprocess.run([str(home / "bin" / "ptxas"), f"-arch=sm_{cc}", "-v",
                           str(ptx_file), "-o", str(ptx_file.with_suffix(".cubin"))],
                          capture_output=True, text=True)
    if done.returncode != 0:
        row.error = f"ptxas: {done.stderr.strip()}"
        return row
    usage = parse_ptxas(done.stderr)
    for name, value in usage.items():
        setattr(row, name, value)
    target = TARGETS[cc]
    for threads, dynamic in job["blocks"]:
        row.occupancy[str(threads)] = blocks_per_sm(target, threads, usage["registers"],
                                                    usage["shared_bytes"] + dynamic)
    row.ok = True
    return row


def _worker() -> None:
    """Entry point of a compiling process: jobs on stdin, rows on stdout (JSON)."""
    request = json.load(sys.stdin)
    home = Path(request["home"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpdl-kernels-") as tmp:
        workdir = Path(request["ptx_dir"] or tmp)
        for job in request["jobs"]:
            job["blocks"] = [tuple(b) for b in job["blocks"]]
            for cc in request["ccs"]:
                row = _compile_one(job, cc, home, workdir)
                if not request["ptx_dir"]:
                    row.ptx_file = None
                rows.append(asdict(row))
    json.dump(rows, sys.stdout)


def compile_jobs(jobs: list[dict], ccs: tuple[int, ...], *, workers: int | None = None,
                 ptx_dir: Path | None = None) -> list[Row]:
    """Compile every job for every target, in ``workers`` processes with the simulator off;
    with ``ptx_dir``, keep each kernel's PTX there."""
    home = toolchain_home()
    if home is None:
        raise UsageError(f"hpdl kernels needs the CUDA compiler (NVVM) and ptxas: {INSTALL_HINT}")
    if not jobs:
        return []
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "CUDA_HOME": str(home),
           launch_log.ENV_VAR: ""}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(paths.REPO_ROOT),
                                                    env.get("PYTHONPATH")) if p)
    chunks = [jobs[i::workers] for i in range(workers)]
    code = "from course_utils.hpdl import kernels; kernels._worker()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
             for _ in chunks]
    rows: list[Row] = []
    for proc, chunk in zip(procs, chunks, strict=True):
        payload = json.dumps({"home": str(home), "ccs": list(ccs),
                              "ptx_dir": str(ptx_dir.resolve()) if ptx_dir else None, "jobs": [
            {**j, "blocks": [list(b) for b in j["blocks"]]} for j in chunk]})
        out, err = proc.communicate(payload)
        if proc.returncode != 0:
            raise RuntimeError(f"a compiling process failed (exit {proc.returncode}):\n"
                               f"{err[-4000:]}")
        rows += [Row(**r) for r in json.loads(out)]
    rows.sort(key=lambda r: (r.where, r.kernel, r.signature, r.cc))
    return rows


# ---------------------------------------------------------------------- the command


def parse_ccs(text: str) -> tuple[int, ...]:
    ccs = []
    for part in text.replace(" ", "").split(","):
        value = part.removeprefix("sm_").replace(".", "")
        if not value.isdigit() or int(value) not in TARGETS:
            raise UsageError(f"--cc {text!r}: {part!r} is not a supported compute capability; "
                             f"choose from {', '.join(str(c) for c in TARGETS)} (e.g. 80,90)")
        ccs.append(int(value))
    return tuple(dict.fromkeys(ccs))


def record_launches(targets: list[str] | None, log: Path, out: Path) -> None:
    """Run notebooks on the simulator (quick profile) with the launch log switched on."""
    from .execution import environment
    from .runner import run

    if "numba" in sys.modules:
        raise UsageError("hpdl kernels must run the notebooks before numba is imported here")
    with environment({launch_log.ENV_VAR: str(log), "NUMBA_ENABLE_CUDASIM": "1"}):
        result = run(targets or default_targets(), profile="quick", device="cpu", out=out,
                     progress=False)
    failed = [n.path for n in result.notebooks if n.status != "passed"]
    if failed:
        raise UsageError(f"these notebooks failed on the simulator, so their launches are "
                         f"incomplete: {', '.join(failed)} (see {out})")


def default_targets() -> list[str]:
    """The notebooks that launch Numba CUDA kernels (lesson notebooks and lab masters)."""
    found = []
    for nb in [*sorted((paths.REPO_ROOT / "lessons").rglob("*.ipynb")),
               *sorted(paths.SOLUTIONS_DIR.glob("*.ipynb"))]:
        text = nb.read_text()
        if "numba" in text and ("cuda.jit" in text or "gpu.kernels" in text
                                or "gpu import kernels" in text):
            found.append(str(nb.relative_to(paths.REPO_ROOT)))
    return found


def table(rows: list[Row]) -> str:
    """One block per kernel (where it is defined), one line per signature and target."""
    head = (f"  {'signature':44s} {'sm':>3s} {'regs':>4s} {'smem B':>7s} {'stack':>5s} "
            f"{'spill':>5s}  blocks/SM at the block sizes launched")
    lines = [head, "  " + "-" * (len(head) - 2)]
    current = None
    for r in rows:
        if (r.where, r.kernel) != current:
            current = (r.where, r.kernel)
            lines.append(f"{r.kernel.split('.')[-1]}  ({r.where})")
        sig = r.signature if len(r.signature) <= 44 else r.signature[:41] + "..."
        if not r.ok:
            lines.append(f"  {sig:44s} {r.cc:3d}  FAILED: {r.error.splitlines()[0][:200]}")
            continue
        occupancy = ", ".join(f"{b} x {t} threads" for t, b in r.occupancy.items())
        lines.append(f"  {sig:44s} {r.cc:3d} {r.registers:4d} {r.shared_bytes:7d} "
                     f"{r.stack_bytes:5d} {r.spill_stores + r.spill_loads:5d}  {occupancy}")
    return "\n".join(lines)


def compare_with_reference(rows: list[Row], reference: Path) -> list[str]:
    """Where this compilation disagrees with a committed table: a kernel of the table that
    was not compiled now (its source, constants or launch changed), or one whose registers,
    shared memory, stack or PTX instruction counts differ. Each difference is a line."""
    if not reference.is_file():
        raise UsageError(f"--reference {reference}: no such file")
    data = json.loads(reference.read_text())
    if data.get("schema") != SCHEMA:
        raise UsageError(f"--reference {reference}: schema {data.get('schema')!r}, expected "
                         f"{SCHEMA!r}")
    fresh = {(r.key, r.cc): r for r in rows}
    differences = []
    for ref in data["rows"]:
        row = fresh.get((ref["key"], ref["cc"]))
        label = f"{ref['kernel']} ({ref['where']}) {ref['signature']} sm_{ref['cc']}"
        if row is None:
            differences.append(f"{label}: not compiled in this run (its source, constants or "
                               "launch changed, or no run launched it)")
            continue
        for name in ("registers", "shared_bytes", "stack_bytes", "instructions"):
            if row.ok and getattr(row, name) != ref[name]:
                differences.append(f"{label}: {name} {getattr(row, name)} here, {ref[name]} "
                                   f"in {reference}")
    return differences


def kernels_command(*, launches: str | None, targets: list[str] | None, ccs: str,
                    out: str | None, as_json: bool = False, reference: str | None = None,
                    ptx_dir: str | None = None) -> int:
    """The ``hpdl kernels`` command; returns the exit status."""
    chosen = parse_ccs(ccs)
    if toolchain_home() is None:
        raise UsageError(f"hpdl kernels needs the CUDA compiler (NVVM) and ptxas: {INSTALL_HINT}")
    out_path = Path(out) if out else paths.BUILD_DIR / "kernels.json"
    if launches is None:
        log = out_path.parent / "kernel-launches.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        record_launches(targets, log, out_path.parent / "kernels-run")
        launches = str(log)
    records = read_launches(launches)
    jobs, skipped = jobs_from(records, course_definitions())
    if not jobs:
        raise UsageError(f"{launches}: no launch of a course kernel was recorded")
    never_launched: dict[str, str] = {}
    if targets is None:  # every kernel of the course: also those no quick run can launch
        jobs += gpu_only_jobs()
        covered = {j.get("def_key") or _source_key(j["kernel"].get("source", "")) for j in jobs}
        never_launched = {key: where for key, where in course_kernels().items()
                          if key not in covered}
    if ptx_dir:
        Path(ptx_dir).mkdir(parents=True, exist_ok=True)
    rows = compile_jobs(jobs, chosen, ptx_dir=Path(ptx_dir) if ptx_dir else None)
    for key, where in sorted(never_launched.items(), key=lambda kv: kv[1]):
        name = key.split("'")[1] if "'" in key else key[:40]  # FunctionDef('name', ...)
        rows += [Row(kernel=name, where=where, signature="(never launched)", cc=cc,
                     error="no run launched it on the simulator, so its argument types are "
                     "unknown: launch it in the quick profile, or (in course_utils) declare "
                     "them in its module's GPU_ONLY_LAUNCHES") for cc in chosen]
    failed = [r for r in rows if not r.ok]
    differences = compare_with_reference(rows, Path(reference)) if reference else []
    kernels = sorted({(r.where, r.kernel) for r in rows})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "schema": SCHEMA, "toolchain": toolchain_versions(toolchain_home()),
        "targets": {str(c): asdict(TARGETS[c]) for c in chosen},
        "kernels": len(kernels), "rows": [asdict(r) for r in rows],
        "skipped": skipped}, indent=1) + "\n")
    if as_json:
        print(out_path.read_text())
    else:
        print(table(rows))
        print(f"\n{len(kernels)} kernels, {len(jobs)} signatures, targets "
              f"{', '.join(f'sm_{c}' for c in chosen)}: {len(rows) - len(failed)} compiled, "
              f"{len(failed)} failed; {len(skipped)} launched kernels are not course code "
              f"(tests, submissions) and were left out. Written: {out_path}")
    for r in failed:
        print(f"error: {r.kernel} ({r.where}) {r.signature} for sm_{r.cc}: {r.error}",
              file=sys.stderr)
    for line in differences:
        print(f"error: {line}", file=sys.stderr)
    if differences:
        print(f"error: {reference} is out of date (the lessons quote it): regenerate it with "
              f"`hpdl kernels --out {reference}` and update its checksum in data/README.md",
              file=sys.stderr)
    return 1 if failed or differences else 0
