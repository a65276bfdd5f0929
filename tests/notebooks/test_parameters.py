"""Every parameter of every notebook is validated: a bad value (zero, negative, wrong type,
unknown name) stops the setup cell with a UsageError naming the parameter
(`tests/notebooks/parameter_walk.py` makes the bad values and runs the cells)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.notebooks.test_format import IDS, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_bad_parameter_is_a_usage_error_naming_it(path):
    proc = subprocess.run([sys.executable, "-m", "tests.notebooks.parameter_walk", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results[0]["name"] == "" and results[0]["outcome"] == "ok", results[0]
    wrong = []
    for r in results:
        if r["outcome"] != r["expect"]:
            wrong.append(f"{r['name'] or '(defaults)'}={r['value']}: expected {r['expect']}, "
                         f"got {r['outcome']} {r['error']}")
        elif r["expect"] == "usage-error" and f"{r['name']}=" not in r["error"]:
            wrong.append(f"{r['name']}={r['value']}: the error does not name the parameter "
                         f"as {r['name']}=...: {r['error']}")
    assert not wrong, f"{len(wrong)} of {len(results)} cases:\n" + "\n".join(wrong)
