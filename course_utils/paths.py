"""Where things are: the repository root, the build folder, shipped data.

Notebooks never write next to their sources; everything they produce goes under
``BUILD_DIR`` (ignored by git), so that running the course leaves ``git status`` clean.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
BUILD_DIR = REPO_ROOT / "build"
DATA_DIR = REPO_ROOT / "data"
LESSONS_DIR = REPO_ROOT / "lessons"
LABS_DIR = REPO_ROOT / "labs"
SOLUTIONS_DIR = LABS_DIR / "solutions"


def build_path(*parts: str) -> Path:
    """Return a path under ``build/`` (created), for files a notebook writes."""
    path = BUILD_DIR.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
