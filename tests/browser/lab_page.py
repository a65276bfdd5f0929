"""Drive a JupyterLab tab the way a student does, through JupyterLab's own commands.

The server runs with ``expose_app_in_browser``, so the page has ``window.jupyterapp``: a
notebook is opened with the ``docmanager:open`` command and run with
``notebook:run-all-cells`` (what Run > Run All Cells does), and every wait is on a state of
the application (the command's promise, the kernel's status, a widget's text), never a
fixed sleep. What was run is read back from the notebook's model (execution counts,
outputs); what the student sees is checked in the DOM (figures, widgets).

``cell_problems`` is the pure-Python judgement of those cells, kept apart so that a unit
test can check that it fails on an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Helpers installed in the page once: open a notebook, run it, read its cells, ask its
# kernel for a value; and a MutationObserver that records every progress bar (tqdm's
# widget) that appears in an output, however briefly (the course's bars vanish when done).
INSTALL_JS = r"""
() => {
  if (window.hpdl) return;
  const app = window.jupyterapp;
  const hpdl = { panels: {}, runs: {}, progress: [] };
  hpdl.kernelStatus = (path) => {
    const session = hpdl.panels[path].sessionContext.session;
    return session && session.kernel ? session.kernel.status : 'no kernel';
  };
  hpdl.open = async (path) => {
    const panel = await app.commands.execute('docmanager:open', { path, factory: 'Notebook' });
    await panel.context.ready;
    await panel.sessionContext.ready;
    app.shell.activateById(panel.id);
    hpdl.panels[path] = panel;
    return panel.node.id;
  };
  hpdl.runAll = (path) => {
    // Run > Run All Cells on this notebook; the arguments name it (so that several can
    // run at once), and older or newer versions that ignore them use the active one.
    const panel = hpdl.panels[path];
    app.shell.activateById(panel.id);
    const run = { done: false, ok: null, error: null, start: Date.now(), seconds: null };
    hpdl.runs[path] = run;
    app.commands.execute('notebook:run-all-cells',
                         { widgetId: panel.id, semanticWidget: panel.id, activate: false })
      .then((ok) => { run.ok = ok; })
      .catch((err) => { run.error = String(err); })
      .finally(() => { run.done = true; run.seconds = (Date.now() - run.start) / 1000; });
  };
  hpdl.activate = (path) => { app.shell.activateById(hpdl.panels[path].id); };
  hpdl.reveal = async (path, selector) => {
    // Scroll the first match of `selector` into view, make its cell the active one (the
    // notebook keeps its active cell in view) and repeat until it holds still: cells out
    // of view have estimated heights until they are laid out, so one scroll can fall short.
    const notebook = hpdl.panels[path].content;
    const match = notebook.node.querySelector(selector);
    const cell = match && match.closest('.jp-Cell');
    const index = notebook.widgets.findIndex((widget) => widget.node === cell);
    if (index < 0) return false;
    notebook.activeCellIndex = index;
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
    let last = null;
    for (let i = 0; i < 50; i++) {
      match.scrollIntoView({ block: 'center' });
      await frame();
      await frame();
      const top = match.getBoundingClientRect().top;
      const view = notebook.node.getBoundingClientRect();
      if (top === last && top >= view.top && top < view.bottom) return true;
      last = top;
    }
    return false;
  };
  hpdl.finished = (path) => {
    const run = hpdl.runs[path];
    return Boolean(run && run.done) && hpdl.kernelStatus(path) === 'idle';
  };
  hpdl.cells = (path) => {
    const model = hpdl.panels[path].content.model;
    const text = (t) => (Array.isArray(t) ? t.join('') : (t || '')).slice(0, 4000);
    const cells = [];
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      const item = { index: i, type: cell.type, source: cell.sharedModel.getSource() };
      if (cell.type === 'code') {
        item.execution_count = cell.executionCount;
        item.running = cell.executionState === 'running';  // running or queued
        item.outputs = cell.outputs.toJSON().map((o) => ({
          output_type: o.output_type, name: o.name || null, ename: o.ename || null,
          evalue: o.evalue || null, text: text(o.text),
          mime: o.data ? Object.keys(o.data) : [] }));
      }
      cells.push(item);
    }
    return cells;
  };
  hpdl.evaluate = async (path, expression) => {
    const kernel = hpdl.panels[path].sessionContext.session.kernel;
    const future = kernel.requestExecute({ code: '', silent: true, store_history: false,
                                           user_expressions: { value: expression } });
    const reply = await future.done;
    const value = reply.content.user_expressions.value;
    if (value.status !== 'ok') throw new Error(`${value.ename}: ${value.evalue}`);
    return value.data['text/plain'];
  };
  hpdl.close = async (paths) => {
    await Promise.all(paths.map(async (path) => {
      const panel = hpdl.panels[path];
      delete hpdl.panels[path];
      if (!panel) return;
      await panel.sessionContext.shutdown();
      panel.dispose();
    }));
  };
  const seen = new WeakSet();
  new MutationObserver(() => {
    for (const bar of document.querySelectorAll('.jp-OutputArea .widget-hprogress')) {
      if (seen.has(bar)) continue;
      seen.add(bar);
      const panel = bar.closest('.jp-NotebookPanel');
      hpdl.progress.push({ panel: panel ? panel.id : null, time: Date.now() });
    }
  }).observe(document.body, { childList: true, subtree: true });
  window.hpdl = hpdl;
}
"""

STDERR_SELECTOR = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b: ",
                       re.MULTILINE)


def cell_problems(cells: list[dict[str, Any]]) -> list[str]:
    """What is wrong with run cells (as ``LabPage.cells`` returns them); empty when none.

    A code cell that did not run (no execution count), an ``error`` output, and a stderr
    output with a traceback are problems. Other stderr text (warnings, PyTorch's profiler
    chatter) is not.
    """
    problems = []
    for cell in cells:
        if cell["type"] != "code":
            continue
        first_line = (cell["source"].strip().splitlines() or [""])[0][:80]
        where = f"cell {cell['index']} ({first_line!r})"
        if not isinstance(cell.get("execution_count"), int):
            problems.append(f"{where} did not run (no execution count)")
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                problems.append(f"{where} raised {output['ename']}: {output['evalue']}")
            elif output.get("name") == "stderr" and TRACEBACK.search(output.get("text") or ""):
                problems.append(f"{where} printed a traceback on stderr:\n{output['text']}")
    return problems


class LabPage:
    """One JupyterLab tab (a Playwright ``Page``) on a running ``LabServer``."""

    def __init__(self, page: Any, server: Any, screenshots: Path):
        self.page = page
        self.server = server
        self.screenshots = Path(screenshots)
        self.external_requests: list[str] = []
        page.on("request", self._on_request)

    def _on_request(self, request: Any) -> None:
        if not request.url.startswith((self.server.url, "data:", "blob:", "about:")):
            self.external_requests.append(request.url)

    def load(self, timeout: float = 120.0) -> LabPage:
        """Open JupyterLab and wait until its layout is restored."""
        self.page.goto(self.server.lab_url, timeout=timeout * 1000)
        self.page.wait_for_function("() => window.jupyterapp !== undefined",
                                    timeout=timeout * 1000, polling=200)
        self.page.evaluate("async () => { await window.jupyterapp.restored; }")
        self.page.evaluate(INSTALL_JS)
        # JupyterLab itself must not reach out (news, update checks, extension listings);
        # notebooks may (a badge image in a markdown cell), so only loading is checked.
        if self.external_requests:
            raise AssertionError("JupyterLab tried to reach the network while loading: "
                                 + ", ".join(self.external_requests[:5]))
        return self

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait_all(self, notebooks: list[Notebook], timeout: float) -> bool:
        """Wait until every notebook's Run All Cells is done; False if one is still running.

        It does not raise: each test then checks its own notebook (``wait_run_all``), so a
        hang fails the test of that notebook only.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function("(paths) => paths.every(p => window.hpdl.finished(p))",
                                        arg=[nb.path for nb in notebooks],
                                        timeout=timeout * 1000, polling=500)
        except PlaywrightTimeout:
            return False
        return True

    def close(self, *paths: str) -> None:
        """Shut the notebooks' kernels down (all at once) and close their tabs."""
        self.js("(paths) => window.hpdl.close(paths)", list(paths))

    def open(self, path: str) -> Notebook:
        """Open ``path`` (relative to the server's root); close it with ``close``."""
        return Notebook(self, path, self.js("(path) => window.hpdl.open(path)", path))


