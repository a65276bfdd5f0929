"""Colab: an "Open in Colab" badge in every notebook, and a guard that installs the course
package when, and only when, a notebook runs on Colab.

A student with no GPU at home opens a lesson from GitHub in Colab (the badge under the
title), picks a GPU runtime, and runs the notebook as it is. On Colab the course package
is not installed, so the first lines of every setup cell, the *guard*, clone this
repository into ``/content/hpdl``, ``pip install -e`` it (Colab's own CUDA PyTorch is kept:
``pyproject.toml`` asks for ``torch>=2.4``, which Colab's satisfies) and put it on
``sys.path`` for the running kernel. Anywhere else the guard does nothing but
``import sys``, so papermill, nbval and JupyterLab runs are unchanged.

The guard cannot import ``course_utils`` (on Colab that is what it installs), so it is
plain text, the same in every notebook; :func:`guard` is its single source, and
:func:`sync_notebooks` (``hpdl colab``) writes it and the badge into every notebook. The
repository comes from ``pyproject.toml`` (``[project.urls] Repository``), else
:data:`DEFAULT_REPOSITORY`; ``--repo`` overrides both for one run.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from urllib.parse import quote

import nbformat

from .. import paths
from ..errors import UsageError

DEFAULT_REPOSITORY = "https://github.com/hpdl-course/high-performance-deep-learning"
"""Used when ``pyproject.toml`` has no ``[project.urls] Repository``."""
DEFAULT_BRANCH = "main"
CLONE_DIR = "/content/hpdl"
"""Where the guard clones the repository on Colab (``/content`` is Colab's home)."""
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_GITHUB = "https://colab.research.google.com/github"

GUARD_TEMPLATE = """\
# Colab only: download and install the course package (anywhere else this does nothing).
import sys
if "google.colab" in sys.modules:
    import os
    import subprocess
    if not os.path.exists("{clone_dir}"):
        url = "{url}"
        subprocess.check_call(["git", "clone", "--depth", "1", url, "{clone_dir}"])
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", "{clone_dir}"])
    sys.path.insert(0, "{clone_dir}")"""
"""The guard's text; it has no blank line, which is how :func:`sync_notebooks` finds its end."""

_GUARD_SIGNATURE = '"google.colab" in sys.modules'
_BADGE_LINE = re.compile(
    r"^\[!\[Open In Colab\]\(" + re.escape(BADGE_IMAGE) + r"\)\]\(([^)\s]*)\)[ \t]*$", re.M)
_GITHUB_URL = re.compile(
    r"^(?:https://github\.com/|git@github\.com:)([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


# ------------------------------------------------------------------ the repository
def repository_url(pyproject: Path | None = None) -> str:
    """The repository's GitHub URL: ``[project.urls] Repository`` of ``pyproject.toml``,
    else :data:`DEFAULT_REPOSITORY` (no pyproject, or no such entry)."""
    path = Path(pyproject) if pyproject is not None else paths.REPO_ROOT / "pyproject.toml"
    if not path.is_file():
        return DEFAULT_REPOSITORY
    urls = _load_toml(path).get("project", {}).get("urls", {})
    for key, value in urls.items():
        if key.lower() == "repository" and isinstance(value, str):
            return value
    return DEFAULT_REPOSITORY


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:  # no TOML reader: fall back to the default
            return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from exc


def github_repo(url: str) -> tuple[str, str]:
    """``(owner, name)`` of a GitHub URL (https or ssh form, ``.git`` optional).

    Colab opens notebooks from GitHub only, so any other URL is a ``UsageError``.
    """
    match = _GITHUB_URL.match(url.strip())
    if not match:
        raise UsageError(f"repository {url!r} is not a GitHub URL; give one like "
                         f"https://github.com/OWNER/REPO (Colab opens notebooks from GitHub)")
    return match.group(1), match.group(2)


def clone_url(repo: str | None = None) -> str:
    """The https URL that the guard clones (``repo`` normalised; default: the project's)."""
    owner, name = github_repo(repo or repository_url())
    return f"https://github.com/{owner}/{name}"


# ------------------------------------------------------------------ badge and guard
def _relative(notebook_path: Path | str, root: Path | None = None) -> str:
    path = Path(notebook_path)
    if not path.is_absolute():
        return path.as_posix()
    root = Path(root) if root is not None else paths.REPO_ROOT
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{path}: not inside the repository {root}; Colab can open only "
                         f"notebooks that are in it") from None


def colab_url(notebook_path: Path | str, repo: str | None = None,
              branch: str = DEFAULT_BRANCH, root: Path | None = None) -> str:
    """Colab's address of a notebook of the repository (a path relative to its root, or
    an absolute path under ``root``)."""
    owner, name = github_repo(repo or repository_url())
    rel = quote(_relative(notebook_path, root))
    return f"{COLAB_GITHUB}/{owner}/{name}/blob/{branch}/{rel}"


def badge_markdown(notebook_path: Path | str, repo: str | None = None,
                   branch: str = DEFAULT_BRANCH, root: Path | None = None) -> str:
    """The "Open in Colab" badge of a notebook: one Markdown line, an image link."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook_path, repo, branch, root)})"


def guard(repo: str | None = None) -> str:
    """The guard's text for ``repo`` (default: the project's repository), the first lines
    of every setup cell."""
    return GUARD_TEMPLATE.format(url=clone_url(repo), clone_dir=CLONE_DIR)


# ------------------------------------------------------------------ notebooks
def _with_badge(source: str, badge: str) -> str:
    """``source`` (the first Markdown cell) with ``badge`` replacing an old badge line, or
    inserted under the title line (the title stays the cell's first line)."""
    if _BADGE_LINE.search(source):
        return _BADGE_LINE.sub(lambda _m: badge, source, count=1)
    lines = source.split("\n")
    if not lines[0].startswith("#"):
        return f"{badge}\n\n{source}" if source else badge
    rest = "\n".join(lines[1:]).lstrip("\n")
    return f"{lines[0]}\n\n{badge}" + (f"\n\n{rest}" if rest else "")


def _with_guard(source: str, text: str) -> str:
    """``source`` (the setup cell) starting with ``text``: an old guard at its top (the
    block up to the first blank line, if it tests ``google.colab``) is replaced."""
    head, blank, rest = source.partition("\n\n")
    if _GUARD_SIGNATURE in head:
        source = rest if blank else ""
    source = source.lstrip("\n")
    return f"{text}\n\n{source}" if source.strip() else text


def retarget_badge(nb: nbformat.NotebookNode, notebook_path: str) -> nbformat.NotebookNode:
    """Point the badge of ``nb`` (if it has one) at ``notebook_path``, keeping its repository
    and branch: a student lab generated from a master opens itself, not the master."""
    cell = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    match = _BADGE_LINE.search(cell.source) if cell is not None else None
    base = re.match(r"(.*/blob/[^/]+/)", match.group(1)) if match else None
    if base:
        badge = f"[![Open In Colab]({BADGE_IMAGE})]({base.group(1)}{quote(notebook_path)})"
        cell.source = _BADGE_LINE.sub(lambda _m: badge, cell.source, count=1)
    return nb


def setup_cell(nb: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """The setup cell of a course notebook: its second code cell (docs/architecture.md)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if len(code) < 2 or "course_utils.setup(" not in code[1].source:
        raise UsageError(f"{where}: its second code cell is not the setup cell (the one "
                         "calling course_utils.setup(PROFILE, DEVICE, SEED)); see \"A "
                         "notebook's shape\" in docs/architecture.md")
    return code[1]


def synced(nb: nbformat.NotebookNode, notebook_path: str, repo: str | None = None,
           branch: str = DEFAULT_BRANCH) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the badge for ``notebook_path`` (relative to the repository
    root) and the guard; cell ids, metadata and everything else unchanged."""
    nb = copy.deepcopy(nb)
    markdown = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if markdown is None:
        raise UsageError(f"{notebook_path}: no Markdown cell to put the Colab badge in")
    markdown.source = _with_badge(markdown.source, badge_markdown(notebook_path, repo, branch))
    cell = setup_cell(nb, notebook_path)
    cell.source = _with_guard(cell.source, guard(repo))
    return nb


def course_notebooks(root: Path | None = None) -> list[Path]:
    """Every notebook of the course: lessons, lab masters and student labs."""
    root = Path(root) if root is not None else paths.REPO_ROOT
    return sorted(p for folder in ("lessons", "labs") for p in (root / folder).rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def sync_notebooks(notebook_paths: list[Path] | None = None, check: bool = False,
                   repo: str | None = None, branch: str = DEFAULT_BRANCH,
                   root: Path | None = None) -> list[Path]:
    """Put the badge and the guard into every notebook; return those that were out of date.

    Idempotent: a notebook already up to date is not rewritten. With ``check`` nothing is
    written. Paths default to :func:`course_notebooks`; each must lie under ``root`` (the
    repository root), since its badge names its path there.
    """
    root = Path(root) if root is not None else paths.REPO_ROOT
    repo = clone_url(repo)  # validated once, before anything is written
    notebook_paths = course_notebooks(root) if notebook_paths is None else notebook_paths
    stale: list[Path] = []
    for path in map(Path, notebook_paths):
        if not path.is_file():
            raise UsageError(f"{path}: no such notebook")
        rel = _relative(path.resolve(), root)
        nb = nbformat.read(path, as_version=4)
        new = synced(nb, rel, repo, branch)
        if nbformat.writes(new) != nbformat.writes(nb):
            stale.append(path)
            if not check:
                nbformat.write(new, path)
    return stale


def main(check: bool = False, repo: str | None = None) -> int:
    """``hpdl colab [--check] [--repo URL]``: exit 0 done / up to date, 1 stale (check)."""
    configured = clone_url()
    chosen = clone_url(repo) if repo else configured
    if chosen != configured:
        print(f"note: pyproject.toml's [project.urls] Repository is {configured}; the "
              f"notebook format test expects the notebooks to use it", file=sys.stderr)
    notebooks = course_notebooks()
    stale = sync_notebooks(notebooks, check=check, repo=chosen)
    for path in stale:
        rel = path.relative_to(paths.REPO_ROOT).as_posix()
        print(f"stale: {rel}: its Open-in-Colab badge or Colab guard is missing or out of "
              f"date; run `hpdl colab`" if check else f"updated {rel}")
    if not stale:
        print(f"all {len(notebooks)} notebooks have the Colab badge and guard for {chosen}")
    return 1 if check and stale else 0
