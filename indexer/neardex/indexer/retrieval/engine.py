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

from .. import deadline, expiry
from ..documents import Chunk, Document
from ..embedding.embedder import Embedder, ModelCalls, PromptedCalls, check_fits
from ..embedding.sources import Prompts
from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..ingest.chunker import Chunker
from ..ingest.encoding import DocumentEncoder, Prepared
from ..query import analysis, languages
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
from ..stores import ChunkRow, Store, StoredChunk
from . import diversity, fusion
from .request import SearchRequest

__all__ = ["MODES", "NO_MODEL", "Collection", "Manifest", "SearchRequest", "validate_documents"]

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
        are the roads to it (the server's scheduler, or straight to the model), which every text
        takes with the collection's prompts (the encoder's PromptedCalls)."""
        self.store = store
        self._embedder = embedder
        manifest = store.manifest
        self.prompts = Prompts.of(manifest)
        self._encoder = (DocumentEncoder(embedder, manifest.chunk_tokens, manifest.overlap_tokens, calls,
                                         self.prompts) if embedder else None)
        self._calls: PromptedCalls | None = self._encoder.calls if self._encoder else None

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
        """Queries' vectors (with the query prompt), on the queries' road."""
        self.require_model("query")
        assert self._calls is not None
        return self._calls.queries(texts)

    def encode_passages_now(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of document texts a request waits for (with the document prompt), on the
        queries' road."""
        self.require_model("texts")
        assert self._calls is not None
        return self._calls.documents_now(texts)

    def check_query(self, text: str, field: str) -> None:
        """Refuse a query that, with the query prompt before it, exceeds the model's window."""
        check_fits(self.require_model(field), text, field, self.prompts.query)

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
        # Each expiry checked, the collection's ttl given to documents without one (from now).
        documents = expiry.effective(documents, self.manifest.ttl_seconds, time.time())
        if not self.store.can_expire:
            for i, doc in enumerate(documents):
                if doc.expires_at is not None:
                    raise FailedPrecondition(
                        f"documents[{i}].expires_at: collection {self.manifest.name!r} keeps no expiry (a Milvus"
                        " collection made before documents could expire: Milvus cannot add the field); its"
                        " documents never expire. Index them into a new collection to use expiry")
        own = self._own_vectors(documents)
        hashes = [expiry.stored_hash(d.content_hash(), d.expires_at) for d in documents]
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

    def set_ttl(self, ttl_seconds: int) -> None:
        """The default lifetime of documents written from now on (0: none); stored documents keep
        the expiry they were written with."""
        ttl_seconds = expiry.check_ttl(ttl_seconds)
        if ttl_seconds != self.manifest.ttl_seconds:
            self.store.save_manifest(replace(self.manifest, ttl_seconds=ttl_seconds))

    def purge_expired(self) -> int:
        """Delete the documents whose expiry has passed (reads skip them already); returns how
        many. Through the store's own delete, so every index it keeps stays in step."""
        deadline.check("purge")
        return self.store.purge_expired()

    def set_language(self, language: str) -> None:
        """Analyse text in another language from now on (see query/languages.py); the lexical
        index is rebuilt in the background, the old one answering until then."""
        self.store.set_language(languages.check(language))

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

    def _grouped(self, ranked: list[Candidate], want: int, more: Callable[[int], list[Candidate]], k: int,
                 stage: str) -> list[Candidate]:
        """Best chunk per document, best first, up to k documents, from a retriever's first `want`
        chunks. Chunks of one document compete for places, so more chunks than documents are
        asked for, and `more` widens the retrieval until k documents are found or the retriever
        runs dry."""
        while True:
            out = best_per_document(ranked)
            if len(out) >= k or len(ranked) < want:
                return out[:k]
            want *= 4
            deadline.check(stage)  # each widening is a whole retrieval again
            ranked = more(want)

    def _widen_dense(self, vector: np.ndarray, allowed: Any, ef_search: int,
                     nprobe: int) -> Callable[[int], list[Candidate]]:
        return lambda n: self.store.dense(vector[None, :], n, allowed, ef_search, nprobe)[0]

    def dense_candidates(self, vector: np.ndarray, k: int, allowed: Any = None, ef_search: int = 0,
                         nprobe: int = 0) -> list[Candidate]:
        """Documents by dense retrieval among allowed (a `Retrieved.allowed`)."""
        deadline.check("dense")
        more = self._widen_dense(vector, allowed, ef_search, nprobe)
        return self._grouped(more(k * 3), k * 3, more, k, "dense")

    def lexical_candidates(self, query: analysis.Query, k: int, flt: Filter | None = None) -> list[Candidate]:
        deadline.check("lexical")
        more = lambda n: self.store.lexical(query, n, flt)  # noqa: E731
        return self._grouped(more(k * 3), k * 3, more, k, "lexical")

    def best_chunks(self, vector: np.ndarray, doc_ids: Sequence[str]) -> dict[str, Candidate]:
        """Each document's chunk closest to vector, with its cosine (documents not stored are left
        out)."""
        return closest_chunks(vector, self.store.fetch(documents=doc_ids, vectors=True))

    def _on_cosine_scale(self, ranked: list[Candidate], vector: np.ndarray, k: int,
                         min_score: float | None) -> tuple[list[Candidate], dict[int, StoredChunk]]:
        """The first k fused candidates (of those at min_score or above), in fused order, each
        scored by its document's best cosine to the query: a scale that means the same for every
        query, where fused scores (min-max normalized per query) always put the top hit at 1.
        With them every chunk of their documents, read once with its vector and its row."""
        out: list[Candidate] = []
        fetched: dict[int, StoredChunk] = {}
        block = max(k, 10)
        for start in range(0, len(ranked), block):
            part = ranked[start : start + block]
            chunks = self.store.fetch(documents=[c.doc_id for c in part], vectors=True, rows=True)
            fetched.update((c.chunk_id, c) for c in chunks)
            cosines = closest_chunks(vector, chunks)
            for cand in part:
                best = cosines.get(cand.doc_id)
                if best is not None and (min_score is None or best.score >= min_score):
                    out.append(replace(cand, score=best.score))
                    if len(out) == k:
                        return out, fetched
        return out, fetched

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
            doc_of = {c.chunk_id: c.doc_id for c in self.store.fetch(documents=missing)}
            scored = dict(self.store.lexical_scores(query, list(doc_of)))
            best_lex: dict[str, Candidate] = {}
            for chunk_id, doc_id in doc_of.items():
                score = scored.get(chunk_id, 0.0)
                if doc_id not in best_lex or score > best_lex[doc_id].score:
                    best_lex[doc_id] = Candidate(doc_id, chunk_id, score)
            extra_lexical += best_lex.values()
        by_score = lambda c: -c.score  # noqa: E731
        return (sorted(dense + extra_dense, key=by_score), sorted(lexical_list + extra_lexical, key=by_score))

    def request(self, text: str | None = None, vector: Sequence[float] | np.ndarray | None = None, k: int = 10,
                flt: Filter | None = None, min_score: float | None = None, mode: str = "",
                ef_search: int = 0, nprobe: int = 0, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
                field: str = "query", vector_field: str = "vector",
                encoded: np.ndarray | None = None, offset: int = 0, diversity: float = 0.0) -> SearchRequest:
        """A search checked whole before any work starts: the caller's vector (dimension, finite;
        named `vector_field`), the mode, the text (refused, naming `field`, when empty where it is
        needed, past the model's window where it is embedded, past max_terms distinct terms where
        it is searched lexically) and analysed once, the page's offset (not negative) and the
        diversity (0 to 1), named beside `field`. Text and vector may both be given: the vector
        serves dense retrieval, the text analysis. `encoded` is the text's embedding where the
        caller made it already (a batch, a question)."""
        beside = field.rpartition(".")[0] + "." if "." in field else ""
        if offset < 0:
            raise InvalidArgument(f"{beside}offset: must not be negative, got {offset}")
        if not 0.0 <= diversity <= 1.0:  # NaN fails both
            raise InvalidArgument(f"{beside}diversity: must be between 0 and 1, got {diversity}")
        checked = self.check_vector(vector, vector_field) if vector is not None else encoded
        text = text or ""
        has_text = bool(text.strip())
        # A bare vector can only be searched densely: the default mode yields to it, an explicit
        # lexical or hybrid request is refused below.
        mode = self.resolve_mode(mode or ("" if has_text or checked is None else "dense"))
        if mode != "dense" and not has_text:
            raise InvalidArgument(f"{field}: {mode} search needs query text")
        if checked is None and mode != "lexical":
            if not has_text:
                raise InvalidArgument(f"{field}: must not be empty")
            self.check_query(text, field)
        query = self.analyze(text, max_terms, field) if mode != "dense" else analysis.Query(())
        return SearchRequest(mode, k, text, query, checked, flt, min_score, ef_search, nprobe, offset, diversity)

    def analyze(self, text: str, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
                field: str = "query") -> analysis.Query:
        """The query's terms by the analyzer the collection's lexical index holds, in the
        language (among those of its documents) the query is in."""
        return self.store.analyzer.query(text, self.manifest.languages, max_terms, field)

    def search(self, text: str | None = None, vector: Sequence[float] | np.ndarray | None = None, k: int = 10,
               flt: Filter | None = None, min_score: float | None = None, mode: str = "",
               ef_search: int = 0, nprobe: int = 0, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
               field: str = "query", offset: int = 0, diversity: float = 0.0) -> SearchResult:
        """Documents best first, each with its best chunk, by dense, lexical or hybrid retrieval:
        the k after the first `offset`, re-ordered for `diversity` (MMR) when it is above 0 (see
        `request` for what is refused)."""
        started = time.perf_counter()
        return self.run(self.request(text, vector, k, flt, min_score, mode, ef_search, nprobe, max_terms, field,
                                     offset=offset, diversity=diversity), started)

    def run(self, request: SearchRequest, started: float | None = None) -> SearchResult:
        """A checked search (`request`): its text embedded where dense retrieval needs it, then
        answered from the store."""
        started = time.perf_counter() if started is None else started
        timings: dict[str, float] = {}
        if request.needs_embedding:
            deadline.check("embed")
            request = replace(request, vector=self.encode_queries([request.text])[0])
            timings["embed"] = _ms(started)
        mode, min_score = request.mode, request.min_score
        # Every hit up to the page's end is ranked; MMR chooses among a deeper pool.
        k = max(request.reach, diversity.POOL) if request.diversity else request.reach
        # Every read below sees the index and the store at the same write: a document being
        # replaced is found at its old version or its new one, never at neither.
        with self.store.view():
            lists: dict[str, list[Candidate]] = {}
            # Fusion needs both rankings deeper than k, or a document second in both is lost.
            depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
            want = depth * 3  # chunks of one document compete for places: more chunks than documents
            # One store call for both retrievers (and the filter, resolved once for the feedback's
            # dense retrieval, and the lexical scale where the scores are shown on it).
            deadline.check("lexical" if mode == "lexical" else "dense")
            t = time.perf_counter()
            vector = request.vector if mode != "lexical" else None
            found = self.store.retrieve(vector, request.query if mode != "dense" else None, want, request.flt,
                                        request.ef_search, request.nprobe, scale=mode == "lexical")
            if vector is not None:
                widen = self._widen_dense(vector, found.allowed, request.ef_search, request.nprobe)
                lists["dense"] = self._grouped(found.dense, want, widen, depth, "dense")
                timings["dense"] = _ms(t)
            if mode != "dense":
                t = time.perf_counter() if vector is not None else t
                more = lambda n: self.store.lexical(request.query, n, request.flt)  # noqa: E731
                lists["lexical"] = self._grouped(found.lexical, want, more, depth, "lexical")
                timings["lexical"] = _ms(t)
            rows: dict[int, ChunkRow] | None = None
            if mode == "hybrid":
                assert vector is not None
                deadline.check("fuse")
                t = time.perf_counter()
                weight = (fusion.dense_weight(self.embedder, request.query) if self.has_model
                          else NO_MODEL_DENSE_WEIGHT)
                ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
                timings["fuse"] = _ms(t)
                if weight > 0 and ranked:
                    # Rocchio feedback: move the query towards the best fused documents and search
                    # densely again; the lexical list stays, it already matched the words.
                    deadline.check("feedback")
                    t = time.perf_counter()
                    top = self.store.fetch([c.chunk_id for c in ranked[: fusion.PRF_DEPTH]], vectors=True)
                    feedback = fusion.rocchio(vector, np.array([c.vector for c in top], dtype=np.float32))
                    lists["dense"] = self.dense_candidates(feedback, depth, found.allowed, request.ef_search,
                                                           request.nprobe)
                    ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
                    timings["feedback"] = _ms(t)
            else:
                ranked = lists[mode]
            # Scores that mean the same for every query: cosines (dense, hybrid), or BM25 as a share
            # of the most the query's words can score (lexical).
            deadline.check("scores")
            fetched: dict[int, StoredChunk] = {}
            if mode == "hybrid":
                ranked, fetched = self._on_cosine_scale(ranked, vector, k, min_score)
                rows = {i: c.row for i, c in fetched.items() if c.row is not None}
            elif mode == "lexical":
                # At most 1 by construction; min() keeps it so when the store's scale is a moment old.
                ranked = [replace(c, score=min(1.0, c.score / found.lexical_scale)) for c in ranked]
            if min_score is not None:
                ranked = [c for c in ranked if c.score >= min_score]
            if request.diversity:
                deadline.check("diversity")
                ranked = self._diversified(ranked, request.diversity, request.reach, fetched)
            deadline.check("fetch")
            t = time.perf_counter()
            hits = self.materialize(ranked[request.offset : request.reach], lists, rows)
            timings["fetch"] = _ms(t)
            timings["total"] = _ms(started)
            return SearchResult(hits, timings, mode)

    def _diversified(self, ranked: list[Candidate], weight: float, n: int,
                     fetched: dict[int, StoredChunk]) -> list[Candidate]:
        """The first n of ranked re-ordered by maximal marginal relevance over their chunks'
        stored vectors (see retrieval/diversity.py); vectors in `fetched` are not read again."""
        vectors = {i: c.vector for i, c in fetched.items()}
        missing = [c.chunk_id for c in ranked if vectors.get(c.chunk_id) is None]
        if missing:
            vectors.update((c.chunk_id, c.vector) for c in self.store.fetch(missing, vectors=True))
        present = [c for c in ranked if vectors.get(c.chunk_id) is not None]
        if not present:
            return ranked[:n]
        matrix = np.array([vectors[c.chunk_id] for c in present], dtype=np.float32)
        relevance = np.array([c.score for c in present], dtype=np.float32)
        return [present[i] for i in diversity.mmr(relevance, matrix, weight, n)]

    def materialize(self, ranked: list[Candidate], lists: dict[str, list[Candidate]],
                    rows: dict[int, ChunkRow] | None = None) -> list[Hit]:
        """Hits of the ranked candidates, from the rows of their chunks (read here unless given)."""
        if rows is None:
            rows = {c.chunk_id: c.row for c in self.store.fetch([c.chunk_id for c in ranked], rows=True)
                    if c.row is not None}
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
        for chunk in self.store.fetch(documents=ids, vectors=True):
            assert chunk.vector is not None
            rows.setdefault(chunk.doc_id, []).append(chunk.vector)
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
            want = (k + len(excluded)) * 3
            found = self.store.retrieve(query, None, want, flt, ef_search, nprobe)
            found_docs = self._grouped(found.dense, want, self._widen_dense(query, found.allowed, ef_search, nprobe),
                                       k + len(excluded), "dense")
            ranked = [c for c in found_docs if c.doc_id not in excluded][:k]
            if min_score is not None:
                ranked = [c for c in ranked if c.score >= min_score]
            timings["dense"] = _ms(t)
            deadline.check("fetch")
            t = time.perf_counter()
            hits = self.materialize(ranked, {"dense": found_docs})
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


def closest_chunks(vector: np.ndarray, chunks: list[StoredChunk]) -> dict[str, Candidate]:
    """Per document, its chunk (read with its vector) closest to vector, with the cosine."""
    best: dict[str, Candidate] = {}
    for chunk in chunks:
        assert chunk.vector is not None
        score = float(chunk.vector @ vector)
        if chunk.doc_id not in best or score > best[chunk.doc_id].score:
            best[chunk.doc_id] = Candidate(chunk.doc_id, chunk.chunk_id, score)
    return best


def best_per_document(ranked: list[Candidate]) -> list[Candidate]:
    """Each document's first chunk in a ranking (its best), in the ranking's order."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for cand in ranked:
        if cand.doc_id not in seen:
            seen.add(cand.doc_id)
            out.append(cand)
    return out


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

