"""Identities and least privilege, per entry of the function map: one service account per function, no
primitive or admin role, each function's data access as its job needs, and who may invoke what.
"""

from __future__ import annotations

import re

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PROJECT_IAM_TYPES = ("google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy")
RUN_INVOKER_TYPES = (
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_service_iam_member",
    "google_cloudfunctions2_function_iam_member",
)
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
RUNTIME = "serviceAccount:${google_service_account.function[each.key].email}"


def account_id(name: str) -> str:
    """The runtime account_id serviceaccounts.tf derives from a map key (checked against its template below)."""
    return "fn-" + name.replace("_", "-")


def role_permissions(tf, hcl, role: str) -> set[str]:
    """Permissions of a custom role named by its key in local.custom_roles; empty for a predefined role."""
    custom = tf.locals["custom_roles"]
    if role not in custom:
        assert role.startswith("roles/"), f"{role!r} is neither a predefined role nor a key of local.custom_roles"
        return set()
    resource = hcl.one_ref(custom[role], "google_project_iam_custom_role")
    return set(tf.resources_of("google_project_iam_custom_role")[resource]["permissions"])


def role_id(tf, hcl, role: str) -> str:
    custom = tf.locals["custom_roles"]
    if role in custom:
        resource = hcl.one_ref(custom[role], "google_project_iam_custom_role")
        return tf.resources_of("google_project_iam_custom_role")[resource]["role_id"]
    return role


# --------------------------------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------------------------------


def test_every_function_has_its_own_service_account(tf, hcl, functions):
    runtime = tf.resource("google_service_account.function")
    assert runtime["for_each"] == "${local.functions}", "one runtime identity per entry of the map"
    assert runtime["account_id"] == 'fn-${replace(each.key, "_", "-")}'
    ids = {name: account_id(name) for name in functions}
    assert len(set(ids.values())) == len(ids), f"two functions would share a service account: {ids}"
    for name, value in ids.items():
        assert ACCOUNT_ID.match(value), f"{name}: {value} is not a valid service account ID (6-30 characters)"
    service = hcl.block(tf.resource(f"{hcl.FUNCTION}.function"), "service_config")
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"


def test_build_and_delivery_identities_are_not_runtime_identities(tf, hcl, functions, contract):
    accounts = tf.resources_of("google_service_account")
    assert set(accounts) == {"function", "delivery", "build"}
    build_id = accounts["build"]["account_id"]
    delivery = tf.resource("google_service_account.delivery")
    assert delivery["for_each"] == "${local.delivery_identities}"
    assert delivery["account_id"] == "${each.value.account_id}"
    assert tf.locals["delivery_identities"] == (
        "${{for name, fn in local.function_config : name => fn.delivery if fn.delivery != null}}"
    )
    delivered = {name: fn["delivery"]["account_id"] for name, fn in functions.items() if fn["delivery"] is not None}
    assert set(delivered) == contract.internal, "event functions, and only they, have a delivery identity"
    runtime_ids = {account_id(name) for name in functions}
    others = [build_id, *delivered.values()]
    assert len(set(others)) == len(others)
    assert not set(others) & runtime_ids, "build/delivery identities must not be runtime identities"
    assert all(ACCOUNT_ID.match(value) for value in others), others


# --------------------------------------------------------------------------------------------------
# least privilege
# --------------------------------------------------------------------------------------------------


def test_no_primitive_roles_and_no_admin_owner_editor_role_at_project_level(tf, hcl, functions):
    grants = tf.resources_of("google_project_iam_member")
    assert set(grants) == {"firestore", "build_log_writer"}
    firestore = grants["firestore"]
    assert firestore["for_each"] == "${local.functions}"
    assert firestore["member"] == RUNTIME
    assert firestore["role"] == (
        "${lookup(local.custom_roles, each.value.grants.firestore, each.value.grants.firestore)}")
    roles = [role_id(tf, hcl, fn["grants"]["firestore"]) for fn in functions.values()]
    roles.append(grants["build_log_writer"]["role"])
    for role in roles:
        assert not re.search(r"(admin|owner|editor)$", role, re.IGNORECASE), role
        assert role not in PRIMITIVE_ROLES, role

    roles_seen = 0
    for address, body in tf.all_bodies():
        for _, key, value in hcl.walk_attributes(body):
            if key == "role":
                roles_seen += 1
                assert tf.resolve(value) not in PRIMITIVE_ROLES, f"{address}: primitive role {value}"
    assert roles_seen >= 8, "the walk over roles found too few; it is broken"

    for name, body in tf.resources_of("google_project_iam_custom_role").items():
        for permission in body["permissions"]:
            assert "*" not in permission and not permission.endswith(".setIamPolicy"), f"{name}: {permission}"


