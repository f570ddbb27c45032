"""Secret Manager: the secrets exist without values, and each function reads only the secrets it uses."""

from __future__ import annotations

SECRETS_PER_FUNCTION = {
    "register_device": ["RECEIPT_KEY"],
    "relay_contacts": ["ENTRA_CLIENT_SECRET", "CURSOR_KEY"],
    "manage_tenants": ["RECEIPT_KEY"],
    "handle_deletion": ["RECEIPT_KEY"],
    # The sweeper writes the pending receipt of each request it publishes (shared/config.py requires it).
    "sweep_retention": ["RECEIPT_KEY"],
    # The portal signs in with the app's secret, lists receipts by tenantSubject and seals its session cookie.
    "tenant_portal": ["ENTRA_CLIENT_SECRET", "RECEIPT_KEY", "PORTAL_SESSION_KEY"],
}
# Secret IDs operators add versions to (README, gcloud secrets versions add).
SECRET_IDS = {"ENTRA_CLIENT_SECRET": "entra-client-secret", "CURSOR_KEY": "cursor-key", "RECEIPT_KEY": "receipt-key",
              "PORTAL_SESSION_KEY": "portal-session-key"}


def secret_id(key: str) -> str:
    """The ID secrets.tf derives from an environment variable name (its template is checked below)."""
    return key.lower().replace("_", "-")


def test_the_secrets_and_their_ids(tf):
    secrets = tf.resources_of("google_secret_manager_secret")
    assert list(secrets) == ["secret"]
    body = secrets["secret"]
    assert body["for_each"] == '${toset(["ENTRA_CLIENT_SECRET", "CURSOR_KEY", "RECEIPT_KEY", "PORTAL_SESSION_KEY"])}'
    assert body["secret_id"] == '${lower(replace(each.key, "_", "-"))}'
    assert {key: secret_id(key) for key in SECRET_IDS} == SECRET_IDS
    assert not tf.resources_of("google_secret_manager_secret_version"), (
        "secret values are added with gcloud, never through Terraform (they would land in the state)"
    )


def test_each_function_reads_only_the_secrets_it_needs(functions):
    assert {name: fn["secrets"] for name, fn in functions.items()} == SECRETS_PER_FUNCTION
    for name, fn in functions.items():
        assert set(fn["secrets"]) <= set(SECRET_IDS), f"{name} reads an undeclared secret"


def test_secrets_reach_the_function_as_environment_variables_of_the_same_name(tf, hcl):
    service = hcl.block(tf.resource(f"{hcl.FUNCTION}.function"), "service_config")
    for_each, entry = hcl.dynamic(service, "secret_environment_variables")
    assert for_each == "${local.function_config[each.key].secrets}"
    assert entry["key"] == "${secret_environment_variables.value}"
    assert entry["secret"] == "${google_secret_manager_secret.secret[secret_environment_variables.value].secret_id}"
    assert entry["version"] == "latest"


def test_accessor_grants_are_exactly_the_secrets_of_each_function(tf):
    grants = tf.resources_of("google_secret_manager_secret_iam_member")
    assert list(grants) == ["function_secret"], "secrets are granted from the map only"
    grant = grants["function_secret"]
    assert grant["for_each"] == "${local.function_secrets}"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["secret_id"] == "${google_secret_manager_secret.secret[each.value.secret].secret_id}"
    assert grant["member"] == "serviceAccount:${google_service_account.function[each.value.function].email}"
    assert tf.locals["function_secrets"] == (
        '${merge([for name, fn in local.function_config : {for key in fn.secrets : "${name} ${key}" => '
        "{function = name, secret = key}}] ...)}"
    )
