"""Offline tool checks of terraform/: formatting, checkov, and the variable validations evaluated by
Terraform itself (no provider is needed for those, so they run without network access).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHECKOV_VENV = ".venv-checkov"
DUMMY_PROJECT = "contact-sync-test"
DUMMY_CLIENT_ID = "00000000-0000-4000-8000-000000000000"


def terraform_env(tmp_path: Path) -> dict[str, str]:
    cli_config = tmp_path / "terraformrc"
    cli_config.write_text("", encoding="utf-8")
    env = dict(os.environ)
    env.update(
        {
            "CHECKPOINT_DISABLE": "1",  # no version check over the network
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_DATA_DIR": str(tmp_path / ".terraform"),
        }
    )
    return env


def require_terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        reason = "terraform binary not found on PATH; terraform fmt/validation checks not run"
        print(f"SKIP reason: {reason}")
        pytest.skip(reason)
    return binary


def test_terraform_fmt_is_clean(terraform_dir: Path, tmp_path: Path) -> None:
    terraform = require_terraform()
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "-no-color"],
        cwd=terraform_dir,
        env=terraform_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt -check -recursive failed:\n{result.stdout}\n{result.stderr}"


def test_checkov_offline_has_zero_failures_and_every_skip_has_a_reason(repo_root: Path, terraform_dir: Path) -> None:
    checkov = repo_root / CHECKOV_VENV / "bin" / "checkov"
    if not checkov.exists():
        reason = (
            f"{checkov} not found: create it with `python3 -m venv {CHECKOV_VENV} && "
            f"{CHECKOV_VENV}/bin/pip install -r requirements-checkov.txt` (checkov clashes with python-hcl2)"
        )
        print(f"SKIP reason: {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [str(checkov), "-d", str(terraform_dir), "--framework", "terraform", "--skip-download", "--output", "json"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout.strip(), f"checkov printed nothing (rc={result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    terraform_reports = [r for r in reports if r.get("check_type") == "terraform"]
    assert terraform_reports, f"checkov produced no terraform report: {result.stdout[:2000]}"
    (tf_report,) = terraform_reports

    summary = tf_report["summary"]
    failed = tf_report["results"].get("failed_checks", [])
    details = "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}: {c['check_name']}" for c in failed)
    assert summary["failed"] == 0, f"checkov findings:\n{details}"
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0, "checkov checked nothing"
    assert result.returncode == 0

    skipped = tf_report["results"].get("skipped_checks", [])
    for check in skipped:
        comment = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(comment) > 10, f"{check['check_id']} on {check['resource']} is skipped without a reason"

    # Every inline skip must still match a finding; a stale skip hides nothing and misleads readers.
    skip_comments = []
    for path in terraform_dir.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        skip_comments += re.findall(r"checkov:skip=(CKV2?_[A-Z]+_\d+)", path.read_text(encoding="utf-8"))
    assert sorted(skip_comments) == sorted(c["check_id"] for c in skipped), "stale or missing checkov:skip comments"


VALIDATION_CASES = [
    # (extra -var arguments, accepted?, part of the expected error)
    ([], True, None),
    (["region=europe-west3", "firestore_location=europe-west3", "storage_location=EUR4"], True, None),
    (["region=us-central1"], False, "region must be a Google Cloud region in the EU"),
    (["region=europe-west2"], False, "region must be a Google Cloud region in the EU"),  # London: Europe, not EU
    (["region=europe-west6"], False, "region must be a Google Cloud region in the EU"),  # Zurich
    (["region=us-central1", "allow_non_eu_locations=true"], True, None),
    (["firestore_location=nam5"], False, "firestore_location must be eur3 or an EU region"),
    (["storage_location=US"], False, "storage_location must be EU, EUR4 or an EU region"),
    (["storage_location=US", "allow_non_eu_locations=true"], True, None),
    (['tenant_admin_invokers=["allUsers"]'], False, "tenant_admin_invokers may only list"),
    (['tenant_admin_invokers=["domain:example.com"]'], False, "tenant_admin_invokers may only list"),
    (['tenant_admin_invokers=["group:support@example.com","user:ops@example.com"]'], True, None),
    (['function_overrides={export_contacts={max_instance_count=1}}'], False, "function_overrides keys"),
    (["deletion_max_delivery_attempts=2"], False, "deletion_max_delivery_attempts must be between"),
]


@pytest.fixture(scope="module")
def variables_only_module(terraform_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """terraform/variables.tf alone: Terraform evaluates its validations without any provider."""
    terraform = require_terraform()
    workdir = tmp_path_factory.mktemp("tfvars-validation")
    shutil.copy(terraform_dir / "variables.tf", workdir / "variables.tf")
    env = terraform_env(workdir)
    init = subprocess.run(
        [terraform, "init", "-input=false", "-no-color", "-backend=false"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return workdir, env


@pytest.mark.parametrize(("extra", "accepted", "error"), VALIDATION_CASES)
def test_variable_validations_evaluated_by_terraform(variables_only_module, extra, accepted, error) -> None:
    workdir, env = variables_only_module
    args = [shutil.which("terraform"), "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"]
    for assignment in [f"project_id={DUMMY_PROJECT}", f"entra_client_id={DUMMY_CLIENT_ID}", *extra]:
        args += ["-var", assignment]
    result = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    output = re.sub(r"\s+", " ", result.stdout + result.stderr)
    if accepted:
        assert result.returncode == 0, output
    else:
        assert result.returncode != 0, f"{extra} was accepted"
        assert error in output, output