def test_project_level_grants_are_additive_and_firestore_ones_are_narrowed_to_the_database(tf, hcl):
    for rtype in PROJECT_IAM_TYPES[1:]:
        assert not tf.resources_of(rtype), f"{rtype} is authoritative and clobbers other members"
    firestore = tf.resource("google_project_iam_member.firestore")
    expression = str(tf.resolve(hcl.block(firestore, "condition")["expression"]))
    assert "google_firestore_database" in expression and "/databases/" in expression
    assert tf.resource("google_project_iam_member.build_log_writer")["role"] == "roles/logging.logWriter"
    for body in tf.resources_of("google_project_iam_member").values():
        assert "secretmanager" not in str(body["role"]), "secrets are granted per secret"


def test_grants_of_the_map_are_wired_to_each_functions_identity(tf):
    bucket = tf.resource("google_storage_bucket_iam_member.technical_files")
    assert bucket["for_each"] == (
        "${{for name, fn in local.function_config : "
        "name => fn.grants.technical_files if fn.grants.technical_files != null}}"
    )
    assert bucket["bucket"] == '${google_storage_bucket.bucket["technical_files"].name}'
    publisher = tf.resource("google_pubsub_topic_iam_member.deletion_publisher")
    assert publisher["for_each"] == (
        "${{for name, fn in local.function_config : "
        "name => fn.grants.deletion_requests if fn.grants.deletion_requests != null}}"
    )
    assert publisher["topic"] == '${google_pubsub_topic.topic["deletion_requests"].name}'
    for body in (bucket, publisher):
        assert body["role"] == "${lookup(local.custom_roles, each.value, each.value)}"
        assert body["member"] == RUNTIME


def test_data_access_follows_each_functions_job(tf, hcl, functions):
    def grant(name: str, resource: str) -> str | None:
        return functions[name]["grants"].get(resource)

    # Technical files: who may create, who may delete; nobody may read.
    creators, deleters = set(), set()
    for name in functions:
        role = grant(name, "technical_files")
        if role is None:
            continue
        assert role not in {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin"}, (
            f"{name}: nobody reads technical files back"
        )
        permissions = role_permissions(tf, hcl, role)
        if role == "roles/storage.objectCreator":
            creators.add(name)
        elif "storage.objects.delete" in permissions:
            assert "storage.objects.get" not in permissions, f"{name}: deleting must not imply reading"
            deleters.add(name)
        else:
            raise AssertionError(f"{name}: unexpected role {role} on the technical files bucket")
    assert creators == {"register_device", "manage_tenants"}
    assert deleters == {"handle_deletion", "sweep_retention"}

    # Deletion requests: only the publishers publish.
    publishers = {name for name in functions if grant(name, "deletion_requests") is not None}
    assert publishers == {"register_device", "manage_tenants", "sweep_retention", "tenant_portal", "handle_deletion"}
    assert {grant(name, "deletion_requests") for name in publishers} == {"roles/pubsub.publisher"}

    # Firestore: the relay reads and updates, and creates/deletes nothing but its sync leases (code:
    # shared/store/leases.py, the only create/delete in its wiring); the sweeper reads and creates only.
    relay = role_permissions(tf, hcl, grant("relay_contacts", "firestore"))
    assert "datastore.entities.update" in relay and "datastore.entities.get" in relay
    assert {p for p in relay if p.endswith((".create", ".delete"))} == {"datastore.entities.create",
                                                                          "datastore.entities.delete"}, relay
    assert not {p for p in relay if p.startswith("datastore.") and not p.startswith(
        ("datastore.entities.", "datastore.databases.get"))}, relay
    sweeper = role_permissions(tf, hcl, grant("sweep_retention", "firestore"))
    assert "datastore.entities.create" in sweeper and "datastore.entities.list" in sweeper
    assert not {p for p in sweeper if p.endswith((".update", ".delete"))}, sweeper
    # The portal reads, creates receipts and updates its tenant; only handle_deletion deletes.
    portal = role_permissions(tf, hcl, grant("tenant_portal", "firestore"))
    assert {"datastore.entities.get", "datastore.entities.create", "datastore.entities.update"} <= portal
    assert not {p for p in portal if p.endswith(".delete")}, portal
    assert grant("tenant_portal", "technical_files") is None, "the portal never touches technical files"
    for name in ("register_device", "manage_tenants", "handle_deletion"):
        assert grant(name, "firestore") == "roles/datastore.user", name

    # The relay touches neither Storage nor Pub/Sub.
    assert grant("relay_contacts", "technical_files") is None and grant("relay_contacts", "deletion_requests") is None

    # Nothing else is granted on the technical files bucket or the deletion topic.
    for rtype, target in (
        ("google_storage_bucket_iam_member", '${google_storage_bucket.bucket["technical_files"].name}'),
        ("google_pubsub_topic_iam_member", '${google_pubsub_topic.topic["deletion_requests"].name}'),
    ):
        others = [name for name, body in tf.resources_of(rtype).items()
                  if target in (body.get("bucket"), body.get("topic"))]
        assert len(others) == 1, f"{rtype}: grants outside the map on {target}: {others}"


