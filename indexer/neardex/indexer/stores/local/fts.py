"""BM25 over the same chunks as the vectors, with SQLite's FTS5 full-text engine.

FTS5 ranks with Okapi BM25 (k1 = 1.2, b = 0.75) and stems with the Porter stemmer. Its table
lives in the collection's own SQLite database and is written in the same transaction as the
chunks, so the lexical index is durable and in step with every upsert and delete by construction:
no separate file, rebuild or replay. Queries arrive analysed (query/analysis.py).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence

from ... import deadline
from ...query.analysis import Query

TABLE = "chunks_fts"
# remove_diacritics 2: "café" matches "cafe" in any Latin-script language.
TOKENIZE = "porter unicode61 remove_diacritics 2"
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


def match(query: Query) -> str | None:
    """An FTS5 OR-query of the query's words; None when there are none."""
    return " OR ".join(_term(w) for w in query.words) or None


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
    if (expression := match(query)) is None:
        return []
    sql = f"SELECT rowid, -bm25({TABLE}) AS score FROM {TABLE} WHERE {TABLE} MATCH ?"
    params: list[object] = [expression]
    if allowed_sql is not None:
        sql += f" AND rowid IN ({allowed_sql[0]})"
        params += allowed_sql[1]
    sql += " ORDER BY bm25(" + TABLE + ") LIMIT ?"
    params.append(k)
    return [(int(r[0]), float(r[1])) for r in db.execute(sql, params)]


def score_chunks(db: sqlite3.Connection, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
    """BM25 of the given chunks that match the query at all (others score 0 and are left out)."""
    if (expression := match(query)) is None or not chunk_ids:
        return []
    out: list[tuple[int, float]] = []
    for i in range(0, len(chunk_ids), 500):
        deadline.check("lexical scores")
        part = list(chunk_ids[i : i + 500])
        out += [(int(r[0]), float(r[1])) for r in db.execute(
            f"SELECT rowid, -bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?"
            f" AND rowid IN ({','.join('?' * len(part))})", [expression, *part])]
    return out
