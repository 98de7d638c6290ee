"""One collection: a folder with a manifest, a FAISS index and an SQLite document store.

SQLite is the source of truth. Every write is one SQLite transaction that stores the document,
its chunks with their vectors, and a change-log row per added or removed chunk; the transaction
commits with a full fsync before the write is acknowledged. The FAISS index is a cache of the
vectors: it is snapshotted now and then (the snapshot names the last change it contains), and on
open the change log after the snapshot is replayed. So a kill -9 at any moment loses nothing that
was acknowledged, and index and store always come back holding the same ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import check, deadline, fusion, index_cache, lexical
from .chunker import Chunker
from .documents import Chunk, Document
from .embedder import Embedder, check_fits, plain_tokenizer
from .errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from .files import write_durably
from .filters import Condition, Filter, index_rows, to_sql, validate_condition
from .rwlock import RWLock
from .vector_index import IndexSpec, VectorIndex

FORMAT_VERSION = 1
MODES = ("dense", "lexical", "hybrid")
# The model of a collection that stores the vectors its documents bring, and embeds nothing.
NO_MODEL = "none"
# Dense weight of hybrid search in such a collection: no tokenizer to measure the query's
# vocabulary coverage with, so both retrievers count alike.
NO_MODEL_DENSE_WEIGHT = 0.5
# Documents each retriever contributes to hybrid fusion.
FUSION_DEPTH = 100
MANIFEST = "manifest.json"
DATABASE = "docs.sqlite"
# Filters allowing at most this many chunks are searched exactly among them in an approximate index:
# about 1.7 us a chunk (35 ms at the limit) against a filtered HNSW recall@10 of 0.06 to 0.84 for
# filters allowing 0.1% to 20% (bench/filtered_search.py).
EXACT_FILTER_LIMIT = 20_000
# Snapshot the FAISS index once this many changes wait in the log, so replay on open stays short.
CHECKPOINT_CHANGES = 20_000
log = logging.getLogger("neardex.indexer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL,
    updated REAL NOT NULL
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
"""


@dataclass(frozen=True)
class Manifest:
    name: str
    model: str
    model_path: str
    dimension: int
    chunk_tokens: int
    overlap_tokens: int
    index: IndexSpec
    encoder: str
    default_mode: str = "dense"
    normalize: bool = True
    format_version: int = FORMAT_VERSION
    # Metadata keys answered from the meta_values table instead of a scan.
    indexed_keys: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {**self.__dict__, "index": self.index.to_dict(), "indexed_keys": list(self.indexed_keys)}
        return json.dumps(data, indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise FailedPrecondition(
                f"manifest: format version {data.get('format_version')} is not supported"
                f" (this neardex reads version {FORMAT_VERSION})"
            )
        data["index"] = IndexSpec.parse(data["index"]["kind"], data["index"]["params"])
        data["indexed_keys"] = tuple(data.get("indexed_keys", ()))
        return Manifest(**data)


@dataclass(frozen=True)
class UpsertResult:
    upserted: int = 0
    unchanged: int = 0
    chunks: int = 0
    ids: list[str] = field(default_factory=list)
    tokens: int = 0


@dataclass(frozen=True)
class Candidate:
    """A document as one retriever (or the fusion) ranks it, with its best chunk."""

    doc_id: str
    chunk_id: int
    score: float


@dataclass(frozen=True)
class RetrieverScore:
    retriever: str
    score: float
    rank: int


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str
    title: str
    metadata: dict[str, Any]
    chunk_index: int
    chunk_start: int
    chunk_end: int
    retrievers: list[RetrieverScore] = field(default_factory=list)


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    mode: str


@dataclass(frozen=True)
class Stats:
    documents: int
    chunks: int
    vectors: int
    bytes: int


QueryEncoder = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Transaction:
    """An open write transaction and the index changes to apply when it commits."""

    db: sqlite3.Connection
    removed: list[int] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)
    added_vectors: list[np.ndarray] = field(default_factory=list)


