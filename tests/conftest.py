"""Shared fixtures: the repository root and small notebooks built on the fly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HPDL_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")


def make_notebook(path: Path, cells: list[str], *, parameters: str | None = None) -> Path:
    """Write a notebook: a tagged parameters cell, then ``cells`` as code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        parameters or 'PROFILE = "auto"\nDEVICE = "auto"\nSEED = 0\nX = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def hpdl(*args: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``hpdl`` command in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "course_utils.hpdl.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where a real CUDA GPU is present."""
    from course_utils.device import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a real CUDA GPU (runs on the GPU runner)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
