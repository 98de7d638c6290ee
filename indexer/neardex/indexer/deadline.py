"""The deadline of the request being served, checked before each expensive stage.

A search or a write is a chain of stages (embed, dense, lexical, write); once the caller's deadline
has passed or the caller has gone, finishing the chain only takes cores from callers still
waiting. The server sets the request's deadline around the call (`bound`), and the stages call
`check` before they start: without a bound deadline (a library caller, a CLI run) it costs a
lookup and does nothing. A context variable carries it, so it follows the request's own thread and
needs no parameter threaded through every layer.

Work that runs long inside one stage asks `over` as it goes: SQLite's progress handler on the
store's read connections (stores/local.py) stops a statement once it is true, and the store turns
that interruption into the deadline's own error (`error`).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import Cancelled, DeadlineExceeded, NeardexError


@dataclass(frozen=True)
class Deadline:
    # time.monotonic() after which the caller no longer waits; None: no deadline.
    expires: float | None
    # False once the caller has cancelled the call (or its transport has given up on it).
    active: Callable[[], bool] = lambda: True

    def expired(self) -> bool:
        return self.expires is not None and time.monotonic() >= self.expires

    def over(self) -> bool:
        """Whether the caller no longer waits: its deadline passed, or it went away."""
        return self.expired() or not self.active()

    def error(self, when: str) -> NeardexError | None:
        """The error that ends the request now (`when` says at what point), or None while the
        caller still waits."""
        if self.expired():
            return DeadlineExceeded(f"deadline exceeded {when}")
        if not self.active():
            # A call whose deadline passed is inactive too: say so when that is the reason.
            if self.expired():
                return DeadlineExceeded(f"deadline exceeded {when}")
            return Cancelled(f"call cancelled {when}")
        return None

    def check(self, stage: str) -> None:
        """Raise DeadlineExceeded or Cancelled when `stage` should not start."""
        error = self.error(f"before {stage}")
        if error is not None:
            raise error


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("neardex_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


def check(stage: str) -> None:
    deadline = _current.get()
    if deadline is not None:
        deadline.check(stage)


def over() -> bool:
    """Whether the request being served should stop now; always False outside a request (a
    library caller, a CLI run), so work without a deadline is never stopped."""
    deadline = _current.get()
    return deadline is not None and deadline.over()


def error(when: str) -> NeardexError | None:
    """The bound request's DeadlineExceeded or Cancelled, when it is over; None otherwise."""
    deadline = _current.get()
    return None if deadline is None else deadline.error(when)


@contextlib.contextmanager
def bound(deadline: Deadline | None) -> Iterator[None]:
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)
