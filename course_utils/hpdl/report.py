"""Write a run's ``results.json`` and ``report.html`` (a readable page of the same).

The HTML page is self-contained (no scripts, no network): a summary, the hardware
fingerprint, one row per notebook with its recorded numbers, and for each failure the
failing cell and its traceback.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .runner import RunResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.passed{color:#16702e;font-weight:600}
.failed,.timeout{color:#b00020;font-weight:600}pre{background:#f8f8f8;padding:1em;
overflow-x:auto;font-size:.85em}.warn{color:#8a5a00}
"""


def write_results(result: RunResult, out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and report.html into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(data, out_dir), encoding="utf-8")
    return json_path, html_path


def _metric_cell(metrics: dict, run_hardware: str) -> str:
    rows = []
    for name, m in metrics.items():
        flag = "" if m.get("meaningful", True) else \
            ' <span class="warn">(CUDA simulator: not a performance number)</span>'
        where = m.get("hardware")
        where = f" <small>on {html.escape(where)}</small>" if where and where != run_hardware \
            else ""
        rows.append(f"{html.escape(name)} = {m['value']:.4g} {html.escape(m['unit'])}"
                    f"{where}{flag}")
    return "<br>".join(rows) or "&ndash;"


def _link(nb: dict, out_dir: Path | None) -> str:
    """The notebook's name, linked to its executed copy when that lies under out_dir."""
    name = html.escape(nb["path"])
    if out_dir is None or not nb.get("output"):
        return name
    try:
        rel = Path(nb["output"]).resolve().relative_to(Path(out_dir).resolve())
    except ValueError:
        return name
    return f'<a href="{html.escape(rel.as_posix())}">{name}</a>'



def render_html(data: dict, out_dir: Path | None = None) -> str:
    """The report page for a results.json dict (links resolved against ``out_dir``)."""
    e = html.escape
    fp = data["fingerprint"]
    s = data["summary"]
    head = (f"<h1>hpdl run report</h1><p>{s['passed']} passed, {s['failed']} failed, "
            f"{s['timeout']} timeout in {data['total_seconds']:.1f} s &middot; profile "
            f"<b>{e(data['profile'])}</b> &middot; device <b>{e(data['device'])}</b> "
            f"&middot; {e(str(fp.get('hardware')))} &middot; {e(data['created'])}</p>")
    if fp.get("cuda_simulator"):
        head += ('<p class="warn">Kernels ran on Numba\'s CUDA simulator: their timings '
                 "are meaningless and are marked so.</p>")
    rows = []
    details = []
    for i, nb in enumerate(data["notebooks"]):
        status = e(nb["status"])
        link = _link(nb, out_dir)
        if nb["error"]:
            link += f' (<a href="#err{i}">error</a>)'
            cell = nb["error"].get("cell")
            details.append(
                f'<h3 id="err{i}">{e(nb["path"])}: {status}'
                f'{"" if cell is None else f" in cell {cell}"}</h3>'
                f"<p>{e(nb['error']['message'])}</p>"
                + (f"<pre>{e(nb['error']['traceback'])}</pre>"
                   if nb["error"].get("traceback") else ""))
        checks = nb.get("checks") or []
        score = ""
        if checks:
            got = sum(c["points"] for c in checks)
            total = sum(c["max_points"] for c in checks)
            score = f"<br>checks: {got:g}/{total:g} points"
        metrics = _metric_cell(nb["metrics"], fp.get("hardware"))
        rows.append(f'<tr><td>{link}</td><td class="{status}">{status}</td>'
                    f"<td>{nb['seconds']:.1f}</td><td>{metrics}{score}</td></tr>")
    table = ("<table><tr><th>notebook</th><th>status</th><th>seconds</th>"
             "<th>recorded</th></tr>" + "".join(rows) + "</table>")
    fingerprint = f"<h2>Machine</h2><pre>{e(json.dumps(fp, indent=2))}</pre>"
    failures = ("<h2>Failures</h2>" + "".join(details)) if details else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>hpdl run report</title>"
            f"<style>{_STYLE}</style></head><body>{head}{table}{failures}{fingerprint}"
            "</body></html>\n")
