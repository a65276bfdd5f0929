"""``hpdl compare``: a run's recorded numbers beside reference results, with ratios.

A student's or instructor's ``results.json`` (written by ``hpdl run``) is compared, metric
by metric, with a reference (``results/reference/<slug>.json``, the ``results.json`` of a
full-profile run on a real GPU). Each metric gets a verdict:

- ``ok``: the ratio value / reference lies inside the tolerance band (default 0.5x..2x);
- ``far off``: outside it, with a hint when one is known (``HINTS``);
- ``unit mismatch``: the two units differ, so the values are not divided;
- ``not meaningful``: either number was marked ``meaningful=False`` (a CUDA simulator
  timing), so it is never compared as a speed;
- ``missing here`` / ``missing in reference``: recorded on one side only.

Comparing with another GPU (or a CPU run with a GPU reference, or another profile) is not
an error: a note says what differs, and the ratios then show that difference.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import UsageError
from .compare_hints import ALLOWANCES, HINTS, Allowance
from .runner import read_results

COMPARE_SCHEMA_ID = "hpdl-compare/1"
REFERENCE_DIR = paths.REPO_ROOT / "results" / "reference"
DEFAULT_TOLERANCE = 2.0
UNIT_ALIASES = {"µs": "us", "μs": "us"}  # the same unit, spelled two ways
VERSION_KEYS = ("torch", "numba", "numba-cuda", "numpy")
VERDICTS = ("ok", "far off", "unit mismatch", "not meaningful", "missing here",
            "missing in reference")
PROBLEMS = ("far off", "unit mismatch")  # these make the exit status 1
WRAP = 100  # hint lines are wrapped to this width


# ------------------------------------------------------------------ loading
@dataclass
class Results:
    """One results.json, validated: where it came from and what it holds."""

    path: Path
    data: dict[str, Any]

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.data.get("fingerprint") or {}

    @property
    def hardware(self) -> str:
        return str(self.fingerprint.get("hardware") or "unknown hardware")

    @property
    def profile(self) -> str:
        return str(self.data.get("profile", "?"))

    @property
    def device(self) -> str:
        return str(self.data.get("device", "?"))

    @property
    def notebooks(self) -> list[dict[str, Any]]:
        return self.data["notebooks"]

    def describe(self) -> str:
        created = str(self.data.get("created", ""))[:10]
        return (f"{self.hardware}, profile {self.profile}, device {self.device}"
                + (f", {created}" if created else ""))


def load_results(path: str | Path) -> Results:
    """Read and validate a results file (or a folder holding ``results.json``): see
    :func:`course_utils.hpdl.runner.read_results` for the errors it raises."""
    return Results(*read_results(path))


# ------------------------------------------------------------------ choosing a reference
def slugify(text: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``: lower case, every run of
    characters other than a-z and 0-9 becomes one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def hardware_slug(fingerprint: dict[str, Any]) -> str:
    """The reference file name (without ``.json``) for a run's fingerprint.

    With a GPU: the first GPU's model name (the count is left out, so one reference per
    model). Without one: the hardware label, i.e. the CPU model and its core count.
    """
    gpus = fingerprint.get("gpus") or []
    if gpus and isinstance(gpus[0], dict) and gpus[0].get("name"):
        return slugify(str(gpus[0]["name"]))
    return slugify(str(fingerprint.get("hardware") or "unknown"))


def available_references(directory: Path = REFERENCE_DIR) -> list[Path]:
    """The reference files in ``directory``, sorted (none when it does not exist)."""
    return sorted(Path(directory).glob("*.json")) if Path(directory).is_dir() else []


def _show(path: Path) -> str:
    try:
        return path.resolve().relative_to(paths.REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def default_reference(results: Results, directory: Path = REFERENCE_DIR) -> Path:
    """The reference for the hardware that made ``results``.

    ``<directory>/<slug>.json`` if it exists, else any reference whose own fingerprint has
    that slug. With none, a UsageError lists the references there are and the command
    that compares with one of them anyway: picking another GPU's reference silently would
    make every speed look "far off".
    """
    slug = hardware_slug(results.fingerprint)
    candidate = Path(directory) / f"{slug}.json"
    if candidate.is_file():
        return candidate
    refs = available_references(directory)
    for ref in refs:
        try:
            data = json.loads(ref.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and hardware_slug(data.get("fingerprint") or {}) == slug:
            return ref
    if not refs:
        raise UsageError(f"no reference results in {_show(Path(directory))}; give a "
                         "REFERENCE file (the results.json of another run)")
    names = ", ".join(ref.stem for ref in refs)
    raise UsageError(
        f"no reference for {results.hardware} ({_show(candidate)} does not exist); "
        f"references: {names}; compare with one anyway: "
        f"hpdl compare {results.path} {refs[0].stem}")


def resolve_reference(given: str | None, results: Results,
                      directory: Path = REFERENCE_DIR) -> Path:
    """The reference to use: ``given`` (a file, or the slug of a file in ``directory``),
    else the default reference for the results' hardware."""
    if given is None:
        return default_reference(results, directory)
    path = Path(given)
    if path.exists():
        return path
    named = Path(directory) / f"{given.removesuffix('.json')}.json"
    if named.is_file():
        return named
    names = ", ".join(ref.stem for ref in available_references(directory)) or "none"
    raise UsageError(f"{given}: no such file, nor a reference of that name in "
                     f"{_show(Path(directory))} (references: {names})")


