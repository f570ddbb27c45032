"""Shared parsing for the Terraform checks: the module parsed with python-hcl2, the function map of
terraform/functions.tf completed with its defaults, the names main.py exports, and a Terraform runner for
the parts Terraform can evaluate without providers (variables.tf + functions.tf).

Helpers are handed out through fixtures, not imported, so the tests work whatever pytest import mode the
project uses.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
HCL_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)

# Google Cloud locations inside EU member states, written down here independently of terraform/ (the
# oracle its one list is checked against). europe-west2 (London) and europe-west6 (Zurich) are in Europe
# but not in the EU, so they are deliberately absent.
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

# docs/architecture.md, "Components": the entry points main.py re-exports, and who may call them.
CONTRACT = SimpleNamespace(
    entry_points=frozenset({"register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention",
                            "tenant_portal"}),
    public=frozenset({"register_device", "relay_contacts", "tenant_portal"}),
    internal=frozenset({"handle_deletion", "sweep_retention"}),
    topics=frozenset({"deletion-requests", "deletion-requests-dead-letter", "retention-sweep"}),
)

FUNCTION = "google_cloudfunctions2_function"
_WHOLE_REFERENCE = re.compile(r"^\$\{(var|local)\.([A-Za-z0-9_]+)\}$")
_SA_MEMBER = re.compile(r"^serviceAccount:\$\{google_service_account\.([a-z0-9_]+)(\[[^\]]+\])?\.email\}$")


def is_eu_location(value: str) -> bool:
    return value.lower() in EU_REGIONS or value.lower() in EU_MULTI_REGIONS


def parse_hcl(text: str) -> dict[str, Any]:
    return hcl2.loads(text, serialization_options=HCL_OPTIONS)


class TerraformModule:
    """The root module, parsed file by file into plain Python values.

    String literals come back without quotes; expressions come back as "${...}" strings;
    nested blocks come back as lists of dicts; `dynamic "x"` blocks under the key "dynamic".
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
        self.moved: list[dict[str, Any]] = []
        self.removed: list[dict[str, Any]] = []
        for path in self.files:
            self._add(path, parse_hcl(path.read_text(encoding="utf-8")))

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
        for kind, named in (("variable", self.variables), ("locals", self.locals), ("output", self.outputs)):
            for block in parsed.get(kind, []):
                for name, value in block.items():
                    assert name not in named, f"{kind} {name} declared twice ({path.name})"
                    named[name] = value
        for block in parsed.get("provider", []):
            for name, body in block.items():
                self.providers.append((name, body))
        self.terraform_blocks.extend(parsed.get("terraform", []))
        self.moved.extend(parsed.get("moved", []))
        self.removed.extend(parsed.get("removed", []))

    def resources_of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def resource(self, address: str) -> dict[str, Any]:
        rtype, name = address.split(".")
        assert name in self.resources_of(rtype), f"{address} is not declared in terraform/"
        return self.resources_of(rtype)[name]

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


def dynamic(body: dict[str, Any], name: str) -> tuple[Any, dict[str, Any]]:
    """(for_each, content) of the single `dynamic "name"` block of a body."""
    found = [entry[name] for entry in body.get("dynamic", []) if name in entry]
    assert len(found) == 1, f"expected exactly one dynamic {name} block, found {len(found)}"
    return found[0]["for_each"], block(found[0], "content")


