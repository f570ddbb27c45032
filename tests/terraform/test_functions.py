"""The function map (terraform/functions.tf) and the Cloud Functions built from it: one function per
entry point of main.py, each from the hashed source bundle, with its own settings, scaling and trigger.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# docs/architecture.md, "Configuration", minus the emulator hosts that exist only locally.
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
    "DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE",
    "DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES",
    "DIAGNOSTICS_PER_DEVICE_PER_DAY",
    "GRAPH_RETRY_DEADLINE_SECONDS",
    "STUCK_DELETION_MINUTES",
    "DELETION_INITIAL_OPS_PER_SECOND",
    "DELETION_MAX_OPS_PER_SECOND",
    "PORTAL_BASE_URL",
    "PORTAL_SESSION_KEY",
    "DELETION_ATTEMPT_SECONDS",
    "RELAY_FULL_SYNCS_PER_TENANT",
    "AUDIT_RETENTION_DAYS",
}
SECRET_ENV = {"ENTRA_CLIENT_SECRET", "CURSOR_KEY", "RECEIPT_KEY", "PORTAL_SESSION_KEY"}
COMMON_ENV = {"GOOGLE_CLOUD_PROJECT", "TECHNICAL_FILES_BUCKET", "DELETION_TOPIC"}
ENTRA_ENV = {"ENTRA_AUTHORITY_HOST", "ENTRA_CLIENT_ID", "ENTRA_REQUIRED_SCOPE"}
# Settings each function reads beyond the common ones (shared/config.py), and the variable behind each.
EXTRA_ENV = {
    "register_device": {"DIAGNOSTICS_RETENTION_DAYS": "diagnostics_retention_days",
                        "MAX_DEVICES_PER_TENANT": "max_devices_per_tenant",
                        "DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE": "device_registrations_per_tenant_per_minute",
                        "DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES": "device_registrations_per_user_per_10_minutes",
                        "DIAGNOSTICS_PER_DEVICE_PER_DAY": "diagnostics_per_device_per_day"},
    "relay_contacts": {"GRAPH_BASE_URL": "graph_base_url",
                       "GRAPH_RETRY_DEADLINE_SECONDS": "graph_retry_deadline_seconds",
                       "RELAY_FULL_SYNCS_PER_TENANT": "relay_full_syncs_per_tenant"},
    "manage_tenants": {"AUDIT_RETENTION_DAYS": "audit_retention_days"},
    "handle_deletion": {
        "DELETION_INITIAL_OPS_PER_SECOND": "deletion_initial_ops_per_second",
        "DELETION_MAX_OPS_PER_SECOND": "deletion_max_ops_per_second",
        "DELETION_ATTEMPT_SECONDS": "deletion_attempt_seconds",
    },
    "sweep_retention": {"DEVICE_INACTIVITY_DAYS": "device_inactivity_days",
                        "STUCK_DELETION_MINUTES": "stuck_deletion_minutes"},
    "tenant_portal": {"PORTAL_BASE_URL": "portal_base_url", "AUDIT_RETENTION_DAYS": "audit_retention_days"},
}
ENTRY_ATTRIBUTES = {"description", "account_description", "ingress", "grants", "scaling"}  # required in every entry
SCALING = {"max_instance_count", "min_instance_count", "available_memory", "available_cpu",
           "max_instance_request_concurrency", "timeout_seconds"}


# --------------------------------------------------------------------------------------------------
# the map <-> main.py <-> functions/<entry point>/
# --------------------------------------------------------------------------------------------------


def test_the_map_holds_exactly_the_entry_points_main_py_exports(functions, main_exports, contract):
    assert len(main_exports) == len(set(main_exports)), f"main.py exports a name twice: {main_exports}"
    assert set(functions) == set(main_exports), (
        f"only in the Terraform map: {sorted(set(functions) - set(main_exports))}; "
        f"only in main.py __all__: {sorted(set(main_exports) - set(functions))}"
    )
    assert set(functions) == contract.entry_points


def test_every_entry_point_is_the_handler_of_its_own_folder(functions, main_imports, repo_root):
    for name in functions:
        folder = repo_root / "functions" / name
        assert (folder / "handler.py").is_file(), f"functions/{name}/handler.py is missing"
        assert (folder / "__init__.py").is_file(), f"functions/{name}/ is not a package"
        assert main_imports.get(name) == f"functions.{name}.handler", (
            f"main.py must re-export {name} from functions.{name}.handler, not {main_imports.get(name)!r}"
        )


def test_every_entry_sets_the_required_attributes_and_only_known_ones(tf, functions):
    known = ENTRY_ATTRIBUTES | set(tf.locals["function_defaults"])
    for name, spec in tf.locals["functions"].items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{name} is not a Python entry point name"
        assert set(spec) >= ENTRY_ATTRIBUTES, f"{name} misses {sorted(ENTRY_ATTRIBUTES - set(spec))}"
        assert set(spec) <= known, f"{name} sets unknown attributes {sorted(set(spec) - known)}"
        assert set(spec["grants"]) <= {"firestore", "technical_files", "deletion_requests"}, name
        assert "firestore" in spec["grants"], f"{name} must state its Firestore role"
    for name, fn in functions.items():
        assert set(fn["scaling"]) == SCALING, f"{name} scaling: {fn['scaling']}"
        assert fn["description"] and fn["account_description"].startswith(f"Runtime identity of {name}:"), name


# --------------------------------------------------------------------------------------------------
# the function resource
# --------------------------------------------------------------------------------------------------


def test_one_function_resource_deploys_every_entry_of_the_map(tf, hcl):
    functions = tf.resources_of(hcl.FUNCTION)
    assert list(functions) == ["function"], f"functions must come from the map, found {sorted(functions)}"
    body = functions["function"]
    assert body["for_each"] == "${local.functions}"
    assert body["name"] == '${replace(each.key, "_", "-")}'
    assert body["description"] == "${each.value.description}"
    assert body["location"] == "${var.region}", "the function must set its location explicitly"
    build = hcl.block(body, "build_config")
    assert build["entry_point"] == "${each.key}", "the map key is the entry point"
    service = hcl.block(body, "service_config")
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"
    assert service["all_traffic_on_latest_revision"] is True
    for setting in sorted(SCALING):
        assert service[setting] == f"${{local.function_config[each.key].scaling.{setting}}}", setting
    # Straight from the entry (ingress has no default), so checkov sees each function's ingress.
    assert service["ingress_settings"] == "${each.value.ingress}"


def test_function_config_completes_each_entry_with_defaults_and_overrides(tf):
    config = tf.locals["function_config"]
    assert "local.functions" in config and "merge(local.function_defaults, spec" in config
    assert "merge(local.function_defaults.grants, spec.grants)" in config
    assert "var.function_overrides[name][key]" in config, "scaling must honour var.function_overrides"


def test_functions_build_python312_from_the_hashed_source_bundle(tf, hcl):
    obj = tf.resources_of("google_storage_bucket_object")
    assert len(obj) == 1, "exactly one source bundle object expected"
    ((obj_name, obj_body),) = obj.items()
    assert re.search(r"\$\{data\.archive_file\.source\.output_(sha256|sha|md5|base64sha256)\}", obj_body["name"]), (
        "the source object name must contain the archive's hash so a code change redeploys"
    )
    assert obj_body["bucket"] == '${google_storage_bucket.bucket["function_sources"].name}'
    archive = tf.data["archive_file"]["source"]
    excludes = set(archive["excludes"])
    for directory in ("tests", "terraform", "local", "benchmarks", ".git"):
        assert directory in excludes and f"{directory}/**" in excludes, f"{directory} must be left out of the bundle"
    assert ".venv*" in excludes

    build = hcl.block(tf.resource(f"{hcl.FUNCTION}.function"), "build_config")
    assert tf.resolve(build["runtime"]) == "python312"
    storage = hcl.block(hcl.block(build, "source"), "storage_source")
    assert one_object(storage["object"], hcl) == obj_name
    assert storage["bucket"] == '${google_storage_bucket.bucket["function_sources"].name}'
    assert build["service_account"] == "${google_service_account.build.id}", "never the default compute account"


def one_object(value, hcl) -> str:
    return hcl.one_ref(value, "google_storage_bucket_object")


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


def test_source_bundle_holds_the_runtime_and_nothing_else(tf, functions, repo_root):
    """Replays the archive excludes over the working tree: what would the functions' zip contain?"""
    excludes = [_glob_regex(p) for p in tf.data["archive_file"]["source"]["excludes"]]
    bundled = []
    for directory, dirnames, filenames in os.walk(repo_root):
        relative_dir = Path(directory).relative_to(repo_root).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        dirnames[:] = [d for d in dirnames if not any(rx.match(relative_dir + d) for rx in excludes)]
        bundled += [relative_dir + f for f in filenames if not any(rx.match(relative_dir + f) for rx in excludes)]
    assert "main.py" in bundled
    assert "requirements.txt" in bundled
    for name in functions:
        assert f"functions/{name}/handler.py" in bundled, f"{name} would be deployed without its handler"
    assert any(name.startswith("shared/") and name.endswith(".py") for name in bundled)
    leaked = [
        name for name in bundled
        if re.match(r"(tests|terraform|local|benchmarks|\.git|\.venv[^/]*)/", name)
        or "__pycache__/" in name or name.endswith(".pyc") or name.split("/")[-1].startswith(".env")
    ]
    assert leaked == [], f"these files would be deployed: {leaked[:20]}"


