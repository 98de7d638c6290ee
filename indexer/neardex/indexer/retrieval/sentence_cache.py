"""Vectors of passage texts a request waits for (Ask's sentences), kept for the next request.

Ask embeds every sentence of every passage it retrieves, about a hundred per question; the same
passages answer many questions, so most of those sentences were embedded a moment ago (an
evaluation of 1,190 questions over 240 paragraphs embeds about 1,500 distinct sentences, not
140,000). A text's vector depends only on the text and the collection's encoder and prompt, so the
cache is keyed by the text alone, per collection, needs no invalidation when documents change,
and is bounded by a count of vectors (least recently used go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

# 20,000 vectors of 384 floats are 30 MB.
DEFAULT_SIZE = 20_000


class SentenceCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        """The texts' vectors, in order: the cached ones, and the rest embedded in one call."""
        if not texts:
            return embed(texts)
        with self._lock:
            found = {t: v for t in dict.fromkeys(texts) if (v := self._vectors.get(t)) is not None}
            for t in found:
                self._vectors.move_to_end(t)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = embed(missing)
            found.update(zip(missing, fresh, strict=True))
            with self._lock:
                for t, v in zip(missing, fresh, strict=True):
                    self._vectors[t] = v
                    self._vectors.move_to_end(t)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return np.stack([found[t] for t in texts])