def walk_attributes(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (path, key, value) for every attribute at any depth of nested (and dynamic) blocks."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            yield from walk_attributes(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from walk_attributes(item, path)


def refs(value: Any, rtype: str) -> set[str]:
    """Names of resources of type rtype referenced anywhere in value."""
    return set(re.findall(rf"\b{re.escape(rtype)}\.([a-z0-9_]+)\b", str(value)))


def one_ref(value: Any, rtype: str) -> str:
    found = refs(value, rtype)
    assert len(found) == 1, f"expected one reference to a {rtype} in {value!r}, found {sorted(found)}"
    return next(iter(found))


def member_account(member: Any) -> str | None:
    """`function[each.key]` / `build` for "serviceAccount:${google_service_account.<name>[<key>].email}"."""
    match = _SA_MEMBER.match(str(member))
    return f"{match.group(1)}{match.group(2) or ''}" if match else None


def complete_function_map(functions: dict[str, Any], defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """local.function_config as terraform/functions.tf computes it (without overrides): every entry merged
    over local.function_defaults, grants and scaling merged one level deeper."""
    completed = {}
    for name, spec in functions.items():
        entry = {**copy.deepcopy(defaults), **copy.deepcopy(spec)}
        entry["grants"] = {**defaults["grants"], **spec["grants"]}
        entry["scaling"] = {**defaults["scaling"], **spec["scaling"]}
        completed[name] = entry
    return completed


def exported_names(main_py: Path) -> list[str]:
    """main.py's __all__ (it must declare one: the entry points are what it exports)."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [str(name) for name in ast.literal_eval(node.value)]
    raise AssertionError(f"{main_py} declares no __all__")


def imported_names(main_py: Path) -> dict[str, str]:
    """name -> module of every `from module import name` at the top level of main.py."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    return {
        alias.asname or alias.name: str(node.module)
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


class TerraformRunner:
    """Runs the terraform binary offline on a directory of copied .tf files (no provider, no network)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def env(self, workdir: Path) -> dict[str, str]:
        cli_config = workdir / ".terraformrc"
        cli_config.write_text("", encoding="utf-8")
        env = dict(os.environ)
        env.update(
            {
                "CHECKPOINT_DISABLE": "1",  # no version check over the network
                "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0",
                "TF_CLI_CONFIG_FILE": str(cli_config),
                "TF_DATA_DIR": str(workdir / ".terraform"),
            }
        )
        return env

    def run(self, workdir: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], cwd=workdir, env=self.env(workdir), capture_output=True, text=True, timeout=timeout
        )

    def data_module(self, workdir: Path, extra: str = "") -> Path:
        """variables.tf and functions.tf (data only) copied into workdir, plus `extra` HCL, initialised."""
        workdir.mkdir(parents=True, exist_ok=True)
        for name in ("variables.tf", "functions.tf"):
            shutil.copy(TERRAFORM_DIR / name, workdir / name)
        if extra:
            (workdir / "probe.tf").write_text(extra, encoding="utf-8")
        init = self.run(workdir, "init", "-input=false", "-no-color", "-backend=false")
        assert init.returncode == 0, init.stdout + init.stderr
        return workdir

    def outputs(self, workdir: Path, variables: list[str]) -> dict[str, Any]:
        """Applies a provider-less module (outputs only) and returns its output values."""
        args = ["apply", "-auto-approve", "-input=false", "-no-color", "-lock=false"]
        for assignment in variables:
            args += ["-var", assignment]
        applied = self.run(workdir, *args)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        shown = self.run(workdir, "output", "-json", "-no-color")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        return {name: entry["value"] for name, entry in json.loads(shown.stdout).items()}


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
def functions(tf: TerraformModule) -> dict[str, dict[str, Any]]:
    """The function map (local.functions) completed with local.function_defaults, keyed by entry point."""
    assert isinstance(tf.locals.get("functions"), dict), "terraform/ has no literal local.functions map"
    return complete_function_map(tf.locals["functions"], tf.locals["function_defaults"])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def main_exports(repo_root: Path) -> list[str]:
    return exported_names(repo_root / "main.py")


@pytest.fixture(scope="session")
def main_imports(repo_root: Path) -> dict[str, str]:
    return imported_names(repo_root / "main.py")


@pytest.fixture(scope="session")
def contract() -> SimpleNamespace:
    return CONTRACT


@pytest.fixture(scope="session")
def eu() -> Callable[[str], bool]:
    return is_eu_location


@pytest.fixture(scope="session")
def eu_regions() -> frozenset[str]:
    return EU_REGIONS


@pytest.fixture(scope="session")
def hcl() -> Any:
    """Small helpers for walking parsed HCL."""

    class Helpers:
        FUNCTION = FUNCTION
        block = staticmethod(block)
        dynamic = staticmethod(dynamic)
        walk_attributes = staticmethod(walk_attributes)
        refs = staticmethod(refs)
        one_ref = staticmethod(one_ref)
        member_account = staticmethod(member_account)
        complete_function_map = staticmethod(complete_function_map)
        parse = staticmethod(parse_hcl)

    return Helpers


def missing_tool(reason: str) -> None:
    """A tool the Terraform checks need is missing: a skip on a developer's machine, a failure in CI
    (`CI=true`), where a skipped check would pass for a green one."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Terraform checks must run)", pytrace=False)
    print(f"SKIP reason: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tool_missing() -> Callable[[str], None]:
    return missing_tool


@pytest.fixture(scope="session")
def terraform() -> TerraformRunner:
    binary = shutil.which("terraform")
    if binary is None:
        missing_tool("terraform binary not found on PATH; checks that run Terraform itself not run")
    assert binary is not None
    return TerraformRunner(binary)


@pytest.fixture(scope="session")
def provider_schema() -> Any:
    """The google provider's schema (tests/terraform/provider_schema.py), installed by npm when missing."""
    from tests.terraform import provider_schema as schema

    if not schema.JSII.exists():
        if shutil.which("npm") is None:
            missing_tool("npm not found on PATH: the google provider's schema (@cdktf/provider-google) cannot be "
                         "installed; the schema check not run")
        schema.install()

    class Schema:
        data = schema.load()
        check_body = staticmethod(schema.check_body)
        meta_arguments = schema.META_ARGUMENTS

    return Schema