# --------------------------------------------------------------------------------------------------
# settings, scaling, ingress, triggers
# --------------------------------------------------------------------------------------------------


def test_function_environment_follows_the_configuration_contract(tf, hcl, functions, contract):
    common = tf.locals["common_env"]
    assert set(common) == COMMON_ENV
    assert common["DELETION_TOPIC"] == '${google_pubsub_topic.topic["deletion_requests"].name}'
    assert common["TECHNICAL_FILES_BUCKET"] == '${google_storage_bucket.bucket["technical_files"].name}'
    assert set(tf.locals["entra_env"]) == ENTRA_ENV

    service = hcl.block(tf.resource(f"{hcl.FUNCTION}.function"), "service_config")
    assert service["environment_variables"] == (
        "${merge(local.common_env, {for key, value in local.entra_env : key => value "
        "if local.function_config[each.key].entra}, local.function_config[each.key].env, "
        "{THREADS = tostring(local.function_config[each.key].scaling.max_instance_request_concurrency)})}"
    )
    assert set(functions) == set(EXTRA_ENV)
    for name, fn in functions.items():
        env = fn["env"]
        assert not set(env) & SECRET_ENV, f"{name}: secrets must come from Secret Manager, not plain env"
        assert not set(env) & (COMMON_ENV | ENTRA_ENV), f"{name}: common and Entra settings come from their locals"
        assert set(env) | COMMON_ENV | (ENTRA_ENV if fn["entra"] else set()) <= CONTRACT_ENV, name
        assert set(env) == set(EXTRA_ENV[name]), f"{name} gets {sorted(env)}"
        for key, variable in EXTRA_ENV[name].items():
            assert re.fullmatch(rf"\$\{{(tostring\()?var\.{variable}\)?\}}", env[key]), f"{name}.{key} = {env[key]!r}"
        assert fn["entra"] is (name in contract.public), f"{name}: Entra settings only where tokens are validated"


