"""docs/architecture.md, "What we rely on from Microsoft and Google": every row names where the behaviour is
published and the test that holds the fakes and the code to it. A cited test that does not exist (renamed,
deleted, a typo) fails here, so the table cannot silently point at nothing."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
SECTION = "## What we rely on from Microsoft and Google"
HEADER = "| Provider | Behaviour | Published in | Test |"
NODE_ID = re.compile(r"`(?P<node>tests/[\w/]+\.py(?:::\w+)+)(?:\[[^\]`]*\])?`")


def _rows() -> list[list[str]]:
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"{PAGE.name} lacks the section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines and lines[0] == HEADER, f"the table's header must be {HEADER!r}"
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def _defined(path: Path) -> set[str]:
    """`name` and `Class::name` of the test functions a module defines (what pytest node IDs name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))
    return names


def test_every_row_has_a_provider_a_source_and_a_test() -> None:
    rows = _rows()
    assert len(rows) >= 10
    for row in rows:
        assert len(row) == 4, row
        provider, behaviour, published, tests = row
        assert provider in ("Microsoft", "Google"), row
        assert behaviour and published, row
        assert NODE_ID.search(tests), f"no pytest node ID in {row}"
    assert {row[0] for row in rows} == {"Microsoft", "Google"}


def test_every_cited_test_exists() -> None:
    missing = []
    for row in _rows():
        for match in NODE_ID.finditer(row[3]):
            module, _, name = match["node"].partition("::")
            path = ROOT / module
            if not path.is_file() or name not in _defined(path):
                missing.append(match["node"])
    assert not missing, f"docs/architecture.md cites tests that do not exist: {missing}"


@pytest.mark.parametrize(("cell", "found"), [
    ("`tests/test_docs_reliance.py::test_every_cited_test_exists`", True),
    ("`tests/test_docs_reliance.py::test_that_was_renamed`", False),
    ("`tests/nowhere.py::test_every_cited_test_exists`", False),
])
def test_the_check_tells_an_existing_test_from_a_missing_one(cell: str, found: bool) -> None:
    match = NODE_ID.search(cell)
    assert match is not None
    module, _, name = match["node"].partition("::")
    path = ROOT / module
    assert (path.is_file() and name in _defined(path)) is found
