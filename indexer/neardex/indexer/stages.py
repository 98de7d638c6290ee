"""The stages of a request, timed once: the per-stage timings a search answers with, and what a
watcher (the server's traces) sees of the same stages and of the store's round trips.

A search reports milliseconds per stage (embed, dense, lexical, fuse, feedback, rerank, group,
fetch) and the server feeds the same numbers to its histograms. Traces need the same stages as
spans, so they are not timed a second time: a stage is one `with timings.stage(name)` block, which
adds its milliseconds to the timings and tells the request's `Observer`, when there is one, that
it started and ended. Round trips to a store (`watch_calls`) and work timed by another thread
(`record`: the model scheduler's wait) are seen by the observer only; they are not response stages.

The observer is a context variable, set by the server around each call it traces (as deadline.py
binds the deadline): a library caller, a CLI run and an untraced server have none, and then a stage
costs a context-variable lookup beside its clock reads. This layer knows no tracing library.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar


class Observer(Protocol):
    def enter(self, name: str) -> Any:
        """A stage or call named `name` starts in this thread; the answer is handed to `exit`."""

    def exit(self, handle: Any, error: BaseException | None) -> None:
        """The stage `handle` came from ended (raising `error`, if not None)."""

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any]) -> None:
        """Work between two `time.time_ns()` readings, timed elsewhere (another thread), done for
        the stage running now."""


_observer: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("neardex_observer", default=None)


def observer() -> Observer | None:
    return _observer.get()


@contextlib.contextmanager
def observed(watcher: Observer | None) -> Iterator[None]:
    """The stages run inside the block are told to `watcher`."""
    token = _observer.set(watcher)
    try:
        yield
    finally:
        _observer.reset(token)


class Stage:
    """One timed stage; `Timings.stage` makes it."""

    __slots__ = ("_timings", "_name", "_started", "_observer", "_handle")

    def __init__(self, timings: Timings, name: str) -> None:
        self._timings, self._name = timings, name

    def __enter__(self) -> Stage:
        self._observer = _observer.get()
        self._handle = self._observer.enter(self._name) if self._observer is not None else None
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        ms = (time.perf_counter() - self._started) * 1000.0
        # A stage entered twice (grouping deepens the ranking) reports its time in all.
        self._timings[self._name] = self._timings.get(self._name, 0.0) + ms
        if self._observer is not None:
            self._observer.exit(self._handle, error)


class Timings(dict[str, float]):
    """Milliseconds per stage, as a response reports them."""

    def stage(self, name: str) -> Stage:
        return Stage(self, name)


def record(name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """Tell the observer, if any, about work timed elsewhere (see `Observer.record`)."""
    watcher = _observer.get()
    if watcher is not None:
        watcher.record(name, start_ns, end_ns, attributes)


F = TypeVar("F", bound=Callable[..., Any])


def _watched(name: str, method: F) -> F:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        watcher = _observer.get()
        if watcher is None:
            return method(*args, **kwargs)
        handle = watcher.enter(name)
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            watcher.exit(handle, exc)
            raise
        watcher.exit(handle, None)
        return result

    return call  # type: ignore[return-value]


def watch_calls(prefix: str, names: Iterable[str]) -> Callable[[type], type]:
    """A class decorator: each method of `names` is seen by the observer as a call named
    `prefix.name` (a store's round trips: `store.retrieve`, `store.fetch`)."""

    def decorate(cls: type) -> type:
        for name in names:
            setattr(cls, name, _watched(f"{prefix}.{name}", getattr(cls, name)))
        return cls

    return decorate
