"""Structural checks over the parsed Terraform (python-hcl2): the promises a security or compliance
reviewer reads in terraform/ — EU hosting, one identity per function, least privilege, a dead-letter
policy on deletions, nothing public but the two app-facing functions — checked offline.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

# ARCHITECTURE.md, "Components": the entry points main.py re-exports.
CONTRACT_ENTRY_POINTS = {"register_device", "relay_contacts", "manage_tenants", "handle_deletion", "sweep_retention"}
PUBLIC_ENTRY_POINTS = {"register_device", "relay_contacts"}
CONTRACT_TOPICS = {"deletion-requests", "deletion-requests-dead-letter", "retention-sweep"}
# ARCHITECTURE.md, "Configuration (environment)", minus the emulator hosts that exist only locally.
CONTRACT_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "TECHNICAL_FILES_BUCKET",
    "DELETION_TOPIC",
    "ENTRA_AUTHORITY_HOST",
    "GRAPH_BASE_URL",
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
    "ENTRA_REQUIRED_SCOPE",
    "CURSOR_KEY",
    "RECEIPT_KEY",
    "DEVICE_INACTIVITY_DAYS",
    "DIAGNOSTICS_RETENTION_DAYS",
    "MAX_DEVICES_PER_TENANT",
    "GRAPH_RETRY_DEADLINE_SECONDS",
    "STUCK_DELETION_MINUTES",
    "DELETION_INITIAL_OPS_PER_SECOND",
    "DELETION_MAX_OPS_PER_SECOND",
}
SECRET_ENV = {"ENTRA_CLIENT_SECRET", "CURSOR_KEY", "RECEIPT_KEY"}
SECRETS_PER_FUNCTION = {
    "register_device": {"RECEIPT_KEY"},
    "relay_contacts": {"ENTRA_CLIENT_SECRET", "CURSOR_KEY"},
    "manage_tenants": {"RECEIPT_KEY"},
    "handle_deletion": {"RECEIPT_KEY"},
    # The sweeper writes the pending receipt of each request it publishes (shared/config.py requires it).
    "sweep_retention": {"RECEIPT_KEY"},
}
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PROJECT_IAM_TYPES = ("google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy")
LOCATION_KEYS = {"location", "region", "location_id", "trigger_region", "allowed_persistence_regions"}

FUNCTION = "google_cloudfunctions2_function"
SA_EMAIL_REF = re.compile(r"^\$\{google_service_account\.([a-z0-9_]+)\.email\}$")
SA_MEMBER_REF = re.compile(r"^serviceAccount:\$\{google_service_account\.([a-z0-9_]+)\.email\}$")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def refs(value: Any, rtype: str) -> set[str]:
    """Names of resources of type rtype referenced anywhere in value."""
    return set(re.findall(rf"\b{re.escape(rtype)}\.([a-z0-9_]+)\b", str(value)))


def one_ref(value: Any, rtype: str) -> str:
    found = refs(value, rtype)
    assert len(found) == 1, f"expected one reference to a {rtype} in {value!r}, found {sorted(found)}"
    return next(iter(found))


def functions(tf) -> dict[str, dict[str, Any]]:
    found = tf.resources_of(FUNCTION)
    assert found, f"no {FUNCTION} resource in terraform/"
    return found


def entry_point(hcl, body: dict[str, Any]) -> str:
    value = hcl.block(body, "build_config").get("entry_point")
    assert isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value), (
        f"entry_point must be a literal Python name, got {value!r}"
    )
    return value


def function_by_entry_point(tf, hcl) -> dict[str, str]:
    """entry point -> resource name (asserts uniqueness)."""
    mapping: dict[str, str] = {}
    for name, body in functions(tf).items():
        ep = entry_point(hcl, body)
        assert ep not in mapping, f"entry point {ep} deployed twice: {mapping[ep]} and {name}"
        mapping[ep] = name
    return mapping


def runtime_sa_by_entry_point(tf, hcl) -> dict[str, str]:
    result = {}
    for name, body in functions(tf).items():
        email = hcl.block(body, "service_config").get("service_account_email", "")
        match = SA_EMAIL_REF.match(str(email))
        assert match, f"{name}: service_account_email must reference a google_service_account, got {email!r}"
        result[entry_point(hcl, body)] = match.group(1)
    return result


def member_sa(member: Any) -> str | None:
    match = SA_MEMBER_REF.match(str(member))
    return match.group(1) if match else None


def entry_points_mismatches(main_entry_points: set[str], hcl_entry_points: list[str]) -> list[str]:
    problems = []
    for ep in sorted(main_entry_points):
        count = hcl_entry_points.count(ep)
        if count != 1:
            problems.append(f"main.py entry point {ep} has {count} google_cloudfunctions2_function (expected 1)")
    for ep in sorted(set(hcl_entry_points) - main_entry_points):
        problems.append(f"function with entry_point {ep} has no such entry point in main.py")
    return problems


def run_invoker_grants(tf) -> list[tuple[str, str, dict[str, Any]]]:
    """(grant name, target function resource name, body) for every Cloud Run / Functions invoker grant."""
    grants = []
    for rtype in (
        "google_cloud_run_v2_service_iam_member",
        "google_cloud_run_service_iam_member",
        "google_cloudfunctions2_function_iam_member",
    ):
        for name, body in tf.resources_of(rtype).items():
            target = body.get("name") or body.get("service") or body.get("cloud_function")
            grants.append((f"{rtype}.{name}", one_ref(target, FUNCTION), body))
    return grants


# --------------------------------------------------------------------------------------------------
# layout and versions
# --------------------------------------------------------------------------------------------------


def test_module_is_split_by_concern(terraform_dir: Path) -> None:
    names = {path.name for path in terraform_dir.glob("*.tf")}
    for required in ("versions.tf", "variables.tf", "outputs.tf", "main.tf", "functions.tf", "iam.tf"):
        assert required in names, f"terraform/{required} is missing"
    assert (terraform_dir / "README.md").is_file()
    assert (terraform_dir / "terraform.tfvars.example").is_file()


def test_terraform_and_provider_versions_are_bounded(tf) -> None:
    assert tf.terraform_blocks, "no terraform {} block"
    settings = tf.terraform_blocks[0]
    assert ">=" in settings["required_version"] and "<" in settings["required_version"].replace("<=", "")
    providers = {}
    for entry in settings["required_providers"]:
        providers.update(entry)
    assert "google" in providers
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), name
        assert ">=" in spec["version"] and re.search(r"<\s*\d", spec["version"]), (
            f"provider {name} must have a lower and an upper version bound, got {spec['version']!r}"
        )


# --------------------------------------------------------------------------------------------------
# entry points: main.py <-> functions
# --------------------------------------------------------------------------------------------------


def test_every_main_py_entry_point_has_exactly_one_function_and_vice_versa(tf, hcl, repo_root, parse_entry_points):
    main_py = repo_root / "main.py"
    if not main_py.is_file():
        print(f"SKIP reason: {main_py} does not exist yet")
        pytest.skip(f"{main_py} does not exist yet; the contract set is checked by the next test")
    main_entry_points = parse_entry_points(main_py)
    assert main_entry_points, "main.py exposes no entry point"
    hcl_entry_points = [entry_point(hcl, body) for body in functions(tf).values()]
    assert entry_points_mismatches(main_entry_points, hcl_entry_points) == []


def test_functions_are_exactly_the_architecture_entry_points(tf, hcl):
    hcl_entry_points = [entry_point(hcl, body) for body in functions(tf).values()]
    assert entry_points_mismatches(CONTRACT_ENTRY_POINTS, hcl_entry_points) == []


def test_entry_point_comparison_catches_drift(tmp_path, tf, hcl, repo_root, parse_entry_points):
    """The main.py check on temporary copies: it passes on the real shape and fails on each drift."""
    hcl_entry_points = [entry_point(hcl, body) for body in functions(tf).values()]
    real_main = repo_root / "main.py"
    if real_main.is_file():
        copy = tmp_path / "copy" / "main.py"
        copy.parent.mkdir()
        shutil.copy(real_main, copy)
        assert parse_entry_points(copy) == parse_entry_points(real_main)

    main_py = tmp_path / "main.py"
    main_py.write_text(
        '"""Re-exports the entry points."""\n'
        "from __future__ import annotations\n\n"
        "import functions_framework  # noqa: F401\n\n"
        "from functions.register_device.handler import register_device\n"
        "from functions.relay_contacts.handler import relay_contacts\n"
        "from functions.manage_tenants.handler import manage_tenants\n"
        "from functions.handle_deletion.handler import handle_deletion as handle_deletion\n"
        "from functions.sweep_retention.handler import sweep_retention\n"
        "from shared.logging import _private_helper\n",
        encoding="utf-8",
    )
    names = parse_entry_points(main_py)
    assert names == CONTRACT_ENTRY_POINTS
    assert entry_points_mismatches(names, hcl_entry_points) == []

    # A new entry point in main.py without a function.
    with main_py.open("a", encoding="utf-8") as handle:
        handle.write("\n\ndef export_contacts(request):\n    return ''\n")
    assert entry_points_mismatches(parse_entry_points(main_py), hcl_entry_points) == [
        "main.py entry point export_contacts has 0 google_cloudfunctions2_function (expected 1)"
    ]
    # The same entry point deployed twice.
    assert entry_points_mismatches(names, hcl_entry_points + ["relay_contacts"]) == [
        "main.py entry point relay_contacts has 2 google_cloudfunctions2_function (expected 1)"
    ]
    # A function whose entry point main.py no longer exports.
    assert entry_points_mismatches(names - {"sweep_retention"}, hcl_entry_points) == [
        "function with entry_point sweep_retention has no such entry point in main.py"
    ]
    # __all__, when present, is the list of entry points.
    main_py.write_text(
        "from x import register_device, relay_contacts\n__all__ = ['register_device']\n", encoding="utf-8"
    )
    assert parse_entry_points(main_py) == {"register_device"}


def test_functions_build_python312_from_the_hashed_source_bundle(tf, hcl):
    obj = tf.resources_of("google_storage_bucket_object")
    assert len(obj) == 1, "exactly one source bundle object expected"
    (obj_name, obj_body), = obj.items()
    assert re.search(r"\$\{data\.archive_file\.source\.output_(sha256|sha|md5|base64sha256)\}", obj_body["name"]), (
        "the source object name must contain the archive's hash so a code change redeploys"
    )
    archive = tf.data["archive_file"]["source"]
    excludes = set(archive["excludes"])
    for directory in ("tests", "terraform", "local", "benchmarks", ".git"):
        assert directory in excludes and f"{directory}/**" in excludes, f"{directory} must be left out of the bundle"
    assert ".venv*" in excludes

    for name, body in functions(tf).items():
        build = hcl.block(body, "build_config")
        assert tf.resolve(build["runtime"]) == "python312", name
        storage = hcl.block(hcl.block(build, "source"), "storage_source")
        assert one_ref(storage["object"], "google_storage_bucket_object") == obj_name, name
        assert one_ref(storage["bucket"], "google_storage_bucket") == "function_sources", name


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Doublestar glob (as archive_file's excludes use it) to a regex over '/'-separated relative paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def test_source_bundle_holds_the_runtime_and_nothing_else(tf, repo_root):
    """Replays the archive excludes over the working tree: what would the functions' zip contain?"""
    excludes = [_glob_regex(p) for p in tf.data["archive_file"]["source"]["excludes"]]
    bundled = []
    for directory, dirnames, filenames in os.walk(repo_root):
        relative_dir = Path(directory).relative_to(repo_root).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        dirnames[:] = [d for d in dirnames if not any(rx.match(relative_dir + d) for rx in excludes)]
        bundled += [relative_dir + f for f in filenames if not any(rx.match(relative_dir + f) for rx in excludes)]
    assert "main.py" in bundled or not (repo_root / "main.py").exists()
    assert "requirements.txt" in bundled
    for runtime_dir in ("functions/", "shared/"):
        if (repo_root / runtime_dir).is_dir():
            assert any(name.startswith(runtime_dir) and name.endswith(".py") for name in bundled), runtime_dir
    leaked = [
        name for name in bundled
        if re.match(r"(tests|terraform|local|benchmarks|\.git|\.venv[^/]*)/", name)
        or "__pycache__/" in name or name.endswith(".pyc") or name.split("/")[-1].startswith(".env")
    ]
    assert leaked == [], f"these files would be deployed: {leaked[:20]}"


