"""Fixtures for the Terraform checks: the parsed module (python-hcl2) and the entry points of main.py.

Helpers are handed out through fixtures, not imported, so the tests work whatever pytest import
mode the project uses.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import hcl2
import pytest
from hcl2.utils import SerializationOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"

# Google Cloud locations inside EU member states. europe-west2 (London) and europe-west6 (Zurich)
# are in Europe but not in the EU, so they are deliberately absent.
EU_REGIONS = frozenset(
    {
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west3",
        "europe-west4",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
    }
)
# Multi-/dual-regions made only of EU regions: Storage EU and EUR4, Firestore eur3, Artifact Registry europe.
EU_MULTI_REGIONS = frozenset({"eu", "eur4", "eur3", "europe"})

_WHOLE_REFERENCE = re.compile(r"^\$\{(var|local)\.([A-Za-z0-9_]+)\}$")


def is_eu_location(value: str) -> bool:
    return value.lower() in EU_REGIONS or value.lower() in EU_MULTI_REGIONS


class TerraformModule:
    """The root module, parsed file by file into plain Python values.

    String literals come back without quotes; expressions come back as "${...}" strings;
    nested blocks come back as lists of dicts.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = sorted(directory.glob("*.tf"))
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.providers: list[tuple[str, dict[str, Any]]] = []
        self.terraform_blocks: list[dict[str, Any]] = []
        options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
        for path in self.files:
            parsed = hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options)
            self._add(path, parsed)

    def _add(self, path: Path, parsed: dict[str, Any]) -> None:
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    existing = self.resources.setdefault(rtype, {})
                    assert name not in existing, f"{rtype}.{name} declared twice ({path.name})"
                    existing[name] = body
        for block in parsed.get("data", []):
            for dtype, named in block.items():
                for name, body in named.items():
                    self.data.setdefault(dtype, {})[name] = body
        for block in parsed.get("variable", []):
            for name, body in block.items():
                assert name not in self.variables, f"variable {name} declared twice ({path.name})"
                self.variables[name] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                assert name not in self.locals, f"local {name} declared twice ({path.name})"
                self.locals[name] = value
        for block in parsed.get("output", []):
            for name, body in block.items():
                self.outputs[name] = body
        for block in parsed.get("provider", []):
            for name, body in block.items():
                self.providers.append((name, body))
        self.terraform_blocks.extend(parsed.get("terraform", []))

    def resources_of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def resolve(self, value: Any, _depth: int = 0) -> Any:
        """Replace a value that is exactly ${var.x} / ${local.x} by the default / local value."""
        assert _depth < 20, f"reference loop while resolving {value!r}"
        if isinstance(value, list):
            return [self.resolve(item, _depth + 1) for item in value]
        if not isinstance(value, str):
            return value
        match = _WHOLE_REFERENCE.match(value)
        if not match:
            return value
        kind, name = match.groups()
        if kind == "var":
            assert name in self.variables, f"reference to undeclared variable {name}"
            assert "default" in self.variables[name], f"variable {name} has no default to check"
            return self.resolve(self.variables[name]["default"], _depth + 1)
        assert name in self.locals, f"reference to undeclared local {name}"
        return self.resolve(self.locals[name], _depth + 1)

    def all_bodies(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for rtype, named in self.resources.items():
            for name, body in named.items():
                yield f"{rtype}.{name}", body
        for dtype, named in self.data.items():
            for name, body in named.items():
                yield f"data.{dtype}.{name}", body
        for name, body in self.providers:
            yield f"provider.{name}", body


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a body (fails when absent or repeated)."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected exactly one {name} block, found {blocks!r}"
    return blocks[0]


def walk_attributes(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (path, key, value) for every attribute at any depth of nested blocks."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            yield from walk_attributes(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from walk_attributes(item, path)


def entry_points_of(main_py: Path) -> set[str]:
    """Names main.py exposes at top level: __all__ if declared, else what it imports or defines.

    Private names, `from __future__` imports and plain `import module` statements are not entry points.
    """
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            return {str(name) for name in value}
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_") and name != "*"}


@pytest.fixture(scope="session")
def terraform_dir() -> Path:
    assert TERRAFORM_DIR.is_dir(), f"{TERRAFORM_DIR} is missing"
    return TERRAFORM_DIR


@pytest.fixture(scope="session")
def tf(terraform_dir: Path) -> TerraformModule:
    module = TerraformModule(terraform_dir)
    assert module.files, f"no .tf files in {terraform_dir}"
    return module


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def parse_entry_points() -> Callable[[Path], set[str]]:
    return entry_points_of


@pytest.fixture(scope="session")
def eu() -> Callable[[str], bool]:
    return is_eu_location


@pytest.fixture(scope="session")
def hcl() -> Any:
    """Small helpers for walking parsed HCL."""

    class Helpers:
        block = staticmethod(block)
        walk_attributes = staticmethod(walk_attributes)

    return Helpers
