"""Ask's sentences: embedded once, then read from the collection's cache, with the same vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neardex.indexer.embedding.loading import load_embedder
from neardex.indexer.retrieval.sentence_cache import SentenceCache


def test_cached_vectors_are_the_embedded_ones_and_cost_no_call() -> None:
    embedder = load_embedder(None, "auto", device="cpu")
    calls: list[list[str]] = []

    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return embedder.encode(texts)

    cache = SentenceCache(size=3)
    first = cache.vectors(["a volcano erupts", "bread rises", "a volcano erupts"], embed)
    assert calls == [["a volcano erupts", "bread rises"]]  # each text once
    np.testing.assert_allclose(first, embedder.encode(["a volcano erupts", "bread rises", "a volcano erupts"]),
                               atol=1e-5)
    again = cache.vectors(["bread rises", "tea is oxidised"], embed)
    assert calls[-1] == ["tea is oxidised"]
    np.testing.assert_allclose(again[0], first[1], atol=1e-6)
    cache.vectors(["coffee is roasted"], embed)  # a fourth text: the least recent one goes
    cache.vectors(["a volcano erupts"], embed)
    assert calls[-1] == ["a volcano erupts"]
    assert cache.vectors([], embed).shape == (0, embedder.dimension)
