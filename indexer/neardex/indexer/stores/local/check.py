"""Does a collection agree with itself? The store (SQLite) against everything derived from it.

The store's documents and chunks are the truth; the lexical (FTS5) rows and the vector index
(newest snapshot plus the change log) are derived. `check` verifies that every chunk has its
document and every document its chunks, that every vector has the manifest's dimension, and that
both derived indexes hold exactly the stored chunks. `repair` rebuilds the derived ones from the
store (and drops chunks whose document is gone); what it cannot rebuild (a damaged database, a
document without chunks, which needs the model) stays reported.

Documents whose expiry has passed but that the background purge has not deleted yet are no
finding: no read sees them and the purge removes them through the ordinary delete. They hold
their chunks, lexical rows and vectors in step like any other, and the counts leave them out.

`reconcile` is the cheap form a collection runs as it opens: counts first, ids only when the
counts differ, and what it finds it fixes in place.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import NeardexError
from ...layout import DATABASE, MANIFEST
from ...query.analysis import Analyzer
from ...records import LOCAL_STORE, Manifest
from . import fts, index_cache
from .sql_filters import index_rows
from .vector_index import VectorIndex

log = logging.getLogger("neardex.indexer")

# Ids listed in one problem line at most; the count is always given in full.
SHOWN = 5


@dataclass
class Report:
    collection: str
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    lexical_rows: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    # Why nothing was checked: the collection's data lives in a Milvus instance, not this folder.
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok})

    def summary(self) -> str:
        if self.skipped:
            return f"{self.collection}: not checked: {self.skipped}"
        return (f"{self.collection}: {self.documents} documents, {self.chunks} chunks,"
                f" {self.vectors} vectors, {self.lexical_rows} lexical rows")


def _ids(values: set[int] | set[str]) -> str:
    shown = ", ".join(str(v) for v in sorted(values)[:SHOWN])  # type: ignore[type-var]
    return shown + (", ..." if len(values) > SHOWN else "")


def check(folder: Path, repair: bool = False) -> Report:
    """Check one collection folder; with repair, rebuild what is derived and check again."""
    report = Report(folder.name)
    _check(folder, report)
    if repair and report.problems:
        report.repaired = _repair(folder)
        if report.repaired:
            again = Report(folder.name, repaired=report.repaired)
            _check(folder, again)
            return again
    return report


def _check(folder: Path, report: Report) -> None:

    try:
        manifest = Manifest.from_json((folder / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError, NeardexError) as exc:
        report.problems.append(f"manifest: cannot be read: {exc}")
        return
    if manifest.store != LOCAL_STORE:
        report.skipped = f"its data lives in {manifest.store}: the Milvus check reads it (stores/milvus/check.py)"
        return
    if not (folder / DATABASE).exists():
        report.problems.append(f"store: {DATABASE} is missing")
        return
    db = sqlite3.connect(f"file:{folder / DATABASE}?mode=ro", uri=True, timeout=30)
    try:
        integrity = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if integrity != ["ok"]:
            report.problems.append(f"store: SQLite integrity check failed: {'; '.join(integrity[:SHOWN])}")
            return
        now = time.time()
        expired = _expired_chunks(db, now)
        (report.documents,) = (db.execute("SELECT COUNT(*) FROM documents WHERE expires_at IS NULL OR expires_at > ?",
                                          (now,)) if _has_expiry(db) else
                               db.execute("SELECT COUNT(*) FROM documents")).fetchone()
        chunk_ids = {r[0] for r in db.execute("SELECT id FROM chunks")}
        report.chunks = len(chunk_ids - expired)
        orphans = {r[0] for r in db.execute(
            "SELECT c.id FROM chunks c LEFT JOIN documents d ON d.id = c.doc_id WHERE d.id IS NULL")}
        if orphans:
            report.problems.append(f"store: {len(orphans)} chunks whose document is gone: {_ids(orphans)}")
        empty = {r[0] for r in db.execute(
            "SELECT d.id FROM documents d WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.doc_id = d.id)")}
        if empty:
            report.problems.append(f"store: {len(empty)} documents without chunks (upsert them again): {_ids(empty)}")
        wrong = {r[0] for r in db.execute("SELECT id FROM chunks WHERE length(vector) != ?",
                                         (4 * manifest.dimension,))}
        if wrong:
            report.problems.append(
                f"store: {len(wrong)} chunks whose vector is not of dimension {manifest.dimension}: {_ids(wrong)}")
        try:
            rows = fts.row_ids(db)
        except sqlite3.Error as exc:
            report.problems.append(f"lexical: cannot be read: {exc}")
        else:
            report.lexical_rows = len(rows - expired)
            _compare("lexical", chunk_ids, rows, report)
        if manifest.indexed_keys:
            _check_metadata_index(db, manifest.indexed_keys, report)
        if wrong:
            return  # the vectors cannot be loaded into an index of the manifest's dimension
        try:
            index = index_cache.load(folder, manifest.index, manifest.dimension, db)
        except Exception as exc:  # noqa: BLE001 - a broken snapshot is a finding, not a crash
            report.problems.append(f"index: cannot be loaded: {type(exc).__name__}: {exc}")
            return
        if index.dimension != manifest.dimension:
            report.problems.append(f"index: dimension {index.dimension}, manifest says {manifest.dimension}")
        live = {int(i) for i in index.ids()} - index.tombstones
        report.vectors = len(live - expired)
        _compare("index", chunk_ids, live, report)
    finally:
        db.close()


def _has_expiry(db: sqlite3.Connection) -> bool:
    """Databases made before expiry gain the column when a collection opens (a check opens none)."""
    return "expires_at" in {r[1] for r in db.execute("PRAGMA table_info(documents)")}


def _expired_chunks(db: sqlite3.Connection, now: float) -> set[int]:
    """Chunks of documents whose expiry has passed (the purge has not reached them yet)."""
    if not _has_expiry(db):
        return set()
    return {r[0] for r in db.execute(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.expires_at <= ?", (now,))}


def _metadata_rows(db: sqlite3.Connection, keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The meta_values rows the stored documents' metadata calls for."""
    return [(doc_id, *row) for doc_id, meta in db.execute("SELECT id, metadata FROM documents")
            for row in index_rows(json.loads(meta), keys)]


