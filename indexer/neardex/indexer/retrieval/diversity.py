"""Maximal marginal relevance (Carbonell and Goldstein, 1998): results that are relevant and not
near-copies of each other.

Each next hit is the candidate with the highest (1 - diversity) x relevance - diversity x its
highest cosine to the hits already chosen, where relevance is the hit's score on the documented
scale (a cosine in dense and hybrid search, a BM25 share in lexical search) and the cosines are
between the candidates' best chunks' stored vectors (unit length). Candidates come from the
ranking already made, so diversity re-orders, never retrieves.
"""

from __future__ import annotations

import numpy as np

# Candidates MMR chooses among, at least: enough for near-copies at the top to be replaced by
# documents further down.
POOL = 50


def mmr(relevance: np.ndarray, vectors: np.ndarray, diversity: float, n: int) -> list[int]:
    """Indexes of the n candidates chosen, in the order chosen."""
    count = min(n, len(relevance))
    if count == 0:
        return []
    closest = np.full(len(relevance), -np.inf, dtype=np.float32)  # highest cosine to a chosen hit
    taken = np.zeros(len(relevance), dtype=bool)
    chosen: list[int] = []
    for _ in range(count):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = (1 - diversity) * relevance - diversity * penalty
        value[taken] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        taken[best] = True
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen
