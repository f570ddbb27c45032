"""State moves: applying this version to a deployment made before the function map renames addresses
instead of destroying and re-creating service accounts, secrets, topics, buckets, functions and grants.
"""

from __future__ import annotations

import re

ADDRESS = re.compile(r'^\$\{([a-z0-9_]+)\.([a-z0-9_]+)(?:\["([^"]+)"\])?\}$')


def split(address: str) -> tuple[str, str, str | None]:
    match = ADDRESS.match(address)
    assert match, f"unexpected address {address!r}"
    return match.group(1), match.group(2), match.group(3)


def instance_keys(tf, functions, rtype: str, name: str) -> set[str]:
    """The for_each keys a resource of the map would have."""
    for_each = tf.resource(f"{rtype}.{name}")["for_each"]
    if isinstance(for_each, dict):
        return set(for_each)
    if for_each == "${local.functions}":
        return set(functions)
    if for_each == "${local.delivery_identities}":
        return {n for n, fn in functions.items() if fn["delivery"] is not None}
    if for_each == "${local.function_secrets}":
        return {f"{n} {key}" for n, fn in functions.items() for key in fn["secrets"]}
    if for_each == "${local.invokers}":
        fixed = {f"{n} {m}" for n, fn in functions.items() if isinstance(fn["invokers"], list) for m in fn["invokers"]}
        return fixed | {f"{n} delivery" for n, fn in functions.items() if fn["delivery"] is not None}
    if (grant := re.search(r"fn\.grants\.([a-z_]+) if", str(for_each))) is not None:
        return {n for n, fn in functions.items() if fn["grants"][grant.group(1)] is not None}
    if (keys := re.fullmatch(r'\$\{toset\(\[(.*)\]\)\}', str(for_each))) is not None:
        return set(re.findall(r'"([^"]+)"', keys.group(1)))
    raise AssertionError(f"{rtype}.{name}: unknown for_each {for_each!r}")


def test_every_move_leads_from_an_old_address_to_an_instance_of_the_map(tf, functions):
    assert tf.moved, "no moved blocks"
    targets = set()
    for move in tf.moved:
        from_type, from_name, from_key = split(move["from"])
        to_type, to_name, to_key = split(move["to"])
        assert from_type == to_type, move
        assert from_key is None, f"{move['from']}: moves come from the one-block-per-function layout"
        assert from_name not in tf.resources_of(from_type), f"{move['from']} is still declared"
        assert to_key in instance_keys(tf, functions, to_type, to_name), f"{move['to']} is no instance of the map"
        assert (to_type, to_name, to_key) not in targets, f"two moves to {move['to']}"
        targets.add((to_type, to_name, to_key))
    # Every function, identity and per-function grant of the old layout is among the targets.
    for name in ("register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention"):
        for rtype, resource in (
            ("google_cloudfunctions2_function", "function"),
            ("google_service_account", "function"),
            ("google_project_iam_member", "firestore"),
        ):
            assert (rtype, resource, name) in targets, f"{rtype}.{name} would be destroyed and re-created"


def test_operator_invoker_grants_are_forgotten_not_destroyed(tf):
    (removed,) = tf.removed
    assert removed["from"] == "${google_cloud_run_v2_service_iam_member.manage_tenants_invokers}"
    assert removed["lifecycle"] == [{"destroy": False}], "destroying them would revoke the operators' access"
