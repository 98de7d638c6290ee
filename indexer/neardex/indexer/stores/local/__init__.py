"""The embedded store: one collection folder holding a SQLite document store and a FAISS index.

SQLite is the source of truth. Every write is one SQLite transaction that stores the document,
its chunks with their vectors, their lexical (FTS5) rows and a change-log row per added or removed
chunk; the transaction commits with a full fsync before the write is acknowledged. The FAISS index
is a cache of the vectors (index_cache.py): snapshotted now and then, and on open the change log
after the snapshot is replayed. So a kill -9 at any moment loses nothing that was acknowledged,
and index and store always come back holding the same ids.

Thread-safe: searches run concurrently; writes are serialized and exclude searches only for the
moment they commit and swap the index, so no search sees half a document.

Reads stop at the request's deadline: SQLite calls a progress handler on every read connection
every PROGRESS_STEPS virtual-machine steps, which stops the statement once the caller no longer
waits (deadline.over: never outside a request), and the read methods (`_interruptible`) report
that as the request's DeadlineExceeded or Cancelled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from ... import deadline
from ...documents import Chunk, Document
from ...errors import FailedPrecondition, ResourceExhausted
from ...files import write_durably
from ...layout import DATABASE, MANIFEST
from ...query import facets, languages
from ...query.analysis import Analyzer, Query
from ...query.filters import Filter
from ...records import Candidate, Manifest, Stats
from .. import ChunkRow, LanguageCounts, MetadataEdit, Retrieved, StoredChunk, transfer, watched
from . import check, fts, index_cache
from .rwlock import RWLock
from .sql_filters import facet_sql, index_rows, json_value, to_sql
from .vector_index import VectorIndex, companions

# Filters allowing at most this many chunks are searched exactly among them in an approximate index:
# about 1.7 us a chunk (35 ms at the limit) against a filtered HNSW recall@10 of 0.06 to 0.84 for
# filters allowing 0.1% to 20% (bench/filtered_search.py).
EXACT_FILTER_LIMIT = 20_000
# Snapshot the FAISS index once this many changes wait in the log, so replay on open stays short.
CHECKPOINT_CHANGES = 20_000
# SQLite virtual-machine steps between two calls of the progress handler: a statement goes on for
# at most this many steps (well under a millisecond) past the deadline, and the handler's cost (a
# context-variable lookup without a deadline) is lost in them.
PROGRESS_STEPS = 1000
log = logging.getLogger("neardex.indexer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL,
    updated REAL NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id),
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    chunk_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta_values (
    doc_id TEXT NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    value
);
CREATE INDEX IF NOT EXISTS meta_values_kv ON meta_values(key, value);
CREATE INDEX IF NOT EXISTS meta_values_doc ON meta_values(doc_id);
-- Facets read an indexed key's values from this index alone, in order (sql_filters.facet_sql).
CREATE INDEX IF NOT EXISTS meta_values_facets ON meta_values(key, type, value, doc_id);
"""
# After the migration that adds the column to databases made before it.
_EXPIRY_INDEX = "CREATE INDEX IF NOT EXISTS documents_expires ON documents(expires_at) WHERE expires_at IS NOT NULL"
# Documents a read may see once something has expired: the clock is bound as a parameter.
_LIVE = "(d.expires_at IS NULL OR d.expires_at > ?)"


P = ParamSpec("P")
R = TypeVar("R")


def _interruptible(read: Callable[P, R]) -> Callable[P, R]:
    """A read whose statements the progress handler may stop: SQLite's "interrupted" becomes the
    request's DeadlineExceeded or Cancelled."""

    @functools.wraps(read)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            stopped = deadline.error(f"during {read.__name__}")
            if exc.sqlite_errorcode != sqlite3.SQLITE_INTERRUPT or stopped is None:
                raise
            raise stopped from None

    return call


@dataclass
class Transaction:
    """An open write transaction and the index changes to apply when it commits."""

    db: sqlite3.Connection
    removed: list[int] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)
    added_vectors: list[np.ndarray] = field(default_factory=list)
    # Run under the write lock right after the commit (a lexical rebuild's swap of analyzers).
    on_commit: list[Callable[[], None]] = field(default_factory=list)


