"""Fixtures of the browser tests: a JupyterLab server on a copy of the lessons, headless
Chromium driven by Playwright, and one JupyterLab tab shared by the tests.

Without Chromium or Playwright the tests are skipped with the command that installs them;
with ``HPDL_REQUIRE_BROWSER=1`` (CI) they fail instead, so CI cannot pass by skipping.
No browser is downloaded: Playwright launches the system's Chromium (``HPDL_CHROMIUM``
overrides its path).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from course_utils import paths
from tests.browser.lab_page import LabPage
from tests.browser.lab_server import LabServer, copy_notebooks

# Chromium as root in a container, with no network: no sandbox (needs user namespaces),
# no GPU, and no background traffic (updates, sync, QUIC), whose refused connections would
# otherwise slow it down. Host names other than localhost do not resolve.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> str | None:
    """``HPDL_CHROMIUM``, else Debian's /usr/bin/chromium, else ``chromium`` on PATH."""
    override = os.environ.get("HPDL_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, with the fix (None if they can)."""
    if chromium_path() is None:
        where = os.environ.get("HPDL_CHROMIUM") or "/usr/bin/chromium"
        return (f"no Chromium at {where}: install it with `sudo apt-get install chromium` "
                "(Debian), or set HPDL_CHROMIUM to a Chromium or Chrome executable")
    if importlib.util.find_spec("playwright") is None:
        return ("the Python package playwright is missing: install it with "
                "`pip install -r requirements/lock.txt` or `pip install -e '.[dev]'` (no "
                "`playwright install`: the tests use the system's Chromium)")
    return None


def require_browser() -> None:
    """Skip the calling test if Chromium or Playwright is missing; with
    ``HPDL_REQUIRE_BROWSER=1``, fail instead (CI must not pass by skipping)."""
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("HPDL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HPDL_REQUIRE_BROWSER=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.ipynb"))}


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Chromium (a Playwright ``Browser``); skip or fail if it is missing."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary --user-data-dir.
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab_server(chromium, tmp_path_factory) -> Iterator[LabServer]:
    """JupyterLab on a copy of lessons/; the sources are checked to be unchanged after."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "course"
    copy_notebooks(paths.LESSONS_DIR, root / "lessons")
    before = _digest(paths.LESSONS_DIR)
    server = LabServer(root, tmp / "home", paths.build_path("browser", "jupyter_server.log"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
    assert _digest(paths.LESSONS_DIR) == before, "running the notebooks changed lessons/"


@pytest.fixture(scope="session")
def lab(chromium, lab_server) -> Iterator[LabPage]:
    """One JupyterLab tab, loaded; tests open and close their notebooks in it."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        yield LabPage(page, lab_server, paths.BUILD_DIR / "browser").load()
    finally:
        context.close()
