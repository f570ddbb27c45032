"""Fuzzing the HTTP entry points: whatever comes in, the answer is one the contract allows.

The oracle is the contract, not the router: `openapi.yaml` (routes, statuses, media types, schemas)
plus the rules every HTTP function keeps (docs/architecture.md, "HTTP contracts"):
- a path that no documented route of the function matches is `404`; a method its route does not
  document is `405` with `Allow` naming the documented methods;
- a query parameter the operation does not document is `400` `unknown-parameter`;
- otherwise the status is one documented for the operation, with a documented media type and a body
  valid against the schema, or one of the refusals any route may give (`400`, `404`, `413`, `415`);
- every error is RFC 9457 `application/problem+json` with `type`, `title`, `status` (equal to the HTTP
  status) and `detail`.
A path with one trailing slash may be answered as the route without it or with `404`.
"""
from __future__ import annotations

import functools
import json
import re
import uuid
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from tests import tokens
from tests.conftest import make_client
from tests.openapi_contract import assert_conforms, spec

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
GENERIC_REFUSALS = (400, 404, 413, 415)
PROBLEM = "application/problem+json"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Placeholders the test replaces with IDs that exist (so generated requests reach past "not found").
TENANT, DEVICE, RECEIPT, TOKEN, OTHER_TOKEN = "<tenant>", "<device>", "<receipt>", "<token>", "<other-token>"


# -- the contract ---------------------------------------------------------------------------------
@functools.cache
def _templates(function: str) -> dict[str, dict[str, dict]]:
    """Documented path templates of `function` -> {METHOD: operation}."""
    found: dict[str, dict[str, dict]] = {}
    for template, item in spec()["paths"].items():
        for method, operation in item.items():
            if method.upper() in METHODS and function in operation.get("tags", ()):
                found.setdefault(template, {})[method.upper()] = operation
    return found


def _template_for(path: str, function: str) -> str | None:
    """The documented template of `function` matching `path`; literal segments win over parameters."""
    matches = [t for t in _templates(function) if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), path)]
    return min(matches, key=lambda t: t.count("{")) if matches else None