# --------------------------------------------------------------------------------------------------
# EU hosting
# --------------------------------------------------------------------------------------------------


def test_every_location_is_in_the_eu(tf, hcl, eu):
    checked = 0
    for address, body in tf.all_bodies():
        for path, key, value in hcl.walk_attributes(body):
            if key not in LOCATION_KEYS or isinstance(value, dict):
                continue
            resolved = tf.resolve(value)
            for item in resolved if isinstance(resolved, list) else [resolved]:
                assert isinstance(item, str) and not item.startswith("${"), (
                    f"{address}.{path}.{key} = {value!r}: use a literal or var.region / var.*_location "
                    "so the location can be checked"
                )
                assert eu(item), f"{address}.{path}.{key} = {item!r} is not an EU location"
                checked += 1
    # functions, topics, secrets, scheduler, repository, run IAM, buckets, Firestore, provider
    assert checked >= 20, f"only {checked} locations found; the walk is broken"
    for name, body in functions(tf).items():
        assert "location" in body, f"{name} must set its location explicitly"


@pytest.mark.parametrize("variable", ["region", "firestore_location", "storage_location"])
def test_location_variables_default_to_the_eu_and_refuse_others_without_override(tf, eu, variable):
    spec = tf.variables[variable]
    assert eu(spec["default"]), f"{variable} default {spec['default']!r} is not in the EU"
    assert tf.variables["allow_non_eu_locations"]["default"] is False
    conditions = [v["condition"] for v in spec.get("validation", [])]
    assert conditions, f"{variable} has no validation"
    condition = " ".join(conditions)
    assert "var.allow_non_eu_locations ||" in condition, f"{variable}: the override must be the only way out"
    listed = re.findall(r'"([A-Za-z0-9-]+)"', condition)
    assert listed, f"{variable}: no allowed location listed"
    assert all(eu(item) for item in listed), f"{variable} allows non-EU locations: {[i for i in listed if not eu(i)]}"


