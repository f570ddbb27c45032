"""EU hosting: every location in terraform/ is an EU region or EU multi-region, and leaving the EU takes an
explicit override checked against one list of EU regions.
"""

from __future__ import annotations

import re

import pytest

LOCATION_KEYS = {"location", "region", "location_id", "trigger_region", "allowed_persistence_regions"}


def test_every_location_is_in_the_eu(tf, hcl, eu):
    checked = set()
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
                checked.add((address, path, key))
    # functions (and their trigger), topics, secrets, scheduler, repository, run IAM, buckets, Firestore, provider
    assert len(checked) >= 11, f"only {len(checked)} locations found; the walk is broken"


def test_the_eu_region_list_is_the_eu_and_only_the_eu(tf, eu_regions):
    listed = tf.locals["eu_regions"]
    assert len(listed) == len(set(listed))
    assert set(listed) == eu_regions, f"not EU: {set(listed) - eu_regions}; missing: {eu_regions - set(listed)}"


@pytest.mark.parametrize("variable", ["region", "firestore_location", "storage_location"])
def test_location_variables_default_to_the_eu_and_refuse_others_without_override(tf, eu, variable):
    spec = tf.variables[variable]
    assert eu(spec["default"]), f"{variable} default {spec['default']!r} is not in the EU"
    assert tf.variables["allow_non_eu_locations"]["default"] is False
    (validation,) = spec["validation"]
    condition = validation["condition"]
    assert condition.startswith("${var.allow_non_eu_locations || contains("), (
        f"{variable}: the override must be the only way out")
    assert "local.eu_regions" in condition, f"{variable} must be checked against the one EU list"
    listed = re.findall(r'"([A-Za-z0-9-]+)"', condition)
    assert all(eu(item) for item in listed), f"{variable} allows non-EU locations: {[i for i in listed if not eu(i)]}"