class Notebook:
    """An open notebook in a ``LabPage``; ``node`` is the CSS selector of its panel."""

    def __init__(self, lab: LabPage, path: str, node_id: str):
        self.lab = lab
        self.page = lab.page
        self.path = path
        self.node = f"#{node_id}"

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def locator(self, selector: str) -> Any:
        return self.page.locator(f"{self.node} {selector}")

    def kernel_status(self) -> str:
        return self.lab.js("(path) => window.hpdl.kernelStatus(path)", self.path)

    def cells(self) -> list[dict[str, Any]]:
        return self.lab.js("(path) => window.hpdl.cells(path)", self.path)

    def evaluate(self, expression: str) -> str:
        """``repr`` of a Python expression in the notebook's kernel (waits for the kernel)."""
        return self.lab.js("([path, expr]) => window.hpdl.evaluate(path, expr)",
                           [self.path, expression])

    def progress_bars(self) -> int:
        """How many progress-bar widgets have appeared in this notebook's outputs so far."""
        panel_id = self.node[1:]
        return self.lab.js("(id) => window.hpdl.progress.filter(p => p.panel === id).length",
                           panel_id)

    def activate(self) -> None:
        """Bring this notebook's tab to the front (for screenshots)."""
        self.lab.js("(path) => window.hpdl.activate(path)", self.path)
        self.page.locator(self.node).wait_for(state="visible")

    def reveal(self, selector: str) -> None:
        """Bring this notebook to the front and scroll ``selector``'s first match into
        view (AssertionError if nothing matches)."""
        self.activate()
        found = self.lab.js("([path, selector]) => window.hpdl.reveal(path, selector)",
                            [self.path, selector])
        assert found, f"{self.path}: could not scroll to {selector!r}"

    def start_run_all(self) -> None:
        """Run > Run All Cells, without waiting (see ``wait_run_all``)."""
        self.lab.js("(path) => window.hpdl.runAll(path)", self.path)

    def wait_run_all(self, timeout: float = 300.0) -> float:
        """Wait until Run All Cells is done and the kernel idle; the run's seconds.

        AssertionError naming the cell still running if it takes longer than ``timeout``
        seconds, or if the command itself failed. (The kernel's status alone is no signal:
        ipykernel 7 can report "idle" while a cell runs; the command's promise is.)
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function("(path) => window.hpdl.finished(path)", arg=self.path,
                                        timeout=timeout * 1000, polling=250)
        except PlaywrightTimeout:
            running = [c for c in self.cells() if c.get("running")]
            where = (f"cell {running[0]['index']} "
                     f"({(running[0]['source'].strip().splitlines() or [''])[0][:80]!r}) "
                     "is still running" if running else "no cell is running")
            raise AssertionError(
                f"{self.path}: Run All Cells did not finish within {timeout:.0f} s: "
                f"{where}") from None
        run = self.lab.js("(path) => window.hpdl.runs[path]", self.path)
        if run["error"]:
            raise AssertionError(f"{self.path}: notebook:run-all-cells failed: {run['error']}")
        return run["seconds"]

    def run_all(self, timeout: float = 300.0) -> float:
        """Run > Run All Cells and wait (``wait_run_all``); the run's seconds."""
        self.start_run_all()
        return self.wait_run_all(timeout)

    def problems(self) -> list[str]:
        """Cells that did not run or show an error, and tracebacks rendered on screen."""
        problems = cell_problems(self.cells())
        if not problems:  # the model is fine: is a traceback on screen all the same?
            for text in self.locator(STDERR_SELECTOR).all_text_contents():
                if TRACEBACK.search(text):
                    problems.append(f"a traceback is shown in the notebook:\n{text[:2000]}")
        widget_errors = self.locator(".jp-OutputArea-output").filter(
            has_text="Error displaying widget").count()
        if widget_errors:
            problems.append(f"{widget_errors} output(s) show 'Error displaying widget'")
        return problems

    def screenshot(self, name: str, target: Any = None) -> Path:
        """Save a screenshot (of ``target``, a locator, or of the page) as ``name``.png."""
        path = self.lab.screenshots / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if target is not None:
            target.screenshot(path=str(path), animations="disabled")
        else:
            self.page.screenshot(path=str(path), animations="disabled")
        return path