def test_scaling_defaults_per_function(functions):
    # docs/capacity.md and README "Function defaults": the figures operators plan with.
    assert {name: fn["scaling"] for name, fn in functions.items()} == {
        "register_device": {"max_instance_count": 20, "min_instance_count": 0, "available_memory": "512Mi",
                            "available_cpu": "1", "max_instance_request_concurrency": 40, "timeout_seconds": 60},
        "relay_contacts": {"max_instance_count": 100, "min_instance_count": 0, "available_memory": "512Mi",
                           "available_cpu": "1", "max_instance_request_concurrency": 80, "timeout_seconds": 3600},
        "manage_tenants": {"max_instance_count": 5, "min_instance_count": 0, "available_memory": "512Mi",
                           "available_cpu": "1", "max_instance_request_concurrency": 10, "timeout_seconds": 120},
        "handle_deletion": {"max_instance_count": 20, "min_instance_count": 0, "available_memory": "512Mi",
                            "available_cpu": "1", "max_instance_request_concurrency": 4, "timeout_seconds": 540},
        "sweep_retention": {"max_instance_count": 1, "min_instance_count": 0, "available_memory": "512Mi",
                            "available_cpu": "1", "max_instance_request_concurrency": 1, "timeout_seconds": 540},
        "tenant_portal": {"max_instance_count": 5, "min_instance_count": 0, "available_memory": "512Mi",
                          "available_cpu": "1", "max_instance_request_concurrency": 20, "timeout_seconds": 60},
    }


def test_request_concurrency_is_served_by_as_many_threads_and_fits_the_instance(functions):
    """Cloud Run allows more than one request per instance only with at least 1 vCPU; functions-framework's
    gunicorn serves THREADS requests at once (the service sets THREADS = concurrency); the deletion attempt
    budget leaves room under the timeout; the relay's sync leases outlive its timeout."""
    from functions.relay_contacts.admission import LEASE_SECONDS
    from shared.config import Settings

    for name, fn in functions.items():
        scaling = fn["scaling"]
        if scaling["max_instance_request_concurrency"] > 1:
            assert float(scaling["available_cpu"]) >= 1, name
        assert 1 <= scaling["max_instance_request_concurrency"] <= 1000, name
    assert functions["sweep_retention"]["scaling"]["max_instance_request_concurrency"] == 1
    assert Settings().deletion_attempt_seconds + 60 <= functions["handle_deletion"]["scaling"]["timeout_seconds"]
    assert functions["relay_contacts"]["scaling"]["timeout_seconds"] == 3600 < LEASE_SECONDS  # the 2nd gen maximum


