"""The launcher itself: it names what is missing, and stopping leaves no process behind."""
from __future__ import annotations

import os

import pytest

from local import launcher
from local.launcher import StackError, check_prerequisites
from local.stack import LocalStack, entry_points


def test_missing_emulators_are_named_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSDK_ROOT", str(tmp_path))
    with pytest.raises(StackError) as error:
        check_prerequisites()
    message = str(error.value)
    assert "cloud-firestore-emulator" in message and "pubsub-emulator" in message
    assert "gcloud components install" in message or "apt-get install" in message


def test_missing_java_is_named(monkeypatch):
    monkeypatch.setattr(launcher.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="Java"):
        check_prerequisites()


def test_entry_points_are_read_from_main():
    assert set(entry_points()) == {"register_device", "relay_contacts", "manage_tenants", "handle_deletion",
                                   "sweep_retention", "tenant_portal"}


def _group_members(groups: set[int]) -> set[int]:
    """Live processes whose process group is one the stack created (children such as the JVMs included)."""
    members = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:
                members.add(int(entry))
    return members


def test_stop_leaves_no_process_behind(tmp_path):
    local_stack = LocalStack(state_dir=tmp_path, with_functions=False)
    local_stack.start()
    groups = set(local_stack.pids())
    assert len(groups) == 4  # Firestore, Pub/Sub, fake-gcs-server, fake Microsoft: one group each
    assert len(_group_members(groups)) >= 4
    local_stack.stop()
    assert _group_members(groups) == set()
