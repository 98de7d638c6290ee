"""BM25 over the same chunks as the vectors, with SQLite's FTS5 full-text engine.

FTS5 ranks with Okapi BM25 (k1 = 1.2, b = 0.75) and stems with the Porter stemmer. Its table
lives in the collection's own SQLite database and is written in the same transaction as the
chunks, so the lexical index is durable and in step with every upsert and delete by construction:
no separate file, rebuild or replay. Stop words are dropped from queries (BM25's IDF already makes
them nearly worthless, and dropping them keeps OR queries short and fast).

A query is analysed once per search (`analyze`, linear in its length) into a `Query` that every
lexical read of either store takes. Its distinct terms are capped (NEARDEX_MAX_QUERY_TERMS): the
work of an OR query and of its score scale grows with its terms, and a text of a few megabytes
is hundreds of thousands of them. The analysis itself (words, stems) lives here alone, so both
stores match the same words.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import deadline
from .errors import InvalidArgument

TABLE = "chunks_fts"
# remove_diacritics 2: "café" matches "cafe" in any Latin-script language.
TOKENIZE = "porter unicode61 remove_diacritics 2"
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


def create_table(db: sqlite3.Connection) -> bool:
    """Create the lexical table if missing; True when it had to be created (so must be filled)."""
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    if exists:
        return False
    db.execute(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(text, tokenize = '{TOKENIZE}')")
    return True


def add(db: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """Index (chunk id, text) pairs; the chunk id is the row id, as it is the FAISS id."""
    db.executemany(f"INSERT INTO {TABLE} (rowid, text) VALUES (?, ?)", rows)


def rebuild(db: sqlite3.Connection) -> int:
    """Refill the lexical table from the stored chunks (each with its document's title); the
    caller holds a write transaction. Returns the rows written."""
    db.execute(f"DELETE FROM {TABLE}")
    rows = db.execute("SELECT c.id, d.title, d.text, c.start, c.end FROM chunks c"
                      " JOIN documents d ON d.id = c.doc_id").fetchall()
    add(db, ((cid, f"{title} {text[start:end]}" if title else text[start:end])
             for cid, title, text, start, end in rows))
    return len(rows)


def row_ids(db: sqlite3.Connection) -> set[int]:
    return {r[0] for r in db.execute(f"SELECT rowid FROM {TABLE}")}


def remove(db: sqlite3.Connection, chunk_ids: Sequence[int]) -> None:
    db.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", [(i,) for i in chunk_ids])


def query_words(query: str) -> list[str]:
    """The query's distinct words, stop words dropped (kept if that is all there is)."""
    # Lowercased once each distinct spelling: a long query of repeated words costs one pass.
    words = list(dict.fromkeys(w.lower() for w in dict.fromkeys(WORD.findall(query))))
    return [w for w in words if w not in STOPWORDS] or words


@dataclass(frozen=True)
class Query:
    """A query text analysed once: its distinct words, lowercased, stop words dropped."""

    words: tuple[str, ...]

    @functools.cached_property
    def match(self) -> str | None:
        """An FTS5 OR-query of the words; None when there are none."""
        return " OR ".join(_term(w) for w in self.words) or None

    @functools.cached_property
    def stems(self) -> tuple[str, ...]:
        """The distinct terms as FTS5's tokenizer makes them of the words (the Milvus store's BM25
        reads these)."""
        return tuple(dict.fromkeys(stem(self.words)))


def analyze(text: str, max_terms: int = DEFAULT_MAX_QUERY_TERMS, field: str = "query") -> Query:
    """The query's terms; InvalidArgument naming `field` when there are more than max_terms."""
    words = query_words(text)
    if len(words) > max_terms:
        raise InvalidArgument(f"{field}: {len(words)} terms after analysis; the limit is {max_terms}"
                              " (NEARDEX_MAX_QUERY_TERMS)")
    return Query(tuple(words))


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


def _term(word: str) -> str:
    # Quoted, each word is a plain term: no FTS5 operator or column filter can be injected.
    return '"' + word.replace('"', '""') + '"'


# FTS5's bm25() constants: a term's share of the score saturates at idf x (K1 + 1).
K1 = 1.2


def max_score(db: sqlite3.Connection, query: Query) -> float:
    """The highest BM25 the query's words can reach in this index: the sum, over its words, of
    idf x (k1 + 1), the limit a word's share reaches as it repeats. Dividing by it puts scores on a
    0-to-1 scale that means the same for every query. idf as FTS5 computes it: log((N - n + 0.5) /
    (n + 0.5)), at least 1e-6."""
    (rows,) = db.execute(f"SELECT COUNT(*) FROM {TABLE}_docsize").fetchone()
    total = 0.0
    for word in query.words:
        # One statement a word, each too short for the progress handler to see: checked here.
        deadline.check("lexical scale")
        (hits,) = db.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE {TABLE} MATCH ?", (_term(word),)).fetchone()
        total += max(math.log((rows - hits + 0.5) / (hits + 0.5)), 1e-6) * (K1 + 1)
    return total or 1.0


def search(db: sqlite3.Connection, query: Query, k: int,
           allowed_sql: tuple[str, list[object]] | None = None) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) best first; allowed_sql restricts to chunk ids a subquery selects."""
    if query.match is None:
        return []
    sql = f"SELECT rowid, -bm25({TABLE}) AS score FROM {TABLE} WHERE {TABLE} MATCH ?"
    params: list[object] = [query.match]
    if allowed_sql is not None:
        sql += f" AND rowid IN ({allowed_sql[0]})"
        params += allowed_sql[1]
    sql += " ORDER BY bm25(" + TABLE + ") LIMIT ?"
    params.append(k)
    return [(int(r[0]), float(r[1])) for r in db.execute(sql, params)]


def score_chunks(db: sqlite3.Connection, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
    """BM25 of the given chunks that match the query at all (others score 0 and are left out)."""
    if query.match is None or not chunk_ids:
        return []
    out: list[tuple[int, float]] = []
    for i in range(0, len(chunk_ids), 500):
        deadline.check("lexical scores")
        part = list(chunk_ids[i : i + 500])
        out += [(int(r[0]), float(r[1])) for r in db.execute(
            f"SELECT rowid, -bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?"
            f" AND rowid IN ({','.join('?' * len(part))})", [query.match, *part])]
    return out