def test_only_event_functions_are_internal(functions, contract):
    for name, fn in functions.items():
        expected = "ALLOW_INTERNAL_ONLY" if name in contract.internal else "ALLOW_ALL"
        assert fn["ingress"] == expected, f"{name}: ingress {fn['ingress']}"


def test_the_sweeper_listens_on_retention_sweep_and_handle_deletion_has_no_trigger(tf, hcl, functions):
    triggered = {name: fn["trigger_topic"] for name, fn in functions.items() if fn["trigger_topic"] is not None}
    # handle_deletion is delivered by the push subscription only (pubsub.tf); a trigger would deliver twice.
    assert triggered == {"sweep_retention": "retention_sweep"}
    assert functions["sweep_retention"]["delivery"] is not None, "a triggered function needs a delivery identity"

    for_each, trigger = hcl.dynamic(tf.resource(f"{hcl.FUNCTION}.function"), "event_trigger")
    assert for_each == "${compact([local.function_config[each.key].trigger_topic])}"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["pubsub_topic"] == "${google_pubsub_topic.topic[event_trigger.value].id}"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["service_account_email"] == "${google_service_account.delivery[each.key].email}"

    jobs = tf.resources_of("google_cloud_scheduler_job")
    assert len(jobs) == 1
    (job,) = jobs.values()
    assert hcl.block(job, "pubsub_target")["topic_name"] == '${google_pubsub_topic.topic["retention_sweep"].id}'


def test_terraform_evaluates_the_map_as_these_tests_read_it(terraform, tmp_path, tf, functions):
    """Terraform's own local.function_config equals the parsed map completed with defaults, and an
    override in var.function_overrides changes exactly the setting it names."""
    workdir = terraform.data_module(tmp_path, 'output "config" {\n  value = local.function_config\n}\n')
    invokers = '["group:operators@example.com","user:support@example.com"]'
    evaluated = terraform.outputs(
        workdir,
        [
            "project_id=contact-sync-test",
            "entra_client_id=00000000-0000-4000-8000-000000000000",
            "portal_base_url=https://admin.example.com",
            f"tenant_admin_invokers={invokers}",
            'function_overrides={relay_contacts={max_instance_count=150}}',
        ],
    )["config"]
    assert set(evaluated) == set(functions)
    for name, fn in functions.items():
        got = evaluated[name]
        for key in ("description", "account_description", "ingress", "entra", "secrets", "grants", "delivery",
                    "trigger_topic"):
            assert got[key] == fn[key], f"{name}.{key}: Terraform {got[key]!r}, parsed {fn[key]!r}"
        expected_scaling = dict(fn["scaling"], **({"max_instance_count": 150} if name == "relay_contacts" else {}))
        assert got["scaling"] == expected_scaling, name
        if isinstance(fn["invokers"], str):
            assert fn["invokers"] == "${var.tenant_admin_invokers}", name
            assert got["invokers"] == ["group:operators@example.com", "user:support@example.com"], name
        else:
            assert got["invokers"] == fn["invokers"], name
        assert set(got["env"]) == set(fn["env"]), name
    assert evaluated["register_device"]["env"]["DIAGNOSTICS_RETENTION_DAYS"] == "30"


_NUMBERS = {word: value for value, word in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"])}
_COUNTED = re.compile(r"\b(" + "|".join(_NUMBERS) + r")( Cloud)? (functions|instances|entry points)\b"
                      r"|\b(" + "|".join(_NUMBERS) + r") with ingress ([A-Z_]+)", re.IGNORECASE)


def test_comments_that_count_the_functions_count_them_right(terraform_dir: Path, functions):
    """A comment saying "the six Cloud Functions" or "the four with ingress ALLOW_ALL" goes stale when a
    function is added: the number words in terraform/ are held to the function map."""
    found = []
    for path in sorted(terraform_dir.glob("*.tf")) + [terraform_dir / "README.md"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _COUNTED.finditer(line):
                if match.group(1):
                    said, meant = _NUMBERS[match.group(1).lower()], len(functions)
                else:
                    said = _NUMBERS[match.group(4).lower()]
                    meant = sum(fn["ingress"] == match.group(5) for fn in functions.values())
                found.append((f"{path.name}:{number}: {match.group(0)!r}", said, meant))
    assert found, "no counting comment found: the check would be vacuous"
    wrong = [f"{where} (there are {meant})" for where, said, meant in found if said != meant]
    assert not wrong, "\n".join(wrong)
