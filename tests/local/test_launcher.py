"""The process launcher shared by the local stack, the tests and the benchmarks."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from local.launcher import StackError, free_port, http_ok, spawn, stop_all


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_process_that_exits_is_reported_with_its_log(tmp_path):
    process = spawn("quitter", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(3)"],
                    tmp_path / "quitter.log", ready=lambda: False)
    with pytest.raises(StackError, match=r"quitter exited with 3:\ncannot bind"):
        process.wait_ready(timeout=30)


def test_a_process_that_never_answers_times_out_and_names_its_log(tmp_path):
    process = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleeper.log",
                    ready=lambda: http_ok(f"http://127.0.0.1:{free_port()}/"))
    try:
        with pytest.raises(StackError, match="sleeper did not answer within 1 s .*sleeper.log"):
            process.wait_ready(timeout=1)
    finally:
        process.stop()
    assert process.popen.poll() is not None


def test_stop_kills_the_whole_group_and_whoever_ignores_sigterm(tmp_path):
    # A parent that ignores SIGTERM, with a child in its process group.
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(child.pid, flush=True); time.sleep(60)")
    stubborn = spawn("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log",
                     ready=lambda: (tmp_path / "stubborn.log").read_text().strip() != "")
    polite = spawn("polite", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "polite.log")
    stubborn.wait_ready(timeout=30)
    child = int((tmp_path / "stubborn.log").read_text().split()[0])
    assert os.getpgid(child) == stubborn.pid and os.getpgid(polite.pid) == polite.pid
    started = time.monotonic()
    stop_all([stubborn, polite], grace=1.0)
    assert time.monotonic() - started < 10
    assert stubborn.popen.returncode == -signal.SIGKILL and polite.popen.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
