"""The rerank stage: a cross-encoder reads the query with each of the best candidates.

Retrieval ranks documents by their best chunk; a cross-encoder reads the query and that chunk
together (its document's title before it, as the chunk was embedded) and scores the pair. The best
`depth` candidates (after min_score, which applies to the retrieval score on its documented scale)
are ordered by that probability, the others follow in retrieval order, and only then is the page
(offset, k) cut. A hit keeps its retrieval score; the rerank probability and rank are its
"rerank" retriever entry. With diversity, MMR follows: it chooses among the reranked candidates
with the rerank probability as their relevance.

The model is called in batches of BATCH pairs, and the caller's deadline is checked before each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import deadline
from ..embedding.rerankers import RerankCalls
from ..errors import InvalidArgument
from .request import Rerank

# Candidates reranked when a request or a collection names none: a few pages of results, read
# in a couple of model calls.
DEFAULT_DEPTH = 50
# The most a request may ask for: each candidate is one pass of the cross-encoder.
MAX_DEPTH = 1000
# Pairs per model call: between two calls the caller's deadline is checked.
BATCH = 32
# Turns a collection's default off for one request.
OFF = "none"


def check(asked: Rerank, field: str = "rerank") -> None:
    """Refuse a depth outside 0 to MAX_DEPTH, naming `field`.depth."""
    if not 0 <= asked.depth <= MAX_DEPTH:
        raise InvalidArgument(f"{field}.depth: must be between 0 and {MAX_DEPTH} (0: {DEFAULT_DEPTH}),"
                              f" got {asked.depth}")


def passage(title: str, text: str) -> str:
    """What the cross-encoder reads of a candidate: its chunk, after its document's title."""
    return f"{title} {text}" if title else text


def scores(calls: RerankCalls, query: str, passages: Sequence[str]) -> np.ndarray:
    """The cross-encoder's probability for each (query, passage), BATCH pairs per call; the
    caller's deadline is checked before each call."""
    out = []
    for start in range(0, len(passages), BATCH):
        deadline.check("rerank")
        out.append(np.asarray(calls([(query, p) for p in passages[start : start + BATCH]]),
                              dtype=np.float32).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