# ------------------------------------------------------------------ context
def differences(results: Results, reference: Results) -> list[str]:
    """What differs between the two runs' setups (hardware, GPU count, device, profile)."""
    here, ref = results.fingerprint, reference.fingerprint
    found = []
    if hardware_slug(here) != hardware_slug(ref):
        found.append("hardware")
    elif len(here.get("gpus") or []) != len(ref.get("gpus") or []):
        found.append("GPU count")
    if results.device != reference.device:
        found.append("device")
    if results.profile != reference.profile:
        found.append("profile")
    return found


def context_note(results: Results, reference: Results) -> str | None:
    """One line saying what differs, when something does: then ratios show that."""
    diff = differences(results, reference)
    if not diff:
        return None

    def side(r: Results) -> str:
        return f"{r.hardware} ({r.profile} profile, {r.device})"

    what = " and ".join(", ".join(diff).rsplit(", ", 1))
    return (f"note: results from {side(results)} compared with a reference from "
            f"{side(reference)}: ratios show the {what} difference, not a problem")


def version_note(results: Results, reference: Results) -> str | None:
    """One line naming package versions (and driver) that differ, when any do."""
    here = dict(results.fingerprint.get("packages") or {})
    ref = dict(reference.fingerprint.get("packages") or {})
    changed = [f"{k} {here[k]} (reference {ref[k]})" for k in VERSION_KEYS
               if here.get(k) and ref.get(k) and here[k] != ref[k]]
    if results.fingerprint.get("cuda_simulator"):
        changed.append("CUDA simulator here (its kernel timings are not performance)")
    return "versions: " + "; ".join(changed) if changed else None


# ------------------------------------------------------------------ comparing
@dataclass
class Row:
    """One metric on both sides, and the verdict."""

    notebook: str
    metric: str
    verdict: str
    value: float | None = None
    reference: float | None = None
    unit: str | None = None
    reference_unit: str | None = None
    ratio: float | None = None
    direction: str | None = None  # "below" | "above" the band, for "far off"
    hint: str = ""
    reference_notebook: str | None = None
    matched_by: str | None = None  # "notebook and name" | "name"
    whole_notebook_missing: bool = False


