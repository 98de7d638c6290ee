"""Fusion of the dense and the lexical ranking into one.

The method neardex uses (FUSION below) was chosen by measurement, see ARCHITECTURE.md; the others
stay here because `bench/fusion_study.py` measures them all side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..query.analysis import Query

Ranked = list[tuple[str, float]]  # (key, score), best first


@dataclass(frozen=True)
class Fused:
    key: str
    score: float


def rrf(dense: Ranked, lexical: Ranked, k: float = 60.0, dense_weight: float = 0.5) -> list[Fused]:
    """Reciprocal rank fusion (Cormack et al., 2009), optionally weighted."""
    scores: dict[str, float] = {}
    for weight, ranked in ((dense_weight, dense), (1 - dense_weight, lexical)):
        for rank, (key, _) in enumerate(ranked):
            scores[key] = scores.get(key, 0.0) + 2 * weight / (k + rank + 1)
    return _sorted(scores)


def _minmax(ranked: Ranked, floor: float | None = None) -> dict[str, float]:
    """Scores mapped to [0, 1] over the list; floor fixes the low end at the scoring function's
    theoretical minimum instead of the list's (Bruch et al., 2023: "theoretical min-max")."""
    if not ranked:
        return {}
    top = ranked[0][1]
    low = floor if floor is not None else ranked[-1][1]
    span = top - low
    return {key: (s - low) / span if span > 0 else 1.0 for key, s in ranked}


def _zscore(ranked: Ranked) -> dict[str, float]:
    if not ranked:
        return {}
    scores = [s for _, s in ranked]
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) or 1.0
    return {key: (s - mean) / std for key, s in ranked}


def convex(dense: Ranked, lexical: Ranked, dense_weight: float,
           normalize: Callable[[Ranked], dict[str, float]]) -> list[Fused]:
    """Convex combination of normalized scores; a key missing from one list scores that list's
    minimum there (it ranked below everything retrieved). Ties, as when one weight is 0, keep
    the dense order."""
    nd, nl = normalize(dense), normalize(lexical)
    low_d = min(nd.values(), default=0.0)
    low_l = min(nl.values(), default=0.0)
    scores = {key: dense_weight * nd.get(key, low_d) + (1 - dense_weight) * nl.get(key, low_l)
              for key in nd.keys() | nl.keys()}
    return _sorted(scores, {key: nd.get(key, low_d - 1) for key in scores})


def minmax_convex(dense: Ranked, lexical: Ranked, dense_weight: float) -> list[Fused]:
    return convex(dense, lexical, dense_weight, _minmax)


def tmm_convex(dense: Ranked, lexical: Ranked, dense_weight: float) -> list[Fused]:
    """Theoretical min-max: cosine similarity is bounded below by -1, BM25 by 0."""
    nd = _minmax(dense, floor=-1.0)
    nl = _minmax(lexical, floor=0.0)
    scores = {key: dense_weight * nd.get(key, 0.0) + (1 - dense_weight) * nl.get(key, 0.0)
              for key in nd.keys() | nl.keys()}
    return _sorted(scores)


def zscore_convex(dense: Ranked, lexical: Ranked, dense_weight: float) -> list[Fused]:
    return convex(dense, lexical, dense_weight, _zscore)


Method = Callable[[Ranked, Ranked, float], list[Fused]]


def fuse_candidates(dense: list[Any], lexical: list[Any], weight: float,
                    method: Method | None = None) -> list[Any]:
    """Fuse two retrievers' document candidates; each fused document keeps the chunk of the
    retriever that ranked it higher."""
    method = method or FUSION
    if not dense or not lexical:
        return list(dense or lexical)
    best: dict[str, Any] = {}
    for ranked in (dense, lexical):
        for rank, cand in enumerate(ranked):
            if cand.doc_id not in best or rank < best[cand.doc_id][0]:
                best[cand.doc_id] = (rank, cand)
    fused = method([(c.doc_id, c.score) for c in dense], [(c.doc_id, c.score) for c in lexical], weight)
    return [replace(best[f.key][1], score=f.score) for f in fused]


def _sorted(scores: dict[str, float], tiebreak: dict[str, float] | None = None) -> list[Fused]:
    second = tiebreak or {}
    return [Fused(k, s) for k, s in
            sorted(scores.items(), key=lambda kv: (-kv[1], -second.get(kv[0], 0.0), kv[0]))]


# Chosen by bench/fusion_study.py on msmarco-dl19-5k, an unseen-language copy of it and the
# samples' questions; the reasons are in ARCHITECTURE.md.
FUSION: Method = minmax_convex
# Rocchio pseudo-relevance feedback for dense retrieval with the settings of Li et al. (2022,
# "Pseudo Relevance Feedback with Deep Language Models and Dense Retrievers"): the top 5
# documents, query weight 0.4, feedback weight 0.6.
PRF_DEPTH = 5
PRF_QUERY_WEIGHT = 0.4
PRF_FEEDBACK_WEIGHT = 0.6


def rocchio(query: Any, feedback_vectors: Any) -> Any:
    import numpy as np

    if not len(feedback_vectors):
        return query
    moved = PRF_QUERY_WEIGHT * query + PRF_FEEDBACK_WEIGHT * feedback_vectors.mean(axis=0)
    return (moved / np.linalg.norm(moved)).astype(np.float32)


def vocabulary_coverage(embedder: Any, query: Query) -> float:
    """Share of the query's words the model's tokenizer keeps whole (one known vocabulary piece).

    A word the vocabulary lacks reaches the model as fragments it barely learned; in a language
    the model never saw, that is nearly every word, and its embeddings carry little meaning."""
    words = [w for w in query.found if not w.isdigit()]
    if not words:
        return 1.0
    from ..embedding.embedder import plain_tokenizer

    tokenizer = plain_tokenizer(embedder)
    unknown = embedder.tokenizer.unk_token
    known = sum(1 for w in words
                if len(pieces := tokenizer.encode(w, add_special_tokens=False).tokens) == 1
                and pieces[0] != unknown)
    return known / len(words)


def dense_weight(embedder: Any, query: Query) -> float:
    """The dense retriever's share of the fused score: the query's vocabulary coverage. Words the
    model knows are where its embedding carries meaning; BM25 matches the rest exactly."""
    return vocabulary_coverage(embedder, query)
