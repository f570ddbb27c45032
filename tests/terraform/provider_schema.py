"""The google provider's own schema, read from `@cdktf/provider-google`'s `.jsii` file (npm, pinned in
`provider-schema/package.json` and its lock file; generated from the provider release it names).

cdktf generates one config struct per resource and data source, and one struct per nested block, from the
provider's schema: a property that is not `optional` is required, a property typed as a struct (or a
list of structs) is a block, and each property's documentation links to the registry with the
Terraform name as its anchor (`.../docs/resources/storage_bucket#days_since_custom_time`; where it has
no link, the camelCase name converts: `project`). That is all
the checks need, distilled once into a small JSON file next to the package (the `.jsii` is ~100 MB).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent / "provider-schema"
JSII = PACKAGE_DIR / "node_modules" / "@cdktf" / "provider-google" / ".jsii"
# Terraform's meta-arguments and the nested-block keywords: allowed in every resource / data body.
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner",
                            "connection", "dynamic"})

_REPRESENTS = re.compile(r"^Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/google/"
                         r"(?P<version>[0-9.]+)/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>google_\w+)\}")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ANCHOR = re.compile(r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/[0-9.]+/docs/"
                     r"(?:resources|data-sources)/\w+#(?P<name>\w+) ")


def install() -> None:
    """npm ci in provider-schema/ (the same as `make`'s target); raises with npm's output on failure."""
    result = subprocess.run(["sh", str(PACKAGE_DIR / "install.sh")], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"installing @cdktf/provider-google failed:\n{result.stdout}\n{result.stderr}")


def _struct_of(type_ref: dict[str, Any], structs: dict[str, Any]) -> str | None:
    """The fqn of the struct a property holds (a block), alone or as a list; None for an attribute."""
    candidates = type_ref["union"]["types"] if "union" in type_ref else [type_ref]
    for candidate in candidates:
        if "collection" in candidate:
            candidate = candidate["collection"]["elementtype"]
        if candidate.get("fqn") in structs:
            return candidate["fqn"]
    return None


def distill(jsii_path: Path = JSII) -> dict[str, Any]:
    """{"provider": version, "resource"/"data": {type: struct fqn}, "structs": {fqn: {"arguments":
    {name: required}, "blocks": {name: [required, fqn]}}}} from the assembly."""
    assembly = json.loads(jsii_path.read_text(encoding="utf-8"))
    types = assembly["types"]
    structs = {fqn: t for fqn, t in types.items() if t.get("kind") == "interface" and t.get("datatype")}
    schema: dict[str, Any] = {"package": assembly["version"], "provider": None, "resource": {}, "data": {},
                              "structs": {}}
    for entry in types.values():
        match = _REPRESENTS.match(entry.get("docs", {}).get("summary", "")) if entry.get("kind") == "class" else None
        if not match:
            continue
        [config] = [p for p in entry["initializer"]["parameters"] if p["name"] == "config"]
        kind = "resource" if match["kind"] == "resources" else "data"
        schema[kind][match["type"]] = config["type"]["fqn"]
        schema["provider"] = match["version"]
    for fqn, struct in structs.items():
        arguments, blocks = {}, {}
        for prop in struct.get("properties", []):
            docs = prop.get("docs", {})
            anchor = _ANCHOR.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
            # A property with a long description of its own may carry no link (196 of 26,155 in 16.12.1,
            # `project` among them): its name in camelCase then says it.
            name = anchor["name"] if anchor else _CAMEL.sub("_", prop["name"]).lower()
            required = not prop.get("optional", False)
            nested = _struct_of(prop["type"], structs)
            if nested is None:
                arguments[name] = required
            else:
                blocks[name] = [required, nested]
        schema["structs"][fqn] = {"arguments": arguments, "blocks": blocks}
    return schema


def load() -> dict[str, Any]:
    """The distilled schema, from its cache next to the package when it was made from this `.jsii`."""
    stamp = f"{JSII.stat().st_size}-{int(JSII.stat().st_mtime)}"
    cache = PACKAGE_DIR / "node_modules" / f".google-schema-{stamp}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    schema = distill()
    cache.write_text(json.dumps(schema), encoding="utf-8")
    return schema


def check_body(schema: dict[str, Any], fqn: str, body: Any, where: str) -> list[str]:
    """What in one parsed HCL body (python-hcl2: blocks are lists of dicts) the provider does not know,
    or lacks what it requires; at any depth, `dynamic` blocks by their content."""
    if isinstance(body, list):
        return [problem for item in body for problem in check_body(schema, fqn, item, where)]
    if not isinstance(body, dict):
        return [f"{where}: expected a block, found {body!r}"]
    struct = schema["structs"][fqn]
    problems = []
    present = set(body)
    for entry in body.get("dynamic", []):
        for name, dynamic in entry.items():
            present.add(name)
            if name not in struct["blocks"]:
                problems.append(f"{where}: dynamic \"{name}\" is not a block of this resource")
                continue
            for content in dynamic.get("content", []):
                problems += check_body(schema, struct["blocks"][name][1], content, f"{where}.{name}")
    for key, value in body.items():
        if key in META_ARGUMENTS or key.startswith("__"):
            continue
        if key in struct["arguments"]:
            continue
        if key in struct["blocks"]:
            problems += check_body(schema, struct["blocks"][key][1], value, f"{where}.{key}")
            continue
        problems.append(f"{where}: unknown argument or block {key!r}")
    for name, required in struct["arguments"].items():
        if required and name not in present:
            problems.append(f"{where}: required argument {name!r} missing")
    for name, (required, _) in struct["blocks"].items():
        if required and name not in present:
            problems.append(f"{where}: required block {name!r} missing")
    return problems
