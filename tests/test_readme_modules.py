"""The README's module table is the map a newcomer starts from: every module of `shared/`, every entry point,
every top-level folder and every document of `docs/` must be on it (a module added without a line there
fails here), and every module it names must exist (a module renamed or joined fails here too)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("| Path | What |")
    return text[start:text.index("\n\n", start)]


def test_every_shared_module_is_on_the_readme_map() -> None:
    table = _module_table()
    named = set(re.findall(r"`([\w/{},.<> -]+)`", table))
    words = {part for name in named for part in re.split(r"[/,{} ]+", name) if part}
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "shared").rglob("*.py"))
               if path.name != "__init__.py" and path.name not in words]
    assert not missing, f"modules missing from the README's module table: {missing}"


def test_every_entry_point_and_top_level_folder_is_on_the_map() -> None:
    table = _module_table()
    entry_points = [p.name for p in sorted((ROOT / "functions").iterdir()) if (p / "handler.py").is_file()]
    main = (ROOT / "main.py").read_text(encoding="utf-8")
    assert all(f"def {name}" in main or f"import {name}" in main for name in entry_points), entry_points
    folders = [p.name for p in sorted(ROOT.iterdir()) if p.is_dir() and not p.name.startswith(".")
               and ((p / "__init__.py").exists() or p.name in ("docs", "terraform", "loadtest"))]
    missing = [name for name in folders if f"`{name}/" not in table]
    assert not missing, f"folders missing from the README's module table: {missing}"


def test_every_module_and_document_the_map_names_exists() -> None:
    table = _module_table()
    named = {part for name in re.findall(r"`([\w/{},.<> -]+)`", table) for part in re.split(r"[/,{} ]+", name)}
    present = {path.name for folder in ("functions", "shared", "local", "benchmarks", "loadtest", "docs")
               for path in (ROOT / folder).rglob("*") if ".venv" not in path.parts}
    present |= {path.name for path in ROOT.iterdir()}
    stale = sorted(name for name in named if name.endswith((".py", ".md", ".yaml")) and name not in present)
    assert not stale, f"the README's module table names what does not exist: {stale}"
    documents = [path.name for path in sorted((ROOT / "docs").glob("*.md"))]
    missing = [name for name in documents if f"`{name}`" not in table]
    assert not missing, f"documents missing from the README's module table: {missing}"
