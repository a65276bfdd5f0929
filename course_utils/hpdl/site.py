"""``hpdl site``: a static course website built from one ``hpdl run``.

``build_site(run_dir, out_dir)`` reads ``run_dir/results.json`` and writes into ``out_dir``:

- ``index.html``: which run produced the site (date, profile, device, hardware), the
  course map (units; each notebook with the title of its first heading, what it teaches,
  its status and time in this run, a link to its page), every recorded figure with the
  hardware it came from (numbers that are not performance, such as CUDA-simulator
  timings, are labelled so), and the run's hardware fingerprint;
- one page per notebook at the notebook's path with ``.html`` (``lessons/x/01_a.html``),
  converted by nbconvert from the executed copy, outputs and images embedded. A notebook
  that failed or timed out shows its executed copy up to the failure (or its source, when
  no copy was written) under a banner with the error; one that was not run shows its
  source under a banner saying so. Every page links to the index and to the previous and
  next notebook of the course map;
- ``report.html``: the run's report, its notebook links pointing at the pages.

The course map is ``course_utils.hpdl.coursemap``'s: the README's table, plus every other
notebook under lessons/ and labs/, plus every notebook of the run. ``check_links`` (from
``course_utils.hpdl.linkcheck``) checks the result offline.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import paths
from ..errors import CourseError, UsageError
from .coursemap import MapEntry, course_map, notebook_title, unit_title
from .linkcheck import LinkScan, check_links, external_links, scan_links
from .runner import read_results

__all__ = ["build_site", "check_links", "external_links", "scan_links", "LinkScan",
           "load_results", "MARKER"]

MARKER = ".hpdl-site"  # marks a folder this module wrote, so a rebuild may replace it
NOT_PERFORMANCE = "not a performance number"

_CSS = """
.hpdl-bar{font:14px/1.5 system-ui,sans-serif;padding:.5em 1em;background:#f3f5f8;
border-bottom:1px solid #d0d7de;display:flex;flex-wrap:wrap;gap:.4em 1.5em}
.hpdl-bar a{color:#0b5cad;text-decoration:none}.hpdl-bar a:hover{text-decoration:underline}
.hpdl-banner{font:14px/1.5 system-ui,sans-serif;margin:1em;padding:.7em 1em;
border-radius:4px;border:1px solid #ccc}
.hpdl-banner.passed{background:#eef8f0;border-color:#9ccfa8}
.hpdl-banner.failed,.hpdl-banner.timeout{background:#fdecee;border-color:#e59aa5}
.hpdl-banner.notrun{background:#fff7e0;border-color:#e5c46b}
.hpdl-banner pre{white-space:pre-wrap;font-size:12px;max-height:30em;overflow:auto}
.hpdl-flag{color:#8a5a00;font-weight:600}.hpdl-muted{color:#777}
.hpdl-banner table,.hpdl-index table{border-collapse:collapse;margin:.5em 0}
.hpdl-banner td,.hpdl-banner th,.hpdl-index td,.hpdl-index th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}
.hpdl-index th{background:#f3f3f3}
.hpdl-index{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:80em;color:#222;
padding:0 1em}
.hpdl-index code{background:#f3f3f3;padding:0 .2em}
.status-passed{color:#16702e;font-weight:600}.status-failed,.status-timeout{color:#b00020;
font-weight:600}.status-notrun{color:#8a5a00}
"""
# nbconvert's lab template links MathJax and require.js from a CDN: the pages need the
# network for formulas and widgets, nothing else (their CSS and images are inline).
_NB_LINK = re.compile(r'href="(?![a-zA-Z][a-zA-Z0-9+.-]*:|/|#)([^"#?]*?)\.ipynb(#[^"]*)?"')


# ------------------------------------------------------------------------- the run
def load_results(run_dir: Path) -> dict[str, Any]:
    """``run_dir/results.json`` as a dict (see :func:`course_utils.hpdl.runner.read_results`)."""
    return read_results(Path(run_dir) / "results.json")[1]


def _clean_path(path: str) -> str:
    """A run's notebook path as a safe relative path (a stray absolute or ``..`` path
    keeps only its file name, so no page is written outside the site)."""
    pure = PurePosixPath(str(path).replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        return pure.name or "notebook.ipynb"
    return pure.as_posix()


# ------------------------------------------------------------------------- one page
@dataclass
class _Page:
    """A notebook of the site: its map entry, its result in the run, what is shown."""

    entry: MapEntry
    result: dict[str, Any] | None
    href: str                  # the page, relative to the site
    shown: Path | None         # the notebook converted (executed copy or source)
    executed: bool             # whether ``shown`` is the executed copy
    nb: Any = None
    title: str = ""
    read_error: str = ""

    @property
    def status(self) -> str:
        return self.result["status"] if self.result else "not run"

    @property
    def status_class(self) -> str:
        return self.status.replace(" ", "")


def _plan(entry: MapEntry, result: dict | None, run_dir: Path, root: Path) -> _Page:
    executed = None
    if result is not None:
        candidates = [run_dir / entry.path]
        if result.get("output"):
            candidates.append(Path(result["output"]))
        executed = next((c for c in candidates if c.is_file()), None)
    source = root / entry.path
    shown = executed or (source if source.is_file() else None)
    href = PurePosixPath(entry.path).with_suffix(".html").as_posix()
    return _Page(entry, result, href, shown, executed is not None)


def _read(page: _Page) -> None:
    import nbformat

    fallback = PurePosixPath(page.entry.path).stem
    if page.shown is not None:
        try:
            page.nb = nbformat.read(page.shown, as_version=4)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the site
            page.read_error = f"{page.shown} could not be read: {type(exc).__name__}: {exc}"
    page.title = notebook_title(page.nb, fallback) if page.nb is not None else fallback


def _rel(from_href: str, to_href: str) -> str:
    """A link from one page of the site to another (both relative to the site)."""
    return posixpath.relpath(to_href, posixpath.dirname(from_href) or ".")


def _label(page: _Page) -> str:
    role = {"solution": " (solution)", "student": " (student version)"}.get(page.entry.role, "")
    return page.title + role


def _nav(page: _Page, prev: _Page | None, nxt: _Page | None, run: dict) -> str:
    e = html.escape
    links = [f'<a href="{_rel(page.href, "index.html")}">&#8962; Course map</a>']
    if prev is not None:
        links.append(f'<a rel="prev" href="{_rel(page.href, prev.href)}">&larr; '
                     f"{e(_label(prev))}</a>")
    if nxt is not None:
        links.append(f'<a rel="next" href="{_rel(page.href, nxt.href)}">{e(_label(nxt))} '
                     "&rarr;</a>")
    links.append(f'<span class="hpdl-muted">run of {e(str(run.get("created", "?")))}, '
                 f'profile {e(str(run.get("profile")))}, device {e(str(run.get("device")))}'
                 "</span>")
    return '<nav class="hpdl-bar">' + "".join(links) + "</nav>"


def _value(metric: dict) -> str:
    """A recorded number with its unit; one that is not performance says so."""
    e = html.escape
    value = metric.get("value")
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else e(str(value))
    text = f"{shown} {e(str(metric.get('unit', '')))}"
    if metric.get("meaningful", True):
        return text
    return (f'<span class="hpdl-muted">{text}</span> '
            f'<span class="hpdl-flag">{NOT_PERFORMANCE}</span>')


def _hardware(metric: dict, run: dict) -> str:
    fp = run.get("fingerprint") or {}
    where = html.escape(str(metric.get("hardware") or fp.get("hardware") or "?"))
    if not metric.get("meaningful", True):
        why = "CUDA simulator" if fp.get("cuda_simulator") else "not meaningful as speed"
        where += f' <span class="hpdl-flag">({why})</span>'
    return where


def _banner(page: _Page, run: dict, run_dir: Path) -> str:
    e = html.escape
    result = page.result
    parts = []
    if page.read_error:
        parts.append(f"<p>{e(page.read_error)}</p>")
    if result is None:
        parts.insert(0, "<p><b>Not executed in this run</b>: shown as written, without "
                     f"outputs. Run it with <code>hpdl run {e(page.entry.path)}</code>.</p>")
        return f'<div class="hpdl-banner notrun">{"".join(parts)}</div>'
    seconds = f"{float(result.get('seconds', 0)):.1f} s"
    if result["status"] == "passed":
        shown = "" if page.executed else (
            f" Its executed copy was not found under {e(str(run_dir))}: shown as written, "
            "without outputs.")
        hardware = e(str((run.get("fingerprint") or {}).get("hardware", "?")))
        head = f"<p><b>Executed in this run</b>: passed in {seconds} on {hardware}.{shown}</p>"
    else:
        error = result.get("error") or {}
        cell = error.get("cell")
        where = "" if cell is None else f" in cell {e(str(cell))}"
        shown = ("Shown: the executed copy, up to the failure." if page.executed
                 else "Shown: the notebook as written, without outputs.")
        head = (f"<p><b>{e(result['status'].capitalize())} in this run</b>{where} after "
                f"{seconds}: {e(str(error.get('message', 'no message')))}. {shown}</p>")
        if error.get("traceback"):
            head += (f"<details><summary>traceback</summary><pre>{e(error['traceback'])}"
                     "</pre></details>")
    parts.insert(0, head)
    metrics = result.get("metrics") or {}
    if metrics:
        rows = "".join(f"<tr><td>{e(name)}</td><td>{_value(m)}</td><td>{_hardware(m, run)}"
                       f"</td></tr>" for name, m in metrics.items())
        parts.append("<table><tr><th>recorded</th><th>value</th><th>hardware</th></tr>"
                     f"{rows}</table>")
    return f'<div class="hpdl-banner {page.status_class}">{"".join(parts)}</div>'


_TEMPLATE = "hpdl_site.html.j2"
# nbconvert's lab template with its 260 kB of JupyterLab CSS in one shared file instead of
# inline in every page: that halves the conversion time and the size of the site.
_TEMPLATE_SOURCE = """{%- extends 'index.html.j2' -%}
{% block notebook_css %}<link rel="stylesheet" href="{{ resources.hpdl_css }}">
{% endblock notebook_css %}"""
NOTEBOOK_CSS = "_static/notebook.css"


def _exporter() -> Any:
    """nbconvert's HTML exporter: lab template, CSS linked from NOTEBOOK_CSS, images
    embedded, quiet.

    The notebooks are the course's own, so the code cells' highlighted HTML is not run
    through bleach (``clean_html``): that sanitising pass is half the conversion time.
    """
    try:
        from jinja2 import DictLoader
        from nbconvert import HTMLExporter
    except ImportError as exc:
        raise CourseError("`hpdl site` needs nbconvert 7 or newer: pip install "
                          "'nbconvert>=7'") from exc

    log = logging.getLogger("course_utils.hpdl.site.nbconvert")
    log.setLevel(logging.ERROR)  # not "alternative text is missing" once per figure
    exporter = HTMLExporter(template_name="lab", template_file=_TEMPLATE, embed_images=True,
                            extra_loaders=[DictLoader({_TEMPLATE: _TEMPLATE_SOURCE})], log=log)
    exporter.register_filter("clean_html", lambda text: text)
    return exporter


def _notebook_css() -> str:
    """The CSS the lab template inlines in each page (JupyterLab's, light theme)."""
    import nbformat
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.v4.new_notebook())
    head = page.split("</head>", 1)[0]
    return "\n".join(re.findall(r"<style[^>]*>(.*?)</style>", head, flags=re.DOTALL))


def _page_html(page: _Page, exporter: Any, top: str, bottom: str, root: Path) -> str:
    e = html.escape
    if page.nb is None:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(page.title)}"
                f"</title><style>{_CSS}</style></head><body>{top}<main class='hpdl-index'>"
                f"<h1>{e(page.title)}</h1><p>No notebook file to show.</p></main>{bottom}"
                "</body></html>\n")
    source_dir = (root / page.entry.path).parent
    folder = source_dir if source_dir.is_dir() else page.shown.parent
    body, _ = exporter.from_notebook_node(
        page.nb, resources={"metadata": {"name": page.title, "path": str(folder)},
                            "hpdl_css": _rel(page.href, NOTEBOOK_CSS)})
    body = body.replace("</head>", f"<style>{_CSS}</style></head>", 1)
    match = re.search(r"<body[^>]*>", body)
    if match is None:  # pragma: no cover - nbconvert's templates always have one
        raise RuntimeError("nbconvert wrote a page without <body>")
    end = body.rfind("</body>")
    body = body[:match.end()] + top + body[match.end():end] + bottom + body[end:]
    return _NB_LINK.sub(r'href="\1.html\2"', body)


# ------------------------------------------------------------------------- the index
def _fingerprint_rows(fp: dict) -> str:
    e = html.escape
    rows = []
    for key, value in fp.items():
        if key == "gpus":
            value = "; ".join(", ".join(f"{k}={v}" for k, v in g.items()) if isinstance(g, dict)
                              else str(g) for g in value) or "none"
        elif key == "packages" and isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif key == "cuda_simulator" and value:
            value = "yes: GPU kernels ran on Numba's CUDA simulator (timings meaningless)"
        rows.append(f"<tr><th>{e(key)}</th><td>{e(str(value))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _description(markdown: str) -> str:
    """The README's cell as HTML: escaped, with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(markdown))


def _index_html(pages: list[_Page], run: dict, report: str) -> str:
    e = html.escape
    fp = run.get("fingerprint") or {}
    counts = {"passed": 0, "failed": 0, "timeout": 0, "not run": 0}
    for page in pages:
        counts[page.status] = counts.get(page.status, 0) + 1
    built = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    head = (f"<h1>High Performance Deep Learning</h1><p>The course's notebooks as executed "
            f"by <code>hpdl run</code> on <b>{e(str(run.get('created', '?')))}</b>: profile "
            f"<b>{e(str(run.get('profile')))}</b>, device <b>{e(str(run.get('device')))}"
            f"</b>, on <b>{e(str(fp.get('hardware', '?')))}</b>. "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + f"; {float(run.get('total_seconds', 0)):.1f} s in all. "
            f'<a href="{report}">Run report</a> &middot; <a href="#figures">recorded '
            f'figures</a> &middot; <a href="#machine">machine</a>. '
            f'<span class="hpdl-muted">Site built {built}.</span></p>')
    if fp.get("cuda_simulator"):
        head += ('<p class="hpdl-flag">GPU kernels ran on Numba\'s CUDA simulator in this '
                 f"run: their timings are marked &ldquo;{NOT_PERFORMANCE}&rdquo;.</p>")
    units: dict[str, list[str]] = {}
    for number, page in enumerate(pages, 1):
        result = page.result or {}
        seconds = f"{float(result['seconds']):.1f}" if "seconds" in result else "&ndash;"
        checks = result.get("checks") or []
        score = ""
        if checks:
            got = sum(float(c.get("points", 0)) for c in checks)
            total = sum(float(c.get("max_points", 0)) for c in checks)
            score = f"<br><small>checks {got:g}/{total:g} points</small>"
        units.setdefault(page.entry.unit, []).append(
            f'<tr><td>{number}</td><td><a href="{e(page.href)}">{e(_label(page))}</a><br>'
            f"<small><code>{e(page.entry.path)}</code></small></td>"
            f"<td>{_description(page.entry.description)}</td>"
            f'<td class="status-{page.status_class}">{e(page.status)}{score}</td>'
            f"<td>{seconds}</td></tr>")
    course = "".join(
        f'<h3 id="unit-{e(unit)}">{e(unit_title(unit))}</h3><table><tr><th>#</th>'
        "<th>notebook</th><th>what it teaches</th><th>status</th><th>seconds</th></tr>"
        + "".join(rows) + "</table>" for unit, rows in units.items())
    figures = []
    for page in pages:
        for name, metric in ((page.result or {}).get("metrics") or {}).items():
            note = metric.get("note")
            figures.append(
                f'<tr><td><a href="{e(page.href)}">{e(page.title)}</a></td><td>{e(name)}'
                + (f"<br><small>{e(str(note))}</small>" if note else "")
                + f"</td><td>{_value(metric)}</td><td>{_hardware(metric, run)}</td></tr>")
    figure_table = ("<table><tr><th>notebook</th><th>figure</th><th>value</th>"
                    "<th>hardware</th></tr>" + "".join(figures) + "</table>") if figures \
        else "<p>No figures were recorded in this run.</p>"
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>High Performance Deep Learning</title><style>{_CSS}</style></head>"
            f'<body><main class="hpdl-index">{head}<h2 id="course-map">Course map</h2>'
            f'{course}<h2 id="figures">Recorded figures</h2><p>Every number the notebooks '
            "recorded in this run, with the hardware it was measured on. A number marked "
            f"&ldquo;{NOT_PERFORMANCE}&rdquo; (a CUDA-simulator timing) only shows that the "
            f"code ran.</p>{figure_table}<h2 id=\"machine\">Machine</h2>"
            f"{_fingerprint_rows(fp)}</main></body></html>\n")


# ------------------------------------------------------------------------- the site
def _prepare_out(out_dir: Path, run_dir: Path, root: Path) -> Path:
    """Check ``out_dir`` and empty it: only a new folder, an empty one, or a site this
    module wrote earlier (it holds MARKER) is written to, so no user file is replaced."""
    out = out_dir.resolve()
    sources = [(root / folder).resolve() for folder in ("lessons", "labs")]
    if out == root.resolve() or any(out == s or s in out.parents for s in sources):
        raise UsageError(f"--out {out_dir}: refusing to write into the course's sources; "
                         "use e.g. build/site")
    if out == run_dir.resolve() or out in run_dir.resolve().parents:
        raise UsageError(f"--out {out_dir}: would replace the run in --run {run_dir}; "
                         "give another folder, e.g. build/site")
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out_dir}: exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise UsageError(f"--out {out_dir}: folder is not empty and was not written by "
                             "`hpdl site`; give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `hpdl site`; replaced by the next build\n",
                              encoding="utf-8")
    return out


def _report_html(run: dict, run_dir: Path) -> str:
    """The run's report.html (rendered from results.json when the run has none), its
    links to executed notebooks pointing at the site's pages instead."""
    path = run_dir / "report.html"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        from .report import render_html

        text = render_html(run, run_dir)
    text = _NB_LINK.sub(r'href="\1.html\2"', text)
    back = '<p><a href="index.html">&larr; Course site</a></p>'
    return text.replace("<body>", "<body>" + back, 1)


def build_site(run_dir: Path, out_dir: Path, *, root: Path | None = None) -> Path:
    """Build the course website of the run in ``run_dir`` into ``out_dir``; return the
    path of its index.html. ``root`` is the course (README, lessons/, labs/), by default
    this repository. A missing or foreign results.json, or an ``out_dir`` that holds other
    files, is a UsageError raised before anything is written."""
    root = Path(root) if root is not None else paths.REPO_ROOT
    run_dir = Path(run_dir)
    run = load_results(run_dir)
    results: dict[str, dict] = {}
    for nb in run["notebooks"]:
        if isinstance(nb, dict) and "path" in nb and "status" in nb:
            results[_clean_path(nb["path"])] = nb
    entries = course_map(root, extra=list(results))
    exporter = _exporter()
    out = _prepare_out(Path(out_dir), run_dir, root)

    pages = [_plan(entry, results.get(entry.path), run_dir, root) for entry in entries]
    for page in pages:
        _read(page)
    (out / NOTEBOOK_CSS).parent.mkdir(parents=True, exist_ok=True)
    (out / NOTEBOOK_CSS).write_text(_notebook_css(), encoding="utf-8")
    for i, page in enumerate(pages):
        prev = pages[i - 1] if i > 0 else None
        nxt = pages[i + 1] if i + 1 < len(pages) else None
        nav = _nav(page, prev, nxt, run)
        top = nav + _banner(page, run, run_dir)
        target = out / page.href
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_page_html(page, exporter, top, nav, root), encoding="utf-8")
        page.nb = None  # free the notebook (executed copies can be large)
    (out / "report.html").write_text(_report_html(run, run_dir), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index_html(pages, run, "report.html"), encoding="utf-8")
    return index
