"""A store whose method calls are counted by name, swapped into a collection for a while; and
the roads to a model with their calls and texts counted (a write that embeds nothing makes none).

`view()` is not counted: on the Milvus store it does nothing, on the local store it takes an
in-process read lock; neither is a round trip.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from neardex.indexer.embedding.embedder import DirectCalls, Embedder


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


class CountingCalls(DirectCalls):
    """Straight to the model, like `DirectCalls`, counting every model call and text into `counts`
    (shared by every collection a catalog opens with `CountingCalls.factory`)."""

    def __init__(self, embedder: Embedder, counts: collections.Counter[str]) -> None:
        super().__init__(embedder)
        self.counts = counts

    def queries(self, texts: Any) -> np.ndarray:
        self.counts["calls"] += 1
        self.counts["texts"] += len(texts)
        return super().queries(texts)

    def documents(self, texts: Any, batch_size: int | None = None) -> np.ndarray:
        self.counts["calls"] += 1
        self.counts["texts"] += len(texts)
        return super().documents(texts, batch_size)

    @staticmethod
    def factory(counts: collections.Counter[str]) -> Any:
        """A Catalog's `model_calls` that counts into `counts`."""
        return lambda embedder: CountingCalls(embedder, counts)
