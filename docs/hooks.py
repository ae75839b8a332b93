"""MkDocs hooks: one site from the pages where the repository keeps them.

The documentation pages live in ``docs/``, but the README (the front page on GitHub) and the report
(``reports/REPORT.md``, its detail pages, charts and calibration tables) live where the repository's readers look
for them. This hook adds them to the site, the README as its home page and ``reports/`` under ``reports/``, and
rewrites every relative link of every page from a repository path to a site path. The same Markdown then works
on GitHub and in the site, and ``mkdocs build --strict`` checks the links of all of them. The report's tables
are grids of numbers: their cells are kept on one line (``extra.css``), where the prose tables of the other pages
wrap.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
DOCS = "docs/"
# Repository files that join the site, beside docs/: (glob pattern from the root).
EXTRA = ("README.md", "reports/REPORT.md", "reports/details/*.md", "reports/figures/*.png",
         "reports/calibration/*.md", "reports/history/*.md", "reports/history/*.png", "reports/upgrade/*.md")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # the target of a Markdown link or image: ](target)
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def site_path(repo_path: str) -> str:
    """Where a repository file sits in the site: README.md is the home page, docs/x.md is x.md."""
    if repo_path == "README.md":
        return "index.md"
    return repo_path.removeprefix(DOCS)


def repo_path(src_uri: str) -> str:
    """The inverse of :func:`site_path` for the files of the site."""
    if src_uri == "index.md":
        return "README.md"
    return src_uri if src_uri.startswith("reports/") else DOCS + src_uri


def on_files(files, config):
    for pattern in EXTRA:
        for path in sorted(ROOT.glob(pattern)):
            files.append(File.generated(config, site_path(path.relative_to(ROOT).as_posix()), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    here = repo_path(page.file.src_uri)

    def to_site(match: re.Match) -> str:
        target = match.group(2)
        if SCHEME.match(target) or target.startswith(("#", "/")):
            return match.group(0)  # an absolute address, or an anchor of this page
        path, hash_, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
        start = posixpath.dirname(site_path(here)) or "."
        return match.group(1) + posixpath.relpath(site_path(resolved), start) + hash_ + anchor + match.group(3)

    return LINK.sub(to_site, markdown)


def on_page_content(html, page, config, files):
    if page.file.src_uri.startswith("reports/"):
        return html.replace("<table>", '<table class="numbers">')
    return html
