"""The Milvus store: a collection's chunks, documents and vectors in a Milvus instance.

Nothing of such a collection lives in a neardex server: any number of servers, pointed at the same
Milvus (`--milvus milvus://host:19530`), serve it, each finding it in the instance's
`neardex_catalog`. `pymilvus`' MilvusClient speaks to a Milvus standalone or cluster
(`milvus://host:port`) and to milvus-lite (a file path in process, or `milvus-lite server`), which
is what the tests run.

Two Milvus collections hold one neardex collection: its chunks (vector, BM25 sparse vector made
by Milvus' own BM25 function, chunk text, title, offsets, and the document's metadata so that
filters apply where the vectors are) and its documents (text, metadata, content hash). BM25 reads
each chunk's terms as the collection's analyzer made them (query/analysis.py), and a query's terms
from the same analyzer, so both stores match the same terms. Milvus' standard tokenizer (the one
milvus-lite has besides jieba) would cut some terms again (a Devanagari word at its vowel signs),
so a term that is not plain ASCII letters and digits is written in hex (`milvus_term`). Changing a Milvus collection's analyzer is refused (its chunks would have to be
rewritten whole, vectors included). Milvus' BM25 ranking is not the local store's (Lucene's IDF,
statistics per segment), so it only chooses candidates: they are scored again from their terms as
FTS5 scores (stores/bm25.py, `lexical`), and both stores rank alike. Collections made before
the sparse index was given BM25's constants keep Milvus' defaults for choosing (k1 1.5 on
milvus-lite); their scores are the same. Reads use Strong consistency: a write acknowledged by one
server is seen by the next search on any.

A changed document's new chunks are inserted before its old ones are deleted: a search in between
may see both versions (each hit is one chunk, whole, with its own version's metadata) but never
neither. Limits of the store, each refused with its reason: texts and metadata up to 65,535
bytes each (Milvus' VARCHAR and JSON limits); IVF_PQ on milvus-lite (it accepts one, then never
builds it and searches exactly; `indexes.py` maps each `--index` kind); a range over an array's
elements; booleans and numbers compare equal in filters (`true == 1`), where the embedded store
keeps them apart; a facet counts the
values of at most FACET_SCAN matching documents (Milvus has no grouped count over JSON: they are
read and counted here), and says when it stopped short.

Snapshots: a collection's snapshot is the local collection its rows make (`copy_to`, no model
call), so one snapshot file restores into either store (stores/transfer.py); `neardex check`
checks documents against chunks here (stores/milvus/check.py).

Both versions of a document being rewritten, visible to a search for two round trips, are the
store's consistency level, not a window closed: a chunk carries nothing that tells its version
from the document row's.

Expiry: chunk and document rows carry `expires_at` (unix seconds, 0 for never), and every read's
expression says `(expires_at == 0 or expires_at > NOW)`, so an expired document is gone from
searches, Get, Scroll and Count on every server at once (servers share no clock state, so the
clause is always there where the field is). `purge_expired` deletes them through the ordinary
delete. Collections made before the field (Milvus cannot add a field to an existing collection)
keep no expiry: their documents never expire, and a write carrying one, or a ttl set on one, is
refused (FAILED_PRECONDITION) instead of being silently ignored.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import math
import shutil
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ... import deadline
from ...documents import Chunk, Document
from ...errors import FailedPrecondition, InvalidArgument
from ...layout import MANIFEST
from ...query import facets
from ...query.analysis import Analyzer, Query
from ...query.filters import Filter
from ...records import LOCAL_STORE, Candidate, Manifest, Stats
from .. import ChunkRow, LanguageCounts, MetadataEdit, Retrieved, StoredChunk, bm25, transfer, watched
from .connection import client_for, is_milvus
from .expressions import METADATA_FIELDS, decode_metadata, filterable, meta_path, quote, to_expr
from .indexes import MilvusIndex, milvus_index

__all__ = ["CATALOG", "MilvusStore", "catalog_manifest", "catalog_manifests", "catalog_names", "client_for",
           "is_milvus"]

CATALOG = "neardex_catalog"
MAX_TEXT_BYTES = 65_535
# Ids in one Milvus expression at most, and rows in one query.
_BATCH = 1000
_QUERY_LIMIT = 16_384
# Documents a snapshot reads a page, and the reads of a page's documents that a write changes meanwhile.
_PAGE = 200
_SETTLE_TRIES = 20
# Documents a facet reads at most (see facet).
FACET_SCAN = 100_000
# BM25's constants (stores/bm25.py) for every new collection's sparse index: milvus-lite's own k1
# is 1.5, so its candidates would be ranked further from the scores they are given.
BM25_PARAMS = {"bm25_k1": bm25.K1, "bm25_b": bm25.B}
# Milvus' BM25 candidates a lexical search scores at least (see `lexical`).
RESCORED = 100
# The collection's statistics (chunks, their average length, query terms' document frequencies)
# kept at most this long, and this many terms at once; the average length is read from at most
# LENGTH_SAMPLE chunks (exact up to that many).
_DF_TTL_S = 300.0
_DF_WORDS = 100_000
LENGTH_SAMPLE = 10_000
# The threads that send a hybrid retrieval's lexical search while its dense one is under way.
_SEARCHES = ThreadPoolExecutor(max_workers=16, thread_name_prefix="milvus-lexical")


def _milvus_name(name: str, part: str) -> str:
    # Milvus names take letters, digits and '_': an injective spelling of ours.
    return "neardex_" + name.replace("_", "__").replace("-", "_d") + "_" + part


def milvus_term(term: str) -> str:
    """A term as one token of Milvus' standard tokenizer: ASCII letters and digits as they are,
    anything else as "0x" and its UTF-8 in hex."""
    return term if term.isascii() and term.isalnum() else "0x" + term.encode().hex()


def lexical_text(terms: str) -> str:
    """A chunk's terms as Milvus tokens, spaced so that a `like "% term %"` finds whole terms."""
    return " " + " ".join(milvus_term(t) for t in terms.split()) + " "


