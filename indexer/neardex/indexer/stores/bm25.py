"""BM25 as both stores rank with it: the formula of SQLite FTS5's bm25(), written once.

The local store ranks inside FTS5 (stores/local/fts.py). Milvus' own BM25 differs from it in
ways that change rankings: Lucene's IDF ln(1 + (N - n + 0.5) / (n + 0.5)), which keeps a word
found in most chunks worth ln 2 where FTS5's ln((N - n + 0.5) / (n + 0.5)) makes it worth
nothing; milvus-lite's default k1 of 1.5; and statistics per segment. So the Milvus store takes
Milvus' ranking as candidates only and scores them here, from the chunks' terms and the
collection's statistics (`Statistics`), as FTS5 would: both stores then rank alike
(bench/lexical_parity.py).

score(chunk) = sum over the query's distinct terms t found in it of
    idf(t) x tf x (K1 + 1) / (tf + K1 x (1 - B + B x length / average length))
with idf(t) = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6 (FTS5's floor), N the chunks, n those
holding t, tf the term's count in the chunk and length the chunk's count of terms.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# FTS5's bm25() constants; the Milvus store's sparse index is built with the same.
K1 = 1.2
B = 0.75
# FTS5's floor for the IDF of a term in more than half of the chunks.
MIN_IDF = 1e-6


def idf(rows: int, hits: int) -> float:
    """A term's IDF in `rows` chunks, `hits` of which hold it."""
    return max(math.log((rows - hits + 0.5) / (hits + 0.5)), MIN_IDF)


@dataclass(frozen=True)
class Statistics:
    """What BM25 needs of a collection for one query: its chunks, their average count of
    terms, and how many chunks hold each query term."""

    rows: int
    average_length: float
    hits: Mapping[str, int]

    def idf(self, term: str) -> float:
        return idf(self.rows, self.hits.get(term, 0))

    def score(self, terms: Sequence[str], chunk_terms: Sequence[str]) -> float:
        """The BM25 of a chunk, given as its terms, for a query's distinct terms."""
        counts = Counter(chunk_terms)
        norm = K1 * (1 - B + B * len(chunk_terms) / (self.average_length or 1.0))
        return sum(self.idf(t) * tf * (K1 + 1) / (tf + norm) for t in terms if (tf := counts.get(t, 0)))

    def most(self, terms: Sequence[str]) -> float:
        """The most the query's terms can score: the sum of idf x (K1 + 1), the limit a term's
        share reaches as it repeats (1 when there are no terms)."""
        return sum(self.idf(t) * (K1 + 1) for t in terms) or 1.0