def test_pubsub_topics_have_contract_names_and_eu_message_storage(tf, hcl, eu):
    topics = tf.resources_of("google_pubsub_topic")
    assert {body["name"] for body in topics.values()} == CONTRACT_TOPICS
    for name, body in topics.items():
        regions = tf.resolve(hcl.block(body, "message_storage_policy")["allowed_persistence_regions"])
        assert regions and all(eu(region) for region in regions), name


# --------------------------------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------------------------------


def test_every_function_has_its_own_service_account(tf, hcl):
    runtime = runtime_sa_by_entry_point(tf, hcl)
    assert set(runtime) == CONTRACT_ENTRY_POINTS
    accounts = tf.resources_of("google_service_account")
    for ep, sa in runtime.items():
        assert sa in accounts, f"{ep} uses undeclared service account {sa}"
    assert len(set(runtime.values())) == len(runtime), f"functions share a service account: {runtime}"

    other_identities = set()
    for name, body in functions(tf).items():
        build_sa = hcl.block(body, "build_config").get("service_account")
        assert build_sa, f"{name} must build with a dedicated service account, not the default compute one"
        other_identities.add(one_ref(build_sa, "google_service_account"))
        for trigger in body.get("event_trigger", []):
            match = SA_EMAIL_REF.match(str(trigger.get("service_account_email", "")))
            assert match, f"{name}: the event trigger must run as a declared service account"
            other_identities.add(match.group(1))
    assert not other_identities & set(runtime.values()), "build/trigger identities must not be runtime identities"