def _media(response) -> str:
    return (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()


def assert_problem(response) -> None:
    assert _media(response) == PROBLEM, f"{response.status_code} as {response.headers.get('Content-Type')!r}"
    body = json.loads(response.data)
    assert isinstance(body, dict), body
    for key in ("type", "title", "detail"):
        assert isinstance(body.get(key), str) and body[key], f"problem without {key}: {body}"
    assert body.get("status") == response.status_code, f"problem status {body.get('status')} != HTTP status"


def assert_within_contract(function: str, method: str, response) -> None:
    """One answer of `function` checked against openapi.yaml and the rules above."""
    path = response.request.path  # as the function saw it, percent-decoded
    status = response.status_code
    if status >= 400:
        assert_problem(response)
    if "\n" in path:  # functions-framework's catch-all `/<path:path>` stops at a decoded newline: no route
        assert status == 404, f"{method} {path!r}: a path with a newline answered {status}"
        return
    if path.endswith("/") and path != "/" and _template_for(path, function) is None:
        if status == 404:
            return
        path = path[:-1]
    template = _template_for(path, function)
    if template is None:
        assert status == 404, f"{method} {path!r}: no documented route, answered {status}"
        return
    operations = _templates(function)[template]
    if method not in operations:
        assert status == 405, f"{method} {template}: undocumented method, answered {status}"
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
        assert allowed - {"HEAD", "OPTIONS"} == set(operations), f"Allow {allowed} for {template}"
        return
    operation = operations[method]
    declared = {p["name"] for p in spec()["paths"][template].get("parameters", []) + operation.get("parameters", [])
                if p["in"] == "query"}
    if set(response.request.args) - declared:
        assert status == 400 and json.loads(response.data)["type"].endswith("/unknown-parameter"), \
            f"{method} {template} with undocumented query parameters answered {status}"
        return
    if status in GENERIC_REFUSALS and str(status) not in operation["responses"]:
        return  # a refusal any route may give; already checked to be problem+json
    assert_conforms(method, path, status, response.headers.get("Content-Type", ""), response.data, function)


# -- generated requests ---------------------------------------------------------------------------
def _uuid_text():
    return st.uuids().map(str)


def segments(*known: str):
    """A path parameter: IDs that exist, fresh and malformed UUIDs, text with escapes, and values that
    hold slashes (so a route's parameter is offered several segments)."""
    single = st.one_of(
        st.sampled_from(known) if known else st.nothing(),
        _uuid_text(), _uuid_text().map(str.upper),
        st.text(alphabet="abcdef0123456789-._~%*:@é/ \n", max_size=40))
    return st.one_of(single, st.lists(single, min_size=2, max_size=3).map("/".join))


def requests_for(function: str, *known: str):
    """(method, path): documented operations with arbitrary parameters, any method on their paths, their
    paths with 1 to 3 more segments, and paths of 3 to 6 segments; sometimes a trailing slash, sometimes
    query parameters."""
    segment = segments(*known)
    templates = _templates(function)
    operations = sorted((method, template) for template, methods in templates.items() for method in methods)
    vocabulary = st.sampled_from(sorted({part for template in spec()["paths"]
                                         for part in template.split("/") if part and "{" not in part}))

    def fill(template: str):
        names = re.findall(r"\{\w+\}", template)
        def filled(values: tuple[str, ...]) -> str:
            it = iter(values)
            return re.sub(r"\{\w+\}", lambda _m: next(it), template)

        return st.tuples(*[segment] * len(names)).map(filled)

    documented = st.sampled_from(operations).flatmap(lambda op: st.tuples(st.just(op[0]), fill(op[1])))
    filled = st.sampled_from(sorted(templates)).flatmap(fill)
    any_method = st.tuples(st.sampled_from(METHODS), filled)
    extended = st.tuples(st.sampled_from(METHODS), st.tuples(filled, st.lists(st.one_of(vocabulary, segment),
                                                                               min_size=1, max_size=3))
                         .map(lambda parts: parts[0].rstrip("/") + "/" + "/".join(parts[1])))
    deep = st.tuples(st.sampled_from(METHODS), st.lists(st.one_of(vocabulary, segment), min_size=3, max_size=6)
                     .map(lambda parts: "/" + "/".join(parts)))
    query = st.dictionaries(
        st.sampled_from(["cursor", "pageSize", "pageToken", "retentionDays", "tenantId", "x"]),
        st.one_of(st.sampled_from(["1", "0", "-1", "1000", "3651"]), segment), max_size=3)
    return st.tuples(st.one_of(documented, documented, any_method, extended, deep), st.booleans(), query).map(
        lambda parts: (parts[0][0], parts[0][1] + ("/" if parts[1] and parts[0][1] != "/" else "")
                       + (f"?{urlencode(parts[2], safe='<>')}" if parts[2] else "")))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20)


def bodies(keys: tuple[str, ...], *known: str):
    """Arbitrary bytes and JSON, objects with the keys the function reads, and small files."""
    values = {"tenantId": segments(*known), "deviceId": segments(*known),
              "name": st.one_of(st.text(max_size=300), json_values),
              "settings": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                  "fields": st.lists(st.sampled_from(["displayName", "mail", "mobilePhone", "x"]), max_size=4),
                  "defaultRegion": st.sampled_from(["DE", "de", "XX", None, ""])}))}
    return st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({}, optional={key: values[key] for key in keys}).map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"a,b\n1,2\n", b"<r><a>1</a></r>", b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>', b""]),
        st.binary(max_size=300))


content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "application/xml",
                                 "text/csv", "text/plain", "image/png", ""])
printable_header = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=100)
authorizations = st.one_of(st.just(f"Bearer {TOKEN}"), st.none(), printable_header, st.sampled_from(
    [f"Bearer {OTHER_TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN} x", "Bearer ", TOKEN]))


def _usable(path: str) -> bool:
    # A path starting with "//" is a network-path reference to the test client (it becomes the host).
    return not path.startswith("//")


# -- the test's known data ------------------------------------------------------------------------
class Known(dict):
    def __repr__(self) -> str:  # keeps tokens out of failure reports
        return f"Known({', '.join(self)})"


