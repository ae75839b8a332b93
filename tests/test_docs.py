"""The documentation: the MkDocs site builds with --strict, and no page links to a file or heading that is not there.

The link check reads the Markdown itself (README.md, docs/*.md and every page under reports/), so a moved or
renamed file fails here even where MkDocs is not installed; the build test is skipped only then.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "reports").rglob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def prose(path: Path) -> str:
    """A page without its code blocks and code spans, where a bracket is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", path.read_text()))


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (MkDocs gives the same to these pages' headings)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for line in prose(path).splitlines() if re.match(r"#{1,6} ", line)}


def links(path: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(prose(path))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_image_resolves(page):
    dead = []
    for target in links(page):
        if SCHEME.match(target):
            continue  # an address on the web
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file() or ROOT not in linked.parents:
            dead.append(target)
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            dead.append(f"{target} (no such heading)")
    assert not dead, f"{page.relative_to(ROOT)} links to what is not there: {dead}"


def test_the_link_check_sees_a_dead_link_and_a_dead_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\n## Real heading\n\n[ok](#real-heading) [gone](b.md) `[not](a link)`\n"
                                   "[bad](#no-heading) ![chart](figures/x.png)\n```\n[code](nope.md)\n```\n")
    assert links(tmp_path / "a.md") == ["#real-heading", "b.md", "#no-heading", "figures/x.png"]
    assert anchors(tmp_path / "a.md") == {"a", "real-heading"}


def test_every_docs_page_is_in_the_site_navigation():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):  # mkdocs.yml may carry MkDocs' own !tags; the nav is plain
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)

    def entries(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [page for value in nav.values() for page in entries(value)]
        return [page for item in nav for page in entries(item)]

    in_nav = set(entries(config["nav"]))
    assert {"index.md", "reports/REPORT.md"} <= in_nav  # the README and the report, brought in by docs/hooks.py
    missing = [page.name for page in (ROOT / "docs").glob("*.md") if page.name not in in_nav]
    assert not missing, f"add these docs pages to the nav of mkdocs.yml: {missing}"


def test_the_readme_answer_is_the_committed_report_s():
    readme = (ROOT / "README.md").read_text()
    answer = readme[readme.index("## The answer"):readme.index("\n## ", readme.index("## The answer") + 1)]
    rows = [line for line in answer.splitlines() if line.startswith("| ")]
    assert len(rows) >= 3, "the README's answer has no table"
    report = (ROOT / "reports" / "REPORT.md").read_text()
    stale = [row for row in rows if row not in report]
    assert not stale, f"the README's answer differs from reports/REPORT.md's headline: {stale}"
    assert "](reports/figures/step_time.png)" in answer


def test_the_readme_sentence_on_the_cnn_is_what_the_committed_results_say():
    from tfbench.reports.data import latest, load_results
    from tfbench.reports.headline import headline_rows

    assert "On the CNN the styles are within 6% of each other at their best, and XLA is" in " ".join(
        (ROOT / "README.md").read_text().split())
    _, _, cnn = headline_rows(latest(load_results(ROOT / "reports" / "results")))["cnn"]
    assert cnn["vs_fastest"].max() <= 1.06 + 0.005  # "within 6%", as rounded
    assert all(float(gain.rstrip("x")) < 1 for gain in cnn["xla_gain"])  # "XLA is slower than plain tf.function"


def test_the_site_builds_with_strict_checks(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "timing/index.html", "performance/index.html", "reports/REPORT/index.html",
                 "reports/details/step_time/index.html", "reports/figures/step_time.png"):
        assert (site / page).is_file(), page
    home = (site / "index.html").read_text()
    assert 'href="timing/"' in home and 'src="reports/figures/step_time.png"' in home  # the README's links, rewritten
    assert not (ROOT / "site").exists() or "/site/" in (ROOT / ".gitignore").read_text()