# --------------------------------------------------------------------------------------------------
# least privilege
# --------------------------------------------------------------------------------------------------


def test_no_primitive_roles_and_no_admin_owner_editor_role_at_project_level(tf, hcl):
    custom_roles = tf.resources_of("google_project_iam_custom_role")
    project_grants = 0
    for rtype in PROJECT_IAM_TYPES:
        for name, body in tf.resources_of(rtype).items():
            role = tf.resolve(body.get("role", ""))
            if "google_project_iam_custom_role." in role:
                custom = custom_roles[one_ref(role, "google_project_iam_custom_role")]
                role = custom["role_id"]
            assert not re.search(r"(admin|owner|editor)$", role, re.IGNORECASE), f"{rtype}.{name}: {role}"
            assert role not in PRIMITIVE_ROLES, f"{rtype}.{name}: primitive role {role}"
            project_grants += 1
    assert project_grants > 0, "no project-level grant found; the check would be vacuous"

    roles_seen = 0
    for address, body in tf.all_bodies():
        for path, key, value in hcl.walk_attributes(body):
            if key == "role":
                roles_seen += 1
                assert tf.resolve(value) not in PRIMITIVE_ROLES, f"{address}: primitive role {value}"
    assert roles_seen >= 10

    for name, body in custom_roles.items():
        for permission in body["permissions"]:
            assert "*" not in permission and not permission.endswith(".setIamPolicy"), f"{name}: {permission}"


def test_project_level_grants_are_additive_and_firestore_ones_are_narrowed_to_the_database(tf, hcl):
    assert not tf.resources_of("google_project_iam_binding"), "authoritative project bindings clobber other members"
    assert not tf.resources_of("google_project_iam_policy"), "authoritative project policy clobbers the project"
    grants = tf.resources_of("google_project_iam_member")
    assert grants
    for name, body in grants.items():
        role = str(body["role"])
        if role.startswith("roles/datastore.") or re.search(r"_firestore\b", role):
            condition = hcl.block(body, "condition")
            expression = str(tf.resolve(condition["expression"]))
            assert "google_firestore_database" in expression or "/databases/" in expression, name
        else:
            assert role == "roles/logging.logWriter", f"unexpected project-level role {role} in {name}"


