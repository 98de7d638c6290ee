"""When documents stop existing: the checks on an expiry and on a collection's time to live.

An expiry is a unix time (float seconds) stored with the document; every read compares it with
the clock, so an expired document is gone at once, before any purge, and after a restart or a
kill -9 as well (the store keeps the time, not a timer). Purging only reclaims the space.
A collection's `ttl_seconds` gives documents written without an expiry one, counted from their
write: it is applied once, when the engine plans the write, and stored like an explicit one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .documents import Document
from .errors import InvalidArgument

# The latest expiry a protobuf Timestamp can spell (9999-12-31T23:59:59Z): later ones, and
# time-to-live values that reach past it, are refused rather than wrapped or clamped.
MAX_EXPIRES_AT = 253402300799.0
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600


def check_ttl(ttl: int, field: str = "ttl_seconds") -> int:
    """A collection's time to live in whole seconds: 0 (none) up to a century."""
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidArgument(f"{field}: must be a whole number of seconds, got {ttl!r}")
    if ttl < 0:
        raise InvalidArgument(f"{field}: must not be negative (0 means documents never expire); got {ttl}")
    if ttl > MAX_TTL_SECONDS:
        raise InvalidArgument(f"{field}: at most {MAX_TTL_SECONDS} seconds (100 years); got {ttl}")
    return ttl


def check_expiry(value: float, field: str, now: float) -> None:
    """An expiry a write may carry: finite, in the future, within a Timestamp's range."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(f"{field}: not a finite time")
    if value > MAX_EXPIRES_AT:
        raise InvalidArgument(f"{field}: after 9999-12-31T23:59:59Z, the latest time a timestamp holds")
    if value <= now:
        raise InvalidArgument(f"{field}: {value:.3f} is in the past (now {now:.3f}); a document written"
                              " already expired would never be found")


def effective(documents: Sequence[Document], ttl: int, now: float) -> list[Document]:
    """The documents as they are stored: each expiry checked, and the collection's ttl (when
    above 0) given to those without one, counted from now."""
    out = []
    for i, doc in enumerate(documents):
        if doc.expires_at is not None:
            check_expiry(doc.expires_at, f"documents[{i}].expires_at", now)
        elif ttl > 0:
            doc = replace(doc, expires_at=now + ttl)
        out.append(doc)
    return out
