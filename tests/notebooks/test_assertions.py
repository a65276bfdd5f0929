"""Assertions that can fail: no notebook or lesson script asserts a constant, an expression
compared with itself, or a value close to itself, and no relative tolerance is 100 % or
more (it would accept any value of the right sign)."""

from __future__ import annotations

import ast

import nbformat
import pytest

from tests.conftest import REPO
from tests.notebooks.test_format import IDS, NOTEBOOKS

SCRIPTS = sorted((REPO / "lessons").rglob("scripts/*.py"))
CLOSE_CALLS = ("assert_allclose", "assert_array_equal", "assert_close", "assert_equal",
               "assert_array_almost_equal", "isclose", "allclose")


def _python(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def vacuous_assertions(source: str) -> list[str]:
    """The assertions of ``source`` that cannot fail, as their source text."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            test = node.test
            if isinstance(test, ast.Constant) and test.value:
                found.append(ast.unparse(node))
            elif isinstance(test, ast.Compare) and len(test.comparators) == 1 \
                    and isinstance(test.ops[0], (ast.Eq, ast.LtE, ast.GtE, ast.Is)) \
                    and ast.dump(test.left) == ast.dump(test.comparators[0]):
                found.append(ast.unparse(node))
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in CLOSE_CALLS and len(node.args) >= 2 \
                    and ast.dump(node.args[0]) == ast.dump(node.args[1]):
                found.append(ast.unparse(node))
            for kw in node.keywords:
                if name in CLOSE_CALLS and kw.arg == "rtol" \
                        and isinstance(kw.value, ast.Constant) and kw.value.value >= 1:
                    found.append(ast.unparse(node))
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = ("assert x == x\nassert True\nnp.testing.assert_allclose(a, a)\n"
           "np.testing.assert_allclose(a, b, rtol=1.0)\nassert f(y) <= f(y)\n")
    assert len(vacuous_assertions(bad)) == 5
    good = "assert x == y\nassert x\nnp.testing.assert_allclose(a, b, rtol=1e-5)\n"
    assert vacuous_assertions(good) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_assertions_can_fail(path):
    nb = nbformat.read(path, as_version=4)
    found = [f"cell {c.get('id')}: {text}" for c in nb.cells if c.cell_type == "code"
             for text in vacuous_assertions(c.source)]
    assert not found, "assertions that cannot fail:\n" + "\n".join(found)


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_assertions_can_fail(path):
    found = vacuous_assertions(path.read_text())
    assert not found, "assertions that cannot fail:\n" + "\n".join(found)
