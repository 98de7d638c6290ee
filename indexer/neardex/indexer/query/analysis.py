"""Query text analysed once per search: its distinct words and the stems the indexes hold.

A query is analysed once (`analyze`, linear in its length) into a `Query` that every lexical
read of either store takes. Its distinct terms are capped (NEARDEX_MAX_QUERY_TERMS): the work of
an OR query and of its score scale grows with its terms, and a text of a few megabytes is
hundreds of thousands of them. Stop words are dropped (BM25's IDF already makes them nearly
worthless, and dropping them keeps OR queries short and fast). The analysis lives here alone, so
both stores match the same words.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument

WORD = re.compile(r"\w+", re.UNICODE)
# Distinct terms a query may have after analysis; a server setting (NEARDEX_MAX_QUERY_TERMS).
DEFAULT_MAX_QUERY_TERMS = 1024

# The English stop-word list of the Snowball project (also used by NLTK and bm25s).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with you your yours
yourself yourselves
""".split())


def query_words(query: str) -> list[str]:
    """The query's distinct words, stop words dropped (kept if that is all there is)."""
    return _distinct(WORD.findall(query))


def _distinct(found: list[str]) -> list[str]:
    # Lowercased once each distinct spelling: a long query of repeated words costs one pass.
    words = list(dict.fromkeys(w.lower() for w in dict.fromkeys(found)))
    return [w for w in words if w not in STOPWORDS] or words


@dataclass(frozen=True)
class Query:
    """A query text analysed once: its distinct words, lowercased, stop words dropped."""

    words: tuple[str, ...]
    # Every word as the text has it, in order, repeats and stop words included (hybrid search
    # weighs the retrievers by how many of them the model knows).
    found: tuple[str, ...] = ()

    @functools.cached_property
    def stems(self) -> tuple[str, ...]:
        """The distinct terms as FTS5's tokenizer makes them of the words (the Milvus store's BM25
        reads these)."""
        return tuple(dict.fromkeys(stem(self.words)))


def analyze(text: str, max_terms: int = DEFAULT_MAX_QUERY_TERMS, field: str = "query") -> Query:
    """The query's terms; InvalidArgument naming `field` when there are more than max_terms."""
    found = WORD.findall(text)
    words = _distinct(found)
    if len(words) > max_terms:
        raise InvalidArgument(f"{field}: {len(words)} terms after analysis; the limit is {max_terms}"
                              " (NEARDEX_MAX_QUERY_TERMS)")
    return Query(tuple(words), tuple(found))


def stem(words: Iterable[str]) -> list[str]:
    """Words as FTS5's `porter unicode61 remove_diacritics 2` tokenizer indexes them: lowercased,
    diacritics removed, Porter-stemmed."""
    global _stemmer
    if _stemmer is None:
        import Stemmer

        _stemmer = Stemmer.Stemmer("porter")  # FTS5's stemmer: Porter's original algorithm
    plain = ["".join(c for c in unicodedata.normalize("NFKD", w.lower()) if not unicodedata.combining(c))
             for w in words]
    return [str(t) for t in _stemmer.stemWords([w for w in plain if w])]


_stemmer: Any = None