def test_data_access_follows_each_functions_job(tf, hcl):
    runtime = runtime_sa_by_entry_point(tf, hcl)
    by_sa = {sa: ep for ep, sa in runtime.items()}
    custom = tf.resources_of("google_project_iam_custom_role")

    def permissions(role: str) -> set[str]:
        if "google_project_iam_custom_role." in role:
            return set(custom[one_ref(role, "google_project_iam_custom_role")]["permissions"])
        return set()

    # Technical files: who may create, who may delete; nobody may read.
    creators, deleters = set(), set()
    for name, body in tf.resources_of("google_storage_bucket_iam_member").items():
        if one_ref(body["bucket"], "google_storage_bucket") != "technical_files":
            continue
        role, who = str(body["role"]), by_sa.get(member_sa(body["member"]) or "")
        assert who, f"{name}: only function identities are granted on the technical files bucket"
        assert role not in {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin"}, (
            f"{name}: nobody reads technical files back"
        )
        if role == "roles/storage.objectCreator":
            creators.add(who)
        if "storage.objects.delete" in permissions(role):
            assert "storage.objects.get" not in permissions(role), f"{name}: deleting must not imply reading"
            deleters.add(who)
    assert creators == {"register_device", "manage_tenants"}
    assert deleters == {"handle_deletion", "sweep_retention"}

    # Deletion requests: only the publishers publish.
    publishers = set()
    for name, body in tf.resources_of("google_pubsub_topic_iam_member").items():
        if one_ref(body["topic"], "google_pubsub_topic") == "deletion_requests":
            assert body["role"] == "roles/pubsub.publisher", name
            publishers.add(by_sa[member_sa(body["member"])])
    assert publishers == {"register_device", "manage_tenants", "sweep_retention"}

    # Firestore: the relay reads and updates only; the sweeper only reads.
    firestore_roles = {}
    for name, body in tf.resources_of("google_project_iam_member").items():
        sa = member_sa(body["member"])
        if sa in by_sa:
            firestore_roles[by_sa[sa]] = str(body["role"])
    assert set(firestore_roles) == CONTRACT_ENTRY_POINTS
    relay = permissions(firestore_roles["relay_contacts"])
    assert "datastore.entities.update" in relay and "datastore.entities.get" in relay
    assert not {p for p in relay if p.endswith((".create", ".delete"))}, relay
    sweeper = permissions(firestore_roles["sweep_retention"])
    assert "datastore.entities.create" in sweeper and "datastore.entities.list" in sweeper
    assert not {p for p in sweeper if p.endswith((".update", ".delete"))}, sweeper

    # The relay touches neither Storage nor Pub/Sub.
    relay_sa = runtime["relay_contacts"]
    for rtype in ("google_storage_bucket_iam_member", "google_pubsub_topic_iam_member"):
        for name, body in tf.resources_of(rtype).items():
            assert member_sa(body["member"]) != relay_sa, f"{rtype}.{name} grants the relay more than it needs"


def test_each_function_reads_only_the_secrets_it_needs(tf, hcl):
    secrets = tf.resources_of("google_secret_manager_secret")
    key_to_secret = {}
    declared = {}
    for name, body in functions(tf).items():
        ep = entry_point(hcl, body)
        entries = hcl.block(body, "service_config").get("secret_environment_variables", [])
        declared[ep] = set()
        for entry in entries:
            secret = one_ref(entry["secret"], "google_secret_manager_secret")
            assert secret in secrets
            assert key_to_secret.setdefault(entry["key"], secret) == secret, f"{entry['key']} maps to two secrets"
            assert entry["version"], name
            declared[ep].add(entry["key"])
    assert declared == SECRETS_PER_FUNCTION
    assert set(key_to_secret) == SECRET_ENV

    runtime = runtime_sa_by_entry_point(tf, hcl)
    by_sa = {sa: ep for ep, sa in runtime.items()}
    granted: dict[str, set[str]] = {ep: set() for ep in CONTRACT_ENTRY_POINTS}
    secret_to_key = {secret: key for key, secret in key_to_secret.items()}
    for name, body in tf.resources_of("google_secret_manager_secret_iam_member").items():
        assert body["role"] == "roles/secretmanager.secretAccessor", name
        secret = one_ref(body["secret_id"], "google_secret_manager_secret")
        granted[by_sa[member_sa(body["member"])]].add(secret_to_key[secret])
    assert granted == SECRETS_PER_FUNCTION

    for rtype in PROJECT_IAM_TYPES:
        for name, body in tf.resources_of(rtype).items():
            assert "secretmanager" not in str(body.get("role")), f"{name}: secrets are granted per secret"
    assert not tf.resources_of("google_secret_manager_secret_version"), (
        "secret values are added with gcloud, never through Terraform (they would land in the state)"
    )


