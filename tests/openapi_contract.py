"""Checks real responses against openapi.yaml (status documented, body valid against its schema)."""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@functools.cache
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def _validator(schema: dict) -> Draft202012Validator:
    registry = Registry().with_resource("urn:spec", Resource(contents=spec(), specification=DRAFT202012))
    rooted = json.loads(json.dumps(schema).replace('"#/components', '"urn:spec#/components'))
    return Draft202012Validator(rooted, registry=registry, format_checker=FormatChecker())


def _template_for(path: str, tag: str) -> str:
    """The most specific template with an operation of `tag` matching `path` (literal segments win)."""
    matches = [t for t, item in spec()["paths"].items()
               if any(tag in operation.get("tags", ()) for operation in item.values() if isinstance(operation, dict))
               and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), path.split("?", 1)[0])]
    if not matches:
        raise AssertionError(f"path {path} is not in openapi.yaml for {tag}")
    return min(matches, key=lambda t: t.count("{"))


def assert_conforms(method: str, path: str, status: int, content_type: str, body: bytes, tag: str) -> None:
    template = _template_for(path, tag)
    operation = spec()["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in openapi.yaml"
    assert tag in operation["tags"], f"{method} {template} is documented for {operation['tags']}, not {tag}"
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = spec()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    media = content_type.split(";", 1)[0].strip()
    content = response.get("content", {})
    documented = media if media in content else f"{media.split('/', 1)[0]}/*"  # e.g. image/* for any image
    assert documented in content, f"{method} {template} {status}: {media} not documented ({list(content)})"
    schema = content[documented]["schema"]
    if schema.get("format") == "binary":  # e.g. image/jpeg: documented as bytes, nothing to decode
        assert body, f"{method} {template} {status}: empty {media} body"
        return
    if media == "application/x-ndjson":
        documents = [json.loads(line) for line in body.splitlines() if line.strip()]
    else:
        documents = [json.loads(body)]
    validator = _validator(schema)
    for document in documents:
        errors = sorted(validator.iter_errors(document), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message}"
