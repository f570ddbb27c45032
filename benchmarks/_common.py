"""Helpers shared by the benchmarks: the local stack, extra function processes, tables.

Benchmarks on this (shared, 2-core) machine report ratios measured side by side in one run; absolute
figures are printed for context only.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from local.fake_microsoft.client import trusting_session
from local.launcher import StackError, free_port, start_function
from local.stack import LocalStack, environment

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
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as state_dir:
        started = time.perf_counter()
        with LocalStack(state_dir=Path(state_dir), with_functions=with_functions,
                        extra_env=dict(extra_env or {})) as stack, \
                environment(dict.fromkeys(CA_VARIABLES, stack.urls["ca"])):
            log(f"local stack up in {time.perf_counter() - started:.1f} s ({state_dir})")
            yield stack


def session(stack: LocalStack | None = None, pool: int = 16) -> requests.Session:
    """A requests session that ignores the machine-wide CA variables and trusts the fakes' CA."""
    return trusting_session(stack.urls["ca"] if stack is not None else None, pool)


def onboard(stack: LocalStack, tenant_id: str, name: str = "Benchmark GmbH", region: str = "DE",
            fields: list[str] | None = None, scope: dict[str, Any] | None = None) -> None:
    settings: dict[str, Any] = {"defaultRegion": region}
    if fields is not None:
        settings["fields"] = fields
    if scope is not None:
        settings["scope"] = scope
    status = stack.onboard(tenant_id, name, settings)
    if status != 201:
        raise RuntimeError(f"onboarding {tenant_id} failed: {status}")


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
    """One more HTTP function process next to the stack's, started by the stack's launcher (own process group);
    ready once it answers and gunicorn's worker is there."""

    def __init__(self, stack: LocalStack, target: str, log_dir: Path, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = start_function(target, self.port, stack.env, log_dir / f"{target}-{self.port}.log", threads)
        self.popen = self.process.popen
        answers = self.process.ready
        self.process.ready = lambda: answers() and self.worker_pid() is not None
        try:
            self.process.wait_ready()
        except StackError:
            self.stop()
            raise

    def worker_pid(self) -> int | None:
        """gunicorn's worker (the process that serves requests), a child of the arbiter we started."""
        kids = children(self.popen.pid)
        return kids[0] if kids else None

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> FunctionProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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
        padded = [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=False)]
        return "| " + " | ".join(padded) + " |"

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