# --------------------------------------------------------------------------------------------------
# who can call what
# --------------------------------------------------------------------------------------------------


def test_invokers_come_from_the_map_and_delivery_identities(tf):
    grants = {rtype: tf.resources_of(rtype) for rtype in RUN_INVOKER_TYPES}
    assert set(grants["google_cloud_run_v2_service_iam_member"]) == {"invoker"}
    assert not grants["google_cloud_run_service_iam_member"]
    assert not grants["google_cloudfunctions2_function_iam_member"]
    invoker = tf.resource("google_cloud_run_v2_service_iam_member.invoker")
    assert invoker["for_each"] == "${local.invokers}"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "${each.value.member}"
    assert invoker["name"] == (
        "${google_cloudfunctions2_function.function[each.value.function].service_config[0].service}")
    invokers = tf.locals["invokers"]
    assert 'for member in fn.invokers : "${name} ${member}" => {function = name, member = member}' in invokers
    assert 'for name in keys(local.delivery_identities) : "${name} delivery"' in invokers
    assert 'member = "serviceAccount:${google_service_account.delivery[name].email}"' in invokers
    for rtype in ("google_cloud_run_v2_service_iam_binding", "google_cloud_run_v2_service_iam_policy"):
        assert not tf.resources_of(rtype), f"{rtype} is authoritative; use _iam_member"


def test_invokers_per_function(functions, contract):
    for name, fn in functions.items():
        if name in contract.public:
            assert fn["invokers"] == ["allUsers"], name
        elif name == "manage_tenants":
            assert fn["invokers"] == "${var.tenant_admin_invokers}", "operators only: the listed principals"
        else:
            assert fn["invokers"] == [], f"{name} is invoked by its delivery identity only"
            assert fn["delivery"] is not None, name


def test_only_register_device_and_relay_contacts_are_publicly_invocable(tf, functions, contract):
    public = {name for name, fn in functions.items() if {"allUsers", "allAuthenticatedUsers"} & set(fn["invokers"])}
    assert public == contract.public
    for address, body in tf.all_bodies():
        members = [*body.get("members", []), body.get("member", "")]
        if any(m in ("allUsers", "allAuthenticatedUsers") for m in members):
            raise AssertionError(f"{address} makes something public outside the function map")


def test_manage_tenants_invokers_are_a_variable_list_of_named_principals(tf):
    spec = tf.variables["tenant_admin_invokers"]
    assert spec["type"] == "${list(string)}"
    assert spec["default"] == []
    assert spec.get("description")
    condition = " ".join(v["condition"] for v in spec["validation"])
    assert "(user|group|serviceAccount):" in condition, "only named principals may be listed"


def test_pubsub_signs_pushes_only_as_the_delivery_identities(tf):
    creators = tf.resources_of("google_service_account_iam_member")
    assert set(creators) == {"delivery_token_creator"}
    creator = creators["delivery_token_creator"]
    assert creator["for_each"] == "${local.delivery_identities}"
    assert creator["service_account_id"] == "${google_service_account.delivery[each.key].name}"
    assert creator["role"] == "roles/iam.serviceAccountTokenCreator"
    assert creator["member"] == "${local.pubsub_service_agent}"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in tf.locals["pubsub_service_agent"]
