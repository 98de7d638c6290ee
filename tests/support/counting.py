"""A store whose method calls are counted by name, swapped into a collection for a while.

`view()` is not counted: on the Milvus store it does nothing, on the local store it takes an
in-process read lock; neither is a round trip.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any


class CountingStore:
    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name == "view":
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


@contextlib.contextmanager
def counting(collection: Any) -> Iterator[CountingStore]:
    """The collection reads through a counting proxy of its store inside the block."""
    real = collection.store
    proxy = CountingStore(real)
    collection.store = proxy
    try:
        yield proxy
    finally:
        collection.store = real
