"""The course as a student meets it: JupyterLab in a real (headless) browser.

The notebook tests prove that cells execute; these prove that a lesson opens in
JupyterLab, runs with Run All Cells without an error on screen, shows its figures and its
progress bars (tqdm as a widget), and that the Playground's widgets retrain and redraw the
decision boundary when a control changes. Screenshots go to build/browser/.

To keep the suite short, the notebooks run at the same time, each in its own kernel (as
a student with several tabs open would); every test then checks its own notebook.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.browser

PLAYGROUND = "lessons/unit1_foundations/03_playground.ipynb"
# One short lesson per unit; `progress` says whether it trains with a progress bar.
LESSONS = {
    "lessons/unit1_foundations/02_autograd_and_frameworks.ipynb": {"progress": True},
    "lessons/unit2_cuda_numba/07_cuda_programming_model.ipynb": {"progress": False},
    "lessons/unit3_multi_gpu/11_single_gpu_training_performance.ipynb": {"progress": False},
}
RUN_TIMEOUT = 480  # seconds for all of them together; about 60 s on a 2-core machine
FIGURE = ".jp-OutputArea-output img"
REDRAW = re.compile(r"redraw (\d+)")


@pytest.fixture(scope="module")
def executed(lab) -> Iterator[dict]:
    """The Playground and the lessons, opened and run at once (Run All Cells in each)."""
    notebooks = {}
    try:
        for path in [PLAYGROUND, *LESSONS]:
            notebooks[path] = lab.open(path)
            notebooks[path].start_run_all()
        lab.wait_all(list(notebooks.values()), timeout=RUN_TIMEOUT)
        yield notebooks
    finally:
        lab.close(*notebooks)


def _check_ran(notebook) -> None:
    notebook.wait_run_all(timeout=1)  # raises, naming the cell, if it did not finish
    problems = notebook.problems()
    assert not problems, f"{notebook.path} in JupyterLab:\n" + "\n".join(problems)


def _redraw_number(status: str) -> int:
    match = REDRAW.search(status)
    assert match, f"the Playground's status line has no redraw count: {status!r}"
    return int(match.group(1))


def test_playground_widgets_redraw_the_decision_boundary(executed):
    nb = executed[PLAYGROUND]
    _check_ran(nb)
    nb.activate()
    app = nb.locator(".jp-OutputArea-output").filter(
        has=nb.page.locator(".hpdl-playground-figure"))
    assert app.count() == 1, "the Playground app is not shown (no .hpdl-playground-figure)"
    # textContent, not innerText: the notebook skips the layout of cells out of view.
    app.scroll_into_view_if_needed()
    figure = app.locator(".hpdl-playground-figure img")
    status = app.locator(".hpdl-playground-status")
    figure.wait_for(timeout=30_000)
    before_png = figure.get_attribute("src")
    before_status = status.text_content().strip()
    before = _redraw_number(before_status)
    assert before_status.startswith("done:"), before_status
    assert int(nb.evaluate("app.redraws")) == before
    nb.screenshot("playground_before", app)

    # Change the data set as a student does: pick "xor" in the drop-down.
    app.get_by_label("data set", exact=True).select_option("xor")
    nb.page.wait_for_function(
        """([selector, before]) => {
             const text = (document.querySelector(selector)?.textContent || '').trim();
             const m = text.match(/redraw (\\d+)/);
             return text.startsWith('done:') && m && Number(m[1]) > before;
           }""",
        arg=[f"{nb.node} .hpdl-playground-status", before], timeout=120_000, polling=250)
    after = _redraw_number(status.text_content())
    assert nb.evaluate("app.result.config.dataset") == "'xor'"
    assert int(nb.evaluate("app.redraws")) == after > before
    assert app.locator(".hpdl-playground-error").text_content().strip() == ""
    after_png = figure.get_attribute("src")
    assert after_png and after_png.startswith("data:image/png")
    assert after_png != before_png, "the decision-boundary figure was not redrawn"
    nb.screenshot("playground_after", app)
    _check_ran(nb)


@pytest.mark.parametrize("path", list(LESSONS), ids=lambda p: p.split("/")[-1][:2])
def test_lesson_runs_in_jupyterlab(executed, path):
    nb = executed[path]
    _check_ran(nb)
    figures = nb.locator(FIGURE)
    assert figures.count() > 0, f"{path}: no matplotlib figure is shown"
    nb.reveal(FIGURE)
    nb.screenshot(nb.name)
    if LESSONS[path]["progress"]:
        assert nb.progress_bars() > 0, f"{path}: no progress bar widget was shown"
