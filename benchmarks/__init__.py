"""Benchmarks on the local stack: each module prints ratios measured side by side in one run.

`python -m benchmarks [--quick]` runs every benchmark module in this package (`make bench`);
`python -m benchmarks.<name> [--quick]` runs one. Each starts and stops its own local stack.
Modules whose name starts with `_` are helpers, not benchmarks.
"""
