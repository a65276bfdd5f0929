"""The browser tests' own logic, without a browser: what counts as a failed notebook, and
when a missing browser skips and when it fails (fast; runs everywhere)."""

from __future__ import annotations

import pytest

from tests.browser import conftest as browser
from tests.browser.lab_page import cell_problems


def _code(index, count, *outputs, source="x = 1"):
    return {"index": index, "type": "code", "source": source, "execution_count": count,
            "outputs": list(outputs)}


def test_clean_cells_have_no_problems():
    cells = [{"index": 0, "type": "markdown", "source": "# title"},
             _code(1, 1, {"output_type": "stream", "name": "stdout", "text": "hello"}),
             _code(2, 2, {"output_type": "stream", "name": "stderr",
                          "text": "UserWarning: something\n  warnings.warn(...)"}),
             _code(3, 3, {"output_type": "display_data", "name": None, "mime": ["image/png"]})]
    assert cell_problems(cells) == []


def test_errors_tracebacks_and_cells_not_run_are_problems():
    cells = [_code(1, 1, {"output_type": "error", "ename": "ValueError", "evalue": "boom"},
                   source="raise ValueError('boom')\n# more"),
             _code(2, None),
             _code(3, 3, {"output_type": "stream", "name": "stderr",
                          "text": "Traceback (most recent call last):\n  ...\nKeyError: 'a'"})]
    problems = cell_problems(cells)
    assert len(problems) == 3
    assert problems[0] == "cell 1 (\"raise ValueError('boom')\") raised ValueError: boom"
    assert "cell 2" in problems[1] and "did not run" in problems[1]
    assert "cell 3" in problems[2] and "traceback" in problems[2]


def test_missing_chromium_skips_or_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("HPDL_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("HPDL_REQUIRE_BROWSER", raising=False)
    assert "apt-get install chromium" in browser.missing_browser()
    with pytest.raises(pytest.skip.Exception, match="no Chromium at"):
        browser.require_browser()
    monkeypatch.setenv("HPDL_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="HPDL_REQUIRE_BROWSER=1, but no Chromium"):
        browser.require_browser()


def test_missing_playwright_names_the_fix(monkeypatch, tmp_path):
    chromium = tmp_path / "chromium"
    chromium.touch()
    monkeypatch.setenv("HPDL_CHROMIUM", str(chromium))
    monkeypatch.setattr(browser.importlib.util, "find_spec",
                        lambda name: None if name == "playwright" else object())
    reason = browser.missing_browser()
    assert "playwright is missing" in reason and "playwright install" in reason