@pytest.fixture
def known(emulators, admin) -> Known:
    tenant = str(uuid.uuid4())
    assert admin.post("/tenants", json={"tenantId": tenant, "name": "Fuzz GmbH"}).status_code == 201
    token = tokens.token(emulators, tenant)
    device, revoked = str(uuid.uuid4()), str(uuid.uuid4())
    app = make_client("register_device")
    for device_id in (device, revoked):
        response = app.post("/", json={"deviceId": device_id}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.data
    receipt = admin.delete(f"/tenants/{tenant}/devices/{revoked}").get_json()["requestId"]
    return Known({TENANT: tenant, DEVICE: device, RECEIPT: receipt, TOKEN: token,
                  OTHER_TOKEN: tokens.token(emulators, str(uuid.uuid4()))})


def _fill(text: str, known: dict[str, str]) -> str:
    for placeholder, value in known.items():
        text = text.replace(placeholder, value)
    return text


def send(client, function: str, known: dict[str, str], method: str, path: str, body: bytes, content_type: str,
         headers: dict[str, str | None]):
    # A control character reaches a function only percent-encoded (a request line cannot carry it raw); sent
    # raw, the test client's URL parser would drop it, so "/\n/x" would become the network path "//x" that
    # _usable keeps out.
    path = _fill(path, known).replace("\t", "%09").replace("\n", "%0A").replace("\r", "%0D")
    body = _fill(body.decode("latin-1"), known).encode("latin-1")
    headers = {name: _fill(value, known) for name, value in headers.items() if value is not None}
    response = client.open(path, method=method, data=body, content_type=content_type or None, headers=headers)
    event(f"{method} {response.status_code}")  # the spread shows with --hypothesis-show-statistics
    assert_within_contract(function, method, response)
    return response


# -- the fuzz tests -------------------------------------------------------------------------------
@FUZZ
@given(call=requests_for("manage_tenants", TENANT, DEVICE, RECEIPT),
       body=bodies(("tenantId", "name", "settings"), TENANT), content_type=content_types)
@example(call=("GET", f"/tenants/{TENANT}/devices/{DEVICE}/x"), body=b"", content_type="")
@example(call=("PUT", f"/tenants/{TENANT}"), body=b"{}", content_type="application/json")
@example(call=("GET", "/tenants/%2F/devices"), body=b"", content_type="")
@example(call=("GET", f"/receipts/{RECEIPT}/{TENANT}/x"), body=b"", content_type="")
@example(call=("POST", "/tenants"), body=b'{"tenantId": "0b7e6a8c-3f1d-4c2a-9e5b-7d4f2a1c6e90", "name": "Neu GmbH"}',
         content_type="application/json")
@example(call=("POST", f"/tenants/{TENANT}/files?retentionDays=3"), body=b"a,b\n1,2\n", content_type="text/csv")
def test_manage_tenants_answers_within_the_contract(admin, known, call, body, content_type):
    method, path = call
    assume(_usable(path))
    send(admin, "manage_tenants", known, method, path, body, content_type, {})


@FUZZ
@given(call=requests_for("register_device", DEVICE, TENANT), body=bodies(("deviceId",), DEVICE),
       content_type=content_types, authorization=authorizations)
@example(call=("POST", f"/{DEVICE}/diagnostics/x"), body=b"{}", content_type="application/json",
         authorization=f"Bearer {TOKEN}")
@example(call=("GET", "/"), body=b"", content_type="", authorization=f"Bearer {TOKEN}")
def test_register_device_answers_within_the_contract(known, call, body, content_type, authorization):
    method, path = call
    assume(_usable(path))
    send(make_client("register_device"), "register_device", known, method, path, body, content_type,
         {"Authorization": authorization})


@FUZZ
@given(call=requests_for("relay_contacts", DEVICE), authorization=authorizations,
       device=st.one_of(st.none(), st.just(DEVICE), _uuid_text(), printable_header))
@example(call=("GET", "/a/b/c"), authorization=f"Bearer {TOKEN}", device=DEVICE)
@example(call=("GET", "/"), authorization=f"Bearer {TOKEN}", device=DEVICE)
def test_relay_contacts_answers_within_the_contract(known, call, authorization, device):
    method, path = call
    assume(_usable(path))
    send(make_client("relay_contacts"), "relay_contacts", known, method, path, b"", "",
         {"Authorization": authorization, "X-Device-Id": device})


@pytest.mark.parametrize("target, method, path, status", [
    ("manage_tenants", "GET", "/tenants/%0a", 404),  # functions-framework's own rule does not match a newline
    ("register_device", "POST", "/x%0Ay/diagnostics", 404),
    ("relay_contacts", "GET", "/%0D%0A", 404),
    ("handle_deletion", "GET", "/anything", 405),  # a CloudEvent function's routes take POST only
])
def test_what_the_framework_refuses_is_a_problem_too(emulators, target, method, path, status):
    response = make_client(target).open(path, method=method)
    assert response.status_code == status
    assert_problem(response)