def test_function_environment_follows_the_configuration_contract(tf, hcl):
    common = tf.locals["common_env"]
    assert {"GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "DELETION_TOPIC"} <= set(common)
    assert one_ref(common["DELETION_TOPIC"], "google_pubsub_topic") == "deletion_requests"
    assert one_ref(common["TECHNICAL_FILES_BUCKET"], "google_storage_bucket") == "technical_files"
    assert set(tf.locals["entra_env"]) == {"ENTRA_AUTHORITY_HOST", "ENTRA_CLIENT_ID", "ENTRA_REQUIRED_SCOPE"}

    function_env = tf.locals["function_env"]
    for name, body in functions(tf).items():
        ep = entry_point(hcl, body)
        assert hcl.block(body, "service_config")["environment_variables"] == f"${{local.function_env.{ep}}}", name
        expression = function_env[ep]
        assert "local.common_env" in expression, f"{ep} must get the common settings"
        if ep in PUBLIC_ENTRY_POINTS:
            assert "local.entra_env" in expression, f"{ep} validates Entra ID tokens"
        names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", expression))
        assert not names & SECRET_ENV, f"{ep}: secrets must come from Secret Manager, not plain env"
        assert names <= CONTRACT_ENV, f"{ep}: settings outside the contract: {names - CONTRACT_ENV}"
    assert "GRAPH_BASE_URL" in function_env["relay_contacts"]
    assert "DEVICE_INACTIVITY_DAYS" in function_env["sweep_retention"]
    assert "DIAGNOSTICS_RETENTION_DAYS" in function_env["register_device"]


# --------------------------------------------------------------------------------------------------
# deletion path and sweeper
# --------------------------------------------------------------------------------------------------


def test_deletion_subscription_has_dead_letter_policy_and_retry(tf, hcl):
    subscriptions = tf.resources_of("google_pubsub_subscription")
    deletion = {
        name: body
        for name, body in subscriptions.items()
        if one_ref(body["topic"], "google_pubsub_topic") == "deletion_requests"
    }
    assert len(deletion) == 1, f"exactly one subscription must consume deletion-requests, found {sorted(deletion)}"
    (sub_name, sub), = deletion.items()

    dead_letter = hcl.block(sub, "dead_letter_policy")
    assert one_ref(dead_letter["dead_letter_topic"], "google_pubsub_topic") == "deletion_requests_dead_letter"
    attempts = tf.resolve(dead_letter["max_delivery_attempts"])
    assert isinstance(attempts, int) and 5 <= attempts <= 100
    retry = hcl.block(sub, "retry_policy")
    assert retry.get("minimum_backoff") and retry.get("maximum_backoff")

    push = hcl.block(sub, "push_config")
    handle_deletion = function_by_entry_point(tf, hcl)["handle_deletion"]
    assert one_ref(push["push_endpoint"], FUNCTION) == handle_deletion
    oidc = hcl.block(push, "oidc_token")
    push_sa = SA_EMAIL_REF.match(oidc["service_account_email"]).group(1)
    assert push_sa not in runtime_sa_by_entry_point(tf, hcl).values()

    timeout = tf.locals["function_defaults"]["handle_deletion"]["timeout_seconds"]
    assert sub["ack_deadline_seconds"] >= timeout, "the ack deadline must outlast handle_deletion's timeout"

    # Exactly one delivery path: no Eventarc trigger of its own, and nobody else listens on the topic.
    assert "event_trigger" not in functions(tf)[handle_deletion], "handle_deletion would receive every request twice"
    for name, body in functions(tf).items():
        for trigger in body.get("event_trigger", []):
            assert "deletion_requests" not in str(trigger.get("pubsub_topic")), name

    # Pub/Sub's service agent may dead-letter (publish there, ack here).
    agent = "${local.pubsub_service_agent}"
    assert any(
        b["member"] == agent and b["role"] == "roles/pubsub.publisher"
        and one_ref(b["topic"], "google_pubsub_topic") == "deletion_requests_dead_letter"
        for b in tf.resources_of("google_pubsub_topic_iam_member").values()
    ), "the Pub/Sub service agent needs publisher on the dead-letter topic"
    assert any(
        b["member"] == agent and b["role"] == "roles/pubsub.subscriber"
        and one_ref(b["subscription"], "google_pubsub_subscription") == sub_name
        for b in tf.resources_of("google_pubsub_subscription_iam_member").values()
    ), "the Pub/Sub service agent needs subscriber on the deletion subscription"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in tf.locals["pubsub_service_agent"]

    # Dead-lettered requests are kept somewhere an operator can read them.
    assert any(
        one_ref(body["topic"], "google_pubsub_topic") == "deletion_requests_dead_letter"
        for body in subscriptions.values()
    ), "messages on a topic without subscription are lost"


def test_cloudevent_triggers_retry_and_the_sweeper_listens_on_retention_sweep(tf, hcl):
    by_ep = function_by_entry_point(tf, hcl)
    sweep = functions(tf)[by_ep["sweep_retention"]]
    trigger = hcl.block(sweep, "event_trigger")
    assert one_ref(trigger["pubsub_topic"], "google_pubsub_topic") == "retention_sweep"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    triggers = [t for body in functions(tf).values() for t in body.get("event_trigger", [])]
    assert triggers
    for t in triggers:
        assert t.get("retry_policy") == "RETRY_POLICY_RETRY"

    jobs = tf.resources_of("google_cloud_scheduler_job")
    assert len(jobs) == 1
    (job,) = jobs.values()
    assert one_ref(hcl.block(job, "pubsub_target")["topic_name"], "google_pubsub_topic") == "retention_sweep"


def test_firestore_native_in_eur3_with_the_sweeper_indexes(tf, hcl):
    (db,) = tf.resources_of("google_firestore_database").values()
    assert db["type"] == "FIRESTORE_NATIVE"
    assert tf.resolve(db["location_id"]) == "eur3"
    assert db["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_DISABLED"

    indexed = set()
    for name, body in tf.resources_of("google_firestore_field").items():
        scopes = {index["query_scope"] for index in hcl.block(body, "index_config")["indexes"]}
        if "COLLECTION_GROUP" in scopes:
            indexed.add((body["collection"], body["field"]))
    assert {("files", "deleteAfter"), ("devices", "lastSeenAt")} <= indexed


# --------------------------------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------------------------------


def test_buckets_have_uniform_access_and_public_access_prevention(tf, hcl):
    buckets = tf.resources_of("google_storage_bucket")
    assert "technical_files" in buckets and len(buckets) >= 2
    for name, body in buckets.items():
        assert body.get("uniform_bucket_level_access") is True, name
        assert body.get("public_access_prevention") == "enforced", name
        assert body.get("force_destroy") is False, name


def test_technical_files_are_erased_for_real_with_a_lifecycle_safety_net(tf, hcl):
    bucket = tf.resources_of("google_storage_bucket")["technical_files"]
    assert hcl.block(bucket, "soft_delete_policy")["retention_duration_seconds"] == 0
    assert hcl.block(bucket, "versioning")["enabled"] is False
    rules = bucket["lifecycle_rule"]
    assert any(
        "days_since_custom_time" in hcl.block(rule, "condition") and hcl.block(rule, "action")["type"] == "Delete"
        for rule in rules
    )


# --------------------------------------------------------------------------------------------------
# who can call what
# --------------------------------------------------------------------------------------------------


def test_only_register_device_and_relay_contacts_are_publicly_invocable(tf, hcl):
    by_resource = {name: ep for ep, name in function_by_entry_point(tf, hcl).items()}
    public = set()
    for address, body in tf.all_bodies():
        members = body.get("members", []) + [body.get("member", "")]
        if any(m in ("allUsers", "allAuthenticatedUsers") for m in members):
            assert address.startswith("google_cloud_run_v2_service_iam_member."), (
                f"{address} makes something public; only the app-facing functions may be"
            )
            public.add(by_resource[one_ref(body["name"], FUNCTION)])
    assert public == PUBLIC_ENTRY_POINTS

    for name, body in functions(tf).items():
        ingress = hcl.block(body, "service_config").get("ingress_settings")
        if entry_point(hcl, body) in {"handle_deletion", "sweep_retention"}:
            assert ingress == "ALLOW_INTERNAL_ONLY", f"{name} is only called from inside Google Cloud"


def test_invokers_per_function(tf, hcl):
    by_resource = {name: ep for ep, name in function_by_entry_point(tf, hcl).items()}
    invokers: dict[str, set[str]] = {ep: set() for ep in CONTRACT_ENTRY_POINTS}
    for address, target, body in run_invoker_grants(tf):
        assert body["role"] == "roles/run.invoker", address
        invokers[by_resource[target]].add(body["member"])
    assert invokers["register_device"] == {"allUsers"}
    assert invokers["relay_contacts"] == {"allUsers"}
    assert invokers["manage_tenants"] == {"${each.value}"}
    subscription = tf.resources_of("google_pubsub_subscription")["handle_deletion"]
    push_sa = hcl.block(hcl.block(subscription, "push_config"), "oidc_token")["service_account_email"]
    assert invokers["handle_deletion"] == {f"serviceAccount:{push_sa}"}
    sweep = functions(tf)[function_by_entry_point(tf, hcl)["sweep_retention"]]
    trigger_sa = hcl.block(sweep, "event_trigger")["service_account_email"]
    assert invokers["sweep_retention"] == {f"serviceAccount:{trigger_sa}"}
    for rtype in ("google_cloud_run_v2_service_iam_binding", "google_cloud_run_v2_service_iam_policy"):
        assert not tf.resources_of(rtype), f"{rtype} is authoritative; use _iam_member"


def test_manage_tenants_invokers_are_a_variable_list_of_principals(tf, hcl):
    manage = function_by_entry_point(tf, hcl)["manage_tenants"]
    grants = [(address, body) for address, target, body in run_invoker_grants(tf) if target == manage]
    assert grants, "manage_tenants has no invoker grant"
    variables = set()
    for address, body in grants:
        match = re.fullmatch(r"\$\{toset\(var\.([a-z0-9_]+)\)\}", str(body.get("for_each", "")))
        assert match, f"{address}: invokers must come from a variable list"
        assert body["member"] == "${each.value}", address
        variables.add(match.group(1))
    (variable,) = variables
    spec = tf.variables[variable]
    assert spec["type"] == "${list(string)}"
    assert spec["default"] == []
    assert spec.get("description")
    condition = " ".join(v["condition"] for v in spec["validation"])
    assert "(user|group|serviceAccount):" in condition, "only named principals may be listed"


# --------------------------------------------------------------------------------------------------
# inputs, outputs, documentation
# --------------------------------------------------------------------------------------------------


def test_variables_are_typed_and_described(tf):
    assert len(tf.variables) >= 10
    for name, spec in tf.variables.items():
        assert spec.get("type"), f"variable {name} has no type"
        assert spec.get("description"), f"variable {name} has no description"
    for name, spec in tf.variables.items():
        if re.search(r"secret|password|token|_key$", name):
            assert spec.get("default") is None, f"variable {name} must not carry a secret default"


def test_outputs_cover_urls_topics_and_bucket(tf):
    for required in ("function_urls", "topics", "technical_files_bucket"):
        assert required in tf.outputs, f"output {required} is missing"
    for name, spec in tf.outputs.items():
        assert spec.get("description"), f"output {name} has no description"


def test_required_apis_are_enabled(tf):
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.locals["required_apis"]))
    for api in (
        "cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc", "pubsub",
        "firestore", "secretmanager", "cloudscheduler", "storage", "iam",
    ):
        assert f"{api}.googleapis.com" in apis, api
    assert "google_project_service" in tf.resources


def test_readme_and_tfvars_example_document_every_input_output_and_identity(tf, terraform_dir):
    readme = (terraform_dir / "README.md").read_text(encoding="utf-8")
    for name in tf.variables:
        assert f"`{name}`" in readme, f"README does not document input {name}"
    for name in tf.outputs:
        assert f"`{name}`" in readme, f"README does not document output {name}"
    for name, body in tf.resources_of("google_service_account").items():
        assert body["account_id"] in readme, f"README does not explain service account {body['account_id']}"
    for phrase in ("terraform init", "terraform apply", "terraform.tfvars.example", "gcloud secrets versions add"):
        assert phrase in readme, phrase

    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    example = hcl2.loads((terraform_dir / "terraform.tfvars.example").read_text(encoding="utf-8"),
                         serialization_options=options)
    assert set(example) <= set(tf.variables), f"unknown inputs in the example: {set(example) - set(tf.variables)}"
    required = {name for name, spec in tf.variables.items() if "default" not in spec}
    assert required <= set(example), f"required inputs missing from the example: {required - set(example)}"