def _check_metadata_index(db: sqlite3.Connection, keys: tuple[str, ...], report: Report) -> None:
    expected = Counter(_metadata_rows(db, keys))
    held = Counter(tuple(r) for r in db.execute("SELECT doc_id, key, type, value FROM meta_values"))
    if expected != held:
        missing, extra = sum((expected - held).values()), sum((held - expected).values())
        report.problems.append(f"metadata index: {missing} rows missing, {extra} rows for values no document holds")


def _compare(name: str, chunk_ids: set[int], held: set[int], report: Report) -> None:
    missing, extra = chunk_ids - held, held - chunk_ids
    if missing:
        report.problems.append(f"{name}: {len(missing)} chunks missing: {_ids(missing)}")
    if extra:
        report.problems.append(f"{name}: {len(extra)} entries for chunks that do not exist: {_ids(extra)}")


def _repair(folder: Path) -> list[str]:
    """Rebuild the lexical rows and the vector index from the store; drop orphan chunks."""
    try:
        manifest = Manifest.from_json((folder / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError, NeardexError):
        return []
    db = sqlite3.connect(folder / DATABASE, timeout=30, isolation_level=None)
    done: list[str] = []
    try:
        if [r[0] for r in db.execute("PRAGMA quick_check").fetchall()] != ["ok"]:
            return []
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            orphans = db.execute("DELETE FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").rowcount
            if orphans:
                done.append(f"store: dropped {orphans} chunks whose document is gone")
            done.append(f"lexical: rebuilt ({fts.rebuild(db, Analyzer(manifest.language))} rows)")
            if manifest.indexed_keys:
                db.execute("DELETE FROM meta_values")
                rows = _metadata_rows(db, manifest.indexed_keys)
                db.executemany("INSERT INTO meta_values (doc_id, key, type, value) VALUES (?, ?, ?, ?)", rows)
                done.append(f"metadata index: rebuilt ({len(rows)} rows)")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        ids, vectors = _valid_vectors(db, manifest.dimension)
        fresh = VectorIndex.build(manifest.index, manifest.dimension, ids, vectors)
        index_cache.write(folder, fresh, db, index_cache.last_change(db, folder))
        done.append(f"index: rebuilt ({len(ids)} vectors)")
    finally:
        db.close()
    return done


def _valid_vectors(db: sqlite3.Connection, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    rows = db.execute("SELECT id, vector FROM chunks WHERE length(vector) = ? ORDER BY id",
                      (4 * dimension,)).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)


def reconcile(db: sqlite3.Connection, index: VectorIndex, folder: Path, manifest: Manifest) -> list[str]:
    """The check a collection runs as it opens, fixing what it finds: the counts of stored chunks,
    lexical rows and live vectors are compared, and only when they differ the ids; a fixed index
    is snapshotted at once. The caller owns the database (no write can run meanwhile)."""
    fixed: list[str] = []
    (chunks,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
    (rows,) = db.execute(f"SELECT COUNT(*) FROM {fts.TABLE}_docsize").fetchone()
    if rows != chunks:
        db.execute("BEGIN IMMEDIATE")
        try:
            written = fts.rebuild(db, Analyzer(manifest.language))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        fixed.append(f"lexical index held {rows} rows for {chunks} chunks: rebuilt ({written} rows)")
    if index.live != chunks:
        stored = {r[0] for r in db.execute("SELECT id FROM chunks")}
        held = {int(i) for i in index.ids()}
        stale = index.forget_tombstones(index.tombstones - held)
        if stale:
            fixed.append(f"vector index had {stale} tombstones for vectors it does not hold: dropped")
        live = held - index.tombstones
        missing, extra = sorted(stored - live), sorted(live - stored)
        if extra:
            index.remove(np.array(extra, dtype=np.int64))
        if missing:
            found = {}
            for i in range(0, len(missing), 500):
                part = missing[i : i + 500]
                found.update(db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})",
                                        part).fetchall())
            ids = [i for i in missing if len(found[i]) == 4 * manifest.dimension]
            if ids:
                index.add(np.array(ids, dtype=np.int64),
                          np.frombuffer(b"".join(found[i] for i in ids), dtype=np.float32).reshape(len(ids), -1))
        index_cache.write(folder, index, db, index_cache.last_change(db, folder))
        if missing or extra:
            fixed.append(f"vector index missed {len(missing)} stored chunks and held {len(extra)} deleted ones: fixed")
    for line in fixed:
        log.warning("collection %s: %s", folder.name, line)
    return fixed