@watched
class LocalStore:
    can_expire = True

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self._lock = RWLock()
        self._write_mutex = threading.Lock()
        # Held while a collection snapshot copies the index and the store (see snapshots.py).
        self._checkpoint_hold = threading.Lock()
        self._local = threading.local()
        try:
            self._db = self._connect()
            self._db.executescript(_SCHEMA)
            if "expires_at" not in {r[1] for r in self._db.execute("PRAGMA table_info(documents)")}:
                self._db.execute("ALTER TABLE documents ADD COLUMN expires_at REAL")  # NULL: never
            self._db.execute(_EXPIRY_INDEX)
        except sqlite3.OperationalError:  # locked, or the disk: not the file's fault
            raise
        except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
            raise FailedPrecondition(f"store: collection {manifest.name!r} cannot be opened: its SQLite"
                                     f" file is damaged ({exc})") from None
        self._closing = False  # no rebuild starts or swaps in once set
        self._closed = False
        self._rebuilder: threading.Thread | None = None
        self._lexical_rebuilder: threading.Thread | None = None
        # The analyzer a lexical rebuild under way fills the next table with (deletes reach both).
        self._lexical_target: Analyzer | None = None
        self._languages = LanguageCounts(manifest)
        if fts.create_table(self._db):
            with self._transaction() as tx:
                fts.rebuild(tx.db, Analyzer(manifest.language))
        self.index = self._attach(index_cache.load(self.folder, self.manifest.index, self.manifest.dimension,
                                                   self._db))
        check.reconcile(self._db, self.index, folder, manifest)
        self._legacy = fts.is_legacy(self._db)
        # The analyzer the lexical table was made with answers queries until a rebuild swaps in
        # the manifest's (a legacy table: English, as FTS5's Porter tokenizer made it).
        self.analyzer = Analyzer(fts.language(self._db) or languages.LEGACY)
        # The earliest expiry stored (inf: none). Reads before it compare nothing, so a collection
        # without expiring documents, or whose next one is still ahead, reads as fast as ever.
        self._next_expiry = self._earliest_expiry(self._db)
        self._purge(time.time())
        self._maybe_rebuild()
        self._maybe_rebuild_lexical()

    @staticmethod
    def create(folder: Path, manifest: Manifest) -> LocalStore:
        folder.mkdir(parents=True)
        write_durably(folder / MANIFEST, manifest.to_json())
        return LocalStore(folder, manifest)

    @staticmethod
    def read_manifest(folder: Path) -> Manifest:
        return Manifest.from_json((folder / MANIFEST).read_text())

    @property
    def index_kind(self) -> str:
        """What the vector index really is now (IVF-PQ answers "ivfpq" even before training)."""
        return "ivfpq" if self.manifest.index.kind == "ivfpq" else self.index.trained_kind

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.folder / DATABASE, check_same_thread=False,
                             isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced before it returns, which is what "acknowledged" promises.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _reader(self) -> sqlite3.Connection:
        """A connection per thread: WAL readers see a committed snapshot, never a write under way."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.folder / DATABASE, check_same_thread=False, timeout=30)
            db.execute("PRAGMA query_only=ON")
            db.set_progress_handler(deadline.over, PROGRESS_STEPS)
            self._local.db = db
        return db

    def _attach(self, index: VectorIndex) -> VectorIndex:
        index.fetch_vectors = self._vectors_of
        return index

    def _maybe_rebuild(self) -> None:
        """Start rebuilding the index in the background when it asks for it (HNSW tombstones
        piled up, IVF-PQ has enough vectors to train). Called with the write lock held, or
        while the collection opens."""
        if not self.index.needs_rebuild() or self._closing:
            return
        if self._rebuilder is not None and self._rebuilder.is_alive():
            return
        self._rebuilder = threading.Thread(target=self._rebuild, name=f"rebuild-{self.manifest.name}",
                                           daemon=True)
        self._rebuilder.start()

    def _rebuild(self) -> None:
        """Build a fresh index from the stored vectors while searches and writes go on with the
        old one, then catch it up with the changes made meanwhile and swap it in. Checkpoints wait
        for the swap, so the change log still holds every change the catch-up needs."""
        try:
            db = sqlite3.connect(self.folder / DATABASE, timeout=30)
            try:
                db.execute("BEGIN")  # one snapshot for both reads
                (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
                ids, vectors = self._all_vectors(db)
                db.execute("COMMIT")
            finally:
                db.close()
            started = time.perf_counter()
            log.info("collection %s: rebuilding the %s index from %d stored vectors", self.manifest.name,
                     self.manifest.index.resolve(len(ids), self.manifest.dimension).kind, len(ids))
            fresh = VectorIndex.build(self.manifest.index, self.manifest.dimension, ids, vectors)
            with self._write_mutex, self._lock.write():
                if self._closing:  # abandoned: the close snapshotted the old index, the next open rebuilds
                    return
                index_cache.replay(self._db, fresh, seq)
                self.index = self._attach(fresh)
            log.info("collection %s: index rebuilt (%d vectors, %.1f s)", self.manifest.name,
                     len(ids), time.perf_counter() - started)
            self.checkpoint(force=True)  # so the next open starts from the rebuilt index
        except Exception:
            # The old index still answers correctly; the next write tries again.
            log.exception("collection %s: index rebuild failed", self.manifest.name)

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        rebuilder = self._rebuilder
        if rebuilder is not None and rebuilder is not threading.current_thread():
            rebuilder.join(timeout)

    # -- the lexical analyzer -------------------------------------------------------------------

    def set_language(self, language: str) -> None:
        """Analyze with another language from now on: the manifest names it at once, and the
        lexical table is rebuilt in the background while the old one answers."""
        with self._write_mutex:
            if language != self.manifest.language:
                self.save_manifest(replace(self.manifest, language=language))
        self._maybe_rebuild_lexical()

    def save_manifest(self, manifest: Manifest) -> None:
        write_durably(self.folder / MANIFEST, manifest.to_json())
        self.manifest = manifest

    def _note_languages(self, found: Mapping[str, int], analyzer: Analyzer) -> None:
        """Count the languages documents were found in, recorded before the write that holds them
        commits (queries are detected among them); the caller holds the write mutex."""
        if analyzer.language == self.manifest.language and (noted := self._languages.add(self.manifest, found)):
            self.save_manifest(noted)

    def _lexical_texts(self, changed: list[tuple[Document, str]],
                       prepared: list[tuple[list[Chunk], list[str]]]) -> tuple[Analyzer, list[list[str]], Counter[str]]:
        """What the lexical table holds of each chunk: its terms by the analyzer now answering (raw
        text for a legacy table, which analyses it itself)."""
        analyzer = self.analyzer
        if self._legacy:
            return analyzer, [texts for _, texts in prepared], Counter()
        texts, found = analyzer.documents((doc.title, doc.text, chunk_texts)
                                          for (doc, _), (_, chunk_texts) in zip(changed, prepared))
        return analyzer, texts, found

    def wait_for_lexical_rebuild(self, timeout: float | None = None) -> None:
        rebuilder = self._lexical_rebuilder
        if rebuilder is not None:
            rebuilder.join(timeout)

    def _maybe_rebuild_lexical(self) -> None:
        if self._closing or (self.analyzer.language == self.manifest.language and not self._legacy):
            return
        if self._lexical_rebuilder is not None and self._lexical_rebuilder.is_alive():
            return  # it checks the manifest's language after every batch
        self._lexical_rebuilder = threading.Thread(target=self._rebuild_lexical, daemon=True,
                                                   name=f"lexical-{self.manifest.name}")
        self._lexical_rebuilder.start()

    def _rebuild_lexical(self) -> None:
        """Fill a second lexical table with the manifest's analyzer, a batch of chunks per write
        transaction (writers wait one batch at most), while the old table answers; then swap it in
        with the analyzer in one transaction. Chunks written meanwhile get ids above the batches
        done, so the batches reach them; deletes reach both tables. A change of language meanwhile
        starts over; a close abandons it, and the next open starts again."""
        try:
            while not self._closing:
                target = Analyzer(self.manifest.language)
                if target.language == self.analyzer.language and not self._legacy:
                    return
                started, after, rows = time.perf_counter(), 0, 0
                with self._write_mutex, self._transaction() as tx:
                    tx.db.execute(f"DROP TABLE IF EXISTS {fts.NEXT_TABLE}")
                    fts.create_table(tx.db, fts.NEXT_TABLE)
                    self._lexical_target = target
                log.info("collection %s: rebuilding the lexical index (%s)", self.manifest.name, target.language)
                while not self._closing and self.manifest.language == target.language:
                    with self._write_mutex, self._transaction() as tx:
                        written, after, found = fts.fill(tx.db, target, fts.NEXT_TABLE, after, fts.REBUILD_BATCH)
                        self._note_languages(found, target)
                        rows += written
                        if written == 0:
                            fts.swap_in(tx.db, target.language)
                            tx.on_commit.append(functools.partial(self._swapped_in, target))
                    if written == 0:
                        log.info("collection %s: lexical index rebuilt (%s, %d rows, %.1f s)", self.manifest.name,
                                 target.language, rows, time.perf_counter() - started)
                        break
        except Exception:
            # The old table still answers; the next open tries again.
            log.exception("collection %s: lexical rebuild failed", self.manifest.name)
        finally:
            self._lexical_target = None

    def _swapped_in(self, analyzer: Analyzer) -> None:
        self.analyzer, self._legacy, self._lexical_target = analyzer, False, None

    def _rebuilding(self) -> bool:
        """A rebuild other than the calling thread's own is under way (and not abandoned)."""
        rebuilder = self._rebuilder
        return (rebuilder is not None and rebuilder.is_alive() and rebuilder is not threading.current_thread()
                and not self._closing)

    def _all_vectors(self, db: sqlite3.Connection | None = None) -> tuple[np.ndarray, np.ndarray]:
        return index_cache.stored_vectors(db or self._reader(), self.manifest.dimension)

    def checkpoint_after_write(self) -> None:
        """A checkpoint a write may trigger. The write is committed already: a snapshot that
        cannot be written (a full disk) is logged and tried again later, never reported as the
        write's failure. The change log keeps every change meanwhile."""
        try:
            self.checkpoint()
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            log.error("collection %s: index snapshot not written (%s); the change log keeps the changes",
                      self.manifest.name, exc)

    @contextlib.contextmanager
    def checkpoints_held(self) -> Iterator[None]:
        """No index snapshot is written and no change-log row trimmed meanwhile (writes go on)."""
        with self._checkpoint_hold:
            yield

    def copy_to(self, folder: Path) -> None:
        """A consistent copy of the collection in an existing empty folder, taken while writes go
        on: the newest index snapshot, an online backup of the database (SQLite's backup API copies
        one committed state) and the manifest. Checkpoints are held off meanwhile, so the copied
        index is never newer than the backup and the backup's log holds every change after it:
        opening the copy loads that index and replays the log, as any collection opens."""
        with self.checkpoints_held():
            found = index_cache.snapshots(self.folder)
            if found:
                _, newest = found[-1]
                for path in (newest, *companions(newest)):
                    if path.exists():
                        shutil.copy2(path, folder / path.name)
            source = sqlite3.connect(self.folder / DATABASE, timeout=30)
            target = sqlite3.connect(folder / DATABASE)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            (folder / MANIFEST).write_text(self.manifest.to_json())

    def checkpoint(self, force: bool = False) -> None:
        """Snapshot the index and trim the change log it now contains. Skipped while a collection
        snapshot holds checkpoints off, unless forced (then it waits, and it waits for a rebuild
        under way, which ends in a checkpoint of its own)."""
        if force:
            # Not while holding checkpoints off: the rebuild's own checkpoint needs them.
            self.wait_for_rebuild()
        if not self._checkpoint_hold.acquire(blocking=force):
            return
        try:
            self._checkpoint(force)
        finally:
            self._checkpoint_hold.release()

    def _checkpoint(self, force: bool) -> None:
        if self._closed or self._rebuilding():
            return  # the rebuild's catch-up needs the log; the swap is followed by a checkpoint
        with self._write_mutex, self.view():
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
            (pending,) = self._db.execute("SELECT COUNT(*) FROM changes").fetchone()
            if not pending or (not force and pending < CHECKPOINT_CHANGES):
                return
            index_cache.write(self.folder, self.index, self._db, last)

    def write(self, changed: list[tuple[Document, str]],
               prepared: list[tuple[list[Chunk], list[str]]], vectors: np.ndarray) -> None:
        if not changed:
            return
        now = time.time()
        analyzer, lexical, found = self._lexical_texts(changed, prepared)
        with self._write_mutex, self._transaction() as tx:
            if analyzer is not self.analyzer:  # a lexical rebuild swapped analyzers meanwhile
                analyzer, lexical, found = self._lexical_texts(changed, prepared)
            self._note_languages(found, analyzer)
            db = tx.db
            tx.removed += self._delete_chunks_of(db, [d.id for d, _ in changed])
            row = 0
            for (doc, digest), (chunks, _), texts in zip(changed, prepared, lexical):
                db.execute(
                    "INSERT INTO documents (id, title, text, metadata, hash, updated, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                    " title=excluded.title, text=excluded.text, metadata=excluded.metadata,"
                    " hash=excluded.hash, updated=excluded.updated, expires_at=excluded.expires_at",
                    (doc.id, doc.title, doc.text, json.dumps(doc.metadata, ensure_ascii=False),
                     digest, now, doc.expires_at),
                )
                if doc.expires_at is not None:
                    # Lowered before the commit: a read never misses an expiry that is stored.
                    self._next_expiry = min(self._next_expiry, doc.expires_at)
                ids = []
                for chunk in chunks:
                    cur = db.execute(
                        "INSERT INTO chunks (doc_id, idx, start, end, tokens, vector)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (doc.id, chunk.index, chunk.start, chunk.end, chunk.tokens,
                         vectors[row].tobytes()),
                    )
                    ids.append(int(cur.lastrowid or 0))
                    row += 1
                fts.add(db, zip(ids, texts))
                tx.added_ids += ids
            self._index_metadata(db, [doc for doc, _ in changed])
            tx.added_vectors.append(vectors[:row])
            db.executemany("INSERT INTO changes (op, chunk_id) VALUES ('add', ?)",
                           [(i,) for i in tx.added_ids])

    @contextlib.contextmanager
    def view(self) -> Iterator[None]:
        """Hold the read lock across reads that must agree (the index's ids and the store's rows
        at the same write). A view opened inside another in the same thread joins it: taking the
        writer-preferring lock twice would wait on a writer that waits on this thread."""
        depth = getattr(self._local, "views", 0)
        if depth:
            self._local.views = depth + 1
            try:
                yield
            finally:
                self._local.views = depth
            return
        with self._lock.read():
            self._local.views = 1
            try:
                yield
            finally:
                self._local.views = 0

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        """One write transaction, committed whole or not at all; the caller holds the write mutex
        (or, while the collection opens, owns it alone). The commit and the index changes the
        body registered happen under the write lock together, so a search (which reads under the
        read lock) sees the store and the index both before the write or both after it."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._db)
            try:
                yield tx
                with self._lock.write():
                    self._db.execute("COMMIT")
                    if tx.removed:
                        self.index.remove(np.array(tx.removed, dtype=np.int64))
                    if tx.added_ids:
                        self.index.add(np.array(tx.added_ids, dtype=np.int64), np.vstack(tx.added_vectors))
                    if tx.removed or tx.added_ids:
                        self._maybe_rebuild()
                    for done in tx.on_commit:
                        done()
            except BaseException:
                # SQLite rolls back by itself after some failures (a full disk): only roll back
                # what is still open, or the rollback's own error would hide the cause.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise storage_error(exc) from exc

    def _index_metadata(self, db: sqlite3.Connection, documents: Sequence[Document]) -> None:
        """The meta_values rows of documents just written, for the collection's indexed keys."""
        keys = self.manifest.indexed_keys
        if keys:
            db.executemany("INSERT INTO meta_values (doc_id, key, type, value) VALUES (?, ?, ?, ?)",
                           [(doc.id, *row) for doc in documents for row in index_rows(doc.metadata, keys)])

    def _delete_chunks_of(self, db: sqlite3.Connection, doc_ids: Sequence[str]) -> list[int]:
        removed: list[int] = []
        for part in _batched(doc_ids, 500):
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM meta_values WHERE doc_id IN ({marks})", part)
            removed += [r[0] for r in db.execute(
                f"SELECT id FROM chunks WHERE doc_id IN ({marks})", part)]
            db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
        fts.remove(db, removed)
        if self._lexical_target is not None:
            fts.remove(db, removed, fts.NEXT_TABLE)
        db.executemany("INSERT INTO changes (op, chunk_id) VALUES ('del', ?)",
                       [(i,) for i in removed])
        return removed

    def delete(self, ids: Sequence[str] = (), flt: Filter | None = None) -> int:
        """Delete documents by id, or those matching a filter; returns how many existed (an
        expired document no longer exists, but is deleted too)."""
        with self._write_mutex, self._transaction() as tx:
            cut = self._expired_before()
            if flt is not None:
                where, params = self._where(flt)
                ids = [r[0] for r in tx.db.execute(f"SELECT d.id FROM documents d WHERE {where}", params)]
            expired = set() if cut is None else self._expired_among(tx.db, ids, cut)
            deleted = self._delete_documents(tx, ids) - len(expired)
        self.checkpoint_after_write()
        return deleted

    def update_metadata(self, ids: Sequence[str], flt: Filter | None, edit: MetadataEdit) -> list[str]:
        """One transaction rewrites the documents' metadata, expiry, hash and metadata-index rows;
        chunks, vectors, the lexical table, the change log and the FAISS index are not touched, so
        no index work follows and the commit is the acknowledgement."""
        now = time.time()
        with self._write_mutex, self._transaction() as tx:
            if flt is not None:
                where, params = self._where(flt)
                rows = tx.db.execute(f"SELECT d.id, d.metadata, d.hash, d.expires_at FROM documents d WHERE {where}",
                                     params).fetchall()
            else:
                rows = []
                live, cut = self._live()  # an expired document is as missing as a deleted one
                for part in _batched(list(dict.fromkeys(ids)), 500):
                    rows += tx.db.execute("SELECT d.id, d.metadata, d.hash, d.expires_at FROM documents d"
                                          f" WHERE d.id IN ({','.join('?' * len(part))}) AND {live}",
                                          [*part, *cut]).fetchall()
            written: list[Document] = []
            changes = []
            for doc_id, meta, stored, expires in rows:
                metadata, digest, expires = edit(doc_id, json.loads(meta), stored, expires)
                written.append(Document(doc_id, "", metadata=metadata))
                changes.append((json.dumps(metadata, ensure_ascii=False), digest, now, expires, doc_id))
                if expires is not None:
                    self._next_expiry = min(self._next_expiry, expires)  # as in write: before the commit
            tx.db.executemany("UPDATE documents SET metadata = ?, hash = ?, updated = ?, expires_at = ? WHERE id = ?",
                              changes)
            if self.manifest.indexed_keys:
                for part in _batched([d.id for d in written], 500):
                    tx.db.execute(f"DELETE FROM meta_values WHERE doc_id IN ({','.join('?' * len(part))})", part)
                self._index_metadata(tx.db, written)
        return [d.id for d in written]
    def _delete_documents(self, tx: Transaction, ids: Sequence[str]) -> int:
        tx.removed += self._delete_chunks_of(tx.db, ids)
        deleted = 0
        for part in _batched(ids, 500):
            cur = tx.db.execute(f"DELETE FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
            deleted += cur.rowcount
        return deleted

    @staticmethod
    def _expired_among(db: sqlite3.Connection, ids: Sequence[str], cut: float) -> set[str]:
        found: set[str] = set()
        for part in _batched(ids, 500):
            found.update(r[0] for r in db.execute(
                f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(part))}) AND expires_at <= ?",
                [*part, cut]))
        return found

    # -- expiry ---------------------------------------------------------------------------------

    @staticmethod
    def _earliest_expiry(db: sqlite3.Connection) -> float:
        (earliest,) = db.execute("SELECT MIN(expires_at) FROM documents WHERE expires_at IS NOT NULL").fetchone()
        return float("inf") if earliest is None else float(earliest)

    def _expired_before(self) -> float | None:
        """The clock, when some stored document may have expired by now (reads then leave out
        documents whose expiry is at or before it); None while none can have."""
        now = time.time()
        return now if now >= self._next_expiry else None

    def purge_expired(self) -> int:
        """Delete the documents whose expiry has passed, as a delete does (chunks, FAISS ids,
        lexical rows, metadata index, change log, one transaction); returns how many."""
        purged = self._purge(time.time())
        if purged:
            self.checkpoint_after_write()
        return purged

    def _purge(self, now: float) -> int:
        if now < self._next_expiry:
            return 0
        with self._write_mutex, self._transaction() as tx:
            ids = [r[0] for r in tx.db.execute("SELECT id FROM documents WHERE expires_at <= ?", (now,))]
            purged = self._delete_documents(tx, ids)
            # Documents written meanwhile lowered it under the mutex: recomputed under it too.
            self._next_expiry = self._earliest_expiry(tx.db)
        if purged:
            log.info("collection %s: purged %d expired documents", self.manifest.name, purged)
        return purged

    def index_metadata(self, keys: Sequence[str]) -> None:
        """Answer filters on these metadata keys from the meta_values table from now on: rows are
        written for every stored document, then the manifest names the keys."""
        new = [k for k in dict.fromkeys(keys) if k not in self.manifest.indexed_keys]
        if not new:
            return
        with self._write_mutex:
            with self._transaction() as tx:
                # Rows a crash left before the manifest named the key are replaced, not doubled.
                tx.db.executemany("DELETE FROM meta_values WHERE key = ?", [(k,) for k in new])
                rows = tx.db.execute("SELECT id, metadata FROM documents")
                tx.db.executemany("INSERT INTO meta_values (doc_id, key, type, value) VALUES (?, ?, ?, ?)",
                                  ((doc_id, *row) for doc_id, meta in rows.fetchall()
                                   for row in index_rows(json.loads(meta), new)))
            # Named only once its rows are committed: until then filters scan, which is right too.
            self.save_manifest(replace(self.manifest, indexed_keys=(*self.manifest.indexed_keys, *new)))

    def _live(self) -> tuple[str, list[Any]]:
        """SQL (over documents `d`) true for documents a read may see now, and its parameters."""
        cut = self._expired_before()
        return ("1", []) if cut is None else (_LIVE, [cut])

    @_interruptible
    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        live, now = self._live()
        found: dict[str, str] = {}
        for part in _batched(ids, 500):
            found.update(self._reader().execute(
                f"SELECT d.id, d.hash FROM documents d WHERE d.id IN ({','.join('?' * len(part))}) AND {live}",
                [*part, *now]))
        return found

    @_interruptible
    def all_hashes(self) -> dict[str, str]:
        live, now = self._live()
        return dict(self._reader().execute(f"SELECT d.id, d.hash FROM documents d WHERE {live}", now))

    def pages(self, ids: Sequence[str] | None = None) -> Iterator[transfer.Page]:
        """Every live document (or those of `ids`) with its chunks and their vectors, a page at a
        time, each page one version of the database (transfer.local_pages, also what restores a
        snapshot)."""
        return transfer.local_pages(self.folder, self.manifest.dimension, time.time(), ids=ids)

    @_interruptible
    def all_ids(self) -> set[str]:
        live, now = self._live()
        return {r[0] for r in self._reader().execute(f"SELECT d.id FROM documents d WHERE {live}", now)}

    @_interruptible
    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]:
        live, now = self._live()
        found: dict[str, Document] = {}
        for part in _batched(ids, 500):
            for doc_id, title, text, meta, expires in self._reader().execute(
                "SELECT d.id, d.title, d.text, d.metadata, d.expires_at FROM documents d"
                f" WHERE d.id IN ({','.join('?' * len(part))}) AND {live}", [*part, *now]):
                found[doc_id] = Document(doc_id, text, title, json.loads(meta), expires_at=expires)
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    def _where(self, flt: Filter | None) -> tuple[str, list[Any]]:
        """A WHERE clause over documents `d` for flt, using the collection's metadata index; once
        something may have expired, only documents that have not (every read goes through here,
        so an expired document is gone from all of them at the same moment)."""
        where, params, _ = self._scope(flt)
        return where, params

    def _scope(self, flt: Filter | None) -> tuple[str, list[Any], bool]:
        """_where's clause and parameters, and whether it leaves out any document at all."""
        where, params = to_sql(flt, "documents d", "d.metadata", "d.id", self.manifest.indexed_keys)
        live, now = self._live()
        if not now:
            return where, params, bool(flt)
        return f"({where}) AND {live}", [*params, *now], True

    @_interruptible
    def count(self, flt: Filter | None = None) -> int:
        """Documents matching flt (every document without one)."""
        where, params = self._where(flt)
        (n,) = self._reader().execute(f"SELECT COUNT(*) FROM documents d WHERE {where}", params).fetchone()
        return int(n)

    @_interruptible
    def facet(self, key: str, flt: Filter | None, limit: int) -> facets.Facets:
        """The `limit` most frequent values of key among the documents matching flt, counted by
        SQLite in one statement (sql_filters.facet_sql): from the metadata index when the key is
        indexed, else from each document's JSON."""
        where, params, scoped = self._scope(flt)
        rows = self._reader().execute(*facet_sql(key, where, params, scoped, key in self.manifest.indexed_keys,
                                                 limit)).fetchall()
        # The number of documents is the row without a kind; the values are put back in order
        # here (the order of a compound query's parts is SQLite's to choose).
        values = sorted((r for r in rows if r[0] is not None), key=lambda r: facets.sort_key(*r))
        total = next(n for kind, _, n in rows if kind is None)
        return facets.Facets([facets.FacetValue(json_value(kind, value), n) for kind, value, n in values], int(total))

    @_interruptible
    def scroll(self, after: str, limit: int, flt: Filter | None = None,
               text: bool = True) -> list[Document]:
        """Up to `limit` documents matching flt with ids after `after`, in id order (keyset
        paging: no offset to skip over, and each page reads the store as it is then)."""
        where, params = self._where(flt)
        columns = ("d.id, d.title, d.text, d.metadata" if text else "d.id, d.title, '', d.metadata") + ", d.expires_at"
        rows = self._reader().execute(
            f"SELECT {columns} FROM documents d WHERE d.id > ? AND {where} ORDER BY d.id LIMIT ?",
            [after, *params, limit])
        return [Document(doc_id, body, title, json.loads(meta), expires_at=expires)
                for doc_id, title, body, meta, expires in rows]

    @_interruptible
    def stats(self) -> Stats:
        db = self._reader()
        live, now = self._live()
        (documents,) = db.execute(f"SELECT COUNT(*) FROM documents d WHERE {live}", now).fetchone()
        (chunks,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        expired = 0
        if now:  # counted as `neardex check` counts: without what expired and waits for the purge
            (expired,) = db.execute("SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.doc_id"
                                    " WHERE d.expires_at <= ?", now).fetchone()
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        return Stats(documents, chunks - expired, self.index.live - expired, size)

    @_interruptible
    def chunk_ids(self) -> set[int]:
        return {r[0] for r in self._reader().execute("SELECT id FROM chunks")}

    def index_ids(self) -> set[int]:
        """Ids the FAISS index answers for (tombstones excluded): equal to chunk_ids when in step."""
        with self.view():
            return {int(i) for i in self.index.ids()} - self.index.tombstones

    def _filter_sql(self, flt: Filter | None) -> tuple[str, list[Any]]:
        """A query for the ids of the chunks whose document matches flt, and its parameters."""
        where, params = self._where(flt)
        return f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}", params

    @_interruptible
    def restrict(self, flt: Filter | None) -> np.ndarray | None:
        """Ids of the chunks flt allows, for FAISS's id selector; None when every chunk is allowed
        (no filter, and nothing stored has expired)."""
        if not flt and self._expired_before() is None:
            return None
        rows = self._reader().execute(*self._filter_sql(flt))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def retrieve(self, vector: np.ndarray | None, query: Query | None, k: int, flt: Filter | None = None,
                 ef_search: int = 0, nprobe: int = 0, scale: bool = False) -> Retrieved:
        with self.view():
            allowed = self.restrict(flt) if vector is not None else None
            dense = self.dense(vector[None, :], k, allowed, ef_search, nprobe)[0] if vector is not None else []
            lexical = self.lexical(query, k, flt) if query is not None else []
            most = self._lexical_scale(query) if scale and query is not None else 1.0
        return Retrieved(dense, lexical, most, allowed)

    def dense(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None = None,
              ef_search: int = 0, nprobe: int = 0) -> list[list[Candidate]]:
        """Per query, at most k chunks best first, among allowed (every chunk when None)."""
        with self.view():
            found = self._dense_ids(vectors, k, allowed, ef_search, nprobe)
            return self._candidates(found)

    def _dense_ids(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None,
                   ef_search: int, nprobe: int) -> list[list[tuple[int, float]]]:
        if allowed is not None and not len(allowed):
            return [[] for _ in range(len(vectors))]
        if not self.index.live:
            return [[] for _ in range(len(vectors))]
        # An approximate index cut by a filter misses hits (an HNSW graph walked past what the
        # filter excludes, IVF lists not probed) and can come back short of k: a selective
        # filter is searched exactly among its chunks instead, and a short answer is redone
        # that way. Flat search with a filter is exact already, and faster than reading vectors.
        approximate = allowed is not None and self.index.trained_kind != "flat"
        if approximate and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._exact_among(vectors, k, allowed)
        scores, ids = self.index.search(vectors, k, allowed, ef_search, nprobe)
        found = [[(int(i), float(s)) for s, i in zip(srow, irow) if i >= 0]
                 for srow, irow in zip(scores, ids)]
        if approximate and any(len(row) < min(k, len(allowed)) for row in found):
            return self._exact_among(vectors, k, allowed)
        return found

    def _candidates(self, found: list[list[tuple[int, float]]]) -> list[list[Candidate]]:
        """(chunk id, score) lists with each chunk's document."""
        doc_of = self._doc_ids([c for row in found for c, _ in row])
        return [[Candidate(doc_of[c], c, s) for c, s in row if c in doc_of] for row in found]

    def _exact_among(self, vectors: np.ndarray, k: int, allowed: np.ndarray) -> list[list[tuple[int, float]]]:
        """Exact top-k among the allowed chunks, from their stored vectors."""
        ids, stored = self._vectors_of(allowed)
        out = []
        for query in vectors:
            scores = stored @ query
            top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            out.append([(int(ids[i]), float(scores[i])) for i in top])
        return out

    def exact_ids(self, vectors: np.ndarray, k: int) -> np.ndarray:
        with self.view():
            if self.index.trained_kind == "ivfpq":
                return self._exact_from_store(vectors[0], k)
            return self.index.exact_search(vectors, k)[0]

    def _exact_from_store(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k over the stored vectors, for IVF-PQ's sampled recall (off the request path)."""
        ids, vectors = self._all_vectors()
        order = np.argsort(-(vectors @ vector))[:k]
        return ids[order]

    @_interruptible
    def _vectors_of(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their stored vectors) in the order given; chunks deleted meanwhile are
        left out."""
        rows: dict[int, bytes] = {}
        for part in _batched([int(i) for i in chunk_ids], 500):
            rows.update(self._reader().execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})", part))
        found = [int(i) for i in chunk_ids if int(i) in rows]
        vectors = np.frombuffer(b"".join(rows[i] for i in found), dtype=np.float32)
        return np.array(found, dtype=np.int64), vectors.reshape(len(found), self.manifest.dimension)

    @_interruptible
    def _doc_ids(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for part in _batched(list(chunk_ids), 500):
            out.update(self._reader().execute(
                f"SELECT id, doc_id FROM chunks WHERE id IN ({','.join('?' * len(part))})", part))
        return out

    @_interruptible
    def fetch(self, chunk_ids: Sequence[int] = (), documents: Sequence[str] = (), vectors: bool = False,
              rows: bool = False) -> list[StoredChunk]:
        # Read whole here, so an interrupted read is reported here; the documents' own columns
        # once each, not once a chunk.
        columns = "id, doc_id, idx, start, end" + (", vector" if vectors else "")
        db = self._reader()
        found: list[tuple[Any, ...]] = []
        if documents:
            for part in _batched(list(dict.fromkeys(documents)), 500):
                found += db.execute(f"SELECT {columns} FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})"
                                    " ORDER BY doc_id, idx", part).fetchall()
        else:
            by_id: dict[int, tuple[Any, ...]] = {}
            for part in _batched([int(i) for i in chunk_ids], 500):
                by_id.update((r[0], r) for r in db.execute(
                    f"SELECT {columns} FROM chunks WHERE id IN ({','.join('?' * len(part))})", part))
            found = [by_id[int(i)] for i in chunk_ids if int(i) in by_id]
        # A document's metadata parsed once, shared by its chunks' rows (nothing downstream edits it).
        docs: dict[str, tuple[str, str, dict[str, Any]]] = {}
        cut = self._expired_before()
        if cut is not None and found:
            # Chunks of documents expired since they were retrieved (or given by id) are left out,
            # as chunks deleted meanwhile are.
            expired = self._expired_among(db, list(dict.fromkeys(r[1] for r in found)), cut)
            found = [r for r in found if r[1] not in expired]
        if rows:
            for part in _batched(list(dict.fromkeys(r[1] for r in found)), 500):
                docs.update((d, (title, text, json.loads(meta))) for d, title, text, meta in db.execute(
                    "SELECT id, title, text, metadata FROM documents"
                    f" WHERE id IN ({','.join('?' * len(part))})", part))
        out = []
        for r in found:
            chunk_id, doc_id, idx, start, end = r[:5]
            vector = np.frombuffer(r[5], dtype=np.float32) if vectors else None
            row = None
            if rows and doc_id in docs:
                title, text, meta = docs[doc_id]
                row = ChunkRow(doc_id, idx, start, end, title, text[start:end], meta)
            out.append(StoredChunk(chunk_id, doc_id, vector, row))
        return out

    @_interruptible
    def lexical(self, query: Query, k: int, flt: Filter | None = None) -> list[Candidate]:
        restricted = flt or self._expired_before() is not None
        found = fts.search(self._reader(), query, k, self._filter_sql(flt) if restricted else None, self._legacy,
                           broad=not flt)
        return self._candidates([found])[0]

    @_interruptible
    def _lexical_scale(self, query: Query) -> float:
        return fts.max_score(self._reader(), query, self._legacy)

    @_interruptible
    def lexical_scores(self, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
        return fts.score_chunks(self._reader(), query, chunk_ids, self._legacy)

    def close(self, rebuild_wait: float | None = None) -> None:
        """Snapshot the index and close. A rebuild under way gets `rebuild_wait` seconds to end
        (None: as long as it takes); past that it is abandoned, and the next open starts it again."""
        if self._closed:
            return
        self.wait_for_rebuild(rebuild_wait)
        with self._write_mutex:
            self._closing = True
        self.wait_for_lexical_rebuild()
        with self._checkpoint_hold:
            if self._closed:
                return
            self._checkpoint(force=True)
            self._closed = True
            self._db.close()

    def destroy(self) -> None:
        """Close without a checkpoint: the folder is being deleted."""
        self._closing = self._closed = True
        self.wait_for_lexical_rebuild()
        self._db.close()



def storage_error(exc: sqlite3.OperationalError) -> Exception:
    """A store write that the disk refused, as a domain error; other failures stay as they are."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR") or "full" in str(exc):
        return ResourceExhausted(
            f"store: the disk refused the write ({exc}: it is full, or a file-size limit was reached);"
            " nothing of this write was stored, and the collection stays readable. Free space and retry")
    return exc


def _batched(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]

