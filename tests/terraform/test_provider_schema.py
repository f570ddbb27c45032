"""terraform/ against the google provider's own schema (the `.jsii` file of `@cdktf/provider-google`,
generated from the provider release versions.tf allows): every resource and data source type exists,
every argument and block it is given is one the provider knows, nothing it requires is missing, at any
depth and inside `dynamic` blocks. `terraform validate` would say the same, but needs the provider
downloaded; this runs offline once npm has fetched the package.
"""

from __future__ import annotations

import re

import pytest


def test_the_schema_is_the_provider_major_version_terraform_uses(provider_schema, tf):
    version = provider_schema.data["provider"]
    constraints = [block["required_providers"] for block in tf.terraform_blocks if "required_providers" in block]
    [google] = [entry["google"] for providers in constraints for entry in providers if "google" in entry]
    bounds = re.findall(r"([<>]=?)\s*([0-9]+)\.", google["version"])
    assert (">=", version.split(".")[0]) in bounds, f"provider schema {version} outside {google['version']}"
    assert len(provider_schema.data["resource"]) > 1000 and "google_storage_bucket" in provider_schema.data["resource"]


def test_every_google_resource_and_data_source_matches_the_provider_schema(provider_schema, tf):
    schema = provider_schema.data
    problems, checked = [], 0
    for kind, declared in (("resource", tf.resources), ("data", tf.data)):
        for rtype, named in declared.items():
            if not rtype.startswith("google_"):
                continue  # archive_file, terraform_data: other providers
            if rtype not in schema[kind]:
                problems.append(f"{kind} type {rtype} does not exist in google provider {schema['provider']}")
                continue
            for name, body in named.items():
                checked += 1
                problems += provider_schema.check_body(schema, schema[kind][rtype], body, f"{rtype}.{name}")
    assert checked > 20, "nothing was checked"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("body", "problem"), [
    ({"name": "b", "location": "EU", "lifecycle_rule": [{"action": [{"type": "Delete"}],
                                                         "condition": [{"days_since_custom_tme": 1}]}]},
     "google_storage_bucket.probe.lifecycle_rule.condition: unknown argument or block 'days_since_custom_tme'"),
    ({"name": "b"}, "google_storage_bucket.probe: required argument 'location' missing"),
    ({"name": "b", "location": "EU", "lifecycle_rule": [{"condition": [{"age": 1}]}]},
     "google_storage_bucket.probe.lifecycle_rule: required block 'action' missing"),
    ({"name": "b", "location": "EU", "dynamic": [{"lifecycle_rule": {"for_each": "${x}", "content": [
        {"action": [{"type": "Delete"}], "condition": [{"age": 1, "sent_age_if_zero": True}]}]}}]},
     "google_storage_bucket.probe.lifecycle_rule.condition: unknown argument or block 'sent_age_if_zero'"),
])
def test_the_check_finds_what_the_provider_would_refuse(provider_schema, body, problem):
    schema = provider_schema.data
    fqn = schema["resource"]["google_storage_bucket"]
    assert provider_schema.check_body(schema, fqn, body, "google_storage_bucket.probe") == [problem]
    valid = {"name": "b", "location": "EU", "for_each": "${x}", "depends_on": [],
             "lifecycle_rule": [{"action": [{"type": "Delete"}], "condition": [{"age": 0, "send_age_if_zero": True}]}]}
    assert provider_schema.check_body(schema, fqn, valid, "google_storage_bucket.probe") == []
