"""Helpers shared by the benchmarks: the local stack, the fakes' control API, processes, tables.

Benchmarks on this (shared, 2-core) machine report ratios measured side by side in one run; absolute
figures are printed for context only.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import requests

from local.stack import ROOT, LocalStack

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, figures less stable)")
    return parser.parse_args(argv)


# ---- the stack ---------------------------------------------------------------------------------
@contextlib.contextmanager
def local_stack(name: str, with_functions: bool = True, extra_env: dict[str, str] | None = None
                ) -> Iterator[LocalStack]:
    """A LocalStack of its own in a temp directory; this process trusts the fakes' CA while it runs."""
    saved = {k: os.environ.get(k) for k in CA_VARIABLES}
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as state_dir:
        # local/stack.py passes the client secret as a command-line argument: one made by token_urlsafe
        # starts with "-" once in 64 runs and argparse then refuses it, so give it a safe first character.
        env = {"ENTRA_CLIENT_SECRET": "s" + secrets.token_urlsafe(24), **(extra_env or {})}
        stack = LocalStack(state_dir=Path(state_dir), with_functions=with_functions, extra_env=env)
        started = time.perf_counter()
        stack.start()
        try:
            for variable in CA_VARIABLES:
                os.environ[variable] = stack.urls["ca"]
            log(f"local stack up in {time.perf_counter() - started:.1f} s ({state_dir})")
            yield stack
        finally:
            stack.stop()
            for variable, value in saved.items():
                if value is None:
                    os.environ.pop(variable, None)
                else:
                    os.environ[variable] = value


def session(stack: LocalStack | None = None, pool: int = 16) -> requests.Session:
    """A requests session that ignores the machine-wide CA variables and trusts the fakes' CA."""
    s = requests.Session()
    s.trust_env = False
    if stack is not None:
        s.verify = stack.urls["ca"]
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s


class Fake:
    """The fake Entra ID / Graph control API (`/_fake/...`)."""

    def __init__(self, stack: LocalStack):
        self.base = stack.urls["entra"] + "/_fake"
        self.http = session(stack)

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self.http.request(method, f"{self.base}/{path.lstrip('/')}", json=body, timeout=60)
        if response.status_code >= 300:
            raise RuntimeError(f"fake {method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def directory(self, tenant_id: str, size: int) -> None:
        self.call("POST", f"tenants/{tenant_id}/directory", {"size": size})

    def mint(self, kind: str, tenant_id: str, **extra) -> str:
        return self.call("POST", "mint", {"kind": kind, "tenant": tenant_id, **extra})["token"]

    def stats(self) -> dict:
        return self.call("GET", "stats")

    def reset_stats(self) -> None:
        self.call("DELETE", "stats")


def onboard(stack: LocalStack, tenant_id: str, name: str = "Benchmark GmbH", region: str = "DE",
            fields: list[str] | None = None) -> None:
    settings: dict[str, Any] = {"defaultRegion": region}
    if fields is not None:
        settings["fields"] = fields
    response = session(stack).post(stack.urls["manage_tenants"] + "/tenants", timeout=30,
                                   json={"tenantId": tenant_id, "name": name, "settings": settings})
    if response.status_code != 201:
        raise RuntimeError(f"onboarding {tenant_id} failed: {response.status_code} {response.text[:300]}")


def register_device(stack: LocalStack, token: str, device_id: str, url: str | None = None) -> int:
    response = session(stack).post((url or stack.urls["register_device"]) + "/", json={"deviceId": device_id},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"registration failed: {response.status_code} {response.text[:300]}")
    return response.status_code


# ---- processes ---------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def proc_status_kib(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure in KiB (VmRSS, VmHWM, …)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class FunctionProcess:
    """One HTTP function on functions-framework, started like the local stack does (own process group)."""

    def __init__(self, stack: LocalStack, target: str, log_dir: Path, threads: int = 8):
        from local.stack import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(stack.env, FUNCTION_TARGET=target, THREADS=str(threads))
        self.log_path = log_dir / f"{target}-{self.port}.log"
        with open(self.log_path, "wb") as log_file:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"), "--target",
                 target, "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{target} exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if _answers(self.url + "/_ready") and self.worker_pid():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{target} did not start within 60 s")

    def worker_pid(self) -> int | None:
        """gunicorn's worker (the process that serves requests), a child of the arbiter we started."""
        kids = children(self.popen.pid)
        return kids[0] if kids else None

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)

    def __enter__(self) -> "FunctionProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


# ---- figures and tables ------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def log(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]], note: str | None = None) -> str:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first, *rest = row
        return "| " + " | ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:])]) + " |"

    out = [f"### {title}", "", line(cells[0]), "|" + "|".join(["-" * (widths[0] + 2)] +
                                                              ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"]
    out += [line(row) for row in cells[1:]]
    if note:
        out += ["", note]
    text = "\n".join(out) + "\n"
    print(text, flush=True)
    return text


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
