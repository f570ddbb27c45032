"""Offline tool checks of terraform/: formatting and checkov, whose inline skips must each hide a real
finding, also where a skip covers every instance of a for_each resource.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

CHECKOV_VENV = ".venv-checkov"
SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):")
RESOURCE = re.compile(r'^resource\s+"([^"]+)"\s+"([^"]+)"\s*\{')
# A skip applies to every instance of its resource. These instances would pass without it: the function
# resource's CKV_GCP_124 skip is meant for the four ALLOW_ALL functions; the event functions are internal.
PASS_DESPITE_SKIP = {
    ("CKV_GCP_124", 'google_cloudfunctions2_function.function["handle_deletion"]'),
    ("CKV_GCP_124", 'google_cloudfunctions2_function.function["sweep_retention"]'),
}


def test_terraform_fmt_is_clean(terraform, terraform_dir: Path, tmp_path: Path) -> None:
    result = terraform.run(tmp_path, "fmt", "-check", "-recursive", "-diff", "-no-color", str(terraform_dir))
    assert result.returncode == 0, f"terraform fmt -check -recursive failed:\n{result.stdout}\n{result.stderr}"


def inline_skips(directory: Path) -> set[tuple[str, str]]:
    """(check ID, resource address) of every checkov:skip comment, by the resource block it stands in."""
    found = set()
    for path in sorted(directory.glob("*.tf")):
        address = None
        for line in path.read_text(encoding="utf-8").splitlines():
            header = RESOURCE.match(line)
            if header:
                address = f"{header.group(1)}.{header.group(2)}"
            elif line.startswith("}"):
                address = None
            for check_id in SKIP.findall(line):
                assert address, f"{path.name}: checkov:skip={check_id} outside a resource block"
                found.add((check_id, address))
    return found


def base_address(resource: str) -> str:
    return re.sub(r"\[[^\]]*\]$", "", resource)


@pytest.fixture(scope="module")
def checkov(repo_root: Path, tool_missing):
    binary = repo_root / CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        tool_missing(
            f"{binary} not found: create it with `make {CHECKOV_VENV}/.installed` "
            "(checkov pins an hcl2 that clashes with python-hcl2, so it has its own virtualenv)"
        )

    def run(directory: Path) -> tuple[dict, int]:
        result = subprocess.run(
            [str(binary), "-d", str(directory), "--framework", "terraform", "--skip-download", "--output", "json"],
            cwd=repo_root, capture_output=True, text=True, timeout=300,
        )
        assert result.stdout.strip(), f"checkov printed nothing (rc={result.returncode}):\n{result.stderr[-3000:]}"
        report = json.loads(result.stdout)
        reports = [r for r in (report if isinstance(report, list) else [report]) if r.get("check_type") == "terraform"]
        assert len(reports) == 1, f"checkov produced no single terraform report: {result.stdout[:2000]}"
        assert reports[0]["summary"]["parsing_errors"] == 0
        return reports[0], result.returncode

    return run


def test_checkov_offline_has_zero_failures_and_every_skip_has_a_reason(checkov, terraform_dir: Path) -> None:
    report, returncode = checkov(terraform_dir)
    failed = report["results"].get("failed_checks", [])
    details = "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}: {c['check_name']}" for c in failed)
    assert report["summary"]["failed"] == 0, f"checkov findings:\n{details}"
    assert report["summary"]["passed"] > 0, "checkov checked nothing"
    assert returncode == 0

    skipped = report["results"].get("skipped_checks", [])
    for check in skipped:
        comment = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(comment) > 10, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    # Every skip comment is honoured, on the resource it stands in (for_each instances included).
    assert {(c["check_id"], base_address(c["resource"])) for c in skipped} == inline_skips(terraform_dir)
    # checkov renders the per-function resources instance by instance.
    instances = {c["resource"] for c in report["results"]["passed_checks"] + skipped}
    for name in ("register_device", "sweep_retention"):
        assert f'google_cloudfunctions2_function.function["{name}"]' in instances
        assert f'google_project_iam_member.firestore["{name}"]' in instances


def test_every_checkov_skip_hides_a_real_finding(checkov, terraform_dir: Path, tmp_path: Path) -> None:
    """The same module without its skip comments fails exactly where the skips stand (a stale skip hides
    nothing and misleads readers), and only the documented instances would pass anyway."""
    skips = inline_skips(terraform_dir)
    assert skips, "no checkov:skip comment found; the check would be vacuous"
    stripped = tmp_path / "terraform"
    stripped.mkdir()
    for path in terraform_dir.glob("*.tf"):
        text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not SKIP.search(line))
        (stripped / path.name).write_text(text + "\n", encoding="utf-8")
    report, _ = checkov(stripped)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert {(check_id, base_address(resource)) for check_id, resource in failed} == skips

    normal, _ = checkov(terraform_dir)
    skipped = {(c["check_id"], c["resource"]) for c in normal["results"]["skipped_checks"]}
    assert skipped - failed == PASS_DESPITE_SKIP
