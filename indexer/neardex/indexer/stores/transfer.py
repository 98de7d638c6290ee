"""A collection's rows carried from one store into another without a model call: one snapshot
format for both stores.

A snapshot file holds what a local collection holds (its manifest, its SQLite database, its
index snapshot), whichever store the collection lived in: a Milvus collection's snapshot is the
local collection its rows make (MilvusStore.copy_to), with its own manifest (the Milvus instance
it lived in) on top. So one file restores into either store: the local store opens it as it is,
and a Milvus store is filled from its database here (`local_pages`), page by page.

A migration (catalog/migration.py) moves a live collection with the same pages: read from an open
store (`Store.pages`: `local_pages` over its folder, `MilvusStore.pages`) and written with the
target's `write`, all of them, then those of the documents whose stored hashes differ.

What moves is what the stores keep: each document (id, title, text, metadata, expiry, stored
hash) and each chunk (index, offsets, tokens, vector). The lexical terms are made again by the
target's analyzer from each chunk's text with its document's title before it, as a local
store's lexical rebuild makes them (fts.fill); the vectors are copied, so nothing is embedded.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..documents import Chunk, Document
from ..layout import DATABASE

# Documents written to the target at a time.
PAGE = 500


@dataclass
class Page:
    """Documents with their stored hashes, their chunks with the texts the lexical index reads,
    and the chunks' vectors in order: the arguments of a store's `write`."""

    changed: list[tuple[Document, str]]
    prepared: list[tuple[list[Chunk], list[str]]]
    vectors: np.ndarray


def lexical_texts(title: str, chunks: list[Chunk]) -> list[str]:
    """What the lexical index reads of each chunk (as fts.fill rebuilds it)."""
    return [f"{title} {c.text}" if title else c.text for c in chunks]


def page_of(documents: list[tuple[Document, str, list[Chunk], list[np.ndarray]]], dimension: int) -> Page:
    vectors = [v for *_, vs in documents for v in vs]
    return Page([(doc, digest) for doc, digest, _, _ in documents],
                [(chunks, lexical_texts(doc.title, chunks)) for doc, _, chunks, _ in documents],
                np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dimension))


def local_pages(folder: Path, dimension: int, now: float, size: int = PAGE,
                ids: Sequence[str] | None = None) -> Iterator[Page]:
    """The documents of a local collection folder, read from its database in id order (only
    those of `ids`, when given): those expired by `now` left out. The folder may be an unpacked
    snapshot or an open collection that goes on being written (a migration's source): each page
    is read in one read transaction, so each document comes with the chunks of its own version."""
    db = sqlite3.connect(f"file:{folder / DATABASE}?mode=ro", uri=True, isolation_level=None)
    select = "SELECT id, title, text, metadata, hash, expires_at FROM documents WHERE "
    live = " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id"
    try:
        wanted = None if ids is None else sorted(set(ids))
        after, start = "", 0
        while wanted is None or start < len(wanted):
            db.execute("BEGIN")  # the page's documents and chunks from one version of the database
            try:
                if wanted is None:
                    rows = db.execute(select + "id > ?" + live + " LIMIT ?", (after, now, size)).fetchall()
                    if not rows:
                        return
                    after = rows[-1][0]
                else:
                    part, start = wanted[start:start + size], start + size
                    rows = db.execute(select + f"id IN ({','.join('?' * len(part))})" + live, (*part, now)).fetchall()
                chunks: dict[str, list[tuple[Chunk, np.ndarray]]] = {}
                marks = ",".join("?" * len(rows))
                for doc_id, idx, begin, end, tokens, vector in db.execute(
                        f"SELECT doc_id, idx, start, end, tokens, vector FROM chunks WHERE doc_id IN ({marks})"
                        " ORDER BY doc_id, idx", [r[0] for r in rows]):
                    chunks.setdefault(doc_id, []).append((Chunk(idx, "", begin, end, tokens),
                                                          np.frombuffer(vector, dtype=np.float32)))
            finally:
                db.execute("COMMIT")
            if not rows:  # none of these ids is stored now
                continue
            documents = []
            for doc_id, title, text, metadata, digest, expires_at in rows:
                found = chunks.get(doc_id, [])
                doc = Document(doc_id, text, title, json.loads(metadata), expires_at=expires_at)
                documents.append((doc, digest, [Chunk(c.index, text[c.start:c.end], c.start, c.end, c.tokens)
                                                for c, _ in found], [v for _, v in found]))
            yield page_of(documents, dimension)
    finally:
        db.close()
