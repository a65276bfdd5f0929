"""Committed notebooks are stored clean: no outputs, no execution counts, kernel ``python3``.

Outputs in a committed notebook are stale the moment code changes, make every diff noisy,
and would hand students the answers of a lab. The pre-commit hook (``.pre-commit-config.yaml``)
and ``make lint`` run this on every notebook; ``tests/notebooks/test_format.py`` enforces it.

    python -m course_utils.hpdl.hygiene [--fix] NOTEBOOK...

Exit 0: all clean; 1: some are not (each problem named, with the fix); 2: bad usage.
``--fix`` clears outputs and execution counts in place (the kernelspec is left to you).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KERNEL = "python3"


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What keeps ``nb`` from being stored clean, one line each (empty: clean)."""
    found = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL:
        found.append(f"kernelspec is {kernel!r}, not {KERNEL!r}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has an execution count")
    return found


def clear(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with every code cell's outputs and execution count removed (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.hpdl.hygiene",
        description="Refuse notebooks stored with outputs or execution counts.")
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    parser.add_argument("--fix", action="store_true",
                        help="clear outputs and execution counts in place")
    args = parser.parse_args(argv)
    dirty = 0
    for path in args.notebooks:
        if not path.is_file() or path.suffix != ".ipynb":
            print(f"{path}: not a notebook file (.ipynb)", file=sys.stderr)
            return 2
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
            print(f"{path}: not a readable notebook ({exc})", file=sys.stderr)
            return 2
        found = problems(nb)
        if found and args.fix:
            nbformat.write(clear(nb), path)
            found = problems(nb)
        if found:
            dirty += 1
            for problem in found:
                print(f"{path}: {problem}")
    if dirty:
        print(f"{dirty} notebook(s) not stored clean: run `python -m course_utils.hpdl.hygiene "
              "--fix FILE...` (or Jupyter's Edit > Clear Outputs of All Cells, then save)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
