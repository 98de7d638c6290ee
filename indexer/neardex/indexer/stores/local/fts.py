"""BM25 over the same chunks as the vectors, with SQLite's FTS5 full-text engine.

FTS5 ranks with Okapi BM25 (k1 = 1.2, b = 0.75; its formula is written out in stores/bm25.py,
where the Milvus store scores with it too). Its table lives in the collection's own SQLite
database and is written in the same transaction as the chunks, so the lexical index is durable and
in step with every upsert and delete by construction. It holds each chunk's terms as the
collection's analyzer made them (query/analysis.py), split at spaces only, and queries arrive
analysed by the same analyzer: FTS5's own tokenizers stem English alone.

A collection indexed before analyzers were chosen has a table of raw text that FTS5's Porter
tokenizer analysed (LEGACY_TOKENIZE); it answers with the query's words until the background
rebuild replaces it (stores/local/__init__.py).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence

from ... import deadline
from ...query.analysis import Analyzer, Query
from .. import bm25

TABLE = "chunks_fts"
# The table a background rebuild fills, renamed to TABLE when it is done.
NEXT_TABLE = "chunks_fts_next"
# Terms are made already: split at spaces only (ascii keeps every non-ASCII character in its
# token, and terms hold no ASCII punctuation).
TOKENIZE = "ascii"
LEGACY_TOKENIZE = "porter unicode61 remove_diacritics 2"
# Rows a rebuild analyses and writes per transaction: writers wait at most one batch.
REBUILD_BATCH = 2000


def create_table(db: sqlite3.Connection, table: str = TABLE) -> bool:
    """Create the lexical table if missing; True when it had to be created (so must be filled)."""
    db.execute("CREATE TABLE IF NOT EXISTS lexical_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    if _sql(db, table) is not None:
        return False
    db.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(text, tokenize = '{TOKENIZE}')")
    return True


def is_legacy(db: sqlite3.Connection) -> bool:
    """The table analyses raw text itself (made before analyzers were chosen)."""
    return "porter" in (_sql(db, TABLE) or "")


def language(db: sqlite3.Connection) -> str | None:
    """The analyzer language the table's terms were made with (None: a legacy table)."""
    if is_legacy(db):
        return None
    row = db.execute("SELECT value FROM lexical_state WHERE key = 'language'").fetchone()
    return None if row is None else str(row[0])


def _set_language(db: sqlite3.Connection, language: str) -> None:
    db.execute("INSERT OR REPLACE INTO lexical_state (key, value) VALUES ('language', ?)", (language,))


def swap_in(db: sqlite3.Connection, language: str) -> None:
    """Replace the table by the one a rebuild filled (NEXT_TABLE), made with `language`; in the
    caller's write transaction, so a crash leaves one whole table or the other."""
    db.execute(f"DROP TABLE {TABLE}")
    db.execute(f"ALTER TABLE {NEXT_TABLE} RENAME TO {TABLE}")
    _set_language(db, language)


def _sql(db: sqlite3.Connection, table: str) -> str | None:
    row = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return None if row is None else str(row[0])


def add(db: sqlite3.Connection, rows: Iterable[tuple[int, str]], table: str = TABLE) -> None:
    """Index (chunk id, terms) pairs; the chunk id is the row id, as it is the FAISS id."""
    db.executemany(f"INSERT INTO {table} (rowid, text) VALUES (?, ?)", rows)


def fill(db: sqlite3.Connection, analyzer: Analyzer, table: str = TABLE, after: int = 0,
         limit: int | None = None) -> tuple[int, int, Counter[str]]:
    """Index the stored chunks with ids above `after` (at most `limit` of them, in id order), each
    as its document's title and its text, analysed in its document's language; the caller holds a
    write transaction, and the table holds none of them yet (it is new, or filled up to `after`).
    Returns (rows written, the last id written, the languages found)."""
    sql = ("SELECT c.id, c.doc_id, d.title, d.text, c.start, c.end FROM chunks c"
           " JOIN documents d ON d.id = c.doc_id WHERE c.id > ? ORDER BY c.id")
    rows = db.execute(sql + (" LIMIT ?" if limit else ""), (after, limit) if limit else (after,)).fetchall()
    by_doc: dict[str, list[tuple[int, str]]] = {}
    whole: dict[str, tuple[str, str]] = {}
    for cid, doc_id, title, text, start, end in rows:
        by_doc.setdefault(doc_id, []).append((cid, f"{title} {text[start:end]}" if title else text[start:end]))
        whole[doc_id] = (title, text)
    texts, found = analyzer.documents((*whole[d], [t for _, t in chunks]) for d, chunks in by_doc.items())
    add(db, ((cid, terms) for chunks, lex in zip(by_doc.values(), texts)
             for (cid, _), terms in zip(chunks, lex)), table)
    return len(rows), (rows[-1][0] if rows else after), found


