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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import deadline, expiry, stages
from ..documents import Chunk, Document
from ..embedding.embedder import Embedder, ModelCalls, PromptedCalls, check_fits
from ..embedding.rerankers import RerankCalls, load_cross_encoder
from ..embedding.sources import Prompts
from ..errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..ingest.chunker import Chunker
from ..ingest.encoding import DocumentEncoder, Prepared
from ..query import analysis, facets, languages
from ..query.filters import Condition, Filter, key_field, validate_condition
from ..records import (
    MODES,
    NO_MODEL,
    Candidate,
    Group,
    Hit,
    Manifest,
    MatchedChunk,
    RetrieverScore,
    SearchResult,
    Stats,
    UpsertResult,
)
from ..stores import ChunkRow, Store, StoredChunk
from ..stores.local.rwlock import RWLock
from . import diversity, fusion, grouping, metadata_updates, rerank
from .metadata_updates import MetadataUpdate
from .request import Rerank, Reranker, SearchRequest
from .sentence_cache import SentenceCache

__all__ = ["MODES", "NO_MODEL", "Collection", "Manifest", "MetadataUpdate", "SearchRequest", "validate_documents"]

# Dense weight of hybrid search in a collection without a model: no tokenizer to measure the
# query's vocabulary coverage with, so both retrievers count alike.
NO_MODEL_DENSE_WEIGHT = 0.5
# Documents each retriever contributes to hybrid fusion.
FUSION_DEPTH = 100
# Matching chunks a hit carries at most (chunks_per_document): enough to highlight a long
# document's passages, few enough that a page of hits stays a page.
MAX_CHUNKS_PER_DOCUMENT = 16


@dataclass(frozen=True)
class Ranking:
    """A search's documents best first (on its score scale, at its min_score), with what was read
    on the way: each retriever's documents (`lists`, for `hit.retrievers`), the chunks read with
    their vectors and rows (hybrid), the rows among them, each document's matching chunks best
    first on the hits' scale (when chunks per document are asked for), and whether the
    retrieval ran dry before the depth asked for."""

    ranked: list[Candidate]
    lists: dict[str, list[Candidate]]
    fetched: dict[int, StoredChunk]
    rows: dict[int, ChunkRow] | None
    chunks: dict[str, list[Candidate]]
    exhausted: bool


@dataclass
class WritePlan:
    """A checked batch: its documents, the changed ones with their stored hashes (content and
    metadata), the ones whose metadata alone changed (with the stored hash they were compared
    with), and (in a collection without a model) every document's own vector by id."""

    documents: Sequence[Document]
    changed: list[tuple[Document, str]]
    own: dict[str, np.ndarray] | None
    metadata_only: list[tuple[Document, str]] = field(default_factory=list)

    def result(self, prepared: list[Prepared]) -> UpsertResult:
        return UpsertResult(
            upserted=len(self.changed),
            unchanged=len(self.documents) - len(self.changed) - len(self.metadata_only),
            chunks=sum(len(chunks) for chunks, _ in prepared),
            ids=[d.id for d in self.documents],
            tokens=sum(c.tokens for chunks, _ in prepared for c in chunks),
            metadata_updated=len(self.metadata_only),
        )


