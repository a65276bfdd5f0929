"""Looking at trained classifiers: which errors they make, and tables that compare them.

* ``check_choices``: validate a list-valued knob (``MODELS = "mlp,cnn"``), so a notebook
  parameter given on the command line (``hpdl run -p MODELS mlp,cnn``) or as a Python list
  works the same, and a typo is a one-line ``UsageError``;
* ``top_confusions``: the largest off-diagonal entries of a confusion matrix, i.e. which
  classes a model mixes up most;
* ``markdown_table``: a small table as Markdown text (rendered by
  ``IPython.display.Markdown`` in a notebook, readable as plain text elsewhere), so the
  lessons need no pandas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UsageError, check_choices  # noqa: F401 - lesson 04 imports it here


def top_confusions(matrix: np.ndarray, k: int = 3) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal entries of a confusion matrix, largest first.

    Each is ``(true class, predicted class, count)``; entries with a count of zero are left
    out, so a perfect classifier gives ``[]``. Ties are broken by (true, predicted) order.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise UsageError(f"a confusion matrix must be square; got shape {matrix.shape}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k={k!r} is not valid; it must be an integer >= 1")
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    n = off.shape[0]
    order = sorted(range(n * n), key=lambda idx: (-off.flat[idx], idx))
    out = []
    for idx in order[:k]:
        count = int(off.flat[idx])
        if count <= 0:
            break
        out.append((idx // n, idx % n, count))
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: one header row, then ``rows`` (cells turned into text with ``str``).

    Every row must have as many cells as the header; ``|`` inside a cell is escaped.
    """
    if not header:
        raise UsageError("markdown_table: the header is empty")

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise UsageError(f"markdown_table: row {i} has {len(row)} cells, "
                             f"the header {len(header)}")
    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])
