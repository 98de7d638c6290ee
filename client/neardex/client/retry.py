"""When and how long to wait before trying a failed call again."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from .errors import from_rpc_error, status_code_of

__all__ = ["RetryPolicy"]

# Caps the exponent so a huge attempt number cannot overflow a float.
_MAX_EXPONENT = 62
# Trailing metadata a server sends with a refusal for load (RESOURCE_EXHAUSTED): the call may be
# sent again after this many milliseconds. Without it, RESOURCE_EXHAUSTED means the request itself
# is over a limit and would fail again.
RETRY_AFTER_MS = "neardex-retry-after-ms"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries UNAVAILABLE (the request never reached a server able to serve it) and a refusal
    for load (RESOURCE_EXHAUSTED carrying the server's retry-after) for every call, and
    DEADLINE_EXCEEDED only for idempotent calls, whose repetition is harmless. Use
    ``RetryPolicy(max_attempts=1)`` to turn retries off."""

    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def should_retry(
        self, code: grpc.StatusCode, idempotent: bool, attempt: int, overloaded: bool = False
    ) -> bool:
        """``attempt`` counts the attempts made so far, the failed one included (1-based);
        ``overloaded``: the server refused the call for load and said when to retry."""
        if attempt >= self.max_attempts:
            return False
        if code == grpc.StatusCode.UNAVAILABLE or (overloaded and code == grpc.StatusCode.RESOURCE_EXHAUSTED):
            return True
        return idempotent and code == grpc.StatusCode.DEADLINE_EXCEEDED

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt``: exponential, capped at
        ``max_delay``, with the upper half jittered so clients that failed together spread out
        instead of retrying in lockstep."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.max_delay, self.base_delay * 2.0**exponent)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def delay_or_raise(policy: RetryPolicy, err: grpc.RpcError, idempotent: bool, attempt: int) -> float:
    """The shared decision of the sync and async retry loops: the delay before the next attempt,
    or the mapped :class:`~neardex.client.errors.NeardexError` when giving up."""
    retry_after = _retry_after(err)
    if policy.should_retry(status_code_of(err), idempotent, attempt, retry_after is not None):
        return max(policy.backoff(attempt), retry_after or 0.0)
    raise from_rpc_error(err) from err


def _retry_after(err: grpc.RpcError) -> float | None:
    """Seconds the server asked the caller to wait before trying again, if it asked."""
    trailing = getattr(err, "trailing_metadata", None)
    try:
        pairs = trailing() if callable(trailing) else None
        for key, value in pairs or ():
            if key == RETRY_AFTER_MS:
                return max(float(value), 0.0) / 1000.0
    except (TypeError, ValueError):
        return None
    return None
