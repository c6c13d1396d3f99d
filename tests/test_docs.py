"""The docs work on any clone: every relative link in README.md and docs/*.md points to a file in the
repository (and to a heading of it, when the link names one), and no page points outside the
repository (the developers' shared reference directory, absolute paths of their machines)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
OUTSIDE = [re.compile(p) for p in (r"\.\./shared\b", r"(?<![\w.~])/work/", r"(?<![\w.~])/home/\w", r"/tmp/h\d+")]


def prose(text: str) -> str:
    """The page without code blocks and inline code (links there are examples, not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def test_pages_and_links_are_found():
    assert (ROOT / "README.md").exists() and len(PAGES) > 10
    assert sum(len(links(p)) for p in PAGES) > 20  # the link pattern does find the pages' links
    assert slug("Misspellings: empty results explain themselves") == "misspellings-empty-results-explain-themselves"
    assert slug("`flatprint serve` and TLS") == "flatprint-serve-and-tls"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page: Path):
    text = page.read_text()
    found = [
        f"line {text[: m.start()].count(chr(10)) + 1}: {m.group(0)!r}"
        for pattern in OUTSIDE
        for m in pattern.finditer(text)
    ]
    assert not found, f"{page.relative_to(ROOT)} mentions places outside the repository: {found}"


def test_tests_do_not_hard_code_machine_paths():
    """Test data outside the repository is found relative to it (tests/reference.py), never by an
    absolute path of the developers' machine."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"Path\(\s*[\"']/(work|home)/|[\"']/work/shared", line):
                offenders.append(f"{path.name}:{number}")
    assert not offenders, offenders
