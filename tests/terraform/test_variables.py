"""Inputs: typed and described, no secret defaults, and validations evaluated by Terraform itself on
variables.tf + functions.tf (data only, so no provider and no network are needed).
"""

from __future__ import annotations

import re

import pytest

DUMMY_PROJECT = "contact-sync-test"
DUMMY_CLIENT_ID = "00000000-0000-4000-8000-000000000000"

VALIDATION_CASES = [
    # (extra -var arguments, accepted?, part of the expected error)
    ([], True, None),
    (["region=europe-west3", "firestore_location=europe-west3", "storage_location=EUR4"], True, None),
    (["storage_location=europe-west4"], True, None),
    (["region=us-central1"], False, "region must be a Google Cloud region in the EU"),
    (["region=europe-west2"], False, "region must be a Google Cloud region in the EU"),  # London: Europe, not EU
    (["region=europe-west6"], False, "region must be a Google Cloud region in the EU"),  # Zurich
    (["region=us-central1", "allow_non_eu_locations=true"], True, None),
    (["firestore_location=nam5"], False, "firestore_location must be eur3 or an EU region"),
    (["storage_location=US"], False, "storage_location must be EU, EUR4 or an EU region"),
    (["storage_location=US", "allow_non_eu_locations=true"], True, None),
    (["source_bucket_name=Not_A_Bucket"], False, "source_bucket_name must be a valid bucket name"),
    (['tenant_admin_invokers=["allUsers"]'], False, "tenant_admin_invokers may only list"),
    (['tenant_admin_invokers=["domain:example.com"]'], False, "tenant_admin_invokers may only list"),
    (['tenant_admin_invokers=["group:support@example.com","user:ops@example.com"]'], True, None),
    (["function_overrides={relay_contacts={max_instance_count=100}}"], True, None),
    (
        ["function_overrides={export_contacts={max_instance_count=1}}"],
        False,
        # The allowed keys are named from the function map.
        "function_overrides keys must be entry points: handle_deletion, manage_tenants, register_device, "
        "relay_contacts, sweep_retention, tenant_portal.",
    ),
    (["portal_base_url=http://admin.example.com"], False, "portal_base_url must be an https origin"),
    (["portal_base_url="], False, "portal_base_url must be an https origin"),  # left unset
    (["portal_base_url=https://admin.example.com/portal"], False, "portal_base_url must be an https origin"),
    (["deletion_max_delivery_attempts=2"], False, "deletion_max_delivery_attempts must be between"),
]


def test_variables_are_typed_and_described(tf):
    assert len(tf.variables) >= 10
    for name, spec in tf.variables.items():
        assert spec.get("type"), f"variable {name} has no type"
        assert spec.get("description"), f"variable {name} has no description"
        if re.search(r"secret|password|token|_key$", name):
            assert spec.get("default") is None, f"variable {name} must not carry a secret default"


def test_function_overrides_are_keyed_by_the_map(tf):
    (validation,) = tf.variables["function_overrides"]["validation"]
    assert "keys(local.functions)" in validation["condition"], "allowed keys come from the function map"
    assert "keys(local.functions)" in validation["error_message"]


@pytest.fixture(scope="module")
def data_module(terraform, tmp_path_factory):
    return terraform.data_module(tmp_path_factory.mktemp("tfvars-validation"))


@pytest.mark.parametrize(("extra", "accepted", "error"), VALIDATION_CASES)
def test_variable_validations_evaluated_by_terraform(terraform, data_module, extra, accepted, error) -> None:
    args = ["plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"]
    for assignment in [f"project_id={DUMMY_PROJECT}", f"entra_client_id={DUMMY_CLIENT_ID}",
                       "portal_base_url=https://admin.example.com", *extra]:
        args += ["-var", assignment]
    result = terraform.run(data_module, *args)
    output = re.sub(r"\s+", " ", result.stdout + result.stderr)
    if accepted:
        assert result.returncode == 0, output
    else:
        assert result.returncode != 0, f"{extra} was accepted"
        assert error in output, output
