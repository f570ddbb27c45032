"""The launcher itself: it names what is missing, and stopping leaves no process behind."""
from __future__ import annotations

import os
from pathlib import Path

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
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
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


def test_oversized_tokens_get_the_apps_problem_json_from_the_stacks_processes(stack):
    """gunicorn alone answers an HTML 431 past 8,190 bytes per header line (docs/operations.md); the local
    stack's server lets header fields of up to 64 KiB reach the function, which refuses the token itself."""
    from local.fake_microsoft.client import trusting_session

    url = stack.urls["register_device"] + "/"
    session = trusting_session(None)
    response = session.post(url, json={"deviceId": "9a1c1f6e-8b0d-4d3e-9f21-0c4b5a6d7e8f"}, timeout=30,
                            headers={"Authorization": "Bearer " + "a" * 12_000})
    assert response.status_code == 401, response.text[:200]
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/token-malformed"
    beyond = session.post(url, json={}, timeout=30, headers={"Authorization": "Bearer " + "a" * 70_000})
    assert beyond.status_code == 431  # the server's own refusal past its limit: the documented edge


def test_a_port_taken_between_picking_and_binding_is_picked_again(monkeypatch, tmp_path):
    """Any outgoing connection may take the ephemeral port picked for a process before it binds; the stack
    then starts that process again on another port instead of failing."""
    import socket

    from local import stack as stack_module

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])
    monkeypatch.setattr(stack_module, "free_port", lambda: next(picks, None) or launcher.free_port())
    try:
        with LocalStack(state_dir=tmp_path, with_functions=False) as local_stack:
            assert local_stack.ports["firestore"] != taken.getsockname()[1]
            assert launcher.http_ok(f"http://{local_stack.urls['firestore']}/")
    finally:
        taken.close()