class Collection:
    """Thread-safe: searches run concurrently; writes are serialized and exclude searches only
    for the moment they swap the index, so no search sees half a document."""

    def __init__(self, folder: Path, manifest: Manifest, embedder: Embedder | None,
                 query_encoder: QueryEncoder | None = None) -> None:
        """embedder is None for a collection without a model (manifest.model == NO_MODEL)."""
        self.folder = folder
        self.manifest = manifest
        self._embedder = embedder
        # Queries may go through a shared micro-batching queue instead of the model directly.
        self._encode_queries = query_encoder or (embedder.encode if embedder else None)
        self._chunker = (Chunker(plain_tokenizer(embedder), manifest.chunk_tokens, manifest.overlap_tokens)
                         if embedder else None)
        self._lock = RWLock()
        self._write_mutex = threading.Lock()
        # Held while a collection snapshot copies the index and the store (see snapshots.py).
        self._checkpoint_hold = threading.Lock()
        self._local = threading.local()
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        if lexical.create_table(self._db):
            with self._transaction() as tx:
                lexical.rebuild(tx.db)
        self._closed = False
        self._rebuilder: threading.Thread | None = None
        self.index = self._attach(index_cache.load(self.folder, self.manifest.index, self.manifest.dimension,
                                                 self._db))
        check.reconcile(self._db, self.index, folder, manifest.dimension)
        self._maybe_rebuild()

    # -- the model ----------------------------------------------------------------------------

    @property
    def has_model(self) -> bool:
        return self._embedder is not None

    def require_model(self, field: str) -> Embedder:
        """The collection's model, or InvalidArgument naming `field` when it has none."""
        if self._embedder is None:
            raise InvalidArgument(
                f"{field}: collection {self.manifest.name!r} has no model (it stores the vectors its"
                " documents bring): search it with a vector, or with text in lexical mode")
        return self._embedder

    @property
    def embedder(self) -> Embedder:
        return self.require_model("collection")

    @property
    def chunker(self) -> Chunker:
        self.require_model("collection")
        assert self._chunker is not None
        return self._chunker

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.require_model("query")
        assert self._encode_queries is not None
        return self._encode_queries(texts)

    # -- creation and opening -----------------------------------------------------------------

    @staticmethod
    def create(folder: Path, manifest: Manifest, embedder: Embedder | None,
               query_encoder: QueryEncoder | None = None) -> Collection:
        folder.mkdir(parents=True)
        write_durably(folder / MANIFEST, manifest.to_json())
        return Collection(folder, manifest, embedder, query_encoder)

    @staticmethod
    def read_manifest(folder: Path) -> Manifest:
        return Manifest.from_json((folder / MANIFEST).read_text())

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
            self._local.db = db
        return db

    # -- the FAISS cache ----------------------------------------------------------------------

    def _attach(self, index: VectorIndex) -> VectorIndex:
        index.fetch_vectors = self.vectors_of
        return index

    def _maybe_rebuild(self) -> None:
        """Start rebuilding the index in the background when it asks for it (HNSW tombstones
        piled up, IVF-PQ has enough vectors to train). Called with the write lock held, or
        while the collection opens."""
        if not self.index.needs_rebuild() or self._closed:
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
                if self._closed:
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
        if rebuilder is not None:
            rebuilder.join(timeout)

    def _all_vectors(self, db: sqlite3.Connection | None = None) -> tuple[np.ndarray, np.ndarray]:
        return index_cache.stored_vectors(db or self._reader(), self.manifest.dimension)

    def _checkpoint_after_write(self) -> None:
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

    def checkpoint(self, force: bool = False) -> None:
        """Snapshot the index and trim the change log it now contains. Skipped while a collection
        snapshot holds checkpoints off, unless forced (then it waits)."""
        if not self._checkpoint_hold.acquire(blocking=force):
            return
        try:
            self._checkpoint(force)
        finally:
            self._checkpoint_hold.release()

    def _checkpoint(self, force: bool) -> None:
        rebuilder = self._rebuilder
        if rebuilder is not None and rebuilder.is_alive() and rebuilder is not threading.current_thread():
            if not force:
                return  # the rebuild's catch-up needs the log; the swap is followed by one
            rebuilder.join()
        with self._write_mutex, self._view():
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
            (pending,) = self._db.execute("SELECT COUNT(*) FROM changes").fetchone()
            if not pending or (not force and pending < CHECKPOINT_CHANGES):
                return
            index_cache.write(self.folder, self.index, self._db, last)

    # -- writes -------------------------------------------------------------------------------

    def prepare(self, doc: Document) -> tuple[list[Chunk], list[str]]:
        """Chunks of a document and the texts the model embeds for them (without a model: the
        whole document is one chunk, its text what lexical search reads).

        The title is embedded with every chunk when it fits in half the model's window; the chunk
        budget shrinks by the title's tokens, so title plus chunk never exceed the window."""
        if not self.has_model:
            return [Chunk(0, doc.text, 0, len(doc.text), 0)], [f"{doc.title} {doc.text}".strip()]
        window = self.embedder.max_seq_length - 2  # [CLS] and [SEP]
        title_tokens = self.chunker.count(doc.title) + 1 if doc.title else 0
        use_title = 0 < title_tokens <= window // 2
        budget = min(self.manifest.chunk_tokens, window - (title_tokens if use_title else 0))
        chunks = self.chunker.chunks(doc.text, budget)
        texts = [f"{doc.title} {c.text}" if use_title else c.text for c in chunks]
        return chunks, texts

    def upsert(self, documents: Sequence[Document], batch_size: int = 64) -> UpsertResult:
        """Store documents durably; unchanged ones (same content hash) are neither re-embedded
        nor rewritten. Returns once the batch is committed to disk."""
        validate_documents(documents, needs_text=self.has_model)
        own = self._own_vectors(documents)
        hashes = [d.content_hash() for d in documents]
        stored = self._hashes([d.id for d in documents])
        positions = [i for i, (d, h) in enumerate(zip(documents, hashes)) if stored.get(d.id) != h]
        changed = [(documents[i], hashes[i]) for i in positions]
        prepared = [self.prepare(d) for d, _ in changed]
        texts = [t for _, doc_texts in prepared for t in doc_texts]
        vectors = self._embed(texts, batch_size) if own is None else own[positions]
        # A write whose caller has gone is not made: it would be acknowledged to nobody.
        deadline.check("write")
        self._write(changed, prepared, vectors)
        self._checkpoint_after_write()
        return UpsertResult(
            upserted=len(changed),
            unchanged=len(documents) - len(changed),
            chunks=len(texts),
            ids=[d.id for d in documents],
            tokens=sum(c.tokens for chunks, _ in prepared for c in chunks),
        )

    def _own_vectors(self, documents: Sequence[Document]) -> np.ndarray | None:
        """The documents' own vectors, unit length, in a collection without a model; None in one
        with a model, where a document bringing a vector is refused (the model embeds every
        document of its collection, or the vectors would not be comparable)."""
        if self.has_model:
            for i, doc in enumerate(documents):
                if doc.vector is not None:
                    raise InvalidArgument(
                        f"documents[{i}].vector: collection {self.manifest.name!r} embeds its documents with"
                        f" {self.manifest.model}; send the text without a vector")
            return None
        out = np.zeros((len(documents), self.manifest.dimension), dtype=np.float32)
        for i, doc in enumerate(documents):
            if doc.vector is None:
                raise InvalidArgument(f"documents[{i}].vector: collection {self.manifest.name!r} has no model;"
                                      f" every document brings its vector of dimension {self.manifest.dimension}")
            out[i] = self._unit(doc.vector, f"documents[{i}].vector")
        return out

    def _unit(self, vector: Sequence[float] | np.ndarray, field: str) -> np.ndarray:
        """A vector of the collection's dimension scaled to unit length, so scores are cosines."""
        arr = self.check_vector(vector, field)
        norm = float(np.linalg.norm(arr))
        if not norm or not np.isfinite(norm):
            raise InvalidArgument(f"{field}: a zero vector has no direction to compare")
        return arr / norm

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors of a write's chunk texts, one model call per `batch_size` texts in length
        order (so each call pads little). Between calls the model is free for queries, and the
        caller's deadline is checked: a write whose caller has gone stops within one call."""
        vectors = np.empty((len(texts), self.manifest.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            deadline.check("embed")
            vectors[part] = self.embedder.encode([texts[i] for i in part], batch_size=batch_size)
        return vectors

    def _write(self, changed: list[tuple[Document, str]],
               prepared: list[tuple[list[Chunk], list[str]]], vectors: np.ndarray) -> None:
        if not changed:
            return
        now = time.time()
        with self._write_mutex, self._transaction() as tx:
            db = tx.db
            tx.removed += self._delete_chunks_of(db, [d.id for d, _ in changed])
            row = 0
            for (doc, digest), (chunks, texts) in zip(changed, prepared):
                db.execute(
                    "INSERT INTO documents (id, title, text, metadata, hash, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                    " title=excluded.title, text=excluded.text, metadata=excluded.metadata,"
                    " hash=excluded.hash, updated=excluded.updated",
                    (doc.id, doc.title, doc.text, json.dumps(doc.metadata, ensure_ascii=False),
                     digest, now),
                )
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
                lexical.add(db, zip(ids, texts))
                tx.added_ids += ids
            self._index_metadata(db, [doc for doc, _ in changed])
            tx.added_vectors.append(vectors[:row])
            db.executemany("INSERT INTO changes (op, chunk_id) VALUES ('add', ?)",
                           [(i,) for i in tx.added_ids])

    @contextlib.contextmanager
    def _view(self) -> Iterator[None]:
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

    @staticmethod
    def _delete_chunks_of(db: sqlite3.Connection, doc_ids: Sequence[str]) -> list[int]:
        removed: list[int] = []
        for part in _batched(doc_ids, 500):
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM meta_values WHERE doc_id IN ({marks})", part)
            removed += [r[0] for r in db.execute(
                f"SELECT id FROM chunks WHERE doc_id IN ({marks})", part)]
            db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
        lexical.remove(db, removed)
        db.executemany("INSERT INTO changes (op, chunk_id) VALUES ('del', ?)",
                       [(i,) for i in removed])
        return removed

    def delete(self, ids: Sequence[str] = (), flt: Filter | None = None) -> int:
        """Delete documents by id, or those matching a filter (never an empty one); returns how
        many existed."""
        if flt is not None and not flt:
            raise InvalidArgument("filter: an empty filter would delete every document; give conditions")
        if not ids and flt is None:
            return 0
        deadline.check("delete")
        with self._write_mutex, self._transaction() as tx:
            if flt is not None:
                where, params = self._where(flt)
                ids = [r[0] for r in tx.db.execute(f"SELECT d.id FROM documents d WHERE {where}", params)]
            tx.removed += self._delete_chunks_of(tx.db, ids)
            deleted = 0
            for part in _batched(ids, 500):
                cur = tx.db.execute(
                    f"DELETE FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
                deleted += cur.rowcount
        self._checkpoint_after_write()
        return deleted


    def index_metadata(self, keys: Sequence[str]) -> None:
        """Answer filters on these metadata keys from the meta_values table from now on: rows are
        written for every stored document, then the manifest names the keys."""
        new = [k for k in dict.fromkeys(keys) if k not in self.manifest.indexed_keys]
        for i, key in enumerate(new):
            validate_condition(f"keys[{i}]", key, Condition("exists", True))
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
            manifest = replace(self.manifest, indexed_keys=(*self.manifest.indexed_keys, *new))
            write_durably(self.folder / MANIFEST, manifest.to_json())
            self.manifest = manifest

    # -- reads --------------------------------------------------------------------------------

    def _hashes(self, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in _batched(ids, 500):
            found.update(self._reader().execute(
                f"SELECT id, hash FROM documents WHERE id IN ({','.join('?' * len(part))})", part))
        return found

    def all_ids(self) -> set[str]:
        return {r[0] for r in self._reader().execute("SELECT id FROM documents")}

    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]:
        found: dict[str, Document] = {}
        for part in _batched(ids, 500):
            for doc_id, title, text, meta in self._reader().execute(
                "SELECT id, title, text, metadata FROM documents"
                f" WHERE id IN ({','.join('?' * len(part))})", part):
                found[doc_id] = Document(doc_id, text, title, json.loads(meta))
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    def _where(self, flt: Filter | None) -> tuple[str, list[Any]]:
        """A WHERE clause over documents `d` for flt, using the collection's metadata index."""
        return to_sql(flt, "d.metadata", "d.id", self.manifest.indexed_keys)

    def count(self, flt: Filter | None = None) -> int:
        """Documents matching flt (every document without one)."""
        where, params = self._where(flt)
        (n,) = self._reader().execute(f"SELECT COUNT(*) FROM documents d WHERE {where}", params).fetchone()
        return int(n)

    def scroll(self, after: str, limit: int, flt: Filter | None = None,
               text: bool = True) -> list[Document]:
        """Up to `limit` documents matching flt with ids after `after`, in id order (keyset
        paging: no offset to skip over, and each page reads the store as it is then)."""
        where, params = self._where(flt)
        columns = "d.id, d.title, d.text, d.metadata" if text else "d.id, d.title, '', d.metadata"
        rows = self._reader().execute(
            f"SELECT {columns} FROM documents d WHERE d.id > ? AND {where} ORDER BY d.id LIMIT ?",
            [after, *params, limit])
        return [Document(doc_id, body, title, json.loads(meta)) for doc_id, title, body, meta in rows]

    def stats(self) -> Stats:
        db = self._reader()
        (documents,) = db.execute("SELECT COUNT(*) FROM documents").fetchone()
        (chunks,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        return Stats(documents, chunks, self.index.live, size)

    def chunk_ids(self) -> set[int]:
        return {r[0] for r in self._reader().execute("SELECT id FROM chunks")}

    def index_ids(self) -> set[int]:
        """Ids the FAISS index answers for (tombstones excluded): equal to chunk_ids when in step."""
        with self._view():
            return {int(i) for i in self.index.ids()} - self.index.tombstones

    def _filter_sql(self, flt: Filter) -> tuple[str, list[Any]]:
        """A query for the ids of the chunks whose document matches flt, and its parameters."""
        where, params = self._where(flt)
        return f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}", params

    def allowed_chunks(self, flt: Filter | None) -> np.ndarray | None:
        """Ids of the chunks flt allows; None when there is no filter."""
        if not flt:
            return None
        rows = self._reader().execute(*self._filter_sql(flt))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def dense_search(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None = None,
                     ef_search: int = 0, nprobe: int = 0) -> list[list[tuple[int, float]]]:
        """Per query, (chunk id, score) best first, at most k chunks, among allowed (every chunk
        when None)."""
        if allowed is not None and not len(allowed):
            return [[] for _ in range(len(vectors))]
        with self._view():
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

    def _exact_among(self, vectors: np.ndarray, k: int, allowed: np.ndarray) -> list[list[tuple[int, float]]]:
        """Exact top-k among the allowed chunks, from their stored vectors."""
        ids, stored = self.vectors_of(allowed)
        out = []
        for query in vectors:
            scores = stored @ query
            top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            out.append([(int(ids[i]), float(scores[i])) for i in top])
        return out

    def exact_ids(self, vectors: np.ndarray, k: int) -> np.ndarray:
        with self._view():
            if self.index.trained_kind == "ivfpq":
                return self._exact_from_store(vectors[0], k)
            return self.index.exact_search(vectors, k)[0]

    def _exact_from_store(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k over the stored vectors, for IVF-PQ's sampled recall (off the request path)."""
        ids, vectors = self._all_vectors()
        order = np.argsort(-(vectors @ vector))[:k]
        return ids[order]

    def vectors_of(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their stored vectors) in the order given; chunks deleted meanwhile are
        left out."""
        rows: dict[int, bytes] = {}
        for part in _batched([int(i) for i in chunk_ids], 500):
            rows.update(self._reader().execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})", part))
        found = [int(i) for i in chunk_ids if int(i) in rows]
        vectors = np.frombuffer(b"".join(rows[i] for i in found), dtype=np.float32)
        return np.array(found, dtype=np.int64), vectors.reshape(len(found), self.manifest.dimension)

    def doc_ids_of(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for part in _batched(list(chunk_ids), 500):
            out.update(self._reader().execute(
                f"SELECT id, doc_id FROM chunks WHERE id IN ({','.join('?' * len(part))})", part))
        return out

    def fetch_chunks(self, chunk_ids: Sequence[int]) -> dict[int, tuple[str, int, int, int, str, str, str]]:
        """chunk id -> (doc id, chunk index, start, end, doc title, doc text, metadata json)."""
        out: dict[int, tuple[str, int, int, int, str, str, str]] = {}
        for part in _batched(list(chunk_ids), 500):
            for row in self._reader().execute(
                "SELECT c.id, c.doc_id, c.idx, c.start, c.end, d.title, d.text, d.metadata"
                " FROM chunks c JOIN documents d ON d.id = c.doc_id"
                f" WHERE c.id IN ({','.join('?' * len(part))})", part):
                out[row[0]] = row[1:]
        return out

    def resolve_mode(self, mode: str | None) -> str:
        mode = mode or self.manifest.default_mode
        if mode not in MODES:
            raise InvalidArgument(f"mode: unknown search mode {mode!r}; expected one of {MODES}")
        return mode

    def _grouped(self, fetch: Callable[[int], list[tuple[int, float]]], k: int) -> list[Candidate]:
        """Best chunk per document, best first, up to k documents. Chunks of one document compete
        for places, so ask for more chunks than documents and widen until k documents are found
        or the retriever runs dry."""
        want = k * 3
        while True:
            ranked = fetch(want)
            doc_of = self.doc_ids_of([c for c, _ in ranked])
            seen: set[str] = set()
            out: list[Candidate] = []
            for chunk_id, score in ranked:
                doc = doc_of.get(chunk_id)
                if doc is not None and doc not in seen:
                    seen.add(doc)
                    out.append(Candidate(doc, chunk_id, score))
            if len(out) >= k or len(ranked) < want:
                return out[:k]
            want *= 4

    def dense_candidates(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None,
                         ef_search: int = 0, nprobe: int = 0) -> list[Candidate]:
        return self._grouped(
            lambda n: self.dense_search(vector[None, :], n, allowed, ef_search, nprobe)[0], k)

    def lexical_candidates(self, text: str, k: int, flt: Filter | None = None) -> list[Candidate]:
        allowed = self._filter_sql(flt) if flt else None
        return self._grouped(lambda n: lexical.search(self._reader(), text, n, allowed), k)

    def best_chunks(self, vector: np.ndarray, doc_ids: Sequence[str]) -> dict[str, Candidate]:
        """Each document's chunk closest to vector, with its cosine (documents not stored are left
        out)."""
        best: dict[str, Candidate] = {}
        for part in _batched(list(doc_ids), 500):
            rows = self._reader().execute(
                f"SELECT id, doc_id, vector FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})", part).fetchall()
            if not rows:
                continue
            scores = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1) @ vector
            for (chunk_id, doc_id, _), score in zip(rows, scores.tolist()):
                if doc_id not in best or score > best[doc_id].score:
                    best[doc_id] = Candidate(doc_id, chunk_id, score)
        return best

    def _on_cosine_scale(self, ranked: list[Candidate], vector: np.ndarray, k: int,
                         min_score: float | None) -> list[Candidate]:
        """The first k fused candidates (of those at min_score or above), in fused order, each
        scored by its document's best cosine to the query: a scale that means the same for every
        query, where fused scores (min-max normalized per query) always put the top hit at 1."""
        out: list[Candidate] = []
        block = max(k, 10)
        for start in range(0, len(ranked), block):
            part = ranked[start : start + block]
            cosines = self.best_chunks(vector, [c.doc_id for c in part])
            for cand in part:
                best = cosines.get(cand.doc_id)
                if best is not None and (min_score is None or best.score >= min_score):
                    out.append(replace(cand, score=best.score))
                    if len(out) == k:
                        return out
        return out

    def complete(self, text: str, vector: np.ndarray, dense: list[Candidate],
                 lexical_list: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        """Both retrievers' scores for every document either one found.

        A document one retriever ranked below its cut-off still has a true score there: the
        cosine of its best chunk, or its best chunk's BM25 (0 when no query word occurs). Fusing
        true scores instead of imputing a floor keeps one retriever's near-misses from being
        treated as total misses."""
        dense_docs = {c.doc_id for c in dense}
        lexical_docs = {c.doc_id for c in lexical_list}
        db = self._reader()
        extra_dense = list(self.best_chunks(vector, sorted(lexical_docs - dense_docs)).values())
        extra_lexical: list[Candidate] = []
        missing = sorted(dense_docs - lexical_docs)
        if missing:
            chunk_rows = []
            for part in _batched(missing, 500):
                chunk_rows += db.execute(
                    f"SELECT id, doc_id FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})", part).fetchall()
            doc_of = dict(chunk_rows)
            scored = dict(lexical.score_chunks(db, text, list(doc_of)))
            best_lex: dict[str, Candidate] = {}
            for chunk_id, doc_id in chunk_rows:
                score = scored.get(chunk_id, 0.0)
                if doc_id not in best_lex or score > best_lex[doc_id].score:
                    best_lex[doc_id] = Candidate(doc_id, chunk_id, score)
            extra_lexical += best_lex.values()
        by_score = lambda c: -c.score  # noqa: E731
        return (sorted(dense + extra_dense, key=by_score), sorted(lexical_list + extra_lexical, key=by_score))

    def search(self, text: str | None = None, vector: np.ndarray | None = None, k: int = 10,
               flt: Filter | None = None, min_score: float | None = None, mode: str = "",
               ef_search: int = 0, nprobe: int = 0) -> SearchResult:
        """Documents best first, each with its best chunk, by dense, lexical or hybrid retrieval.

        Text and vector may both be given: the vector serves dense retrieval, the text lexical."""
        has_text = bool(text and text.strip())
        # A bare vector can only be searched densely: the default mode yields to it, an explicit
        # lexical or hybrid request is refused below.
        mode = self.resolve_mode(mode or ("" if has_text or vector is None else "dense"))
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if mode != "dense" and not has_text:
            raise InvalidArgument(f"query: {mode} search needs query text")
        if vector is None and mode != "lexical":
            if not has_text:
                raise InvalidArgument("query: must not be empty")
            check_fits(self.require_model("query"), text or "", "query")
            deadline.check("embed")
            vector = self.encode_queries([text or ""])[0]
            timings["embed"] = _ms(started)
        if mode != "lexical":
            vector = self.check_vector(vector)
        # Every read below sees the index and the store at the same write: a document being
        # replaced is found at its old version or its new one, never at neither.
        with self._view():
            lists: dict[str, list[Candidate]] = {}
            # Fusion needs both rankings deeper than k, or a document second in both is lost.
            depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
            allowed = None
            if mode != "lexical":
                deadline.check("dense")
                t = time.perf_counter()
                # Dense retrieval runs twice in hybrid search and widens as it goes: the filter is
                # resolved to chunk ids once.
                allowed = self.allowed_chunks(flt)
                lists["dense"] = self.dense_candidates(vector, depth, allowed, ef_search, nprobe)
                timings["dense"] = _ms(t)
            if mode != "dense":
                deadline.check("lexical")
                t = time.perf_counter()
                lists["lexical"] = self.lexical_candidates(text or "", depth, flt)
                timings["lexical"] = _ms(t)
            if mode == "hybrid":
                t = time.perf_counter()
                weight = (fusion.dense_weight(self.embedder, text or "") if self.has_model
                          else NO_MODEL_DENSE_WEIGHT)
                ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
                timings["fuse"] = _ms(t)
                if weight > 0 and ranked:
                    # Rocchio feedback: move the query towards the best fused documents and search
                    # densely again; the lexical list stays, it already matched the words.
                    deadline.check("feedback")
                    t = time.perf_counter()
                    _, top = self.vectors_of([c.chunk_id for c in ranked[: fusion.PRF_DEPTH]])
                    feedback = fusion.rocchio(vector, top)
                    lists["dense"] = self.dense_candidates(feedback, depth, allowed, ef_search, nprobe)
                    ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
                    timings["feedback"] = _ms(t)
            else:
                ranked = lists[mode]
            # Scores that mean the same for every query: cosines (dense, hybrid), or BM25 as a share
            # of the most the query's words can score (lexical).
            if mode == "hybrid":
                ranked = self._on_cosine_scale(ranked, vector, k, min_score)
            elif mode == "lexical":
                most = lexical.max_score(self._reader(), text or "")
                ranked = [replace(c, score=c.score / most) for c in ranked]
            if min_score is not None:
                ranked = [c for c in ranked if c.score >= min_score]
            deadline.check("fetch")
            t = time.perf_counter()
            hits = self.materialize(ranked[:k], lists)
            timings["fetch"] = _ms(t)
            timings["total"] = _ms(started)
            return SearchResult(hits, timings, mode)

    def materialize(self, ranked: list[Candidate], lists: dict[str, list[Candidate]]) -> list[Hit]:
        rows = self.fetch_chunks([c.chunk_id for c in ranked])
        positions = {name: {c.doc_id: (rank + 1, c.score) for rank, c in enumerate(lst)}
                     for name, lst in lists.items()}
        hits = []
        for cand in ranked:
            row = rows.get(cand.chunk_id)
            if row is None:  # deleted between the retrieval and this read
                continue
            doc_id, idx, start, end, title, text, meta = row
            retrievers = [RetrieverScore(name, pos[doc_id][1], pos[doc_id][0])
                          for name, pos in positions.items() if doc_id in pos]
            hits.append(Hit(doc_id, cand.score, text[start:end], title, json.loads(meta), idx,
                            start, end, retrievers))
        return hits

    def chunk_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored chunk vectors of each document, one row per chunk in chunk order (documents
        not stored are left out)."""
        rows: dict[str, list[bytes]] = {}
        for part in _batched(list(dict.fromkeys(ids)), 500):
            for doc_id, blob in self._reader().execute(
                    f"SELECT doc_id, vector FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})"
                    " ORDER BY doc_id, idx", part):
                rows.setdefault(doc_id, []).append(blob)
        return {doc_id: np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, self.manifest.dimension)
                for doc_id, blobs in rows.items()}

    def document_vectors(self, ids: Sequence[str], field: str) -> np.ndarray:
        """Each document's vector, the normalized mean of its chunks' vectors, one row per id;
        NotFound names the first id that is not stored."""
        chunks = self.chunk_vectors(ids)
        out = np.zeros((len(ids), self.manifest.dimension), dtype=np.float32)
        for i, doc_id in enumerate(ids):
            if doc_id not in chunks:
                raise NotFound(f"{field}[{i}]: document {doc_id!r} does not exist in collection {self.manifest.name!r}")
            mean = chunks[doc_id].mean(0)
            out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out

    def similar(self, positive: Sequence[str], negative: Sequence[str] = (), k: int = 10,
                flt: Filter | None = None, min_score: float | None = None, ef_search: int = 0,
                nprobe: int = 0) -> SearchResult:
        """Documents like `positive` and unlike `negative`, from stored vectors alone: the query is
        the mean of the positive documents' vectors, pushed away from the negative ones' mean
        (2 x positive - negative, as Qdrant's average-vector recommendation does). The given
        documents are not among the hits."""
        if not positive:
            raise InvalidArgument("positive: give at least one document id")
        started = time.perf_counter()
        timings: dict[str, float] = {}
        with self._view():
            query = self.document_vectors(positive, "positive").mean(0)
            if negative:
                query = 2 * query - self.document_vectors(negative, "negative").mean(0)
            query = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)
            timings["vectors"] = _ms(started)
            excluded = set(positive) | set(negative)
            deadline.check("dense")
            t = time.perf_counter()
            found = self.dense_candidates(query, k + len(excluded), self.allowed_chunks(flt), ef_search, nprobe)
            ranked = [c for c in found if c.doc_id not in excluded][:k]
            if min_score is not None:
                ranked = [c for c in ranked if c.score >= min_score]
            timings["dense"] = _ms(t)
            deadline.check("fetch")
            t = time.perf_counter()
            hits = self.materialize(ranked, {"dense": found})
            timings["fetch"] = _ms(t)
        timings["total"] = _ms(started)
        return SearchResult(hits, timings, "dense")

    def check_vector(self, vector: Sequence[float] | np.ndarray, field: str = "vector") -> np.ndarray:
        with np.errstate(over="ignore"):
            arr = np.asarray(vector, dtype=np.float32).reshape(-1)
        if arr.shape[0] != self.manifest.dimension:
            raise InvalidArgument(
                f"{field}: has dimension {arr.shape[0]}, collection {self.manifest.name!r} expects"
                f" {self.manifest.dimension}")
        if not np.all(np.isfinite(arr)):
            raise InvalidArgument(f"{field}: contains NaN or infinite values")
        if not self.has_model:  # the stored vectors are unit length: so is the query
            norm = float(np.linalg.norm(arr))
            if not norm or not np.isfinite(norm):
                raise InvalidArgument(f"{field}: a zero vector has no direction to compare")
            arr = arr / norm
        return arr

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self.checkpoint(force=True)
        self._closed = True
        self._db.close()

    def destroy_handles(self) -> None:
        """Close without a checkpoint: the folder is being deleted."""
        self._closed = True
        self._db.close()


def storage_error(exc: sqlite3.OperationalError) -> Exception:
    """A store write that the disk refused, as a domain error; other failures stay as they are."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR") or "full" in str(exc):
        return ResourceExhausted(
            f"store: the disk refused the write ({exc}: it is full, or a file-size limit was reached);"
            " nothing of this write was stored, and the collection stays readable. Free space and retry")
    return exc


def validate_documents(documents: Sequence[Document], needs_text: bool = True) -> None:
    seen: dict[str, int] = {}
    for i, doc in enumerate(documents):
        if not isinstance(doc.id, str) or not doc.id.strip():
            raise InvalidArgument(f"documents[{i}].id: must be a non-empty string")
        if len(doc.id) > 1024:
            raise InvalidArgument(f"documents[{i}].id: longer than 1024 characters")
        if not isinstance(doc.text, str) or (needs_text and not doc.text.strip()):
            raise InvalidArgument(f"documents[{i}].text: must not be empty (id {doc.id!r})")
        if doc.id in seen:
            raise InvalidArgument(
                f"documents[{i}].id: duplicate id {doc.id!r} in one batch (also documents[{seen[doc.id]}])")
        seen[doc.id] = i


def _batched(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
