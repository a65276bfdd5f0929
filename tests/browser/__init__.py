"""Browser tests: JupyterLab driven by headless Chromium (Playwright), as a student meets it."""
