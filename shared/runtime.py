"""Process-level wiring shared by the entry points."""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from shared.config import function_target, settings_for

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.store import Store

T = TypeVar("T")


def cold_start_check(function_name: str) -> None:
    """Fails the cold start of `function_name` when a setting it needs is missing (names the variable)."""
    if function_target() == function_name:
        settings_for(function_name)


def components(function_name: str) -> Callable[[Callable[[Settings, Store], T]], Once[T]]:
    """Decorates an entry point's builder `build(config, store)`: the function's settings are checked at
    cold start, and its collaborators are built once per process on first use (`.reset()` rebuilds)."""
    cold_start_check(function_name)

    def decorate(build: Callable[[Settings, Store], T]) -> Once[T]:
        def built() -> T:
            from shared import wiring

            config = settings_for(function_name)
            return build(config, wiring.store(config))

        return Once(built)

    return decorate


class Once(Generic[T]):
    """A lazily built process-wide singleton (clients, services), built exactly once even when the
    first requests of a cold instance arrive concurrently (functools.cache would build one per thread).
    `reset()` drops it, so the next call builds it again (e.g. from other settings)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._lock = threading.Lock()
        self._built: list[T] = []
        functools.update_wrapper(self, factory)

    def __call__(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._built.append(self._factory())
        return self._built[0]

    def reset(self) -> None:
        with self._lock:
            self._built.clear()


def once(factory: Callable[[], T]) -> Once[T]:
    """`Once(factory)`, as a decorator."""
    return Once(factory)