def rebuild(db: sqlite3.Connection, analyzer: Analyzer) -> int:
    """Refill the lexical table from the stored chunks, in the analyzer's terms; the caller holds a
    write transaction. Returns the rows written."""
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    create_table(db)
    _set_language(db, analyzer.language)
    return fill(db, analyzer)[0]


def row_ids(db: sqlite3.Connection) -> set[int]:
    return {r[0] for r in db.execute(f"SELECT rowid FROM {TABLE}")}


def remove(db: sqlite3.Connection, chunk_ids: Sequence[int], table: str = TABLE) -> None:
    db.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(i,) for i in chunk_ids])


def match(query: Query, legacy: bool = False) -> str | None:
    """An FTS5 OR-query of the query's terms (its words for a legacy table); None when there are
    none."""
    return " OR ".join(_term(w) for w in _looked_up(query, legacy)) or None


def _looked_up(query: Query, legacy: bool) -> tuple[str, ...]:
    return query.words if legacy else query.terms


def _term(word: str) -> str:
    # Quoted, each word is a plain term: no FTS5 operator or column filter can be injected.
    return '"' + word.replace('"', '""') + '"'


def max_score(db: sqlite3.Connection, query: Query, legacy: bool = False) -> float:
    """The highest BM25 the query's words can reach in this index: the sum, over its words, of
    idf x (k1 + 1), the limit a word's share reaches as it repeats. Dividing by it puts scores on a
    0-to-1 scale that means the same for every query. idf as FTS5 computes it: log((N - n + 0.5) /
    (n + 0.5)), at least 1e-6 (stores/bm25.py)."""
    (rows,) = db.execute(f"SELECT COUNT(*) FROM {TABLE}_docsize").fetchone()
    hits: dict[str, int] = {}
    words = _looked_up(query, legacy)
    for word in words:
        # One statement a word, each too short for the progress handler to see: checked here.
        deadline.check("lexical scale")
        (hits[word],) = db.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE {TABLE} MATCH ?", (_term(word),)).fetchone()
    return bm25.Statistics(rows, 0.0, hits).most(words)


def search(db: sqlite3.Connection, query: Query, k: int,
           allowed_sql: tuple[str, list[object]] | None = None, legacy: bool = False,
           broad: bool = False) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) best first; allowed_sql restricts to chunk ids a subquery selects.
    `broad`: the subquery allows nearly every chunk (only expired documents' are left out), so the
    match runs once over the index and the ids are checked after (`+rowid` keeps the constraint
    from FTS5, which would otherwise evaluate the match once per allowed id)."""
    if (expression := match(query, legacy)) is None:
        return []
    sql = f"SELECT rowid, -bm25({TABLE}) AS score FROM {TABLE} WHERE {TABLE} MATCH ?"
    params: list[object] = [expression]
    if allowed_sql is not None:
        sql += f" AND {'+' if broad else ''}rowid IN ({allowed_sql[0]})"
        params += allowed_sql[1]
    sql += " ORDER BY bm25(" + TABLE + ") LIMIT ?"
    params.append(k)
    return [(int(r[0]), float(r[1])) for r in db.execute(sql, params)]


def score_chunks(db: sqlite3.Connection, query: Query, chunk_ids: Sequence[int],
                 legacy: bool = False) -> list[tuple[int, float]]:
    """BM25 of the given chunks that match the query at all (others score 0 and are left out)."""
    if (expression := match(query, legacy)) is None or not chunk_ids:
        return []
    out: list[tuple[int, float]] = []
    for i in range(0, len(chunk_ids), 500):
        deadline.check("lexical scores")
        part = list(chunk_ids[i : i + 500])
        out += [(int(r[0]), float(r[1])) for r in db.execute(
            f"SELECT rowid, -bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?"
            f" AND rowid IN ({','.join('?' * len(part))})", [expression, *part])]
    return out
