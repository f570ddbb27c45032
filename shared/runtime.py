"""Process-level wiring shared by the entry points."""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from shared.config import function_target, settings_for

T = TypeVar("T")


def cold_start_check(function_name: str) -> None:
    """Fails the cold start of `function_name` when a setting it needs is missing (names the variable)."""
    if function_target() == function_name:
        settings_for(function_name)


def components(function_name: str):
    """Decorates an entry point's builder `build(config, store)`: the function's settings are checked at
    cold start, and its collaborators are built once per process on first use (`.reset()` rebuilds)."""
    cold_start_check(function_name)

    def decorate(build: Callable[..., T]) -> Callable[[], T]:
        def built() -> T:
            from shared import wiring

            config = settings_for(function_name)
            return build(config, wiring.store(config))

        return once(built)

    return decorate


def once(factory: Callable[[], T]) -> Callable[[], T]:
    """A lazily built process-wide singleton (clients, services), built exactly once even when the
    first requests of a cold instance arrive concurrently (functools.cache would build one per thread).
    `get.reset()` drops it, so the next call builds it again (e.g. from other settings)."""
    lock = threading.Lock()
    built: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        if not built:
            with lock:
                if not built:
                    built.append(factory())
        return built[0]

    def reset() -> None:
        with lock:
            built.clear()

    get.reset = reset  # type: ignore[attr-defined]
    return get
