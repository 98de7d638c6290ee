"""One collection: the retrieval engine over a store.

Writes are cut into token-bounded chunks and embedded here (or bring their own vectors in a
collection without a model), then handed to the store whole. Searches ask the store for chunks
(dense, lexical), group them into documents, fuse the two rankings, move the query by Rocchio
feedback, and report scores on a fixed scale. The store (stores/) decides where documents,
chunks and vectors live: this data folder (SQLite + FAISS) or Milvus; nothing here depends on
which.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import deadline
from ..documents import Chunk, Document
from ..embedding.embedder import DirectCalls, Embedder, ModelCalls, check_fits
from ..errors import InvalidArgument, NotFound
from ..ingest.chunker import Chunker
from ..ingest.encoding import DocumentEncoder, Prepared
from ..query import analysis
from ..query.filters import Condition, Filter, key_field, validate_condition
from ..records import (
    MODES,
    NO_MODEL,
    Candidate,
    Hit,
    Manifest,
    RetrieverScore,
    SearchResult,
    Stats,
    UpsertResult,
)
from ..stores import Store
from . import fusion

__all__ = ["MODES", "NO_MODEL", "Collection", "Manifest", "validate_documents"]

# Dense weight of hybrid search in a collection without a model: no tokenizer to measure the
# query's vocabulary coverage with, so both retrievers count alike.
NO_MODEL_DENSE_WEIGHT = 0.5
# Documents each retriever contributes to hybrid fusion.
FUSION_DEPTH = 100

@dataclass
class WritePlan:
    """A checked batch: its documents, the changed ones with their content hashes, and (in a
    collection without a model) the changed ones' vectors."""

    documents: Sequence[Document]
    changed: list[tuple[Document, str]]
    own_vectors: np.ndarray | None

    def result(self, prepared: list[Prepared]) -> UpsertResult:
        return UpsertResult(
            upserted=len(self.changed),
            unchanged=len(self.documents) - len(self.changed),
            chunks=sum(len(chunks) for chunks, _ in prepared),
            ids=[d.id for d in self.documents],
            tokens=sum(c.tokens for chunks, _ in prepared for c in chunks),
        )


