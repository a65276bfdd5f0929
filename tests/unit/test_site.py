"""``hpdl site``: the course website of a run, and its offline link check.

A small fake course and run (written here with nbformat, never executed) cover the page
kinds: passed with outputs and an image, failed, timed out with nothing to show, passed
without its executed copy, not run. One test builds the site of the real course map from
a run that executed nothing, and checks all its links.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils import paths
from course_utils.errors import UsageError
from course_utils.hpdl import cli, site
from course_utils.hpdl.coursemap import discover_sources
from course_utils.hpdl.linkcheck import check_links, scan_links
from course_utils.hpdl.report import render_html

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAAB"
       "JRU5ErkJggg==")
README = """# A fake course

| Notebook | What it teaches |
| --- | --- |
| `lessons/00_start.ipynb` | the start, `hpdl env` |
| `lessons/unit1_foundations/01_a.ipynb` | lesson a |
| `labs/solutions/lab1.ipynb` (master) / `labs/lab1.ipynb` (student) | lab one |
| `lessons/unit1_foundations/02_b.ipynb` | lesson b |
| `lessons/unit1_foundations/09_listed_but_absent.ipynb` | not written yet |
"""
TITLES = {
    "lessons/00_start.ipynb": "00 · Start",
    "lessons/unit1_foundations/01_a.ipynb": "01 · Lesson A",
    "labs/solutions/lab1.ipynb": "Lab 1 — One",
    "labs/lab1.ipynb": "Lab 1 — One",
    "lessons/unit1_foundations/02_b.ipynb": "02 · Lesson B",
}
PAGES = [p.replace(".ipynb", ".html") for p in TITLES] + ["extra/ghost.html"]


def _source(title: str) -> nbformat.NotebookNode:
    link = "Next: [lesson B](02_b.ipynb). " if title.startswith("01") else ""
    return new_notebook(cells=[
        new_markdown_cell(f"# {title}\n\n{link}[Below](#Section-two).\n\n"
                          "## Section two\n\nText."),
        new_code_cell("print('hello')\nx = 1"),
    ])


def _executed(nb: nbformat.NotebookNode, *, fail: bool = False) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    code = nb.cells[1]
    code.execution_count = 1
    if fail:
        code.outputs = [new_output("error", ename="ValueError", evalue="bad input",
                                   traceback=["Traceback ...", "ValueError: bad input"])]
    else:
        code.outputs = [new_output("stream", name="stdout", text="hello\n"),
                        new_output("display_data", data={"image/png": PNG,
                                                          "text/plain": "<Figure>"})]
    return nb


def _metric(value, unit, hardware, meaningful=True, note=""):
    return {"value": value, "unit": unit, "hardware": hardware, "meaningful": meaningful,
            "note": note}


def _entry(run: Path, path: str, status: str, seconds: float, metrics=None, error=None,
           output: Path | None = None) -> dict:
    return {"path": path, "output": str(output or run / path), "status": status,
            "seconds": seconds, "metrics": metrics or {}, "checks": [], "error": error}


def make_fake_course(tmp: Path) -> tuple[Path, Path]:
    """A course (README, sources) and a run of it (results.json, executed copies)."""
    root, run = tmp / "course", tmp / "run"
    root.mkdir()
    (root / "README.md").write_text(README)
    for path, title in TITLES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_source(title), root / path)
    for path, fail in (("lessons/00_start.ipynb", False),
                       ("lessons/unit1_foundations/01_a.ipynb", False),
                       ("lessons/unit1_foundations/02_b.ipynb", True)):
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_executed(nbformat.read(root / path, as_version=4), fail=fail), run / path)
    notebooks = [
        _entry(run, "lessons/00_start.ipynb", "passed", 1.5, {
            "matmul_gflops": _metric(12.5, "GFLOP/s", "CPU: Fake (2 cores)", note="n=64")}),
        _entry(run, "lessons/unit1_foundations/01_a.ipynb", "passed", 2.5, {
            "kernel_gbps": _metric(0.0123, "GB/s", "GPU Z", meaningful=False)}),
        _entry(run, "lessons/unit1_foundations/02_b.ipynb", "failed", 3.5, error={
            "cell": 1, "message": "ValueError: bad input <b>", "traceback": "Traceback ..."}),
        _entry(run, "labs/solutions/lab1.ipynb", "passed", 4.5,
               output=tmp / "elsewhere" / "lab1.ipynb"),  # the executed copy is gone
        _entry(run, "extra/ghost.ipynb", "timeout", 600.0, error={
            "cell": None, "message": "the notebook ran past its 600 s limit", "traceback": ""}),
    ]
    data = {"schema": "hpdl-results/1", "created": "2026-01-02T03:04:05+00:00",
            "fingerprint": {"hardware": "GPU Z", "cuda_simulator": True,
                            "gpus": [{"name": "GPU Z", "memory_gib": 8.0}],
                            "packages": {"torch": "2.9"}},
            "profile": "quick", "device": "cpu", "parameters": {}, "total_seconds": 612.5,
            "summary": {"passed": 3, "failed": 1, "timeout": 1}, "notebooks": notebooks}
    (run / "results.json").write_text(json.dumps(data))
    (run / "report.html").write_text(render_html(data, run))
    return root, run


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("site")
    root, run = make_fake_course(tmp)
    out = tmp / "out" / "site"
    index = site.build_site(run, out, root=root)
    assert index == out.resolve() / "index.html"
    return root, run, out


def _read(out: Path, page: str) -> str:
    return (out / page).read_text(encoding="utf-8")


def _row(page: str, text: str) -> str:
    """The table row of ``page`` that contains ``text``."""
    rows = [r for r in re.findall(r"<tr>.*?</tr>", page, flags=re.DOTALL) if text in r]
    assert len(rows) == 1, (text, rows)
    return rows[0]


def test_every_page_exists_and_no_link_is_broken(fake_site):
    _, _, out = fake_site
    for page in [*PAGES, "index.html", "report.html", site.NOTEBOOK_CSS]:
        assert (out / page).is_file(), page
    assert not (out / "lessons/unit1_foundations/09_listed_but_absent.html").exists()
    scan = scan_links(out)
    assert scan.broken == []
    assert len(scan.pages) == len(PAGES) + 2
    assert check_links(out) == []


def test_index_shows_the_run_the_course_map_and_the_figures(fake_site):
    _, _, out = fake_site
    index = _read(out, "index.html")
    for text in ("2026-01-02T03:04:05+00:00", "profile <b>quick</b>", "device <b>cpu</b>",
                 'href="report.html"', "CUDA simulator", "torch 2.9"):
        assert text in index, text
    # units, reading order (the lab after the lesson the README lists before it), titles
    order = [index.index(f'href="{page}"') for page in PAGES]
    assert order == sorted(order)
    assert index.index("Start here") < index.index("Unit 1 · Foundations") \
        < index.index("Other notebooks")
    assert "Lab 1 — One (solution)" in index and "Lab 1 — One (student version)" in index
    assert "the start, <code>hpdl env</code>" in index, "the README's description"
    assert "passed" in _row(index, '<td>1</td><td><a href="lessons/00_start.html">')
    assert "not run" in _row(index, 'href="labs/lab1.html"')
    assert "failed" in _row(index, '>02 · Lesson B</a><br>')
    # figures: value, unit, hardware; the simulator number is labelled, the other is not
    real = _row(index, "matmul_gflops")
    assert "12.5 GFLOP/s" in real and "CPU: Fake (2 cores)" in real and "n=64" in real
    assert site.NOT_PERFORMANCE not in real
    simulated = _row(index, "kernel_gbps")
    assert "GPU Z" in simulated and site.NOT_PERFORMANCE in simulated
    assert "(CUDA simulator)" in simulated


def test_notebook_pages_banners_outputs_and_neighbours(fake_site):
    _, run, out = fake_site
    start = _read(out, "lessons/00_start.html")
    assert "data:image/png;base64," in start, "the figure is embedded"
    assert "hello" in start and "Executed in this run" in start
    assert 'href="index.html"' not in start and 'href="../index.html"' in start
    assert 'rel="next" href="unit1_foundations/01_a.html"' in start
    assert 'rel="prev"' not in start, "the first page has no previous one"
    lesson_a = _read(out, "lessons/unit1_foundations/01_a.html")
    assert 'href="02_b.html"' in lesson_a, "links between notebooks point at their pages"
    assert 'rel="prev" href="../00_start.html"' in lesson_a
    assert 'rel="next" href="../../labs/solutions/lab1.html"' in lesson_a
    assert site.NOT_PERFORMANCE in lesson_a, "the page's own figures, labelled"
    failed = _read(out, "lessons/unit1_foundations/02_b.html")
    assert "Failed in this run" in failed and "in cell 1" in failed
    assert "ValueError: bad input &lt;b&gt;" in failed, "the error, escaped"
    assert "executed copy, up to the failure" in failed
    master = _read(out, "labs/solutions/lab1.html")
    assert "executed copy was not found" in master and str(run) in master
    student = _read(out, "labs/lab1.html")
    assert "Not executed in this run" in student and "hpdl run labs/lab1.ipynb" in student
    ghost = _read(out, "extra/ghost.html")
    assert "Timeout in this run" in ghost and "No notebook file to show" in ghost
    assert 'rel="next"' not in ghost, "the last page has no next one"
    report = _read(out, "report.html")
    assert 'href="lessons/00_start.html"' in report and ".ipynb\"" not in report


def test_broken_links_are_reported(fake_site, tmp_path):
    _, _, built = fake_site
    out = tmp_path / "site"
    shutil.copytree(built, out)
    page = out / "lessons/unit1_foundations/01_a.html"
    page.write_text(page.read_text().replace(
        "</body>", '<a href="nowhere.html">x</a><a href="02_b.html#No-such-heading">y</a>'
        '<img src="../missing.png"></body>'))
    assert check_links(out) == [
        "lessons/unit1_foundations/01_a.html: nowhere.html",
        "lessons/unit1_foundations/01_a.html: 02_b.html#No-such-heading",
        "lessons/unit1_foundations/01_a.html: ../missing.png",
    ]


def test_link_kinds(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text('<p id="here">x</p>')
    (tmp_path / "b.html").write_text('<h2 id="there">b</h2><a name="old">o</a>')
    (tmp_path / "a.html").write_text(
        '<a href="b.html">ok</a><a href="b.html#there">ok</a><a href="b.html#old">ok</a>'
        '<a href="sub/">ok</a><a href="sub/#here">ok</a><a href="#top">ok</a>'
        '<span id="top"></span><a href="">ok</a><a href="#">ok</a>'
        '<img src="data:image/png;base64,AAAA"><a href="mailto:x@y.z">ok</a>'
        '<a href="https://example.org/x">external</a><script src="//cdn.example/x.js"></script>'
        '<a href="b.html#nowhere">bad</a><a href="/b.html">bad</a><a href="../outside.html">'
        'bad</a><a href="#gone">bad</a><a href="ftp://example.org/">bad</a>')
    scan = scan_links(tmp_path)
    assert scan.pages == ["a.html", "b.html", "sub/index.html"]
    assert scan.broken == ["a.html: b.html#nowhere", "a.html: /b.html",
                           "a.html: ../outside.html", "a.html: #gone",
                           "a.html: ftp://example.org/"]
    assert scan.external == ["a.html: https://example.org/x", "a.html: //cdn.example/x.js"]


def test_bad_usage_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(UsageError, match=r"results.json: no such file; run `hpdl run` first"):
        site.build_site(tmp_path, tmp_path / "site")
    assert cli.main(["site", "--run", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `hpdl run` first" in err[0]
    assert not (tmp_path / "s").exists()
    (tmp_path / "results.json").write_text("{ not json")
    with pytest.raises(UsageError, match="not JSON"):
        site.build_site(tmp_path, tmp_path / "site")
    (tmp_path / "results.json").write_text('{"schema": "other"}')
    with pytest.raises(UsageError, match="not an `hpdl run` results file"):
        site.build_site(tmp_path, tmp_path / "site")
    (tmp_path / "results.json").write_text('{"schema": "hpdl-results/1", "notebooks": []}')
    with pytest.raises(UsageError, match="lacks 'created'"):
        site.build_site(tmp_path, tmp_path / "site")


def test_out_folder_is_only_replaced_when_it_is_a_site(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "schema": "hpdl-results/1", "created": "now", "fingerprint": {}, "profile": "quick",
        "device": "cpu", "parameters": {}, "total_seconds": 0,
        "summary": {"passed": 0, "failed": 0, "timeout": 0}, "notebooks": []}))
    empty_course = tmp_path / "course"
    empty_course.mkdir()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty and was not written by `hpdl site`"):
        site.build_site(run, foreign, root=empty_course)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(UsageError, match="would replace the run"):
        site.build_site(run, tmp_path, root=empty_course)
    out = tmp_path / "site"
    site.build_site(run, out, root=empty_course)
    (out / "stale.html").write_text("old page")
    site.build_site(run, out, root=empty_course)  # a site of its own: replaced
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    assert "No figures were recorded" in (out / "index.html").read_text()


def test_cli_exit_status_and_summary(tmp_path, capsys, monkeypatch):
    root, run = make_fake_course(tmp_path)
    monkeypatch.setattr(paths, "REPO_ROOT", root)
    out = tmp_path / "site"
    assert cli.main(["site", "--run", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"site: {out.resolve() / 'index.html'} ({len(PAGES) + 2} pages; 0 broken links;" \
        in printed
    lesson = run / "lessons/unit1_foundations/01_a.ipynb"
    nb = nbformat.read(lesson, as_version=4)
    nb.cells.append(new_markdown_cell("The [data](data/table.csv)."))
    nbformat.write(nb, lesson)
    assert cli.main(["site", "--run", str(run), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "broken link: lessons/unit1_foundations/01_a.html: data/table.csv" in printed
    assert "1 broken links" in printed
    (tmp_path / "file.txt").write_text("x")
    assert cli.main(["site", "--run", str(run), "--out", str(tmp_path / "file.txt")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_cli_on_the_real_course_map_from_a_run_of_nothing(tmp_path, capsys):
    """The site of the real course: every notebook in lessons/ and labs/ gets a page
    (none executed), and no link of any page is broken."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "schema": "hpdl-results/1", "created": "2026-01-01T00:00:00+00:00",
        "fingerprint": {"hardware": "CPU: test"}, "profile": "quick", "device": "cpu",
        "parameters": {}, "total_seconds": 0.0,
        "summary": {"passed": 0, "failed": 0, "timeout": 0}, "notebooks": []}))
    out = tmp_path / "site"
    start = time.perf_counter()
    status = cli.main(["site", "--run", str(run), "--out", str(out)])
    seconds = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert status == 0, printed
    sources = discover_sources(paths.REPO_ROOT)
    assert len(sources) >= 20
    for source in sources:
        assert (out / source.replace(".ipynb", ".html")).is_file(), source
    assert f"({len(sources) + 2} pages; 0 broken links;" in printed
    assert str(out.resolve() / "index.html") in printed
    print(f"real course site: {len(sources)} notebooks in {seconds:.1f} s")