class Collection:
    """Thread-safe as its store is: searches run concurrently, writes are serialized by the store.

    Every write passes a gate that writes share and a migration's switch (catalog/migration.py)
    holds alone: it pauses writes while the last differences are copied into the new store, and
    a write that reaches a collection moved meanwhile is refused as UNAVAILABLE (which clients
    send again), to find the collection's name pointing at its new store."""

    def __init__(self, store: Store, embedder: Embedder | None, calls: ModelCalls | None = None,
                 rerankers: Callable[[str, str], RerankCalls] | None = None) -> None:
        """embedder is None for a collection without a model (manifest.model == NO_MODEL); calls
        are the roads to it (the server's scheduler, or straight to the model), which every text
        takes with the collection's prompts (the encoder's PromptedCalls). rerankers gives the
        road to a cross-encoder by its name (and the field that named it): the catalog's, or
        straight to the model loaded here."""
        self.store = store
        self._rerankers = rerankers or _direct_reranker
        self._embedder = embedder
        manifest = store.manifest
        self.prompts = Prompts.of(manifest)
        self._encoder = (DocumentEncoder(embedder, manifest.chunk_tokens, manifest.overlap_tokens, calls,
                                         self.prompts) if embedder else None)
        self._calls: PromptedCalls | None = self._encoder.calls if self._encoder else None
        self._sentences = SentenceCache()
        self._writes = RWLock()
        self._moved_to = ""

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
        queries' road; the texts embedded for an earlier request are not embedded again."""
        self.require_model("texts")
        assert self._calls is not None
        return self._sentences.vectors(texts, self._calls.documents_now)

    def check_query(self, text: str, field: str) -> None:
        """Refuse a query that, with the query prompt before it, exceeds the model's window."""
        check_fits(self.require_model(field), text, field, self.prompts.query)

    # -- writes -------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The gate of one write: shared with other writes, closed while writes are paused, and
        refusing every write once the collection has moved."""
        with self._writes.read():
            if self._moved_to:
                raise Unavailable(f"collection: {self.manifest.name!r} has moved to {self._moved_to!r} (a"
                                  " migration); send the write again")
            yield

    @contextmanager
    def writes_paused(self) -> Iterator[None]:
        """No write of this collection starts or is under way inside the block (those under way
        end first); reads go on."""
        with self._writes.write():
            yield

    def moved(self, to: str) -> None:
        """Refuse every write from now on: the collection's data now lives in `to`. Called with
        writes paused."""
        self._moved_to = to

    def prepare(self, doc: Document) -> Prepared:
        """Chunks of a document and the texts the model embeds for them (without a model: the
        whole document is one chunk, its text what lexical search reads)."""
        if not self.has_model:
            return [Chunk(0, doc.text, 0, len(doc.text), 0)], [f"{doc.title} {doc.text}".strip()]
        return self.encoder.prepare(doc)

    def upsert(self, documents: Sequence[Document], batch_size: int | None = None) -> UpsertResult:
        """Store documents durably; unchanged ones (same content and metadata hashes) are neither
        re-embedded nor rewritten, and those whose metadata alone changed have only their metadata
        rewritten. Returns once the batch is committed to disk."""
        plan = self.plan(documents)
        # Embedding first: a batch that fails there (the deadline, the model) has written nothing.
        prepared, vectors = self._encoded(plan, plan.changed, batch_size)
        with self._writing():  # its two writes on one side of a migration's switch
            gone = self._rewrite_metadata(plan)
            if gone:  # deleted since the plan: written whole after all
                more, more_vectors = self._encoded(plan, gone, batch_size)
                plan.changed += gone
                prepared, vectors = prepared + more, np.vstack([vectors, more_vectors])
            self._commit(plan.changed, prepared, vectors)
        return plan.result(prepared)

    def _encoded(self, plan: WritePlan, changed: list[tuple[Document, str]],
                 batch_size: int | None) -> tuple[list[Prepared], np.ndarray]:
        """Chunks and vectors of changed documents: embedded, or their own vectors."""
        if plan.own is None:
            return self.encoder.encode([d for d, _ in changed], batch_size)
        vectors = np.array([plan.own[d.id] for d, _ in changed], dtype=np.float32)
        return [self.prepare(d) for d, _ in changed], vectors.reshape(len(changed), self.manifest.dimension)

    def plan(self, documents: Sequence[Document]) -> WritePlan:
        """Check a batch and find what it changes: every document is validated, then compared
        with what is stored (retrieval/metadata_updates.py): changed, metadata only, unchanged."""
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
        found = metadata_updates.split(documents, self.store, text_decides=self.has_model)
        return WritePlan(documents, found.changed,
                         None if own is None else {d.id: own[i] for i, d in enumerate(documents)},
                         found.metadata_only)

    def rewrite_metadata(self, plan: WritePlan) -> list[tuple[Document, str]]:
        """Write the metadata of the plan's metadata-only documents, embedding nothing. Those
        deleted since the plan was made leave the plan's metadata-only ones and are returned (with
        their stored hashes), for the caller to write whole."""
        with self._writing():
            return self._rewrite_metadata(plan)

    def _rewrite_metadata(self, plan: WritePlan) -> list[tuple[Document, str]]:
        if not plan.metadata_only:
            return []
        deadline.check("write")
        written = set(self.store.update_metadata([d.id for d, _ in plan.metadata_only], None,
                                                 metadata_updates.rewrite_edit(plan.metadata_only)))
        gone = [(d, d.stored_hash()) for d, _ in plan.metadata_only if d.id not in written]
        plan.metadata_only = [(d, h) for d, h in plan.metadata_only if d.id in written]
        return gone

    def update_metadata(self, ids: Sequence[str] = (), flt: Filter | None = None,
                        update: MetadataUpdate | None = None) -> tuple[int, list[str]]:
        """Change the metadata of documents given by id, or of those a filter (never an empty one)
        matches, without embedding or rewriting a vector; durable when it returns. Returns how many
        documents were rewritten and the ids asked for that are not stored (not an error, as for
        `get`)."""
        if update is None:
            raise InvalidArgument("set: give keys to set or to unset (or replace the metadata)")
        if ids and flt is not None:
            raise InvalidArgument("filter: update by ids or by a filter, not both")
        if flt is not None and not flt:
            raise InvalidArgument("filter: an empty filter would update every document; give conditions")
        for i, doc_id in enumerate(ids):
            if not isinstance(doc_id, str) or not doc_id.strip():
                raise InvalidArgument(f"ids[{i}]: must be a non-empty string")
        check_finite(update.set, "set")
        if not ids and flt is None:
            return 0, []
        deadline.check("write")
        with self._writing():
            written = set(self.store.update_metadata(ids, flt, update.edit()))
        return len(written), [i for i in dict.fromkeys(ids) if i not in written]

    def commit(self, changed: list[tuple[Document, str]], prepared: list[Prepared], vectors: np.ndarray) -> None:
        """Write changed documents (with their hashes), prepared and embedded, durably."""
        with self._writing():
            self._commit(changed, prepared, vectors)

    def _commit(self, changed: list[tuple[Document, str]], prepared: list[Prepared], vectors: np.ndarray) -> None:
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
        with self._writing():
            return self.store.delete(ids, flt)

    def index_metadata(self, keys: Sequence[str]) -> None:
        """Answer filters on these metadata keys from an index from now on."""
        for i, key in enumerate(keys):
            validate_condition(f"keys[{i}]", key, Condition("exists", True))
        with self._writing():
            self.store.index_metadata(keys)

    def set_ttl(self, ttl_seconds: int) -> None:
        """The default lifetime of documents written from now on (0: none); stored documents keep
        the expiry they were written with."""
        ttl_seconds = expiry.check_ttl(ttl_seconds)
        with self._writing():
            if ttl_seconds != self.manifest.ttl_seconds:
                self.store.save_manifest(replace(self.manifest, ttl_seconds=ttl_seconds))

    def purge_expired(self) -> int:
        """Delete the documents whose expiry has passed (reads skip them already); returns how
        many. Through the store's own delete, so every index it keeps stays in step."""
        deadline.check("purge")
        with self._writing():
            return self.store.purge_expired()

    def set_language(self, language: str) -> None:
        """Analyse text in another language from now on (see query/languages.py); the lexical
        index is rebuilt in the background, the old one answering until then."""
        language = languages.check(language)
        with self._writing():
            self.store.set_language(language)

    # -- reads --------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]:
        return self.store.get(ids)

    def count(self, flt: Filter | None = None) -> int:
        return self.store.count(flt)

    def facet(self, key: str, flt: Filter | None = None, limit: int = facets.DEFAULT_LIMIT) -> facets.Facets:
        """The most frequent values of a metadata key among the documents matching flt (every
        document without one), with their document counts (query/facets.py); limit 0 means the
        default."""
        key, limit = facets.check_key(key), facets.check_limit(limit)
        deadline.check("facet")
        return self.store.facet(key, flt, limit)

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
        return self._documents(ranked, want, more, k, stage)[0]

    def _documents(self, ranked: list[Candidate], want: int, more: Callable[[int], list[Candidate]], k: int,
                   stage: str) -> tuple[list[Candidate], list[Candidate]]:
        """`_grouped`'s documents, and the chunks they were chosen from (best first): every chunk
        of theirs the retriever found, a hit's matching chunks."""
        while True:
            out = best_per_document(ranked)
            if len(out) >= k or len(ranked) < want:
                return out[:k], ranked
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
                encoded: np.ndarray | None = None, offset: int = 0, diversity: float = 0.0,
                rerank: Rerank | None = None, group_by: str = "", group_size: int = 0,
                chunks_per_document: int = 0) -> SearchRequest:
        """A search checked whole before any work starts: the caller's vector (dimension, finite;
        named `vector_field`), the mode, the text (refused, naming `field`, when empty where it is
        needed, past the model's window where it is embedded, past max_terms distinct terms where
        it is searched lexically) and analysed once, the page's offset (not negative) and the
        diversity (0 to 1), the rerank stage (`reranker`), the grouping (see retrieval/grouping.py)
        and the chunks per hit (0 to MAX_CHUNKS_PER_DOCUMENT), named beside `field`. Text and vector
        may both be given: the vector serves dense retrieval, the text analysis and the rerank.
        `encoded` is the text's embedding where the caller made it already (a batch, a question)."""
        beside = field.rpartition(".")[0] + "." if "." in field else ""
        if offset < 0:
            raise InvalidArgument(f"{beside}offset: must not be negative, got {offset}")
        if not 0.0 <= diversity <= 1.0:  # NaN fails both
            raise InvalidArgument(f"{beside}diversity: must be between 0 and 1, got {diversity}")
        path = grouping.key_path(group_by, f"{beside}group_by") if group_by else ""
        group_size = grouping.check_size(group_size, bool(path), f"{beside}group_size")
        if path and diversity:
            # MMR re-orders documents one by one; groups already spread the hits over values.
            raise InvalidArgument(f"{beside}diversity: not with group_by (groups spread the hits already)")
        if not 0 <= chunks_per_document <= MAX_CHUNKS_PER_DOCUMENT:
            raise InvalidArgument(f"{beside}chunks_per_document: must be between 0 and {MAX_CHUNKS_PER_DOCUMENT},"
                                  f" got {chunks_per_document}")
        if path:
            flt = grouping.with_key(flt, path)
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
        reranker = self.reranker(rerank, f"{beside}rerank", text if has_text else "")
        return SearchRequest(mode, k, text, query, checked, flt, min_score, ef_search, nprobe, offset, diversity,
                             reranker, path, group_size, chunks_per_document)

    def reranker(self, asked: Rerank | None, field: str = "rerank", text: str = "x") -> Reranker | None:
        """The rerank stage a search gets: the one asked for (its empty model meaning the
        collection's default, "none" none), else the collection's default, else none; its depth
        checked (0: the default's, else rerank.DEFAULT_DEPTH) and its model loaded. A rerank needs
        the query's text (`text`): a search by vector alone is refused one."""
        if asked is not None:
            rerank.check(asked, field)
        default, default_depth = self.manifest.rerank_model, self.manifest.rerank_depth
        if asked is None and not default:
            return None
        model = asked.model if asked is not None and asked.model else default
        if model == rerank.OFF:
            return None
        if not model:
            raise InvalidArgument(f"{field}.model: give a cross-encoder (a folder or a Hugging Face id);"
                                  f" collection {self.manifest.name!r} has no default rerank model")
        depth = (asked.depth if asked is not None else 0) or (default_depth if model == default else 0)
        depth = depth or rerank.DEFAULT_DEPTH
        if not text.strip():
            raise InvalidArgument(f"{field}: a cross-encoder reads the query's text; a search by vector alone"
                                  " has none (give the text too)")
        return Reranker(model, depth, self._rerankers(model, f"{field}.model"))

    def analyze(self, text: str, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
                field: str = "query") -> analysis.Query:
        """The query's terms by the analyzer the collection's lexical index holds, in the
        language (among those of its documents) the query is in."""
        return self.store.analyzer.query(text, self.manifest.languages, max_terms, field)

    def search(self, text: str | None = None, vector: Sequence[float] | np.ndarray | None = None, k: int = 10,
               flt: Filter | None = None, min_score: float | None = None, mode: str = "",
               ef_search: int = 0, nprobe: int = 0, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS,
               field: str = "query", offset: int = 0, diversity: float = 0.0,
               rerank: Rerank | None = None, group_by: str = "", group_size: int = 0,
               chunks_per_document: int = 0) -> SearchResult:
        """Documents best first, each with its best chunk, by dense, lexical or hybrid retrieval:
        the k after the first `offset`, the best candidates re-ordered by a cross-encoder (`rerank`,
        or the collection's default), then for `diversity` (MMR) when it is above 0; or the k groups
        after the first `offset` of the documents grouped by a metadata key (`group_by`,
        `group_size`); each hit with its `chunks_per_document` best matching chunks (see `request`
        for what is refused)."""
        started = time.perf_counter()
        return self.run(self.request(text, vector, k, flt, min_score, mode, ef_search, nprobe, max_terms, field,
                                     offset=offset, diversity=diversity, rerank=rerank, group_by=group_by,
                                     group_size=group_size, chunks_per_document=chunks_per_document), started)

    def run(self, request: SearchRequest, started: float | None = None) -> SearchResult:
        """A checked search (`request`): its text embedded where dense retrieval needs it, then
        answered from the store."""
        started = time.perf_counter() if started is None else started
        timings = stages.Timings()
        if request.needs_embedding:
            deadline.check("embed")
            with timings.stage("embed"):
                request = replace(request, vector=self.encode_queries([request.text])[0])
        # Every read below sees the index and the store at the same write: a document being
        # replaced is found at its old version or its new one, never at neither.
        with self.store.view():
            if request.group_by:
                return self._run_grouped(request, timings, started)
            # Every hit up to the page's end is ranked; MMR chooses among a deeper pool, the
            # cross-encoder reads `depth` candidates.
            k = max(request.reach, diversity.POOL) if request.diversity else request.reach
            if request.rerank is not None:
                k = max(k, request.rerank.depth)
            ranking = self._ranking(request, k, timings)
            ranked, rows, fetched = ranking.ranked, ranking.rows, ranking.fetched
            per_document = request.chunks_per_document
            if request.rerank is None or not ranked:
                if request.diversity:
                    deadline.check("diversity")
                    ranked = self._diversified(ranked, request.diversity, request.reach, fetched)
                deadline.check("fetch")
                with timings.stage("fetch"):
                    hits = self.materialize(ranked[request.offset : request.reach], ranking.lists, rows,
                                            ranking.chunks, per_document)
                timings["total"] = _ms(started)
                return SearchResult(hits, timings, request.mode)
            # Everything a reranked answer shows is read inside the view: the cross-encoder's
            # calls then run outside it, so writes never wait for a model.
            deadline.check("fetch")
            with timings.stage("fetch"):
                shown = ranked[: max(request.rerank.depth, request.reach)]
                rows, fetched = self._read(shown, rows, fetched, vectors=bool(request.diversity))
                rows = self._rows(shown, rows, ranking.chunks, per_document)
        with timings.stage("rerank"):
            ranked, ranking.lists["rerank"] = self._reranked(request.text, request.rerank, shown, rows)
        if request.diversity:  # MMR chooses among the reranked, by their rerank probability
            deadline.check("diversity")
            reranked = {c.chunk_id: c.score for c in ranking.lists["rerank"]}
            pool = ranked[: len(reranked)]
            ranked = self._diversified(pool, request.diversity, request.reach, fetched, reranked) + ranked[len(pool):]
        hits = self.materialize(ranked[request.offset : request.reach], ranking.lists, rows, ranking.chunks,
                                per_document)
        timings["total"] = _ms(started)
        return SearchResult(hits, timings, request.mode)

    def _run_grouped(self, request: SearchRequest, timings: stages.Timings, started: float) -> SearchResult:
        """A grouped search (retrieval/grouping.py): the ranking made deeper until the page's
        groups are filled, grouped by the rows' metadata, the page's groups materialized."""
        depth = grouping.first_depth(request.reach, request.group_size)
        while True:
            ranking = self._ranking(request, max(depth, request.rerank.depth if request.rerank else 0), timings)
            ranked, rows = ranking.ranked, self._rows(ranking.ranked, ranking.rows)
            if request.rerank is not None and ranked:
                # A grouped search reranks inside the view: its deepening reads again after it.
                with timings.stage("rerank"):
                    ranked, ranking.lists["rerank"] = self._reranked(request.text, request.rerank, ranked, rows)
            deadline.check("group")
            with timings.stage("group"):
                groups = grouping.group(ranked, _metadata_in(rows), request.group_by, request.group_size)
            if (grouping.filled(groups, request.reach, request.group_size) or ranking.exhausted
                    or depth >= grouping.MAX_DEPTH):
                break
            depth = min(depth * 4, grouping.MAX_DEPTH)
        deadline.check("fetch")
        with timings.stage("fetch"):
            page = groups[request.offset : request.reach]
            members = [c for g in page for c in g.members]
            rows = self._rows(members, rows, ranking.chunks, request.chunks_per_document)
            built = self._hits(members, ranking.lists, rows, ranking.chunks, request.chunks_per_document)
            out: list[Group] = []
            at = 0
            for g in page:
                hits = [replace(h, group=g.value) for h in built[at : at + len(g.members)] if h is not None]
                at += len(g.members)
                out.append(Group(g.value, hits))
        timings["total"] = _ms(started)
        return SearchResult([h for g in out for h in g.hits], timings, request.mode, out)

    def _ranking(self, request: SearchRequest, k: int, timings: stages.Timings) -> Ranking:
        """The first k documents of a checked, embedded search, best first, on its score scale and
        at its min_score, with what was read on the way (see `Ranking`)."""
        mode, min_score = request.mode, request.min_score
        lists: dict[str, list[Candidate]] = {}
        chunk_lists: dict[str, list[Candidate]] = {}
        # Fusion needs both rankings deeper than k, or a document second in both is lost.
        depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
        want = depth * 3  # chunks of one document compete for places: more chunks than documents
        # One store call for both retrievers (and the filter, resolved once for the feedback's
        # dense retrieval, and the lexical scale where the scores are shown on it).
        first = "lexical" if mode == "lexical" else "dense"
        deadline.check(first)
        vector = request.vector if mode != "lexical" else None
        more = lambda n: self.store.lexical(request.query, n, request.flt)  # noqa: E731
        with timings.stage(first):  # the one retrieve call is the first retriever's time
            found = self.store.retrieve(vector, request.query if mode != "dense" else None, want, request.flt,
                                        request.ef_search, request.nprobe, scale=mode == "lexical")
            if vector is not None:
                widen = self._widen_dense(vector, found.allowed, request.ef_search, request.nprobe)
                lists["dense"], chunk_lists["dense"] = self._documents(found.dense, want, widen, depth, "dense")
            else:
                lists["lexical"], chunk_lists["lexical"] = self._documents(found.lexical, want, more, depth,
                                                                           "lexical")
        if mode == "hybrid":
            with timings.stage("lexical"):
                lists["lexical"], chunk_lists["lexical"] = self._documents(found.lexical, want, more, depth,
                                                                           "lexical")
        rows: dict[int, ChunkRow] | None = None
        if mode == "hybrid":
            assert vector is not None
            deadline.check("fuse")
            with timings.stage("fuse"):
                weight = (fusion.dense_weight(self.embedder, request.query) if self.has_model
                          else NO_MODEL_DENSE_WEIGHT)
                ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
            if weight > 0 and ranked:
                # Rocchio feedback: move the query towards the best fused documents and search
                # densely again; the lexical list stays, it already matched the words.
                deadline.check("feedback")
                with timings.stage("feedback"):
                    top = self.store.fetch([c.chunk_id for c in ranked[: fusion.PRF_DEPTH]], vectors=True)
                    feedback = fusion.rocchio(vector, np.array([c.vector for c in top], dtype=np.float32))
                    lists["dense"] = self.dense_candidates(feedback, depth, found.allowed, request.ef_search,
                                                           request.nprobe)
                    ranked = fusion.fuse_candidates(lists["dense"], lists["lexical"], weight)
        else:
            ranked = lists[mode]
        exhausted = len(ranked) < k
        # Scores that mean the same for every query: cosines (dense, hybrid), or BM25 as a share
        # of the most the query's words can score (lexical).
        deadline.check("scores")
        fetched: dict[int, StoredChunk] = {}
        chunks: dict[str, list[Candidate]] = {}
        if mode == "hybrid":
            assert vector is not None
            ranked, fetched = self._on_cosine_scale(ranked, vector, k, min_score)
            rows = {i: c.row for i, c in fetched.items() if c.row is not None}
            if request.chunks_per_document:
                # Every chunk of the hits' documents was read with its vector: each scored by its
                # cosine, the hit's own scale.
                scored = [Candidate(c.doc_id, i, float(c.vector @ vector)) for i, c in fetched.items()
                          if c.vector is not None]
                chunks = _by_document(sorted(scored, key=lambda c: -c.score))
        else:
            if mode == "lexical":
                # At most 1 by construction; min() keeps it so when the store's scale is a moment old.
                scale = lambda c: replace(c, score=min(1.0, c.score / found.lexical_scale))  # noqa: E731
                ranked = [scale(c) for c in ranked]
                chunk_lists[mode] = [scale(c) for c in chunk_lists[mode]]
            if request.chunks_per_document:
                # The chunks the retriever found, in its order (best first).
                chunks = _by_document(chunk_lists[mode])
        if min_score is not None:
            # Outside hybrid search the ranking is in score order: past min_score, deeper is lower.
            exhausted = exhausted or (mode != "hybrid" and bool(ranked) and ranked[-1].score < min_score)
            ranked = [c for c in ranked if c.score >= min_score]
        return Ranking(ranked, lists, fetched, rows, chunks, exhausted)

    def _read(self, ranked: list[Candidate], rows: dict[int, ChunkRow] | None, fetched: dict[int, StoredChunk],
              vectors: bool) -> tuple[dict[int, ChunkRow], dict[int, StoredChunk]]:
        """The rows (and, with `vectors`, the stored vectors) of the ranked candidates' chunks,
        those not read yet in one fetch; a candidate deleted since its retrieval has none."""
        rows, fetched = dict(rows or {}), dict(fetched)
        missing = [c.chunk_id for c in ranked if c.chunk_id not in rows or (vectors and c.chunk_id not in fetched)]
        if missing:
            for chunk in self.store.fetch(missing, vectors=vectors, rows=True):
                if chunk.row is not None:
                    rows[chunk.chunk_id] = chunk.row
                if vectors:
                    fetched[chunk.chunk_id] = chunk
        return rows, fetched

    def _reranked(self, text: str, reranker: Reranker, ranked: list[Candidate],
                  rows: dict[int, ChunkRow]) -> tuple[list[Candidate], list[Candidate]]:
        """ranked with its first `depth` candidates ordered by the cross-encoder (see
        retrieval/rerank.py; their rows read already), and those candidates scored by its
        probability, best first: the "rerank" retriever's list."""
        top = [c for c in ranked[: reranker.depth] if c.chunk_id in rows]  # others were deleted since retrieval
        probability = rerank.scores(reranker.calls, text,
                                    [rerank.passage(rows[c.chunk_id].title, rows[c.chunk_id].text) for c in top])
        order = np.argsort(-probability, kind="stable")
        scored = [replace(top[i], score=float(probability[i])) for i in order]
        return [top[i] for i in order] + ranked[reranker.depth :], scored

    def _diversified(self, ranked: list[Candidate], weight: float, n: int,
                     fetched: dict[int, StoredChunk], relevance: dict[int, float] | None = None) -> list[Candidate]:
        """The first n of ranked re-ordered by maximal marginal relevance over their chunks'
        stored vectors (see retrieval/diversity.py); vectors in `fetched` are not read again.
        Relevance is each candidate's score, or its entry in `relevance` (the rerank's)."""
        vectors = {i: c.vector for i, c in fetched.items()}
        missing = [c.chunk_id for c in ranked if vectors.get(c.chunk_id) is None]
        if missing:
            vectors.update((c.chunk_id, c.vector) for c in self.store.fetch(missing, vectors=True))
        present = [c for c in ranked if vectors.get(c.chunk_id) is not None]
        if not present:
            return ranked[:n]
        matrix = np.array([vectors[c.chunk_id] for c in present], dtype=np.float32)
        scores = np.array([(relevance or {}).get(c.chunk_id, c.score) for c in present], dtype=np.float32)
        return [present[i] for i in diversity.mmr(scores, matrix, weight, n)]

    def _rows(self, ranked: list[Candidate], rows: dict[int, ChunkRow] | None = None,
              chunks: dict[str, list[Candidate]] | None = None, per_document: int = 0) -> dict[int, ChunkRow]:
        """The rows of the ranked candidates' chunks (and of their first `per_document` matching
        chunks), those not in `rows` read in one fetch."""
        rows = dict(rows or {})
        wanted = [c.chunk_id for c in ranked]
        if chunks and per_document:
            wanted += [m.chunk_id for c in ranked for m in chunks.get(c.doc_id, [])[:per_document]]
        missing = list(dict.fromkeys(i for i in wanted if i not in rows))
        if missing:
            rows.update((c.chunk_id, c.row) for c in self.store.fetch(missing, rows=True) if c.row is not None)
        return rows

    def materialize(self, ranked: list[Candidate], lists: dict[str, list[Candidate]],
                    rows: dict[int, ChunkRow] | None = None, chunks: dict[str, list[Candidate]] | None = None,
                    per_document: int = 0) -> list[Hit]:
        """Hits of the ranked candidates, from the rows of their chunks (read here unless given),
        each with its first `per_document` matching chunks of `chunks` (none when 0)."""
        rows = self._rows(ranked, rows, chunks, per_document)
        return [h for h in self._hits(ranked, lists, rows, chunks, per_document) if h is not None]

    def _hits(self, ranked: list[Candidate], lists: dict[str, list[Candidate]], rows: dict[int, ChunkRow],
              chunks: dict[str, list[Candidate]] | None, per_document: int) -> list[Hit | None]:
        """A hit per ranked candidate, None where its chunk was deleted between the retrieval and
        the read of its row."""
        positions = {name: {c.doc_id: (rank + 1, c.score) for rank, c in enumerate(lst)}
                     for name, lst in lists.items()}
        hits: list[Hit | None] = []
        for cand in ranked:
            row = rows.get(cand.chunk_id)
            if row is None:
                hits.append(None)
                continue
            retrievers = [RetrieverScore(name, pos[row.doc_id][1], pos[row.doc_id][0])
                          for name, pos in positions.items() if row.doc_id in pos]
            matched = []
            if chunks and per_document:
                for m in chunks.get(cand.doc_id, [])[:per_document]:
                    r = rows.get(m.chunk_id)
                    if r is not None:
                        matched.append(MatchedChunk(r.text, r.index, r.start, r.end, m.score))
            hits.append(Hit(row.doc_id, cand.score, row.text, row.title, row.metadata, row.index,
                            row.start, row.end, retrievers, matched))
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
        timings = stages.Timings()
        with self.store.view():
            with timings.stage("vectors"):
                query = self.document_vectors(positive, "positive").mean(0)
                if negative:
                    query = 2 * query - self.document_vectors(negative, "negative").mean(0)
                query = unit_mean(query[None, :])
            excluded = set(positive) | set(negative)
            deadline.check("dense")
            with timings.stage("dense"):
                want = (k + len(excluded)) * 3
                found = self.store.retrieve(query, None, want, flt, ef_search, nprobe)
                found_docs = self._grouped(found.dense, want,
                                           self._widen_dense(query, found.allowed, ef_search, nprobe),
                                           k + len(excluded), "dense")
                ranked = [c for c in found_docs if c.doc_id not in excluded][:k]
                if min_score is not None:
                    ranked = [c for c in ranked if c.score >= min_score]
            deadline.check("fetch")
            with timings.stage("fetch"):
                hits = self.materialize(ranked, {"dense": found_docs})
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


def _by_document(chunks: list[Candidate]) -> dict[str, list[Candidate]]:
    """Chunks per document, in the order given."""
    out: dict[str, list[Candidate]] = {}
    for chunk in chunks:
        out.setdefault(chunk.doc_id, []).append(chunk)
    return out


def _metadata_in(rows: dict[int, ChunkRow]) -> Callable[[Candidate], dict[str, Any] | None]:
    """A candidate's metadata, from the rows read (None where its chunk is gone)."""
    def metadata(cand: Candidate) -> dict[str, Any] | None:
        row = rows.get(cand.chunk_id)
        return None if row is None else row.metadata
    return metadata


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


def _direct_reranker(model: str, field: str) -> RerankCalls:
    """A cross-encoder called straight (a process without the server's scheduler)."""
    return load_cross_encoder(model, field).score
