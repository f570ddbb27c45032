"""Monitoring (terraform/monitoring.tf): log-based metrics over log lines the code really writes, selecting
only on allow-listed keys, an alert policy on each and on the dead-letter topic, each described in
docs/operations.md with what to do."""

from __future__ import annotations

import re

from shared.logs import SAFE_KEYS

ALERTS = {"relay_server_errors", "relay_sync_busy", "graph_throttled", "stuck_deletions", "deletion_failures",
          "sweep_failures"}


def _source_text(repo_root) -> str:
    return "\n".join(path.read_text(encoding="utf-8") for folder in ("functions", "shared")
                     for path in (repo_root / folder).rglob("*.py"))


def test_every_log_metric_counts_a_line_the_code_writes_by_allow_listed_keys(tf, terraform_dir):
    metrics = tf.locals["log_metrics"]
    assert set(metrics) == ALERTS
    source = _source_text(terraform_dir.parent)
    for name, metric in metrics.items():
        text = metric["filter"]
        assert 'resource.type="cloud_run_revision"' in text, name
        messages = re.findall(r'jsonPayload\.message="([^"]+)"', text)
        assert messages, f"{name} must select log lines by their message"
        for message in messages:
            assert f'"{message}"' in source, f"{name}: no log line says {message!r}"
        keys = set(re.findall(r"jsonPayload\.([A-Za-z]+)", text)) - {"message"}
        assert keys <= SAFE_KEYS, f"{name} selects on keys outside the log allow-list: {keys - SAFE_KEYS}"
        assert metric["description"], name


def test_each_log_metric_is_a_counter_with_an_alert(tf, hcl):
    metric = tf.resource("google_logging_metric.metric")
    assert metric["for_each"] == "${local.log_metrics}"
    descriptor = hcl.block(metric, "metric_descriptor")
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")
    assert set(tf.locals["log_alerts"]) == ALERTS
    policy = tf.resource("google_monitoring_alert_policy.log_metric")
    assert policy["for_each"] == "${local.log_alerts}"
    assert policy["notification_channels"] == "${var.alert_notification_channels}"
    condition = hcl.block(hcl.block(policy, "conditions"), "condition_threshold")
    assert "logging.googleapis.com/user/${google_logging_metric.metric[each.key].name}" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT"
    for name, alert in tf.locals["log_alerts"].items():
        assert alert["threshold"] >= 0 and alert["window"] >= 60, name
    # A deletion that is stuck or a failing sweep alerts on the first occurrence.
    assert tf.locals["log_alerts"]["stuck_deletions"]["threshold"] == 0
    assert tf.locals["log_alerts"]["sweep_failures"]["threshold"] == 0


def test_messages_in_the_dead_letter_topic_alert(tf, hcl):
    policy = tf.resource("google_monitoring_alert_policy.dead_letters")
    condition = hcl.block(hcl.block(policy, "conditions"), "condition_threshold")
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in condition["filter"]
    assert "google_pubsub_subscription.deletion_requests_dead_letter.name" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT" and condition["threshold_value"] == 0
    assert policy["notification_channels"] == "${var.alert_notification_channels}"


def test_every_alert_is_described_in_the_operations_guide(tf, terraform_dir):
    guide = (terraform_dir.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## Alerts" in guide
    sections = {alert["section"] for alert in tf.locals["log_alerts"].values()} | {"dead-letters"}
    for section in sections:
        match = re.search(rf"^### .*\{{#{section}\}}$", guide, re.MULTILINE)
        assert match, f"docs/operations.md has no alert section {{#{section}}}"
        body = guide[match.end():].split("\n### ", 1)[0]
        assert "What to do" in body, f"section {section} must say what to do"
    for alert in tf.locals["log_alerts"].values():
        assert alert["title"] in guide, alert["title"]
