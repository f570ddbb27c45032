"""Cold start of the relay_contacts entry point vs. a bare functions-framework function.

`python -m benchmarks.cold_start [--quick]` starts its own local stack (emulators and fakes, no function
processes: only their environment is needed) and prints two tables:

- `import main` in a fresh interpreter (FUNCTION_TARGET=relay_contacts) vs. the same for a bare
  functions-framework function, in alternating runs, and import + the first request's wiring;
- the packages that dominate the relay's `import main` (`python -X importtime`) and through which
  project module each comes in.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import local_stack, median, parse_args, table
from local.launcher import ROOT


@dataclass(frozen=True)
class Sizes:
    import_runs: int


FULL = Sizes(import_runs=7)
QUICK = Sizes(import_runs=3)


BARE_FUNCTION = '''import functions_framework


@functions_framework.http
def hello(request):
    return "ok"
'''
TIMED_IMPORT = "import time; t = time.perf_counter(); import main; print(time.perf_counter() - t)"


def _import_seconds(cwd: Path, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", TIMED_IMPORT], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"import main failed in {cwd}: {out.stderr[-1500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _importtime(cwd: Path, env: dict[str, str]) -> list[tuple[int, int, str, int]]:
    """(self µs, cumulative µs, module, depth) per line of `python -X importtime -c 'import main'`."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import main"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"import main failed in {cwd}: {out.stderr[-1500:]}")
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # one space after "|", two per level
        rows.append((int(self_us), int(cumulative), name.strip(), depth))
    return rows


def _package(module: str) -> str:
    """Groups modules for the import table: google.cloud.<product>, google.<library>, else the top package."""
    parts = module.split(".")
    if parts[0] == "google" and len(parts) > 2 and parts[1] == "cloud":
        return ".".join(parts[:3])
    if parts[0] == "google" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


PROJECT_PACKAGES = ("main", "functions", "shared")


def _with_importers(rows: list[tuple[int, int, str, int]]) -> list[tuple[int, int, str, list[str]]]:
    """(self µs, cumulative µs, module, chain of importers) per module.

    -X importtime prints a module when its import completes (children first, indented); walking the lines
    backwards gives each module's chain of importers.
    """
    out, chain = [], []
    for self_us, cumulative, name, depth in reversed(rows):
        chain = chain[:depth]
        out.append((self_us, cumulative, name, list(chain)))
        chain.append(name)
    return out


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PROJECT_PACKAGES


def _boundary_imports(rows: list[tuple[int, int, str, int]]) -> list[tuple[int, str]]:
    """(cumulative µs, module) of each non-project import made directly by project code under main."""
    return [(cumulative, f"{name} (from {chain[-1]})") for _, cumulative, name, chain in _with_importers(rows)
            if chain and chain[0] == "main" and not _is_project(name) and all(map(_is_project, chain))]


def _via(chain: list[str], name: str) -> str:
    """'project module → first third-party module' of an import chain."""
    path = chain + [name]
    for index, module in enumerate(path):
        if not _is_project(module):
            return f"{path[index - 1]} → {module}" if index else module
    return path[-2] if len(path) > 1 else name


def cold_start(stack, sizes: Sizes) -> dict:
    env = dict(stack.env.items())
    env.pop("PYTHONPATH", None)
    relay_env = dict(env, FUNCTION_TARGET="relay_contacts")
    with tempfile.TemporaryDirectory(prefix="bench-bare-function-") as bare_dir:
        bare = Path(bare_dir)
        (bare / "main.py").write_text(BARE_FUNCTION)
        bare_env = dict(env, FUNCTION_TARGET="hello")
        _import_seconds(ROOT, relay_env)  # warm the file-system cache and .pyc files for both
        _import_seconds(bare, bare_env)
        relay_times, bare_times = [], []
        for run in range(sizes.import_runs):
            for kind in (("relay", "bare") if run % 2 == 0 else ("bare", "relay")):
                if kind == "relay":
                    relay_times.append(_import_seconds(ROOT, relay_env))
                else:
                    bare_times.append(_import_seconds(bare, bare_env))
        wiring_times = []
        for _ in range(max(2, sizes.import_runs // 2)):
            out = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import main; "
                                  "from functions.relay_contacts.handler import validator_and_service; "
                                  "validator_and_service(); "
                                  "print(time.perf_counter() - t)"], cwd=ROOT, env=relay_env, capture_output=True,
                                 text=True, timeout=120)
            if out.returncode == 0:
                wiring_times.append(float(out.stdout.strip().splitlines()[-1]))
        relay_rows = _importtime(ROOT, relay_env)
        bare_rows = _importtime(bare, bare_env)
    ms = 1000.0
    table(f"Cold start: `import main` in a fresh interpreter, {sizes.import_runs} alternating runs (ms)",
          ["entry point", "median", "min", "max", "× bare"],
          [["bare functions-framework function (tmp dir)", median(bare_times) * ms, min(bare_times) * ms,
            max(bare_times) * ms, 1.0],
           ["relay_contacts (repository main.py, FUNCTION_TARGET set)", median(relay_times) * ms,
            min(relay_times) * ms, max(relay_times) * ms, median(relay_times) / median(bare_times)],
           ["relay_contacts import + first-request wiring (validator_and_service())",
            median(wiring_times) * ms if wiring_times else float("nan"),
            min(wiring_times) * ms if wiring_times else float("nan"),
            max(wiring_times) * ms if wiring_times else float("nan"),
            median(wiring_times) / median(bare_times) if wiring_times else float("nan")]])
    main_total = next((cum for _, cum, name, _ in relay_rows if name == "main"), 0)
    bare_total = next((cum for _, cum, name, _ in bare_rows if name == "main"), 0)
    by_package: dict[str, int] = defaultdict(int)
    entry: dict[str, tuple[int, int, str]] = {}  # package -> (depth, -cumulative, via) of its top-most module
    for self_us, cumulative, name, chain in _with_importers(relay_rows):
        package = _package(name)
        by_package[package] += self_us
        if chain and chain[0] == "main":
            entry[package] = min(entry.get(package, (10**6, 0, "")), (len(chain), -cumulative, _via(chain, name)))
    top = sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:5]
    heavy = sorted(_boundary_imports(relay_rows), reverse=True)[:5]
    table("What dominates the relay's `import main` (python -X importtime, one run)",
          ["package (self time summed over its modules)", "ms", "% of import main", "imported through"],
          [[name, us / 1000, f"{us / main_total * 100:.0f} %" if main_total else "",
            entry.get(name, (0, 0, ""))[2]] for name, us in top]
          + [["total `import main` (this run)", main_total / 1000, "100 %", ""],
             ["bare function `import main` (same tool)", bare_total / 1000,
              f"{bare_total / main_total * 100:.0f} %" if main_total else "", ""]],
          note="Heaviest third-party imports made directly by project code, cumulative ms: "
               + ", ".join(f"{name} {cum / 1000:.0f}" for cum, name in heavy) + ". main.py re-exports all five "
               "entry points, so relay_contacts's cold start also pays for the other handlers' module-level imports.")
    return {"import_ratio": median(relay_times) / median(bare_times)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"## relay_contacts cold-start benchmark{' (--quick)' if args.quick else ''}\n", flush=True)
    with local_stack("cold-start", with_functions=False) as stack:
        results = cold_start(stack, sizes)
    print(f"cold-start benchmark finished in {time.perf_counter() - started:.0f} s: cold import "
          f"× {results['import_ratio']:.1f} of bare\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
