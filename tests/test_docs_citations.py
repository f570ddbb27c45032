"""Comments, docstrings and documents cite `docs/<page>.md, "<Section>"`: every cited page and section must
exist (a renamed heading breaks the trail a newcomer follows), and nothing cites the design files outside
the repository (a clone does not have them)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = (".py", ".tf", ".md", ".yaml", ".html", ".sh")
SKIPPED_DIRS = {".git", ".venv", ".venv-checkov", "node_modules", "__pycache__", ".local-stack", "test-artifacts",
                ".hypothesis", ".terraform"}
# `docs/page.md, "Section"`, `docs/page.md ("Section"`, `docs/page.md`, "Section"` and `(docs/page.md) ("Section"`
CITATION = re.compile(r"docs/(?P<page>[a-z_]+)\.md`?\)?[,;:]?\s*\(?\s*\"(?P<section>[^\"\n]{2,80})\"")
OUTSIDE = re.compile(r"\b(?:ARCHITECTURE|MICROSOFT|STYLE)\.md\b|\.\./shared/")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*(?:\{#[\w-]+\})?\s*$")
PLACEHOLDER = "<Section>"


def _files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix in SCANNED and path.is_file() and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
            found.append(path)
    return sorted(found)


def _headings(page: Path) -> set[str]:
    titles, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            titles.add(match["title"].replace("`", ""))
    return titles


def test_every_cited_docs_section_exists() -> None:
    headings = {page.stem: _headings(page) for page in (ROOT / "docs").glob("*.md")}
    missing = []
    for path in _files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for match in CITATION.finditer(line):
                page, section = match["page"], match["section"].replace("`", "")
                if section == PLACEHOLDER:
                    continue
                if page not in headings:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{page}.md does not exist")
                elif section not in headings[page]:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{page}.md has no section {section!r}")
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)


def test_nothing_cites_files_outside_the_repository() -> None:
    outside = [f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
               for path in _files() if path != Path(__file__).resolve()
               for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
               if OUTSIDE.search(line)]
    assert not outside, "citations of design files a clone does not have:\n" + "\n".join(outside)


def test_the_citation_pattern_finds_each_form() -> None:
    forms = ['docs/architecture.md, "Data model"', 'docs/operations.md ("Alerts")', '`docs/capacity.md`, "X y"',
             '(docs/architecture.md) ("Components")']
    assert [m["section"] for form in forms for m in CITATION.finditer(form)] == ["Data model", "Alerts", "X y",
                                                                                   "Components"]
