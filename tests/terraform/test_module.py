"""The module as a whole: its files, version bounds, APIs, outputs and the documentation a deployer reads."""

from __future__ import annotations

import re
from pathlib import Path

# Output names deployers and docs/ rely on (terraform output -raw manage_tenants_url, …).
OUTPUTS = {
    "function_urls",
    "register_device_url",
    "relay_contacts_url",
    "manage_tenants_url", "tenant_portal_url",
    "topics",
    "deletion_subscription",
    "dead_letter_subscription",
    "technical_files_bucket",
    "source_bucket",
    "source_object",
    "firestore_database",
    "secret_ids",
    "service_accounts",
}


def test_module_is_split_by_concern(terraform_dir: Path) -> None:
    names = {path.name for path in terraform_dir.glob("*.tf")}
    for required in ("versions.tf", "variables.tf", "outputs.tf", "main.tf", "functions.tf", "cloudfunctions.tf",
                     "iam.tf"):
        assert required in names, f"terraform/{required} is missing"
    assert (terraform_dir / "README.md").is_file()
    assert (terraform_dir / "terraform.tfvars.example").is_file()


def test_the_function_map_file_holds_data_only(hcl, terraform_dir):
    parsed = hcl.parse((terraform_dir / "functions.tf").read_text(encoding="utf-8"))
    assert set(parsed) == {"locals"}, f"functions.tf must hold the map only, found {sorted(parsed)}"
    text = str(parsed)
    assert not re.search(r"\b(google|data|archive)_[a-z0-9_]+\.[a-z0-9_]+", text), "the map may not refer to resources"


def test_terraform_and_provider_versions_are_bounded(tf):
    assert tf.terraform_blocks, "no terraform {} block"
    settings = tf.terraform_blocks[0]
    assert ">=" in settings["required_version"] and "<" in settings["required_version"].replace("<=", "")
    # Variable validations that read locals and other variables need Terraform 1.9.
    assert re.search(r">=\s*1\.(9|\d\d)", settings["required_version"]), settings["required_version"]
    providers = {}
    for entry in settings["required_providers"]:
        providers.update(entry)
    assert "google" in providers
    for name, spec in providers.items():
        assert spec["source"].startswith("hashicorp/"), name
        assert ">=" in spec["version"] and re.search(r"<\s*\d", spec["version"]), (
            f"provider {name} must have a lower and an upper version bound, got {spec['version']!r}"
        )


def test_required_apis_are_enabled(tf):
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.locals["required_apis"]))
    for api in (
        "cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc", "pubsub",
        "firestore", "secretmanager", "cloudscheduler", "storage", "iam",
    ):
        assert f"{api}.googleapis.com" in apis, api
    assert "google_project_service" in tf.resources


def test_outputs_keep_their_names_and_are_described(tf):
    assert set(tf.outputs) == OUTPUTS
    for name, spec in tf.outputs.items():
        assert spec.get("description"), f"output {name} has no description"
    for name in ("register_device", "relay_contacts", "manage_tenants", "tenant_portal"):
        assert tf.outputs[f"{name}_url"]["value"] == (
            f'${{google_cloudfunctions2_function.function["{name}"].service_config[0].uri}}'
        )
    assert "google_cloudfunctions2_function.function" in tf.outputs["function_urls"]["value"]


def test_readme_and_tfvars_example_document_every_input_output_and_identity(tf, functions, hcl, terraform_dir):
    readme = (terraform_dir / "README.md").read_text(encoding="utf-8")
    for name in tf.variables:
        assert f"`{name}`" in readme, f"README does not document input {name}"
    for name in tf.outputs:
        assert f"`{name}`" in readme, f"README does not document output {name}"
    identities = ["fn-" + name.replace("_", "-") for name in functions]
    identities += [fn["delivery"]["account_id"] for fn in functions.values() if fn["delivery"] is not None]
    identities.append(tf.resource("google_service_account.build")["account_id"])
    for account in identities:
        assert f"`{account}`" in readme, f"README does not explain service account {account}"
    for name in functions:
        assert f"`{name}`" in readme, f"README does not describe function {name}"
    for phrase in ("terraform init", "terraform apply", "terraform.tfvars.example", "gcloud secrets versions add",
                   "local.functions"):
        assert phrase in readme, phrase

    example = hcl.parse((terraform_dir / "terraform.tfvars.example").read_text(encoding="utf-8"))
    assert set(example) <= set(tf.variables), f"unknown inputs in the example: {set(example) - set(tf.variables)}"
    required = {name for name, spec in tf.variables.items() if "default" not in spec}
    assert required <= set(example), f"required inputs missing from the example: {required - set(example)}"