@dataclass
class Comparison:
    """The result of :func:`compare`: rows, context lines, and the summary."""

    results: Results
    reference: Results
    band: tuple[float, float]
    rows: list[Row] = field(default_factory=list)
    note: str | None = None
    versions: str | None = None

    def count(self, verdict: str) -> int:
        return sum(row.verdict == verdict for row in self.rows)

    @property
    def exit_status(self) -> int:
        """0 when nothing is far off (or unit-mismatched), else 1."""
        return 1 if any(row.verdict in PROBLEMS for row in self.rows) else 0

    def missing_notebooks(self, verdict: str) -> list[str]:
        """Notebooks that are wholly absent on one side (their metrics carry ``verdict``)."""
        found = (r.notebook for r in self.rows if r.whole_notebook_missing
                 and r.verdict == verdict)
        return list(dict.fromkeys(found))

    def summary(self) -> str:
        ok, far, mismatch = self.count("ok"), self.count("far off"), self.count("unit mismatch")
        here, there = self.count("missing here"), self.count("missing in reference")
        parts = [f"{ok + far} compared ({ok} ok, {far} far off)",
                 f"{here + there} missing ({here} here, {there} in the reference)"]
        if mismatch:
            parts.append(f"{mismatch} unit mismatch")
        if self.count("not meaningful"):
            parts.append(f"{self.count('not meaningful')} not meaningful")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARE_SCHEMA_ID,
            "results": {"path": _show(self.results.path), "hardware": self.results.hardware,
                        "profile": self.results.profile, "device": self.results.device},
            "reference": {"path": _show(self.reference.path),
                          "hardware": self.reference.hardware,
                          "profile": self.reference.profile,
                          "device": self.reference.device},
            "band": list(self.band), "note": self.note, "versions": self.versions,
            "differences": differences(self.results, self.reference),
            "rows": [asdict(row) for row in self.rows],
            "notebooks_missing_here": self.missing_notebooks("missing here"),
            "notebooks_missing_in_reference": self.missing_notebooks("missing in reference"),
            "summary": {v: self.count(v) for v in VERDICTS},
            "exit_status": self.exit_status,
        }

    def table(self) -> str:
        """The text ``hpdl compare`` prints (see :func:`format_table`)."""
        return format_table(self)


def tolerance_band(tolerance: float) -> tuple[float, float]:
    """``2`` (or ``0.5``) -> ``(0.5, 2.0)``: the ratios counted as ok."""
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance <= 0 or tolerance == 1:
        raise UsageError(f"--tolerance {tolerance}: give a factor other than 1, e.g. 2 "
                         "(ok within 0.5x..2x) or 3")
    return (min(tolerance, 1 / tolerance), max(tolerance, 1 / tolerance))


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def find_hint(metric: str, direction: str) -> tuple[str, bool]:
    """The first hint of ``HINTS`` for a metric far ``direction`` ("below"/"above") of its
    reference, and whether it is about speed; ``("", True)`` when none is known."""
    for hint in HINTS:
        if hint.direction in (direction, "either") and _matches(metric, hint.patterns):
            return hint.text, hint.speed
    return "", True


def _allowance(metric: str) -> Allowance | None:
    return next((a for a in ALLOWANCES if _matches(metric, a.patterns)), None)


def _unit(unit: str) -> str:
    return UNIT_ALIASES.get(unit.strip(), unit.strip())


def judge(metric: str, here: dict[str, Any], ref: dict[str, Any],
          band: tuple[float, float]) -> dict[str, Any]:
    """Verdict, ratio, direction and hint for one metric present on both sides."""
    value, reference = float(here["value"]), float(ref["value"])
    out: dict[str, Any] = {"ratio": None, "direction": None, "hint": ""}
    if not here.get("meaningful", True) or not ref.get("meaningful", True):
        where = "here" if not here.get("meaningful", True) else "in the reference"
        return {**out, "verdict": "not meaningful",
                "hint": f"marked not a performance number {where} (CUDA simulator?)"}
    if _unit(here["unit"]) != _unit(ref["unit"]):
        return {**out, "verdict": "unit mismatch",
                "hint": f"units differ ({here['unit']} here, {ref['unit']} in the reference): "
                        "not divided; the lesson changed what it records, re-make the reference"}
    if reference != 0:
        out["ratio"] = value / reference
    elif value == 0:
        out["ratio"] = 1.0
    allowance = _allowance(metric)
    if allowance is not None and abs(value) <= allowance.limit:
        return {**out, "verdict": "ok", "hint": f"within {allowance.limit:g}: {allowance.why}"}
    ratio = out["ratio"]
    if ratio is not None and band[0] <= ratio <= band[1]:
        return {**out, "verdict": "ok"}
    direction = "above" if ratio is None or ratio > band[1] else "below"
    hint, speed = find_hint(metric, direction)
    hw_here, hw_ref = here.get("hardware"), ref.get("hardware")
    if speed and hw_here and hw_ref and hw_here != hw_ref:
        hint = f"different hardware ({hw_here} here, {hw_ref} in the reference)"
    return {**out, "verdict": "far off", "direction": direction, "hint": hint}


