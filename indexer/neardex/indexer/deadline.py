"""The deadline of the request being served, checked before each expensive stage.

A search or a write is a chain of stages (embed, dense, lexical, write); once the caller's deadline
has passed or the caller has gone, finishing the chain only takes cores from callers still
waiting. The server sets the request's deadline around the call (`bound`), and the stages call
`check` before they start: without a bound deadline (a library caller, a CLI run) it costs a
lookup and does nothing. A context variable carries it, so it follows the request's own thread and
needs no parameter threaded through every layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import Cancelled, DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    # time.monotonic() after which the caller no longer waits; None: no deadline.
    expires: float | None
    # False once the caller has cancelled the call (or its transport has given up on it).
    active: Callable[[], bool] = lambda: True

    def check(self, stage: str) -> None:
        """Raise DeadlineExceeded or Cancelled when `stage` should not start."""
        if self.expires is not None and time.monotonic() >= self.expires:
            raise DeadlineExceeded(f"deadline exceeded before {stage}")
        if not self.active():
            if self.expires is not None and time.monotonic() >= self.expires:
                raise DeadlineExceeded(f"deadline exceeded before {stage}")
            raise Cancelled(f"call cancelled before {stage}")


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("neardex_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


def check(stage: str) -> None:
    deadline = _current.get()
    if deadline is not None:
        deadline.check(stage)


@contextlib.contextmanager
def bound(deadline: Deadline | None) -> Iterator[None]:
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)
