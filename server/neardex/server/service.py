"""The neardex.v1.Neardex servicer: validates requests and hands them to the catalog.

Keys, limits, deadlines and status codes are the gate's (gate.py): every method here may simply
raise the domain errors of neardex.indexer.errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from neardex.indexer import deadline
from neardex.indexer.catalog import Catalog, snapshots, validate_name, validate_new_name
from neardex.indexer.embedding.embedder import Embedder, check_fits, plain_tokenizer
from neardex.indexer.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    NeardexError,
    PermissionDenied,
    ResourceExhausted,
)
from neardex.indexer.expiry import check_ttl
from neardex.indexer.ingest.chunker import Chunker, default_overlap
from neardex.indexer.query.analysis import Analyzer
from neardex.indexer.records import IndexSpec, SearchResult
from neardex.indexer.retrieval import rerank
from neardex.indexer.retrieval.answers import Answerer
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.retrieval.request import Rerank, SearchRequest
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

from . import convert, metrics
from .quality import RecallSampler
from .reach import Reach
from .settings import Settings

log = logging.getLogger("neardex.server")
DEFAULT_SCROLL_LIMIT = 100
# Characters Tokenize takes at most: its answer lists every token.
MAX_TOKENIZE_CHARS = 1_000_000


class NeardexService(neardex_pb2_grpc.NeardexServicer):
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.reach = Reach.of(settings)
        self._answerers: dict[str, Answerer] = {}
        self._answerers_lock = threading.Lock()
        self._recall = RecallSampler(settings.recall_sample_rate)
        for name in catalog.names():
            try:
                self._sizes(catalog.get(name))
            except Exception:  # noqa: BLE001 - one broken collection must not stop the server
                log.exception("collection %s could not be opened", name)

    # -- collections --------------------------------------------------------------------------

    def CreateCollection(self, request: pb.CreateCollectionRequest, context: Any) -> pb.CollectionInfo:
        spec = IndexSpec.parse(request.index.kind or "flat", dict(request.index.params))
        name = validate_new_name(request.name)
        # Where the request sends the server is judged before anything named is touched.
        try:
            store, model = self.reach.store(request.store), self.reach.model(request.model)
            default_rerank = self._rerank(request, "")
        except PermissionDenied:
            if self.catalog.exists(name):  # as before: a client creating with exist_ok gets it back
                raise AlreadyExists(f"name: collection {name!r} already exists") from None
            raise
        collection = self.catalog.create(
            name,
            model=model or None,
            index=spec,
            chunk_tokens=request.chunk_tokens,
            overlap_tokens=request.overlap_tokens if request.overlap_tokens or request.chunk_tokens else -1,
            default_mode=convert.mode_from_pb(request.default_mode, "default_mode"),
            encoder=request.encoder,
            dimension=request.dimension,
            indexed_keys=list(request.indexed_keys),
            store=store,
            language=request.language,
            # Unset: the model's own prompts; set, even to "": these.
            query_prompt=request.query_prompt if request.HasField("query_prompt") else None,
            document_prompt=request.document_prompt if request.HasField("document_prompt") else None,
            rerank=default_rerank,
            ttl_seconds=request.ttl_seconds,
        )
        self._sizes(collection)
        return convert.collection_to_pb(collection)

    def ListCollections(self, request: pb.ListCollectionsRequest, context: Any) -> pb.ListCollectionsResponse:
        return pb.ListCollectionsResponse(collections=[self._listed(n) for n in self.catalog.names()])

    def _listed(self, name: str) -> pb.CollectionInfo:
        """A collection as ListCollections shows it: one that cannot be opened or read now is
        listed as unavailable with the reason (to the keys that may see it, as every entry),
        and never fails the listing of the others."""
        aliases = self.catalog.aliases.of(name)
        try:
            return convert.collection_to_pb(self.catalog.get(name), aliases)
        except (DeadlineExceeded, Cancelled):  # the call's, not the collection's
            raise
        except NeardexError as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever breaks one collection stays with it
            log.exception("collection %s could not be opened", name)
            reason = f"cannot be opened: {type(exc).__name__}: {exc}"
        return convert.unavailable_to_pb(name, reason, aliases)

    def GetCollection(self, request: pb.GetCollectionRequest, context: Any) -> pb.CollectionInfo:
        collection = self.catalog.get(request.name)
        return convert.collection_to_pb(collection, self.catalog.aliases.of(collection.manifest.name))

    def DeleteCollection(self, request: pb.DeleteCollectionRequest, context: Any) -> pb.DeleteCollectionResponse:
        self.catalog.delete(request.name)
        metrics.forget_collection(request.name)
        return pb.DeleteCollectionResponse()

    # -- documents ----------------------------------------------------------------------------

    def _upsert(self, request: pb.UpsertRequest) -> pb.UpsertResponse:
        collection = self._collection(request.collection)
        if len(request.documents) > self.settings.max_batch_documents:
            raise ResourceExhausted(
                f"documents: {len(request.documents)} documents in one batch; the limit is"
                f" {self.settings.max_batch_documents} (send several batches or use UpsertStream)")
        result = collection.upsert(convert.documents_from_pb(request.documents))
        self._sizes(collection)
        return convert.upsert_result_to_pb(result)

    def Upsert(self, request: pb.UpsertRequest, context: Any) -> pb.UpsertResponse:
        return self._upsert(request)

    def UpsertStream(self, requests: Iterator[pb.UpsertRequest], context: Any) -> Iterator[pb.UpsertResponse]:
        for request in requests:
            yield self._upsert(request)

    def CreateAlias(self, request: pb.CreateAliasRequest, context: Any) -> pb.Alias:
        alias = self.catalog.set_alias(request.name, request.collection, request.replace)
        return pb.Alias(name=alias.name, collection=alias.collection)

    def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Any) -> pb.DeleteAliasResponse:
        self.catalog.aliases.delete(validate_name(request.name))
        return pb.DeleteAliasResponse()

    def ListAliases(self, request: pb.ListAliasesRequest, context: Any) -> pb.ListAliasesResponse:
        collection = validate_name(request.collection, "collection") if request.collection else None
        return pb.ListAliasesResponse(aliases=[pb.Alias(name=a.name, collection=a.collection)
                                               for a in self.catalog.aliases.list(collection)])

    def CreateSnapshot(self, request: pb.CreateSnapshotRequest, context: Any) -> pb.Snapshot:
        info = snapshots.create(self._collection(request.collection), self.catalog.root)
        return convert.snapshot_to_pb(info)

    def ListSnapshots(self, request: pb.ListSnapshotsRequest, context: Any) -> pb.ListSnapshotsResponse:
        name = self._collection(request.collection).manifest.name
        return pb.ListSnapshotsResponse(snapshots=[convert.snapshot_to_pb(i)
                                                   for i in snapshots.list_snapshots(self.catalog.root, name)])

    def DeleteSnapshot(self, request: pb.DeleteSnapshotRequest, context: Any) -> pb.DeleteSnapshotResponse:
        snapshots.delete(self.catalog.root, self._snapshot_owner(request.collection), request.name)
        return pb.DeleteSnapshotResponse()

    def RestoreSnapshot(self, request: pb.RestoreSnapshotRequest, context: Any) -> pb.CollectionInfo:
        owner = self._snapshot_owner(request.collection)
        path = snapshots.path_of(self.catalog.root, owner, request.snapshot)
        store = self.reach.store(request.store) or None  # judged before anything is read
        collection = self.catalog.restore(path, validate_new_name(request.target or owner, "target"), request.replace,
                                          store=store)
        self._sizes(collection)
        return convert.collection_to_pb(collection)

    def MigrateCollection(self, request: pb.MigrateCollectionRequest, context: Any) -> pb.MigrateCollectionResponse:
        to = self.reach.store(request.to, "to")  # where it sends the server, judged before anything is touched
        done = self.catalog.migrate(validate_name(request.name), to, request.target, request.keep_as)
        self._sizes(done.collection)
        info = convert.collection_to_pb(done.collection, self.catalog.aliases.of(done.collection.manifest.name))
        return pb.MigrateCollectionResponse(collection=info, kept_as=done.kept_as, copied=done.copied,
                                            deleted=done.deleted, rounds=done.rounds)

    def _snapshot_owner(self, name: str) -> str:
        """The collection a snapshot request names (an alias resolved); it may have been dropped
        since its snapshots were taken."""
        return self.catalog.aliases.resolve(validate_name(name, "collection"))

    def IndexMetadata(self, request: pb.IndexMetadataRequest, context: Any) -> pb.CollectionInfo:
        collection = self._collection(request.collection)
        if not request.keys:
            raise InvalidArgument("keys: give at least one metadata key to index")
        collection.index_metadata(list(request.keys))
        return convert.collection_to_pb(collection)

    def UpdateCollection(self, request: pb.UpdateCollectionRequest, context: Any) -> pb.CollectionInfo:
        collection = self.catalog.get(request.name)
        if not request.language and not request.HasField("ttl_seconds"):
            raise InvalidArgument("language: give a setting to change (language, ttl_seconds)")
        if request.HasField("ttl_seconds"):
            check_ttl(request.ttl_seconds)  # both settings are checked before either changes
        if request.language:
            collection.set_language(request.language)
        if request.HasField("ttl_seconds"):
            collection.set_ttl(request.ttl_seconds)
        return convert.collection_to_pb(collection, self.catalog.aliases.of(collection.manifest.name))

    def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteResponse:
        collection = self._collection(request.collection)
        if request.ids and request.HasField("filter"):
            raise InvalidArgument("filter: delete by ids or by a filter, not both")
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        deleted = collection.delete(list(request.ids), flt)
        self._sizes(collection)
        return pb.DeleteResponse(deleted=deleted)

    def UpdateMetadata(self, request: pb.UpdateMetadataRequest, context: Any) -> pb.UpdateMetadataResponse:
        collection = self._collection(request.collection)
        if request.ids and request.HasField("filter"):
            raise InvalidArgument("filter: update by ids or by a filter, not both")
        if len(request.ids) > self.settings.max_batch_documents:
            raise ResourceExhausted(
                f"ids: {len(request.ids)} ids in one call; the limit is {self.settings.max_batch_documents}"
                " (send several calls, or select the documents with a filter)")
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        updated, missing = collection.update_metadata(list(request.ids), flt,
                                                      convert.metadata_update_from_pb(request))
        return pb.UpdateMetadataResponse(updated=updated, missing=missing)

    def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        collection = self._collection(request.collection)
        found, missing = collection.get(list(request.ids))
        return pb.GetResponse(documents=self._documents_to_pb(collection, found, _fields(request)), missing=missing)

    def Count(self, request: pb.CountRequest, context: Any) -> pb.CountResponse:
        collection = self._collection(request.collection)
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        return pb.CountResponse(count=collection.count(flt))

    def Facet(self, request: pb.FacetRequest, context: Any) -> pb.FacetResponse:
        collection = self._collection(request.collection)
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        return convert.facets_to_pb(collection.facet(request.key, flt, request.limit))

    def Scroll(self, request: pb.ScrollRequest, context: Any) -> pb.ScrollResponse:
        collection = self._collection(request.collection)
        limit = request.limit or DEFAULT_SCROLL_LIMIT
        if not 1 <= limit <= self.settings.max_batch_documents:
            raise InvalidArgument(f"limit: must be between 1 and {self.settings.max_batch_documents}, got {limit}")
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        fields = _fields(request)
        documents = collection.scroll(convert.cursor_from_pb(request.cursor), limit, flt,
                                      text=not (fields and fields.no_text))
        return pb.ScrollResponse(
            documents=self._documents_to_pb(collection, documents, fields),
            next_cursor=convert.cursor_to_pb(documents[-1].id) if len(documents) == limit else "")

    @staticmethod
    def _documents_to_pb(collection: Collection, documents: list[Any], fields: pb.Fields | None) -> list[pb.Document]:
        vectors = collection.chunk_vectors([d.id for d in documents]) if fields is not None and fields.vectors else {}
        return [convert.document_to_pb(d, fields, vectors.get(d.id)) for d in documents]

    # -- search -------------------------------------------------------------------------------

    def _request(self, request: pb.SearchRequest, field: str = "") -> tuple[Collection, SearchRequest]:
        """A search request checked once, whole: its collection (an alias resolved), top_k, the
        query, filter, min_score and mode (see Collection.request)."""
        collection = self._collection(request.collection, f"{field}collection")
        k = self._top_k(request.top_k, f"{field}top_k")
        if request.offset > 0 and request.offset + k > self.settings.max_top_k:
            raise InvalidArgument(f"{field}offset: offset + top_k is at most {self.settings.max_top_k}"
                                  f" (max_top_k), got {request.offset} + {k}")
        kind = request.WhichOneof("query")
        if kind != "vector" and not request.text.strip():
            raise InvalidArgument(f"{field}query: give query text or a vector; the query is empty")
        checked = collection.request(
            text=request.text if kind == "text" else None,
            vector=np.asarray(request.vector.values, dtype=np.float32) if kind == "vector" else None, k=k,
            flt=convert.filter_from_pb(request.filter, f"{field}filter") if request.HasField("filter") else None,
            min_score=convert.min_score_from_pb(request, f"{field}min_score"),
            mode=convert.mode_from_pb(request.mode, f"{field}mode"),
            ef_search=max(request.ef_search, 0), nprobe=max(request.nprobe, 0),
            max_terms=self.settings.max_query_terms, field=f"{field}query", vector_field=f"{field}vector",
            offset=request.offset, diversity=request.diversity, rerank=self._rerank(request, field),
            group_by=request.group_by,
            group_size=request.group_size, chunks_per_document=request.chunks_per_document,
        )
        if checked.group_by and (request.offset + k) * checked.group_size > self.settings.max_top_k:
            # A page's hits are bounded like any page's: at most max_top_k of them.
            raise InvalidArgument(f"{field}group_size: (offset + top_k) x group_size is at most"
                                  f" {self.settings.max_top_k} (max_top_k), got ({request.offset} + {k})"
                                  f" x {checked.group_size}")
        return collection, checked

    def _rerank(self, request: Any, field: str) -> Rerank | None:
        """A request's rerank stage, its model allowed as an embedding model must be (reach):
        a request names only what the operator let it load."""
        asked = convert.rerank_from_pb(request)
        if asked is None or asked.model in ("", rerank.OFF):
            return asked
        return replace(asked, model=self.reach.model(asked.model, f"{field}rerank.model"))

    def _search(self, collection: Collection, request: SearchRequest) -> SearchResult:
        result = collection.run(request)
        metrics.observe_timings(result.timings_ms)
        self._recall.maybe_check(collection, request.text or None, request.vector, request.k)
        if result.hits:
            metrics.TOP_SCORE.labels(collection.manifest.name).observe(result.hits[0].score)
        else:
            metrics.SEARCH_EMPTY.labels(collection.manifest.name).inc()
        return result

    def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        return convert.search_result_to_pb(self._search(*self._request(request)), _fields(request))

    def BatchSearch(self, request: pb.BatchSearchRequest, context: Any) -> pb.BatchSearchResponse:
        if len(request.requests) > self.settings.max_batch_searches:
            raise ResourceExhausted(
                f"requests: {len(request.requests)} searches in one batch; the limit is"
                f" {self.settings.max_batch_searches} (NEARDEX_MAX_BATCH_SEARCHES)")
        searches = self._encode_batch([self._request(r, f"requests[{i}].") for i, r in enumerate(request.requests)])
        responses = []
        for i, (r, (collection, search)) in enumerate(zip(request.requests, searches)):
            deadline.check(f"requests[{i}]")
            responses.append(convert.search_result_to_pb(self._search(collection, search), _fields(r)))
        return pb.BatchSearchResponse(responses=responses)

    @staticmethod
    def _encode_batch(searches: list[tuple[Collection, SearchRequest]]) -> list[tuple[Collection, SearchRequest]]:
        """The searches with the vector of every text that dense retrieval needs, one model call
        per collection."""
        waiting: dict[int, list[int]] = {}
        for i, (collection, search) in enumerate(searches):
            if search.needs_embedding:
                waiting.setdefault(id(collection), []).append(i)
        out = list(searches)
        for positions in waiting.values():
            collection = searches[positions[0]][0]
            vectors = collection.encode_queries([searches[i][1].text for i in positions])
            for i, vector in zip(positions, vectors):
                out[i] = (collection, replace(searches[i][1], vector=vector))
        return out

    def Ask(self, request: pb.AskRequest, context: Any) -> pb.AskResponse:
        collection = self._collection(request.collection)
        k = self._top_k(request.top_k, "top_k")
        result = self._answerer(collection).ask(
            request.question, k,
            flt=convert.filter_from_pb(request.filter) if request.HasField("filter") else None,
            mode=convert.mode_from_pb(request.mode), rerank=self._rerank(request, ""))
        metrics.observe_timings(result.timings_ms)
        return convert.ask_result_to_pb(result, _fields(request))

    def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        embedder, encode, prompt = self._model(request.collection)
        texts = self._texts(embedder, request.texts, "texts", self.settings.max_batch_documents, prompt)
        vectors = encode(texts)
        return pb.EmbedResponse(vectors=[pb.Vector(values=v.tolist()) for v in vectors],
                                dimension=embedder.dimension, model=embedder.name)

    def Similarity(self, request: pb.SimilarityRequest, context: Any) -> pb.SimilarityResponse:
        embedder, encode, prompt = self._model(request.collection)
        limit = self.settings.max_similarity_texts
        texts = self._texts(embedder, request.texts, "texts", limit, prompt)
        others = self._texts(embedder, request.others, "others", limit, prompt) if request.others else []
        # One model call for both lists, through the batching worker like every query.
        vectors = encode(texts + others)
        left, right = vectors[: len(texts)], vectors[len(texts):] if others else vectors
        matrix = np.clip(left @ right.T, -1.0, 1.0)
        return pb.SimilarityResponse(rows=[pb.Vector(values=row.tolist()) for row in matrix], model=embedder.name)

    def Tokenize(self, request: pb.TokenizeRequest, context: Any) -> pb.TokenizeResponse:
        if len(request.text) > MAX_TOKENIZE_CHARS:
            raise ResourceExhausted(f"text: {len(request.text)} characters; the limit is {MAX_TOKENIZE_CHARS}")
        analyzer = Analyzer(request.language) if request.language else None
        if request.collection:
            collection = self._collection(request.collection)
            embedder, chunker = collection.embedder, collection.chunker
            analyzer = analyzer or collection.store.analyzer
        else:
            embedder = self.catalog.embedder(None, self.settings.default_encoder)
            window = embedder.max_seq_length - 2
            chunker = Chunker(plain_tokenizer(embedder), window, default_overlap(window))
        analyzer = analyzer or Analyzer()
        # As a document is analysed: the language its own text is in (under auto).
        language = analyzer.language_of(request.text)
        encoding = plain_tokenizer(embedder).encode(request.text, add_special_tokens=False)
        window = embedder.max_seq_length - 2
        return pb.TokenizeResponse(
            terms=[pb.Term(text=t.text, start=t.start, end=t.end, term=t.term, stop=t.stop)
                   for t in analyzer.tokens(request.text, language)],
            analyzer=analyzer.language, language=language or "",
            tokens=[pb.Token(token=t, id=i, start=start, end=end)
                    for t, i, (start, end) in zip(encoding.tokens, encoding.ids, encoding.offsets)],
            count=len(encoding.ids), window=window, fits=len(encoding.ids) <= window,
            chunks=[pb.ChunkSpan(index=c.index, start=c.start, end=c.end, tokens=c.tokens)
                    for c in chunker.chunks(request.text)],
            model=embedder.name)

    def SearchSimilar(self, request: pb.SearchSimilarRequest, context: Any) -> pb.SearchResponse:
        collection = self._collection(request.collection)
        for field, ids in (("positive", request.positive), ("negative", request.negative)):
            for i, doc_id in enumerate(ids):
                if not doc_id:
                    raise InvalidArgument(f"{field}[{i}]: must not be empty")
        result = collection.similar(
            list(request.positive), list(request.negative), self._top_k(request.top_k, "top_k"),
            flt=convert.filter_from_pb(request.filter) if request.HasField("filter") else None,
            min_score=convert.min_score_from_pb(request),
            ef_search=max(request.ef_search, 0), nprobe=max(request.nprobe, 0))
        metrics.observe_timings(result.timings_ms)
        return convert.search_result_to_pb(result, _fields(request))

    def _model(self, collection_name: str) -> tuple[Embedder, Callable[[Sequence[str]], np.ndarray], str]:
        """The model a request names through its collection (the server's default without one),
        the encoder its queries go through, and the prompt that encoder puts before them."""
        if collection_name:
            collection = self._collection(collection_name)
            return collection.embedder, collection.encode_queries, collection.prompts.query
        embedder = self.catalog.embedder(None, self.settings.default_encoder)
        return embedder, self.catalog.model_calls(embedder).queries, ""

    @staticmethod
    def _texts(embedder: Embedder, texts: Any, field: str, limit: int, prompt: str = "") -> list[str]:
        """Texts to embed as queries: at least one, at most `limit`, none empty or past the window
        (with the query prompt)."""
        if not texts:
            raise InvalidArgument(f"{field}: give at least one text")
        if len(texts) > limit:
            raise ResourceExhausted(f"{field}: {len(texts)} texts; the limit is {limit}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"{field}[{i}]: must not be empty")
            check_fits(embedder, text, f"{field}[{i}]", prompt)
        return list(texts)

    def _answerer(self, collection: Collection) -> Answerer:
        with self._answerers_lock:
            answerer = self._answerers.get(collection.manifest.name)
            if answerer is None or answerer.collection is not collection:
                # The server's cross-encoder is its questions' default rerank (over every passage
                # read), after a request's own and the collection's.
                default = Rerank(self.settings.cross_encoder) if self.settings.cross_encoder else None
                answerer = Answerer(collection, default, self.settings.ask_sentence_weight,
                                    self.settings.max_query_terms)
                self._answerers[collection.manifest.name] = answerer
            return answerer

    # -- helpers ------------------------------------------------------------------------------

    def _collection(self, name: str, field: str = "collection") -> Collection:
        return self.catalog.get(validate_name(name, field))

    def _top_k(self, k: int, field: str) -> int:
        if not 1 <= k <= self.settings.max_top_k:
            raise InvalidArgument(f"{field}: must be between 1 and {self.settings.max_top_k}, got {k}")
        return k

    @staticmethod
    def _sizes(collection: Collection) -> None:
        stats = collection.stats()
        metrics.set_collection_sizes(collection.manifest.name, stats.documents, stats.chunks, stats.vectors)


def _fields(request: Any) -> pb.Fields | None:
    """A request's field selection; None when it asks for the default."""
    return request.fields if request.HasField("fields") else None