def _align_notebooks(here: list[str], ref: list[str]) -> dict[str, str]:
    """Map each notebook path here to one in the reference: the same path, else the only
    one with the same file name (a run made outside the repository stores bare names)."""
    mapping = {p: p for p in here if p in ref}
    for p in here:
        if p in mapping:
            continue
        same = [r for r in ref if Path(r).name == Path(p).name and r not in mapping.values()]
        if len(same) == 1:
            mapping[p] = same[0]
    return mapping


def compare(results: Results, reference: Results,
            tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """Compare every metric of ``results`` with ``reference`` (see the module's text).

    Metrics are matched by notebook and name, then, for those left, by name alone where
    the name is unique on both sides. A notebook absent on one side gives rows marked
    ``whole_notebook_missing`` (the table sums them up in one line).
    """
    band = tolerance_band(tolerance)
    here_nbs = {nb["path"]: nb for nb in results.notebooks}
    ref_nbs = {nb["path"]: nb for nb in reference.notebooks}
    aligned = _align_notebooks(list(here_nbs), list(ref_nbs))
    here_left = {(p, k): m for p, nb in here_nbs.items() for k, m in nb.get("metrics", {}).items()}
    ref_left = {(p, k): m for p, nb in ref_nbs.items() for k, m in nb.get("metrics", {}).items()}

    pairs: list[tuple[tuple[str, str], tuple[str, str], str]] = []
    for key in list(here_left):
        ref_key = (aligned.get(key[0], ""), key[1])
        if ref_key in ref_left:
            pairs.append((key, ref_key, "notebook and name"))
    for key, ref_key, _ in pairs:
        del here_left[key], ref_left[ref_key]
    by_name_here: dict[str, list] = {}
    by_name_ref: dict[str, list] = {}
    for key in here_left:
        by_name_here.setdefault(key[1], []).append(key)
    for key in ref_left:
        by_name_ref.setdefault(key[1], []).append(key)
    for name, keys in by_name_here.items():
        if len(keys) == 1 and len(by_name_ref.get(name, [])) == 1:
            key, ref_key = keys[0], by_name_ref[name][0]
            pairs.append((key, ref_key, "name"))
            del here_left[key], ref_left[ref_key]

    matched_ref_nbs = {ref_key[0] for _, ref_key, _ in pairs} | set(aligned.values())
    matched_here_nbs = {key[0] for key, _, _ in pairs} | set(aligned)
    rows: list[Row] = []
    for key, ref_key, how in pairs:
        here_m = here_nbs[key[0]]["metrics"][key[1]]
        ref_m = ref_nbs[ref_key[0]]["metrics"][ref_key[1]]
        rows.append(Row(notebook=key[0], metric=key[1], value=float(here_m["value"]),
                        reference=float(ref_m["value"]), unit=here_m["unit"],
                        reference_unit=ref_m["unit"], reference_notebook=ref_key[0],
                        matched_by=how, **judge(key[1], here_m, ref_m, band)))
    for (path, name), m in here_left.items():
        rows.append(Row(notebook=path, metric=name, verdict="missing in reference",
                        value=float(m["value"]), unit=m["unit"],
                        whole_notebook_missing=path not in matched_here_nbs))
    for (path, name), m in ref_left.items():
        whole = path not in matched_ref_nbs
        row = Row(notebook=path, metric=name, verdict="missing here",
                  reference=float(m["value"]), reference_unit=m["unit"],
                  reference_notebook=path, whole_notebook_missing=whole)
        row.hint = _missing_here_hint(path, aligned, here_nbs) if not whole else ""
        rows.append(row)
    order = {p: i for i, p in enumerate([*here_nbs, *ref_nbs])}
    rows.sort(key=lambda r: (order.get(r.notebook, len(order)), r.notebook))
    return Comparison(results=results, reference=reference, band=band, rows=rows,
                      note=context_note(results, reference),
                      versions=version_note(results, reference))


def _missing_here_hint(ref_path: str, aligned: dict[str, str],
                       here_nbs: dict[str, dict[str, Any]]) -> str:
    here_path = next((h for h, r in aligned.items() if r == ref_path), None)
    nb = here_nbs.get(here_path) if here_path else None
    if nb is None or nb.get("status", "passed") == "passed":
        return "not recorded here (a cell skipped on this device, or the lesson changed)"
    error = nb.get("error") or {}
    cell = f" in cell {error['cell']}" if error.get("cell") is not None else ""
    return f"the notebook {nb['status']}{cell} here, before recording it (see report.html)"


# ------------------------------------------------------------------ text
def format_value(value: float | None, unit: str | None = None) -> str:
    """A number for the table: ``51,021``, ``47.73``, ``0.292``, ``2.22e-16``."""
    if value is None:
        return "-"
    a = abs(value)
    if a == 0:
        text = "0"
    elif 1000 <= a < 1e9:
        text = f"{value:,.0f}"
    elif 1e-3 <= a < 1000:
        text = f"{value:.4g}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.2f}x" if 0.01 <= abs(row.ratio) < 1000 else f"{row.ratio:.3g}x"


def _short(path: str) -> str:
    return Path(path).stem


def format_table(comparison: Comparison) -> str:
    """Aligned columns (notebook, metric, value, reference, ratio, verdict), a hint line
    under each row that has one, one line per side for whole notebooks missing, and the
    summary line."""
    c = comparison
    lines = [c.note] if c.note else []
    lines += [f"results:   {_show(c.results.path)} ({c.results.describe()})",
              f"reference: {_show(c.reference.path)} ({c.reference.describe()})"]
    if c.versions:
        lines.append(c.versions)
    lo, hi = c.band
    lines.append(f"ok when value / reference is within {lo:.3g}x..{hi:.3g}x")
    shown = [r for r in c.rows if not r.whole_notebook_missing]
    header = ("notebook", "metric", "value", "reference", "ratio", "verdict")
    cells = [(_short(r.notebook), r.metric, format_value(r.value, r.unit),
              format_value(r.reference, r.reference_unit), _ratio(r),
              r.verdict + (f" ({r.direction})" if r.direction else "")) for r in shown]
    if cells:
        widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
        right = (False, False, True, True, True, False)

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join(v.rjust(w) if r else v.ljust(w)
                             for v, w, r in zip(row, widths, right, strict=True)).rstrip()

        lines += ["", fmt(header), fmt(tuple("-" * w for w in widths))]
        indent = " " * (widths[0] + 2)
        for row, text in zip(shown, cells, strict=True):
            lines.append(fmt(text))
            if row.hint and row.verdict != "ok":
                lines += textwrap.wrap(f"-> {row.hint}", width=max(WRAP, len(indent) + 40),
                                       initial_indent=indent,
                                       subsequent_indent=indent + "   ",
                                       break_long_words=False, break_on_hyphens=False)
    else:
        lines += ["", "no metric is recorded in both files' notebooks"]
    lines.append("")
    for verdict, what in (("missing here", "notebooks in the reference but not run here"),
                          ("missing in reference", "notebooks with no reference")):
        missing = c.missing_notebooks(verdict)
        if missing:
            n = sum(r.whole_notebook_missing and r.verdict == verdict for r in c.rows)
            lines.append(f"{what} ({n} metrics): " + ", ".join(_short(p) for p in missing))
    lines.append(c.summary())
    return "\n".join(lines)
