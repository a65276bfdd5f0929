"""Every committed notebook has the course's shape (docs/architecture.md, "A notebook's shape")."""

import re

import nbformat
import pytest

from course_utils.hpdl import colab
from tests.conftest import REPO

NOTEBOOKS = sorted(p for folder in ("lessons", "labs") for p in (REPO / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
IDS = [p.relative_to(REPO).as_posix() for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert any(i.startswith("lessons/") for i in IDS) and any(i.startswith("labs/") for i in IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {i} has outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_shape_title_parameters_setup_try_it(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = code[0]
    assert "parameters" in params.metadata.get("tags", []), "first code cell: parameters"
    for name in ("PROFILE", "DEVICE", "SEED"):
        assert re.search(rf"^{name} = ", params.source, flags=re.M), f"{name} missing"
    assert "course_utils.setup(PROFILE, DEVICE, SEED)" in code[1].source, \
        "second code cell must be the setup cell"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "try it" in text, "end with 'Try it' exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_listed_in_readme_course_map(path):
    readme = (REPO / "README.md").read_text()
    assert path.relative_to(REPO).as_posix() in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_badge_and_guard(path):
    """Opens in Colab from its own path and installs the course there (`hpdl colab`)."""
    nb = nbformat.read(path, as_version=4)
    rel = path.relative_to(REPO).as_posix()
    fix = "run `hpdl colab` to add or update the Colab badge and guard"
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown")
    assert colab.badge_markdown(rel) in first_markdown.source.splitlines(), \
        f"{rel}: its first Markdown cell has no Open-in-Colab badge for {rel}; {fix}"
    setup = [c for c in nb.cells if c.cell_type == "code"][1]
    assert setup.source.startswith(colab.guard() + "\n"), \
        f"{rel}: its setup cell does not start with the Colab guard (colab.guard()); {fix}"


def test_start_here_course_map_links_every_notebook():
    """`make lab` opens 00_start_here: its course map links every lesson and student lab,
    and every link there opens an existing notebook."""
    start = REPO / "lessons" / "00_start_here.ipynb"
    nb = nbformat.read(start, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    links = [link for link in re.findall(r"\]\(([^)\s]+\.ipynb)\)", text)
             if "://" not in link]  # not the Colab badge
    targets = {(start.parent / link).resolve() for link in links}
    broken = [link for link in links if not (start.parent / link).is_file()]
    assert not broken, f"00_start_here links to missing notebooks: {broken}"
    wanted = [p for p in NOTEBOOKS if "solutions" not in p.parts]
    missing = [p.relative_to(REPO).as_posix() for p in wanted if p.resolve() not in targets]
    assert not missing, f"add these to the course map of 00_start_here: {missing}"
