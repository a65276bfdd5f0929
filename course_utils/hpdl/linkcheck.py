"""Check the links of a static site offline (``hpdl site`` runs it on every build).

Every HTML page under the site folder is parsed with the standard library's
``html.parser``. A relative ``href`` or ``src`` must name a file of the site (a folder
counts when it holds an ``index.html``), and a ``#fragment`` into a page must name an
``id`` (or an ``<a name>``) of that page. A link that starts with ``/`` is broken too: a project
site is served below a prefix (``https://user.github.io/repo/``), where such a link
misses. External ``http(s)`` links are collected, never fetched (no network at run time);
``data:``, ``mailto:`` and ``javascript:`` links are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

IGNORED_SCHEMES = ("data", "mailto", "javascript", "tel", "about", "blob")


class _PageParser(HTMLParser):
    """Collects a page's link targets (``href``/``src``) and anchor names (``id``/``name``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value.strip())
            elif name == "id" or (name == "name" and tag == "a"):
                self.anchors.add(value)

    handle_startendtag = handle_starttag


@dataclass
class LinkScan:
    """What a scan of a site found: its pages, broken links and external links.

    ``broken`` and ``external`` hold one ``"page: link"`` string each, ``page`` relative to
    the site folder.
    """

    pages: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


def _parse(page: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def _target(site: Path, page: Path, path: str) -> Path | None:
    """The file a relative link names, or None when it names nothing in the site."""
    target = (page.parent / unquote(path)).resolve()
    if target != site and site not in target.parents:
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def scan_links(site_dir: Path) -> LinkScan:
    """Parse every page of ``site_dir`` and sort its links into broken and external."""
    site = Path(site_dir).resolve()
    pages = sorted(p for p in site.rglob("*") if p.suffix in (".html", ".htm") and p.is_file())
    parsed = {page: _parse(page) for page in pages}
    scan = LinkScan(pages=[p.relative_to(site).as_posix() for p in pages])
    for page, parser in parsed.items():
        name = page.relative_to(site).as_posix()
        for link in parser.links:
            parts = urlsplit(link)
            scheme = parts.scheme.lower()
            if scheme in ("http", "https") or link.startswith("//"):
                scan.external.append(f"{name}: {link}")
                continue
            if scheme in IGNORED_SCHEMES or link in ("", "#"):
                continue
            if scheme or link.startswith("/"):
                scan.broken.append(f"{name}: {link}")
                continue
            target = _target(site, page, parts.path) if parts.path else page
            if target is None:
                scan.broken.append(f"{name}: {link}")
                continue
            if parts.fragment and target in parsed:  # fragments of other files: unchecked
                anchors = parsed[target].anchors
                if parts.fragment not in anchors and unquote(parts.fragment) not in anchors:
                    scan.broken.append(f"{name}: {link}")
    return scan


def check_links(site_dir: Path) -> list[str]:
    """The broken links of the site in ``site_dir``, each ``"page: link"`` (empty: none)."""
    return scan_links(site_dir).broken


def external_links(site_dir: Path) -> list[str]:
    """The site's external ``http(s)`` links, each ``"page: link"``; listed, not fetched."""
    return scan_links(site_dir).external