class Collection:
    """Thread-safe as its store is: searches run concurrently, writes are serialized by the store."""

    def __init__(self, store: Store, embedder: Embedder | None, calls: ModelCalls | None = None) -> None:
        """embedder is None for a collection without a model (manifest.model == NO_MODEL); calls
        are the roads to it (the server's scheduler, or straight to the model)."""
        self.store = store
        self._embedder = embedder
        self._calls = calls or (DirectCalls(embedder) if embedder else None)
        manifest = store.manifest
        self._encoder = (DocumentEncoder(embedder, manifest.chunk_tokens, manifest.overlap_tokens, self._calls)
                         if embedder else None)

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest

    @property
    def folder(self) -> Path:
        return self.store.folder  # type: ignore[attr-defined, no-any-return]

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
    def encoder(self) -> DocumentEncoder:
        self.require_model("collection")
        assert self._encoder is not None
        return self._encoder

    @property
    def chunker(self) -> Chunker:
        return self.encoder.chunker

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.require_model("query")
        assert self._calls is not None
        return self._calls.queries(texts)

    # -- writes -------------------------------------------------------------------------------

    def prepare(self, doc: Document) -> Prepared:
        """Chunks of a document and the texts the model embeds for them (without a model: the
        whole document is one chunk, its text what lexical search reads)."""
        if not self.has_model:
            return [Chunk(0, doc.text, 0, len(doc.text), 0)], [f"{doc.title} {doc.text}".strip()]
        return self.encoder.prepare(doc)

    def upsert(self, documents: Sequence[Document], batch_size: int | None = None) -> UpsertResult:
        """Store documents durably; unchanged ones (same content hash) are neither re-embedded
        nor rewritten. Returns once the batch is committed to disk."""
        plan = self.plan(documents)
        if plan.own_vectors is not None:
            prepared, vectors = [self.prepare(d) for d, _ in plan.changed], plan.own_vectors
        else:
            prepared, vectors = self.encoder.encode([d for d, _ in plan.changed], batch_size)
        self.commit(plan.changed, prepared, vectors)
        return plan.result(prepared)

    def plan(self, documents: Sequence[Document]) -> WritePlan:
        """Check a batch and find what it changes: every document is validated, the unchanged
        ones (same content hash as stored) are left out."""
        validate_documents(documents, needs_text=self.has_model)
        own = self._own_vectors(documents)
        hashes = [d.content_hash() for d in documents]
        stored = self.store.hashes([d.id for d in documents])
        positions = [i for i, (d, h) in enumerate(zip(documents, hashes)) if stored.get(d.id) != h]
        return WritePlan(documents, [(documents[i], hashes[i]) for i in positions],
                         None if own is None else own[positions])

    def commit(self, changed: list[tuple[Document, str]], prepared: list[Prepared], vectors: np.ndarray) -> None:
        """Write changed documents (with their hashes), prepared and embedded, durably."""
        # A write whose caller has gone is not made: it would be acknowledged to nobody.
        deadline.check("write")
        self.store.write(changed, prepared, vectors)
        self.store.checkpoint_after_write()

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
            # Without a model check_vector scales it to unit length, so scores are cosines.
            out[i] = self.check_vector(doc.vector, f"documents[{i}].vector")
        return out

    def delete(self, ids: Sequence[str] = (), flt: Filter | None = None) -> int:
        """Delete documents by id, or those matching a filter (never an empty one); returns how
        many existed."""
        if flt is not None and not flt:
            raise InvalidArgument("filter: an empty filter would delete every document; give conditions")
        if not ids and flt is None:
            return 0
        deadline.check("delete")
        return self.store.delete(ids, flt)

    def index_metadata(self, keys: Sequence[str]) -> None:
        """Answer filters on these metadata keys from an index from now on."""
        for i, key in enumerate(keys):
            validate_condition(f"keys[{i}]", key, Condition("exists", True))
        self.store.index_metadata(keys)

    # -- reads --------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]:
        return self.store.get(ids)

    def count(self, flt: Filter | None = None) -> int:
        return self.store.count(flt)

    def scroll(self, after: str, limit: int, flt: Filter | None = None, text: bool = True) -> list[Document]:
        return self.store.scroll(after, limit, flt, text)

    def all_ids(self) -> set[str]:
        return self.store.all_ids()

    def resolve_mode(self, mode: str | None) -> str:
        mode = mode or self.manifest.default_mode
        if mode not in MODES:
            raise InvalidArgument(f"mode: unknown search mode {mode!r}; expected one of {MODES}")
        return mode

    def _grouped(self, fetch: Callable[[int], list[tuple[int, float]]], k: int, stage: str) -> list[Candidate]:
        """Best chunk per document, best first, up to k documents. Chunks of one document compete
        for places, so ask for more chunks than documents and widen until k documents are found
        or the retriever runs dry."""
        want = k * 3
        while True:
            deadline.check(stage)  # each widening is a whole retrieval again
            ranked = fetch(want)
            doc_of = self.store.doc_ids_of([c for c, _ in ranked])
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
            lambda n: self.store.dense(vector[None, :], n, allowed, ef_search, nprobe)[0], k, "dense")

    def lexical_candidates(self, query: analysis.Query, k: int, flt: Filter | None = None) -> list[Candidate]:
        return self._grouped(lambda n: self.store.lexical(query, n, flt), k, "lexical")

    def best_chunks(self, vector: np.ndarray, doc_ids: Sequence[str]) -> dict[str, Candidate]:
        """Each document's chunk closest to vector, with its cosine (documents not stored are left
        out)."""
        best: dict[str, Candidate] = {}
        for chunk_id, doc_id, stored in self.store.chunks_of(doc_ids):
            score = float(stored @ vector)
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

    def complete(self, query: analysis.Query, vector: np.ndarray, dense: list[Candidate],
                 lexical_list: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        """Both retrievers' scores for every document either one found.

        A document one retriever ranked below its cut-off still has a true score there: the
        cosine of its best chunk, or its best chunk's BM25 (0 when no query word occurs). Fusing
        true scores instead of imputing a floor keeps one retriever's near-misses from being
        treated as total misses."""
        dense_docs = {c.doc_id for c in dense}
        lexical_docs = {c.doc_id for c in lexical_list}
        extra_dense = list(self.best_chunks(vector, sorted(lexical_docs - dense_docs)).values())
        extra_lexical: list[Candidate] = []
        missing = sorted(dense_docs - lexical_docs)
        if missing:
            doc_of = {chunk_id: doc_id for chunk_id, doc_id, _ in self.store.chunks_of(missing)}
            scored = dict(self.store.lexical_scores(query, list(doc_of)))
            best_lex: dict[str, Candidate] = {}
            for chunk_id, doc_id in doc_of.items():
                score = scored.get(chunk_id, 0.0)
                if doc_id not in best_lex or score > best_lex[doc_id].score:
                    best_lex[doc_id] = Candidate(doc_id, chunk_id, score)
            extra_lexical += best_lex.values()
        by_score = lambda c: -c.score  # noqa: E731
        return (sorted(dense + extra_dense, key=by_score), sorted(lexical_list + extra_lexical, key=by_score))

    def search(self, text: str | None = None, vector: np.ndarray | None = None, k: int = 10,
               flt: Filter | None = None, min_score: float | None = None, mode: str = "",
               ef_search: int = 0, nprobe: int = 0, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
               field: str = "query") -> SearchResult:
        """Documents best first, each with its best chunk, by dense, lexical or hybrid retrieval.

        Text and vector may both be given: the vector serves dense retrieval, the text analysis.
        Text is refused (naming `field`) past the model's window where it is embedded, and past
        max_terms distinct terms where it is searched lexically, before any work starts."""
        has_text = bool(text and text.strip())
        # A bare vector can only be searched densely: the default mode yields to it, an explicit
        # lexical or hybrid request is refused below.
        mode = self.resolve_mode(mode or ("" if has_text or vector is None else "dense"))
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if mode != "dense" and not has_text:
            raise InvalidArgument(f"{field}: {mode} search needs query text")
        embed = vector is None and mode != "lexical"
        if embed:
            if not has_text:
                raise InvalidArgument(f"{field}: must not be empty")
            check_fits(self.require_model(field), text or "", field)
        query = analysis.analyze(text or "", max_terms, field) if mode != "dense" else analysis.Query(())
        if embed:
            deadline.check("embed")
            vector = self.encode_queries([text or ""])[0]
            timings["embed"] = _ms(started)
        if mode != "lexical":
            vector = self.check_vector(vector)
        # Every read below sees the index and the store at the same write: a document being
        # replaced is found at its old version or its new one, never at neither.
        with self.store.view():
            lists: dict[str, list[Candidate]] = {}
            # Fusion needs both rankings deeper than k, or a document second in both is lost.
            depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
            allowed = None
            if mode != "lexical":
                deadline.check("dense")
                t = time.perf_counter()
                # Dense retrieval runs twice in hybrid search and widens as it goes: the filter is
                # resolved to chunk ids once.
                allowed = self.store.restrict(flt)
                lists["dense"] = self.dense_candidates(vector, depth, allowed, ef_search, nprobe)
                timings["dense"] = _ms(t)
            if mode != "dense":
                deadline.check("lexical")
                t = time.perf_counter()
                lists["lexical"] = self.lexical_candidates(query, depth, flt)
                timings["lexical"] = _ms(t)
            if mode == "hybrid":
                deadline.check("fuse")
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
                    _, top = self.store.vectors_of([c.chunk_id for c in ranked[: fusion.PRF_DEPTH]])
                    feedback = fusion.rocchio(vector, top)
                    lists["dense"] = self.dense_candidates(feedback, depth, allowed, ef_search, nprobe)
                    ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
                    timings["feedback"] = _ms(t)
            else:
                ranked = lists[mode]
            # Scores that mean the same for every query: cosines (dense, hybrid), or BM25 as a share
            # of the most the query's words can score (lexical).
            deadline.check("scores")
            if mode == "hybrid":
                ranked = self._on_cosine_scale(ranked, vector, k, min_score)
            elif mode == "lexical":
                most = self.store.lexical_max_score(query)
                # At most 1 by construction; min() keeps it so when the store's scale is a moment old.
                ranked = [replace(c, score=min(1.0, c.score / most)) for c in ranked]
            if min_score is not None:
                ranked = [c for c in ranked if c.score >= min_score]
            deadline.check("fetch")
            t = time.perf_counter()
            hits = self.materialize(ranked[:k], lists)
            timings["fetch"] = _ms(t)
            timings["total"] = _ms(started)
            return SearchResult(hits, timings, mode)

    def materialize(self, ranked: list[Candidate], lists: dict[str, list[Candidate]]) -> list[Hit]:
        rows = self.store.fetch_chunks([c.chunk_id for c in ranked])
        positions = {name: {c.doc_id: (rank + 1, c.score) for rank, c in enumerate(lst)}
                     for name, lst in lists.items()}
        hits = []
        for cand in ranked:
            row = rows.get(cand.chunk_id)
            if row is None:  # deleted between the retrieval and this read
                continue
            retrievers = [RetrieverScore(name, pos[row.doc_id][1], pos[row.doc_id][0])
                          for name, pos in positions.items() if row.doc_id in pos]
            hits.append(Hit(row.doc_id, cand.score, row.text, row.title, row.metadata, row.index,
                            row.start, row.end, retrievers))
        return hits

    def chunk_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored chunk vectors of each document, one row per chunk in chunk order (documents
        not stored are left out)."""
        rows: dict[str, list[np.ndarray]] = {}
        for _, doc_id, vector in self.store.chunks_of(ids):
            rows.setdefault(doc_id, []).append(vector)
        return {doc_id: np.vstack(vectors) for doc_id, vectors in rows.items()}

    def document_vectors(self, ids: Sequence[str], field: str) -> np.ndarray:
        """Each document's vector, the normalized mean of its chunks' vectors, one row per id;
        NotFound names the first id that is not stored."""
        chunks = self.chunk_vectors(ids)
        out = np.zeros((len(ids), self.manifest.dimension), dtype=np.float32)
        for i, doc_id in enumerate(ids):
            if doc_id not in chunks:
                raise NotFound(f"{field}[{i}]: document {doc_id!r} does not exist in collection {self.manifest.name!r}")
            out[i] = unit_mean(chunks[doc_id])
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
        with self.store.view():
            query = self.document_vectors(positive, "positive").mean(0)
            if negative:
                query = 2 * query - self.document_vectors(negative, "negative").mean(0)
            query = unit_mean(query[None, :])
            timings["vectors"] = _ms(started)
            excluded = set(positive) | set(negative)
            deadline.check("dense")
            t = time.perf_counter()
            found = self.dense_candidates(query, k + len(excluded), self.store.restrict(flt), ef_search, nprobe)
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

    @property
    def index_kind(self) -> str:
        return self.store.index_kind

    def stats(self) -> Stats:
        return self.store.stats()

    def checkpoint(self, force: bool = False) -> None:
        self.store.checkpoint(force)

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        self.store.wait_for_rebuild(timeout)

    def close(self, rebuild_wait: float | None = None) -> None:
        self.store.close(rebuild_wait)

    def destroy_handles(self) -> None:
        """Close without a checkpoint: the collection is being deleted."""
        self.store.destroy()


def unit_mean(rows: np.ndarray) -> np.ndarray:
    """The mean of rows scaled to unit length (a document's vector from its chunks' vectors)."""
    mean = rows.mean(0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


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
        check_finite(doc.metadata, f"documents[{i}].metadata")


def check_finite(value: Any, where: str) -> None:
    """Refuse NaN and infinite numbers anywhere in metadata, at any depth: JSON has no spelling
    for them, so neither the store's JSON nor the wire's answer could hold them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"{where}: not a finite number")
    if isinstance(value, dict):
        for key, inner in value.items():
            check_finite(inner, key_field(where, str(key)))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            check_finite(inner, f"{where}[{i}]")


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0

