"""One search, checked and analysed once (`Collection.request`), then answered (`Collection.run`).

Every check a search needs (the caller's vector, the mode, empty or oversized text) is made once,
before any work starts, and the text is analysed once into the `Query` every lexical read takes
and hybrid fusion weighs: the server, a batch of searches and question answering build the request
and hand it on, so no layer checks again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..embedding.rerankers import RerankCalls
from ..query.analysis import Query
from ..query.filters import Filter


@dataclass(frozen=True)
class Rerank:
    """A rerank stage as a caller asks for it: a cross-encoder (a folder or Hugging Face id; ""
    the collection's default, "none" none) and the candidates it reads (0: the default)."""

    model: str = ""
    depth: int = 0


@dataclass(frozen=True)
class Reranker:
    """A rerank stage resolved: the model's name, the candidates it reads, and the road to it."""

    model: str
    depth: int
    calls: RerankCalls


@dataclass(frozen=True, eq=False)
class SearchRequest:
    mode: str  # resolved: dense, lexical or hybrid
    k: int
    text: str  # "" without text
    query: Query  # the text analysed (no words in dense mode)
    # Checked (unit length in a collection without a model), or the text's embedding; None while
    # the text is still to be embedded (and in lexical mode, which needs no vector).
    vector: np.ndarray | None
    flt: Filter | None = None
    min_score: float | None = None
    ef_search: int = 0
    nprobe: int = 0
    # Hits skipped before the k returned, and the MMR trade-off (0: relevance alone).
    offset: int = 0
    diversity: float = 0.0
    # The cross-encoder stage after retrieval (retrieval/rerank.py); None: none.
    rerank: Reranker | None = None
    # The metadata path hits are grouped by ("" ungrouped; offset and k then count groups), the
    # documents per group, and the matching chunks each hit carries (0: none beside its own text).
    group_by: str = ""
    group_size: int = 0
    chunks_per_document: int = 0

    @property
    def reach(self) -> int:
        """Hits ranked to answer: every one up to the end of the page."""
        return self.offset + self.k

    @property
    def needs_embedding(self) -> bool:
        return self.vector is None and self.mode != "lexical"
