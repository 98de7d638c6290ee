"""The neardex.v1.Neardex servicer: validates requests and hands them to the catalog.

Keys, limits, deadlines and status codes are the gate's (gate.py): every method here may simply
raise the domain errors of neardex.indexer.errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from neardex.indexer.answers import Answerer
from neardex.indexer.catalog import Catalog, validate_name
from neardex.indexer.collection import Collection, SearchResult
from neardex.indexer.embedder import check_fits
from neardex.indexer.errors import InvalidArgument, ResourceExhausted
from neardex.indexer.vector_index import IndexSpec
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

from . import convert, metrics
from .quality import RecallSampler
from .settings import Settings

log = logging.getLogger("neardex.server")
DEFAULT_SCROLL_LIMIT = 100


class NeardexService(neardex_pb2_grpc.NeardexServicer):
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self._answerers: dict[str, Answerer] = {}
        self._answerers_lock = threading.Lock()
        self._loaded_cross_encoder: Any = None
        self._recall = RecallSampler(settings.recall_sample_rate)
        for name in catalog.names():
            try:
                self._sizes(catalog.get(name))
            except Exception:  # noqa: BLE001 - one broken collection must not stop the server
                log.exception("collection %s could not be opened", name)

    # -- collections --------------------------------------------------------------------------

    def CreateCollection(self, request: pb.CreateCollectionRequest, context: Any) -> pb.CollectionInfo:
        spec = IndexSpec.parse(request.index.kind or "flat", dict(request.index.params))
        collection = self.catalog.create(
            validate_name(request.name),
            model=request.model or None,
            index=spec,
            chunk_tokens=request.chunk_tokens,
            overlap_tokens=request.overlap_tokens if request.overlap_tokens or request.chunk_tokens else -1,
            default_mode=convert.mode_from_pb(request.default_mode, "default_mode"),
            encoder=request.encoder,
        )
        self._sizes(collection)
        return convert.collection_to_pb(collection)

    def ListCollections(self, request: pb.ListCollectionsRequest, context: Any) -> pb.ListCollectionsResponse:
        return pb.ListCollectionsResponse(
            collections=[convert.collection_to_pb(self.catalog.get(n)) for n in self.catalog.names()])

    def GetCollection(self, request: pb.GetCollectionRequest, context: Any) -> pb.CollectionInfo:
        return convert.collection_to_pb(self.catalog.get(request.name))

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

    def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteResponse:
        collection = self._collection(request.collection)
        deleted = collection.delete(list(request.ids))
        self._sizes(collection)
        return pb.DeleteResponse(deleted=deleted)

    def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        found, missing = self._collection(request.collection).get(list(request.ids))
        fields = request.fields if request.HasField("fields") else None
        return pb.GetResponse(documents=[convert.document_to_pb(d, fields) for d in found], missing=missing)

    def Count(self, request: pb.CountRequest, context: Any) -> pb.CountResponse:
        collection = self._collection(request.collection)
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        return pb.CountResponse(count=collection.count(flt))

    def Scroll(self, request: pb.ScrollRequest, context: Any) -> pb.ScrollResponse:
        collection = self._collection(request.collection)
        limit = request.limit or DEFAULT_SCROLL_LIMIT
        if not 1 <= limit <= self.settings.max_batch_documents:
            raise InvalidArgument(f"limit: must be between 1 and {self.settings.max_batch_documents}, got {limit}")
        flt = convert.filter_from_pb(request.filter) if request.HasField("filter") else None
        fields = request.fields if request.HasField("fields") else None
        documents = collection.scroll(convert.cursor_from_pb(request.cursor), limit, flt,
                                      text=not (fields and fields.no_text))
        return pb.ScrollResponse(
            documents=[convert.document_to_pb(d, fields) for d in documents],
            next_cursor=convert.cursor_to_pb(documents[-1].id) if len(documents) == limit else "")

    # -- search -------------------------------------------------------------------------------

    def _search(self, request: pb.SearchRequest, field: str = "",
                encoded: np.ndarray | None = None) -> SearchResult:
        """One search; `encoded` is the query text's vector when the caller embedded it already."""
        collection = self._collection(request.collection, f"{field}collection")
        k = self._top_k(request.top_k, f"{field}top_k")
        kind = request.WhichOneof("query")
        text = request.text if kind == "text" else None
        vector = encoded
        if kind == "vector":
            vector = collection.check_vector(np.asarray(request.vector.values, dtype=np.float32))
        elif not (text or "").strip():
            raise InvalidArgument(f"{field}query: give query text or a vector; the query is empty")
        result = collection.search(
            text=text, vector=vector, k=k,
            flt=convert.filter_from_pb(request.filter) if request.HasField("filter") else None,
            min_score=request.min_score if request.HasField("min_score") else None,
            mode=convert.mode_from_pb(request.mode, f"{field}mode"),
            ef_search=max(request.ef_search, 0), nprobe=max(request.nprobe, 0),
        )
        metrics.observe_timings(result.timings_ms)
        self._recall.maybe_check(collection, text, vector, k)
        if result.hits:
            metrics.TOP_SCORE.labels(collection.manifest.name).observe(result.hits[0].score)
        else:
            metrics.SEARCH_EMPTY.labels(collection.manifest.name).inc()
        return result

    def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        return convert.search_result_to_pb(self._search(request))

    def BatchSearch(self, request: pb.BatchSearchRequest, context: Any) -> pb.BatchSearchResponse:
        if len(request.requests) > self.settings.max_batch_searches:
            raise ResourceExhausted(
                f"requests: {len(request.requests)} searches in one batch; the limit is"
                f" {self.settings.max_batch_searches} (NEARDEX_MAX_BATCH_SEARCHES)")
        encoded = self._encode_batch(request.requests)
        return pb.BatchSearchResponse(responses=[
            convert.search_result_to_pb(self._search(r, f"requests[{i}].", encoded.get(i)))
            for i, r in enumerate(request.requests)])

    def _encode_batch(self, requests: Any) -> dict[int, np.ndarray]:
        """The vectors of every text query that dense retrieval needs, one model call per
        collection, by request index."""
        texts: dict[str, list[tuple[int, str]]] = {}
        for i, r in enumerate(requests):
            if r.WhichOneof("query") != "text" or not r.text.strip():
                continue  # a vector query, or an empty one _search refuses
            collection = self._collection(r.collection, f"requests[{i}].collection")
            if collection.resolve_mode(convert.mode_from_pb(r.mode, f"requests[{i}].mode")) == "lexical":
                continue
            check_fits(collection.embedder, r.text, f"requests[{i}].query")
            texts.setdefault(r.collection, []).append((i, r.text))
        encoded: dict[int, np.ndarray] = {}
        for name, items in texts.items():
            vectors = self.catalog.get(name).encode_queries([t for _, t in items])
            encoded.update({i: v for (i, _), v in zip(items, vectors)})
        return encoded

    def Ask(self, request: pb.AskRequest, context: Any) -> pb.AskResponse:
        collection = self._collection(request.collection)
        k = self._top_k(request.top_k, "top_k")
        result = self._answerer(collection).ask(
            request.question, k,
            flt=convert.filter_from_pb(request.filter) if request.HasField("filter") else None,
            mode=convert.mode_from_pb(request.mode))
        metrics.observe_timings(result.timings_ms)
        return convert.ask_result_to_pb(result)

    def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        if not request.texts:
            raise InvalidArgument("texts: give at least one text")
        if len(request.texts) > self.settings.max_batch_documents:
            raise ResourceExhausted(f"texts: {len(request.texts)} texts; the limit is"
                                    f" {self.settings.max_batch_documents}")
        if request.collection:
            collection = self._collection(request.collection)
            embedder, encode = collection.embedder, collection.encode_queries
        else:
            embedder = self.catalog.embedder(None, self.settings.default_encoder)
            encode = self.catalog.query_encoder(embedder)
        for i, text in enumerate(request.texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{i}]: must not be empty")
            check_fits(embedder, text, f"texts[{i}]")
        vectors = encode(list(request.texts))
        return pb.EmbedResponse(vectors=[pb.Vector(values=v.tolist()) for v in vectors],
                                dimension=embedder.dimension, model=embedder.name)

    def _answerer(self, collection: Collection) -> Answerer:
        with self._answerers_lock:
            answerer = self._answerers.get(collection.manifest.name)
            if answerer is None or answerer.collection is not collection:
                answerer = Answerer(collection, self._cross_encoder(), self.settings.ask_sentence_weight)
                self._answerers[collection.manifest.name] = answerer
            return answerer

    def _cross_encoder(self) -> Any:
        if not self.settings.cross_encoder:
            return None
        if self._loaded_cross_encoder is None:
            from sentence_transformers import CrossEncoder

            self._loaded_cross_encoder = CrossEncoder(self.settings.cross_encoder, device="cpu",
                                                      local_files_only=True)
        return self._loaded_cross_encoder

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
