"""The layout's rules (docs/architecture.md), checked from the imports themselves.

course_utils is layered: the core (every notebook) < foundations < gpu < training (the
units, in course order) < checks (the labs' graded checks) < hpdl (the command). A module
may import its own layer and the layers below it, never above: so nothing outside hpdl/
imports hpdl/, the core imports no unit, and a unit never uses a later one. Lessons, labs
and their scripts may import anything but hpdl/. And no import cycle anywhere, counting the
imports inside functions too (a lazy import hides a cycle; it does not remove it).

The checker is tested on small made-up packages first, so that a rule that stops firing
fails here rather than passing silently on the real tree.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO

PACKAGE = "course_utils"
# The layers, bottom to top; a module's layer is the first part of its name after the
# package (anything not named here is the core).
LAYERS = ("core", "foundations", "gpu", "training", "checks", "hpdl")
TOOL = "hpdl"


# ------------------------------------------------------------------------------ the checker
def discover_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module and package of ``root/package``: dotted name -> file."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _targets(tree: ast.AST, here: str, is_package: bool, known: set[str],
             package: str) -> set[str]:
    """The modules of ``package`` that the code in ``tree`` imports, at any depth."""
    found = set()
    base = here if is_package else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name.split(".")[0] == package and name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != package:
                continue
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in known else module)
    return found


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (module-level and inside functions)."""
    modules = discover_modules(root, package)
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _targets(tree, name, path.name == "__init__.py", known, package) - {name}
    return graph


def layer_of(module: str, package: str = PACKAGE) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0


def layer_violations(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
    """'a imports b' for every import of a higher layer than the importer's own."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target, package) > layer_of(module, package):
                bad.append(f"{module} ({LAYERS[layer_of(module, package)]}) imports {target} "
                           f"({LAYERS[layer_of(target, package)]})")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules, as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph has ~60 nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(_one_cycle(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _one_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path start -> ... -> start inside one strongly connected group (for the message)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for succ in sorted(graph.get(node, ()) & group):
            if succ == start:
                return paths[node] + [start]
            if succ not in paths:
                paths[succ] = paths[node] + [succ]
                frontier.append(succ)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def course_code() -> dict[str, ast.AST]:
    """Every lesson's and lab's code: notebooks' code cells (a %%writefile cell's script
    included, magics dropped) and the Python scripts beside them."""
    sources = {}
    for folder in ("lessons", "labs"):
        for path in sorted((REPO / folder).rglob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                code = "\n".join(line for line in cell.source.splitlines()
                                 if not line.lstrip().startswith(("%", "!")))
                sources[f"{path.relative_to(REPO)}, cell {i}"] = ast.parse(code)
        for path in sorted((REPO / folder).rglob("*.py")):
            sources[str(path.relative_to(REPO))] = ast.parse(path.read_text())
    return sources


def course_code_violations(sources: dict[str, ast.AST], known: set[str]) -> list[str]:
    bad = []
    for where, tree in sources.items():
        for target in sorted(_targets(tree, "__main__", False, known, PACKAGE)):
            if layer_of(target) == LAYERS.index(TOOL):
                bad.append(f"{where} imports {target}")
    return bad


# ------------------------------------------------------------------------------ the rules
def test_the_layers_exist_and_every_package_says_its_concern():
    modules = discover_modules(REPO)
    for layer in LAYERS[1:]:
        name = f"{PACKAGE}.{layer}"
        assert name in modules, f"{name} is missing"
    for path in modules.values():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and doc.strip(), f"{path}: the package's docstring says its concern"


def test_no_module_imports_a_higher_layer():
    bad = layer_violations(import_graph(REPO))
    assert not bad, "imports against the layers (docs/architecture.md):\n  " + "\n  ".join(bad)


def test_no_import_cycles_in_course_utils():
    cycles = import_cycles(import_graph(REPO))
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_lessons_labs_and_their_scripts_never_import_the_tool():
    sources = course_code()
    assert len(sources) > 100, "the lessons' and labs' code was not found"
    bad = course_code_violations(sources, set(discover_modules(REPO)))
    assert not bad, "course code imports hpdl/ (the tool):\n  " + "\n  ".join(bad)


# ------------------------------------------------------- the checker on made-up packages
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


CLEAN = {
    "course_utils/__init__.py": "from .errors import CourseError\n",
    "course_utils/errors.py": "class CourseError(Exception): ...\n",
    "course_utils/gpu/__init__.py": "",
    "course_utils/gpu/launch.py": "from ..errors import CourseError\n",
    "course_utils/training/__init__.py": "",
    "course_utils/training/dist.py": "from ..gpu import launch\nfrom course_utils import errors\n",
    "course_utils/hpdl/__init__.py": "",
    "course_utils/hpdl/cli.py": "from ..training import dist\n",
}


def test_checker_passes_a_clean_tree_and_resolves_every_import_form(tmp_path):
    graph = import_graph(_tree(tmp_path, CLEAN))
    assert graph["course_utils.training.dist"] == {"course_utils.gpu.launch",
                                                   "course_utils.errors"}
    assert graph["course_utils"] == {"course_utils.errors"}
    assert not layer_violations(graph) and not import_cycles(graph)


@pytest.mark.parametrize("module, line, expected", [
    ("course_utils/gpu/launch.py", "    from ..hpdl import cli\n",
     "course_utils.gpu.launch (gpu) imports course_utils.hpdl.cli (hpdl)"),
    ("course_utils/errors.py", "import course_utils.training.dist\n",
     "course_utils.errors (core) imports course_utils.training.dist (training)"),
    ("course_utils/gpu/launch.py", "from course_utils.training import dist\n",
     "course_utils.gpu.launch (gpu) imports course_utils.training.dist (training)"),
])
def test_checker_finds_an_import_of_a_higher_layer(tmp_path, module, line, expected):
    files = dict(CLEAN)
    body = "def later():\n" + line if line.startswith("    ") else line
    files[module] += body
    assert expected in layer_violations(import_graph(_tree(tmp_path, files)))


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    files = dict(CLEAN)
    files["course_utils/gpu/roofline.py"] = "from .launch import x\n"
    files["course_utils/gpu/launch.py"] += "def f():\n    from . import roofline\n"
    cycles = import_cycles(import_graph(_tree(tmp_path, files)))
    assert cycles == [["course_utils.gpu.launch", "course_utils.gpu.roofline",
                       "course_utils.gpu.launch"]]


def test_checker_finds_course_code_that_imports_the_tool(tmp_path):
    known = set(discover_modules(_tree(tmp_path, CLEAN)))
    sources = {"lesson, cell 3": ast.parse("from course_utils.hpdl import cli\n"),
               "lab, cell 1": ast.parse("import course_utils.hpdl.cli as c\n"),
               "ok, cell 2": ast.parse("from course_utils.training import dist\n")}
    assert course_code_violations(sources, known) == [
        "lesson, cell 3 imports course_utils.hpdl.cli", "lab, cell 1 imports course_utils.hpdl.cli"]
