"""`python -m benchmarks [--quick] [name ...]`: every benchmark module of this package, one after another.

Modules are discovered (any `benchmarks/<name>.py` not starting with `_`), never imported here: each runs
in its own interpreter (`python -m benchmarks.<name>`), so one that fails or is missing does not stop the
others. Arguments other than names (e.g. `--quick`) are passed on to every module.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
PREFERRED_ORDER = ("registration", "relay", "cold_start", "deletion")


def discover() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (PREFERRED_ORDER.index(n) if n in PREFERRED_ORDER else len(PREFERRED_ORDER), n))


def main(argv: list[str]) -> int:
    available = discover()
    wanted = [a for a in argv if not a.startswith("-")]
    passed = [a for a in argv if a.startswith("-")]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    results = []
    for name in wanted or available:
        print(f"\n===== benchmarks.{name} {' '.join(passed)}".rstrip() + " =====\n", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *passed], cwd=ROOT)
        results.append((name, code, time.perf_counter() - started))
    print("\n===== summary =====\n")
    print("| benchmark | exit status | seconds |\n|---|---:|---:|")
    for name, code, seconds in results:
        print(f"| {name} | {code}{' (FAILED or FLAGGED)' if code else ''} | {seconds:.0f} |")
    return 1 if any(code for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