def _looked_up(query: Query) -> str:
    return " ".join(milvus_term(t) for t in query.terms)


@watched
class MilvusStore:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.client = client_for(manifest.store)
        self.chunks = _milvus_name(manifest.name, "chunks")
        self.docs = _milvus_name(manifest.name, "docs")
        self._write_mutex = threading.Lock()
        # BM25's statistics (`_statistics`), forgotten every _DF_TTL_S.
        self._df: dict[str, int] = {}
        self._df_total = 0
        self._average_length = 0.0
        self._df_since = -math.inf
        self._df_lock = threading.Lock()
        self.analyzer = Analyzer(manifest.language)
        self.vector_index: MilvusIndex = milvus_index(manifest.index, manifest.dimension)
        self._languages = LanguageCounts(manifest)
        if not (self.client.has_collection(self.chunks) and self.client.has_collection(self.docs)):
            raise FailedPrecondition(f"store: collection {manifest.name!r} has no data in {manifest.store}")
        _load(self.client, self.chunks, self.docs)
        # Collections made before expiry have no field for it (see the module's docstring).
        self.can_expire = all(
            "expires_at" in {f["name"] for f in self.client.describe_collection(name)["fields"]}
            for name in (self.chunks, self.docs))

    # -- the catalog in Milvus ------------------------------------------------------------------

    @staticmethod
    def create(manifest: Manifest) -> MilvusStore:
        from pymilvus import DataType, Function, FunctionType

        vector_index = milvus_index(manifest.index, manifest.dimension)
        client = client_for(manifest.store)
        if vector_index.index_type == "IVF_PQ" and is_milvus_lite(client):
            raise InvalidArgument(
                f"index: milvus-lite builds no IVF_PQ ({manifest.store} would search {manifest.name!r} exactly);"
                " use hnsw there, or ivfpq on a Milvus server")
        _ensure_catalog(client)
        if client.query(CATALOG, filter=f"name == {quote(manifest.name)}", output_fields=["name"]):
            raise FailedPrecondition(f"name: {manifest.store} already holds a neardex collection {manifest.name!r}")
        chunks = client.create_schema(auto_id=True)
        chunks.add_field("pk", DataType.INT64, is_primary=True)
        chunks.add_field("doc_id", DataType.VARCHAR, max_length=1024)
        chunks.add_field("idx", DataType.INT64)
        chunks.add_field("start", DataType.INT64)
        chunks.add_field("end", DataType.INT64)
        chunks.add_field("tokens", DataType.INT64)
        chunks.add_field("title", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        chunks.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        chunks.add_field("lex", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        for field in METADATA_FIELDS:
            chunks.add_field(field, DataType.JSON)
        chunks.add_field("expires_at", DataType.DOUBLE)
        chunks.add_field("dense", DataType.FLOAT_VECTOR, dim=manifest.dimension)
        chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["lex"],
                                     output_field_names=["sparse"]))
        index = client.prepare_index_params()
        # Build parameters as one JSON `params` value: the form milvus-lite reads (indexes.py).
        request = vector_index.index_params
        index.add_index("dense", index_type=request["index_type"], metric_type=request["metric_type"],
                        params={"params": request["params"]} if request["params"] else None)
        # BM25's constants said, as FTS5's: milvus-lite's own default k1 is 1.5.
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"params": BM25_PARAMS})
        docs = client.create_schema(auto_id=False)
        docs.add_field("doc_id", DataType.VARCHAR, max_length=1024, is_primary=True)
        docs.add_field("title", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        docs.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        for field in METADATA_FIELDS:
            docs.add_field(field, DataType.JSON)
        docs.add_field("hash", DataType.VARCHAR, max_length=64)
        docs.add_field("expires_at", DataType.DOUBLE)
        docs.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector in every collection
        docs_index = client.prepare_index_params()
        docs_index.add_index("unused", index_type="FLAT", metric_type="L2")
        client.create_collection(_milvus_name(manifest.name, "chunks"), schema=chunks, index_params=index,
                                 consistency_level="Strong")
        client.create_collection(_milvus_name(manifest.name, "docs"), schema=docs, index_params=docs_index,
                                 consistency_level="Strong")
        client.upsert(CATALOG, [{"name": manifest.name, "manifest": manifest.to_json(), "unused": [0.0, 0.0]}])
        return MilvusStore(manifest)

    def _save_manifest(self, manifest: Manifest) -> None:
        self.client.upsert(CATALOG, [{"name": manifest.name, "manifest": manifest.to_json(), "unused": [0.0, 0.0]}])
        self.manifest = manifest

    # -- the lexical analyzer -------------------------------------------------------------------

    def set_language(self, language: str) -> None:
        if language != self.manifest.language:
            raise FailedPrecondition(
                f"language: collection {self.manifest.name!r} in a Milvus store analyses {self.manifest.language};"
                " changing it would rewrite every chunk: index the documents into a new collection instead")

    # -- writes -------------------------------------------------------------------------------

    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {r["doc_id"]: r["hash"] for r in self._query_in(self.docs, "doc_id", ids, ["doc_id", "hash"],
                                                              self._live())}

    def write(self, changed: list[tuple[Document, str]], prepared: list[tuple[list[Chunk], list[str]]],
              vectors: np.ndarray) -> None:
        if not changed:
            return
        for i, (doc, _) in enumerate(changed):
            for field, value in (("text", doc.text), ("title", doc.title),
                                 ("metadata", json.dumps(doc.metadata, ensure_ascii=False))):
                if len(value.encode()) > MAX_TEXT_BYTES:
                    raise InvalidArgument(f"documents[{i}].{field}: {len(value.encode())} bytes; the Milvus store"
                                          f" keeps at most {MAX_TEXT_BYTES} (document {doc.id!r})")
        metadata = {doc.id: filterable(doc.metadata, f"documents[{i}].metadata") for i, (doc, _) in enumerate(changed)}
        if self.can_expire:
            for doc, _ in changed:
                metadata[doc.id]["expires_at"] = doc.expires_at or 0.0
        elif (late := next((doc for doc, _ in changed if doc.expires_at is not None), None)) is not None:
            raise self._no_expiry(f"expires_at of document {late.id!r}")  # the engine names its place first
        lexical, found = self.analyzer.documents((doc.title, doc.text, texts)
                                                 for (doc, _), (_, texts) in zip(changed, prepared))
        rows, row = [], 0
        for (doc, _), (chunks, _), texts in zip(changed, prepared, lexical):
            for chunk, terms in zip(chunks, texts):
                rows.append({"doc_id": doc.id, "idx": chunk.index, "start": chunk.start, "end": chunk.end,
                             "tokens": chunk.tokens, "title": doc.title, "text": chunk.text,
                             "lex": lexical_text(terms), **metadata[doc.id], "dense": vectors[row].tolist()})
                row += 1
        with self._write_mutex:
            # Recorded before the write: queries are detected among the languages found.
            if (noted := self._languages.add(self.manifest, found)) is not None:
                self.save_manifest(noted)
            old = [r["pk"] for r in self._query_in(self.chunks, "doc_id", [d.id for d, _ in changed], ["pk"])]
            # New chunks first, then the documents, then the old chunks out: a search meanwhile finds
            # one version of each document or the other, never neither.
            for start in range(0, len(rows), _BATCH):
                self.client.insert(self.chunks, rows[start:start + _BATCH])
            self.client.upsert(self.docs, [{"doc_id": d.id, "title": d.title, "text": d.text, **metadata[d.id],
                                            "hash": h, "unused": [0.0, 0.0]} for d, h in changed])
            for start in range(0, len(old), _BATCH):
                self.client.delete(self.chunks, filter=f"pk in {old[start:start + _BATCH]}")

    def delete(self, ids: Sequence[str] = (), flt: Filter | None = None) -> int:
        """Returns how many existed: expired documents are deleted too, but no longer existed."""
        with self._write_mutex:
            if flt is not None:
                ids = [r["doc_id"] for r in self._query(self.docs, self._expr(flt), ["doc_id"])]
            rows = self._query_in(self.docs, "doc_id", ids, ["doc_id", *(["expires_at"] if self.can_expire else [])])
            self._delete_rows([r["doc_id"] for r in rows])
        now = time.time()
        return sum(1 for r in rows if not 0 < r.get("expires_at", 0.0) <= now)

    def _delete_rows(self, existing: Sequence[str]) -> None:
        for start in range(0, len(existing), _BATCH):
            part = existing[start:start + _BATCH]
            self.client.delete(self.chunks, filter=self._in("doc_id", part))
            self.client.delete(self.docs, filter=self._in("doc_id", part))

    def purge_expired(self) -> int:
        """Delete the documents whose expiry has passed (every read leaves them out already)."""
        if not self.can_expire:
            return 0
        with self._write_mutex:
            ids = [r["doc_id"] for r in self._query(self.docs, f"expires_at > 0 and expires_at <= {time.time()!r}",
                                                    ["doc_id"])]
            self._delete_rows(ids)
        return len(ids)

    def _live(self) -> str:
        """The expression true for rows a read may see now ("" where the collection keeps no expiry)."""
        return f"(expires_at == 0 or expires_at > {time.time()!r})" if self.can_expire else ""

    def _expr(self, flt: Filter | None, *more: str) -> str:
        """flt as a Milvus expression, with the expiry clause and any more conditions."""
        return " and ".join(f"({e})" for e in (*more, to_expr(flt), self._live()) if e)

    def _no_expiry(self, field: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"{field}: collection {self.manifest.name!r} was made in Milvus before documents could expire"
            " (its rows have no expires_at field, which Milvus cannot add): its documents never expire;"
            " index them into a new collection to use expiry")

    def save_manifest(self, manifest: Manifest) -> None:
        if manifest.ttl_seconds and not self.can_expire:
            raise self._no_expiry("ttl_seconds")
        self._save_manifest(manifest)

    def update_metadata(self, ids: Sequence[str], flt: Filter | None, edit: MetadataEdit) -> list[str]:
        """Each chunk row keeps its document's metadata and expiry (filters apply where the vectors
        are): the chunks' metadata and expiry fields are rewritten by a partial upsert on their
        primary keys, which sends no vector and leaves the vector, the text and the BM25 terms as
        they are; then the document rows. A search meanwhile may see a document's chunks changed a moment before its
        row."""
        with self._write_mutex:
            # Expired documents are as missing as deleted ones.
            fields = ["doc_id", "title", "text", "meta", "hash", *self._expiry_field()]
            if flt is not None:
                rows = self._query(self.docs, self._expr(flt), fields)
            else:
                rows = self._query_in(self.docs, "doc_id", list(dict.fromkeys(ids)), fields, self._live())
            encoded: dict[str, dict[str, Any]] = {}
            documents = []
            for row in rows:
                doc_id = row["doc_id"]
                metadata, digest, expires = edit(doc_id, decode_metadata(row["meta"] or {}), row["hash"],
                                                 row.get("expires_at") or None)
                size = len(json.dumps(metadata, ensure_ascii=False).encode())
                if size > MAX_TEXT_BYTES:
                    raise InvalidArgument(f"set: the metadata of document {doc_id!r} would be {size} bytes; the"
                                          f" Milvus store keeps at most {MAX_TEXT_BYTES}")
                encoded[doc_id] = filterable(metadata, "set")
                if self.can_expire:
                    encoded[doc_id]["expires_at"] = expires or 0.0
                elif expires is not None:
                    raise self._no_expiry(f"expires_at of document {doc_id!r}")
                documents.append({"doc_id": doc_id, "title": row["title"], "text": row["text"], **encoded[doc_id],
                                  "hash": digest, "unused": [0.0, 0.0]})
            chunks = self._query_in(self.chunks, "doc_id", list(encoded), ["pk", "doc_id"])
            for start in range(0, len(chunks), _BATCH):
                self.client.upsert(self.chunks, [{"pk": r["pk"], **encoded[r["doc_id"]]}
                                                 for r in chunks[start:start + _BATCH]], partial_update=True)
            for start in range(0, len(documents), _BATCH):
                self.client.upsert(self.docs, documents[start:start + _BATCH])
        return list(encoded)

    def index_metadata(self, keys: Sequence[str]) -> None:
        """Recorded in the manifest; Milvus plans its own JSON filtering."""
        new = [k for k in dict.fromkeys(keys) if k not in self.manifest.indexed_keys]
        if new:
            self.save_manifest(replace(self.manifest, indexed_keys=(*self.manifest.indexed_keys, *new)))

    def checkpoint_after_write(self) -> None:
        """Milvus persists on its own."""

    # -- documents ----------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]:
        found = {r["doc_id"]: _document(r) for r in self._query_in(self.docs, "doc_id", ids, [
            "doc_id", "title", "text", "meta", *self._expiry_field()], self._live())}
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    def scroll(self, after: str, limit: int, flt: Filter | None = None, text: bool = True) -> list[Document]:
        expr = self._expr(flt, f"doc_id > {quote(after)}" if after else "")
        ids = sorted(r["doc_id"] for r in self._query(self.docs, expr, ["doc_id"]))[:limit]
        fields = ["doc_id", "title", "meta", *self._expiry_field()] + (["text"] if text else [])
        found = {r["doc_id"]: _document(r) for r in self._query_in(self.docs, "doc_id", ids, fields)}
        return [found[i] for i in ids if i in found]

    def count(self, flt: Filter | None = None) -> int:
        rows = self.client.query(self.docs, filter=self._expr(flt), output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def all_ids(self) -> set[str]:
        return {r["doc_id"] for r in self._query(self.docs, self._live(), ["doc_id"])}

    def facet(self, key: str, flt: Filter | None, limit: int) -> facets.Facets:
        """Milvus counts no groups of JSON values: the metadata of the matching documents that
        have the key is read a page at a time and counted here, at most FACET_SCAN documents
        (beyond, the counts are of the first FACET_SCAN and the answer says it is not exact);
        the deadline is checked between pages."""
        documents = self.count(flt)
        tally = facets.Tally(key)
        rows = self._iterate(self.docs, self._expr(flt, f"exists {meta_path(key)}"), ["meta"])
        for i, row in enumerate(itertools.islice(rows, FACET_SCAN)):
            if i % _BATCH == 0:
                deadline.check("facet")
            tally.add(decode_metadata(row.get("meta") or {}))
        return facets.Facets(tally.top(limit), documents, exact=tally.documents < FACET_SCAN)

    # -- retrieval ------------------------------------------------------------------------------

    def view(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def retrieve(self, vector: np.ndarray | None, query: Query | None, k: int, flt: Filter | None = None,
                 ef_search: int = 0, nprobe: int = 0, scale: bool = False) -> Retrieved:
        """Both searches are sent at once (the lexical one from a worker thread), so a hybrid
        retrieval waits for one round trip, not two."""
        allowed = self._expr(flt) or None
        lexical = None
        if vector is not None and query is not None and query.terms:
            lexical = _SEARCHES.submit(contextvars.copy_context().run, self.lexical, query, k, flt)
        dense = self.dense(vector[None, :], k, allowed, ef_search, nprobe)[0] if vector is not None else []
        if lexical is not None:
            lexical_hits = lexical.result()
        else:
            lexical_hits = self.lexical(query, k, flt) if query is not None else []
        most = self._lexical_scale(query) if scale and query is not None else 1.0
        return Retrieved(dense, lexical_hits, most, allowed)

    def dense(self, vectors: np.ndarray, k: int, allowed: str | None = None, ef_search: int = 0,
              nprobe: int = 0) -> list[list[Candidate]]:
        results = self.client.search(self.chunks, data=[v.tolist() for v in vectors], anns_field="dense", limit=k,
                                     filter=allowed or "", output_fields=["doc_id"],
                                     search_params=self.vector_index.search_params(k, ef_search, nprobe))
        return [[Candidate(hit["doc_id"], int(hit["pk"]), float(hit["distance"])) for hit in row] for row in results]

    def exact_ids(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """The exact top k of the first vector, for the sampled recall (off the request path): the
        index's own answer where it is FLAT, else every live vector read a page at a time."""
        if self.vector_index.index_type == "FLAT":
            return np.array([c.chunk_id for c in self.dense(vectors, k)[0]], dtype=np.int64)
        best_ids, best_scores = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        after = None
        while True:
            cursor = f"pk > {after}" if after is not None else ""
            page = self.client.query(self.chunks, filter=" and ".join(f"({e})" for e in (cursor, self._live()) if e),
                                     output_fields=["pk", "dense"], limit=_BATCH * 5,
                                     iterator="True", reduce_stop_for_best="True")
            if not page:
                break
            deadline.check("exact search")
            ids = np.array([int(r["pk"]) for r in page], dtype=np.int64)
            scores = np.asarray([r["dense"] for r in page], dtype=np.float32) @ vectors[0]
            best_ids, best_scores = np.concatenate([best_ids, ids]), np.concatenate([best_scores, scores])
            keep = np.argsort(-best_scores, kind="stable")[:k]
            best_ids, best_scores = best_ids[keep], best_scores[keep]
            after = int(ids.max())
        return best_ids

    def lexical(self, query: Query, k: int, flt: Filter | None = None) -> list[Candidate]:
        """Milvus' BM25 top max(k, RESCORED) chunks, scored again as the local store scores them
        (stores/bm25.py: FTS5's IDF, from statistics of the whole collection) and the best k of
        those kept: Milvus' ranking differs (Lucene's IDF, statistics per segment), so it only
        chooses the candidates. A chunk that FTS5 would rank in the top k but Milvus below
        RESCORED is missed."""
        if not query.terms:
            return []
        results = self.client.search(self.chunks, data=[_looked_up(query)], anns_field="sparse",
                                     limit=max(k, RESCORED), filter=self._expr(flt), output_fields=["doc_id", "lex"],
                                     search_params={"metric_type": "BM25"})
        terms = [milvus_term(t) for t in query.terms]
        found = [(hit["doc_id"], int(hit["pk"]), hit["lex"].split()) for hit in results[0]]
        stats = self._statistics(query)
        # More candidates hold a term than were counted: chunks were written since (here or on
        # another server), so those terms and the chunks are counted again.
        held = Counter(t for _, _, words in found for t in set(words).intersection(terms))
        if stale := {t for t, n in held.items() if n > stats.hits.get(t, 0)}:
            stats = self._statistics(query, stale)
        scored = [Candidate(doc_id, pk, stats.score(terms, words)) for doc_id, pk, words in found]
        # Ties in Milvus' order.
        return sorted(scored, key=lambda c: -c.score)[:k]

    def _lexical_scale(self, query: Query) -> float:
        return self._statistics(query).most([milvus_term(t) for t in query.terms])

    def _statistics(self, query: Query, recount: Collection[str] = ()) -> bm25.Statistics:
        """BM25's statistics for the query's terms (stores/bm25.py). Milvus does not expose its
        own, so they are counted here and kept a while: the chunks (one count), their average
        length (the terms of at most LENGTH_SAMPLE chunks read), and each term's document
        frequency (one scan a term not counted yet); the terms in `recount` (Milvus' spelling)
        and the chunks are counted again now, and the average length where it was taken of none.
        Expired chunks count until purged, as they do in the local store's FTS5 table."""
        now = time.monotonic()
        with self._df_lock:
            expired = now - self._df_since > _DF_TTL_S
            if expired:
                self._df.clear()
                self._df_since = now
            if expired or recount:
                rows = self.client.query(self.chunks, filter="", output_fields=["count(*)"])
                self._df_total = int(rows[0]["count(*)"]) if rows else 0
            if expired or (recount and not self._average_length):
                sample = self.client.query(self.chunks, filter="", output_fields=["lex"],
                                           limit=min(LENGTH_SAMPLE, max(self._df_total, 1)))
                self._average_length = (sum(len(r["lex"].split()) for r in sample) / len(sample)) if sample else 0.0
            total, average = self._df_total, self._average_length
        hits: dict[str, int] = {}
        for word in map(milvus_term, query.terms):
            found = None if word in recount else self._df.get(word)
            if found is None:
                deadline.check("lexical statistics")  # a round trip a term not counted yet
                counted = self.client.query(self.chunks, filter=f"lex like {quote('% ' + word + ' %')}",
                                            output_fields=["count(*)"])
                found = int(counted[0]["count(*)"]) if counted else 0
                with self._df_lock:
                    if len(self._df) >= _DF_WORDS:
                        self._df.clear()
                    self._df[word] = found
            hits[word] = found
        return bm25.Statistics(total, average, hits)

    def lexical_scores(self, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
        """The chunks' BM25 as `lexical` scores them, for those that hold a query term."""
        if not query.terms or not chunk_ids:
            return []
        stats = self._statistics(query)
        terms = [milvus_term(t) for t in query.terms]
        scored = [(int(r["pk"]), stats.score(terms, r["lex"].split()))
                  for r in self._query_in(self.chunks, "pk", chunk_ids, ["pk", "lex"])]
        return [(pk, score) for pk, score in scored if score > 0]

    def fetch(self, chunk_ids: Sequence[int] = (), documents: Sequence[str] = (), vectors: bool = False,
              rows: bool = False) -> list[StoredChunk]:
        fields = ["pk", "doc_id", "idx"] + (["dense"] if vectors else []) + (
            ["start", "end", "title", "text", "meta"] if rows else [])
        if documents:
            found = sorted(self._query_in(self.chunks, "doc_id", list(dict.fromkeys(documents)), fields, self._live()),
                           key=lambda r: (r["doc_id"], r["idx"]))
        else:
            by_id = {int(r["pk"]): r for r in self._query_in(self.chunks, "pk", chunk_ids, fields, self._live())}
            found = [by_id[int(i)] for i in chunk_ids if int(i) in by_id]
        return [StoredChunk(int(r["pk"]), r["doc_id"],
                            np.asarray(r["dense"], dtype=np.float32) if vectors else None,
                            ChunkRow(r["doc_id"], int(r["idx"]), int(r["start"]), int(r["end"]), r["title"],
                                     r["text"], decode_metadata(r["meta"] or {})) if rows else None)
                for r in found]

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def index_kind(self) -> str:
        """The Milvus index the collection was made with (indexes.py): flat, hnsw (auto too),
        ivfpq, or ivfsq8 where PQ's m does not divide the dimension."""
        return self.vector_index.kind

    def stats(self) -> Stats:
        chunks = self.client.query(self.chunks, filter=self._live(), output_fields=["count(*)"])
        n = int(chunks[0]["count(*)"]) if chunks else 0
        return Stats(self.count(), n, n, 0)

    def checkpoint(self, force: bool = False) -> None:
        """Milvus persists on its own."""

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        """Milvus builds its indexes on its own."""

    def close(self, rebuild_wait: float | None = None) -> None:
        """The client is shared by every collection of the instance; Milvus rebuilds nothing here."""

    def copy_to(self, folder: Path) -> None:
        """The collection as a local collection's files in an existing empty folder (one snapshot
        format for both stores, see stores/transfer.py): its documents and chunks with their
        vectors, read in pages (`pages`), written into a local store built aside in the folder,
        whose copy is kept; then this collection's own manifest. No model is called.

        Taken while writes go on, it is not one point in time across the collection (Milvus has
        no snapshot read): each document is in it as one whole version of it, as a Strong read saw
        it when its page was read; one written after its page was read is in it in its older
        version (or not at all), one deleted after it is in it still."""
        from ..local import LocalStore

        building = folder / ".rows"
        local = LocalStore.create(building, replace(self.manifest, store=LOCAL_STORE, languages={}))
        try:
            for page in self.pages():
                deadline.check("snapshot")
                local.write(page.changed, page.prepared, page.vectors)
            local.checkpoint(force=True)
            local.copy_to(folder)
        finally:
            local.destroy()
            shutil.rmtree(building, ignore_errors=True)
        (folder / MANIFEST).write_text(self.manifest.to_json())

    def pages(self, ids: Sequence[str] | None = None, size: int = _PAGE) -> Iterator[transfer.Page]:
        """Every live document (or those of `ids`) with its chunks and their vectors, `size`
        documents a page in id order, each document as one whole version (see `_settled`)."""
        listed = sorted(set(ids)) if ids is not None else (
            row["doc_id"] for row in self._iterate(self.docs, self._live(), ["doc_id"]))
        page: list[str] = []
        for doc_id in listed:
            page.append(doc_id)
            if len(page) == size:
                yield self._settled(page)
                page = []
        if page:
            yield self._settled(page)

    def all_hashes(self) -> dict[str, str]:
        return {r["doc_id"]: r["hash"] for r in self._iterate(self.docs, self._live(), ["doc_id", "hash"])}

    def _settled(self, ids: list[str]) -> transfer.Page:
        """The documents' rows and chunks, each document's read again until its row and chunks are
        of one version: a write inserts a document's new chunks, then its row, then deletes its old
        chunks, so the row's hash is read before and after its chunks, and the chunks must be one
        set (indexes 0..n-1 once each) holding the row's text and title. A document deleted or
        expired meanwhile is left out."""
        fields = ["doc_id", "title", "text", "meta", "hash", *self._expiry_field()]
        done: dict[str, tuple[Document, str, list[Chunk], list[np.ndarray]]] = {}
        pending = ids
        for attempt in range(_SETTLE_TRIES):
            rows = {r["doc_id"]: r for r in self._query_in(self.docs, "doc_id", pending, fields, self._live())}
            chunks: dict[str, list[dict[str, Any]]] = {}
            for r in self._query_in(self.chunks, "doc_id", list(rows), [
                    "doc_id", "idx", "start", "end", "tokens", "title", "text", "dense"]):
                chunks.setdefault(r["doc_id"], []).append(r)
            after = self.hashes(list(rows))
            pending = []
            for doc_id, row in rows.items():
                if doc_id not in after:
                    continue
                found = sorted(chunks.get(doc_id, []), key=lambda r: int(r["idx"]))
                if (after[doc_id] != row["hash"] or not found
                        or [int(r["idx"]) for r in found] != list(range(len(found)))
                        or any(r["title"] != row["title"] or r["text"] != row["text"][r["start"]:r["end"]]
                               for r in found)):
                    pending.append(doc_id)
                    continue
                done[doc_id] = (_document(row), row["hash"],
                                [Chunk(int(r["idx"]), r["text"], int(r["start"]), int(r["end"]), int(r["tokens"]))
                                 for r in found], [np.asarray(r["dense"], dtype=np.float32) for r in found])
            if not pending:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise FailedPrecondition(
                f"collection: {len(pending)} documents of {self.manifest.name!r} kept changing while read, or their"
                f" chunks disagree with them ({', '.join(map(repr, pending[:5]))}): run `neardex check` on it")
        return transfer.page_of([done[i] for i in ids if i in done], self.manifest.dimension)

    def destroy(self) -> None:
        self.drop(self.manifest)

    @staticmethod
    def drop(manifest: Manifest) -> None:
        """Everything of the collection in its instance, without opening it: its data may be
        gone already, or half made."""
        client = client_for(manifest.store)
        for part in ("chunks", "docs"):
            if client.has_collection(_milvus_name(manifest.name, part)):
                client.drop_collection(_milvus_name(manifest.name, part))
        if _open_catalog(client):
            client.delete(CATALOG, filter=f"name == {quote(manifest.name)}")

    @staticmethod
    def rename(manifest: Manifest, name: str) -> Manifest:
        """The collection under another neardex name in its instance (a migration keeps its old
        copy so), without opening it: its two Milvus collections renamed, then its catalog row
        written under the new name and the old row removed. Each step is skipped where it was
        done already, so a rename stopped midway is finished by running it again."""
        client = client_for(manifest.store)
        renamed = replace(manifest, name=name)
        for part in ("chunks", "docs"):
            old, new = _milvus_name(manifest.name, part), _milvus_name(name, part)
            if client.has_collection(old) and not client.has_collection(new):
                client.rename_collection(old, new)
        _ensure_catalog(client)
        client.upsert(CATALOG, [{"name": name, "manifest": renamed.to_json(), "unused": [0.0, 0.0]}])
        client.delete(CATALOG, filter=f"name == {quote(manifest.name)}")
        return renamed

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _in(field: str, values: Sequence[Any]) -> str:
        items = [str(int(v)) for v in values] if field == "pk" else [quote(str(v)) for v in values]
        return f"{field} in [{', '.join(items)}]"

    def _query(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every document row matching expr, paged by id (a query returns at most 16,384 rows)."""
        return list(self._iterate(collection, expr, fields))

    def _query_in(self, collection: str, field: str, values: Sequence[Any], fields: list[str],
                  also: str = "") -> list[dict[str, Any]]:
        """Every row whose field is one of values (and that matches `also`), asked for in parts of
        _BATCH values."""
        values = list(values)
        out: list[dict[str, Any]] = []
        for start in range(0, len(values), _BATCH):
            expr = self._in(field, values[start:start + _BATCH])
            out += self.client.query(collection, filter=f"{expr} and {also}" if also else expr,
                                     output_fields=fields)
        return out

    def _expiry_field(self) -> list[str]:
        return ["expires_at"] if self.can_expire else []

    def _iterate(self, collection: str, expr: str, fields: list[str], key: str = "doc_id") -> Iterator[dict[str, Any]]:
        """Pages in id order, each after the last id of the one before, as pymilvus' query_iterator
        pages, but with the id quoted: the iterator writes it into the next page's expression
        bare (`doc_id > "<id>"`), which an id holding `"` or `\\` breaks. `key`: the collection's
        primary key (the chunks' is "pk")."""
        after: Any = None
        fields = list(dict.fromkeys([*fields, key]))
        while True:
            cursor = "" if after is None else f"{key} > {int(after) if key == 'pk' else quote(after)}"
            page = self.client.query(collection, filter=" and ".join(f"({e})" for e in (cursor, expr) if e),
                                     output_fields=fields, limit=_BATCH * 5,
                                     # Milvus' iterator mode: the page is the rows of least ids.
                                     iterator="True", reduce_stop_for_best="True")
            if not page:
                return
            yield from page
            after = page[-1][key]


def _document(row: dict[str, Any]) -> Document:
    return Document(row["doc_id"], row.get("text", ""), row.get("title", ""), decode_metadata(row.get("meta") or {}),
                    expires_at=row.get("expires_at") or None)


def is_milvus_lite(client: Any) -> bool:
    """Whether the instance is milvus-lite (it reports its version as `milvus_lite-X.Y.Z`)."""
    return str(client.get_server_version()).replace("-", "_").startswith("milvus_lite")


def _load(client: Any, *names: str) -> None:
    """Milvus reads only loaded collections, and milvus-lite releases every collection when it
    reopens its file (after any restart); loading a loaded one does nothing."""
    for name in names:
        client.load_collection(name)


def _open_catalog(client: Any) -> bool:
    """Whether the instance holds a neardex catalog, loaded for reads if so."""
    if not client.has_collection(CATALOG):
        return False
    _load(client, CATALOG)
    return True


def _ensure_catalog(client: Any) -> None:
    from pymilvus import DataType

    if _open_catalog(client):
        return
    schema = client.create_schema(auto_id=False)
    schema.add_field("name", DataType.VARCHAR, max_length=256, is_primary=True)
    schema.add_field("manifest", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("unused", index_type="FLAT", metric_type="L2")
    client.create_collection(CATALOG, schema=schema, index_params=index, consistency_level="Strong")


def catalog_manifests(uri: str) -> dict[str, Manifest]:
    """The neardex collections a Milvus instance holds, by name."""
    client = client_for(uri)
    if not _open_catalog(client):
        return {}
    out = {}
    for row in client.query(CATALOG, filter="", output_fields=["name", "manifest"], limit=_QUERY_LIMIT):
        manifest = Manifest.from_json(row["manifest"])
        out[manifest.name] = manifest
    return out


def catalog_names(uri: str) -> list[str]:
    """The names of the neardex collections a Milvus instance holds (their manifests not read)."""
    client = client_for(uri)
    if not _open_catalog(client):
        return []
    return [row["name"] for row in client.query(CATALOG, filter="", output_fields=["name"], limit=_QUERY_LIMIT)]


def catalog_manifest(uri: str, name: str) -> Manifest | None:
    """The manifest of one neardex collection of a Milvus instance (None: it holds none of that
    name), looked up by its name, the catalog's primary key: one row read, not the catalog."""
    client = client_for(uri)
    if not _open_catalog(client):
        return None
    rows = client.query(CATALOG, filter=f"name == {quote(name)}", output_fields=["manifest"])
    return Manifest.from_json(rows[0]["manifest"]) if rows else None
