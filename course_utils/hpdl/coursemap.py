"""The course map: every notebook of the course in reading order, grouped by unit.

The README's course-map table is the one place that orders the course and says what each
notebook teaches, so this module reads it rather than keeping a second copy. A notebook
the table does not name (a lesson not listed yet, a student lab) still appears, after the
named ones of its unit. Units come from the folders: ``lessons/00_*.ipynb`` is the start,
``lessons/unitN_*/`` a unit, and a lab belongs to the unit of the lesson the table lists
before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

# Titles of the units as lessons/00_start_here.ipynb names them; a unit folder not listed
# here gets a title made from its name ("unit4_inference" -> "Unit 4 · inference").
UNIT_TITLES = {
    "start": "Start here",
    "unit1_foundations": "Unit 1 · Foundations of deep learning",
    "unit2_cuda_numba": "Unit 2 · GPU kernels in Python with Numba",
    "unit3_multi_gpu": "Unit 3 · From one GPU to many with PyTorch",
    "labs": "Labs",
    "other": "Other notebooks",
}
SOURCE_FOLDERS = ("lessons", "labs")
_NOTEBOOK_IN_CELL = re.compile(r"`([^`]+\.ipynb)`")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclass
class MapEntry:
    """One notebook of the course map."""

    path: str             # relative to the repository, with forward slashes
    unit: str             # a key of UNIT_TITLES or a lessons/ sub-folder name
    description: str = ""  # the README's "what it teaches" cell (Markdown), if listed

    @property
    def role(self) -> str:
        """``"solution"`` for a lab master, ``"student"`` for a student lab, else ``""``."""
        parts = PurePosixPath(self.path).parts
        if parts[:2] == ("labs", "solutions"):
            return "solution"
        return "student" if parts[:1] == ("labs",) else ""


def unit_title(unit: str) -> str:
    """The heading of a unit, e.g. ``Unit 1 · Foundations of deep learning``."""
    if unit in UNIT_TITLES:
        return UNIT_TITLES[unit]
    match = re.fullmatch(r"unit(\d+)_(.+)", unit)
    if match:
        return f"Unit {match[1]} · {match[2].replace('_', ' ')}"
    return unit.replace("_", " ")


def notebook_title(nb: Any, fallback: str) -> str:
    """The text of the notebook's first Markdown heading (``fallback`` if it has none)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            match = _HEADING.search(cell.get("source", ""))
            if match:
                return re.sub(r"[*_`]", "", match[1]).strip() or fallback
    return fallback


def readme_rows(readme: Path) -> list[tuple[str, str]]:
    """``(notebook path, description)`` for each notebook named in the README's table rows
    (a row naming a lab's master and student version gives both), in table order."""
    if not readme.is_file():
        return []
    rows: list[tuple[str, str]] = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        for path in _NOTEBOOK_IN_CELL.findall(cells[0]):
            rows.append((path, cells[1]))
    return rows


def _folder_unit(path: str) -> str:
    parts = PurePosixPath(path).parts
    if parts[:1] == ("lessons",):
        return parts[1] if len(parts) > 2 else "start"
    return "labs" if parts[:1] == ("labs",) else "other"


def discover_sources(root: Path) -> list[str]:
    """Every notebook under ``root``'s lessons/ and labs/, relative, sorted."""
    found = []
    for folder in SOURCE_FOLDERS:
        base = root / folder
        if base.is_dir():
            found += sorted(p.relative_to(root).as_posix() for p in base.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts)
    return found


def course_map(root: Path, extra: Iterable[str] = ()) -> list[MapEntry]:
    """The notebooks of the course under ``root`` plus ``extra`` paths (e.g. the notebooks
    of a run), in reading order: units in the order the README meets them, and in each
    unit the README's order, then the notebooks it does not name.

    A README row naming a notebook that neither exists nor is in ``extra`` is skipped.
    """
    extra = list(extra)
    wanted = set(discover_sources(root)) | set(extra)
    entries: list[MapEntry] = []
    seen: set[str] = set()
    unit_of_name: dict[str, str] = {}
    last_unit = None
    for path, description in readme_rows(root / "README.md"):
        unit = _folder_unit(path)
        if unit == "labs":
            unit = last_unit or "labs"
            unit_of_name.setdefault(PurePosixPath(path).name, unit)
        elif unit != "other":
            last_unit = unit
        if path in wanted and path not in seen:
            entries.append(MapEntry(path, unit, description))
            seen.add(path)
    for path in [*discover_sources(root), *extra]:
        if path in seen:
            continue
        unit = _folder_unit(path)
        if unit == "labs":
            unit = unit_of_name.get(PurePosixPath(path).name, "labs")
        entries.append(MapEntry(path, unit))
        seen.add(path)
    order = list(dict.fromkeys(e.unit for e in entries))
    return sorted(entries, key=lambda e: order.index(e.unit))  # stable: keeps the order
