"""Blocking client for the neardex service."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from neardex.v1 import neardex_pb2_grpc

from . import _calls as calls
from . import convert
from .errors import AlreadyExists, NotFound, from_rpc_error
from .models import (
    Alias,
    AskResult,
    CollectionInfo,
    Document,
    GetResult,
    ScrollPage,
    SearchResult,
    Snapshot,
    Tokenization,
    UpsertResult,
)
from .retry import RetryPolicy, delay_or_raise

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Client"]


class Client:
    """A connection to a neardex server.

    ``timeout`` bounds each attempt of a call (a retried call may take longer in total) and can
    be overridden per call with ``timeout=``. Failures raise
    :class:`~neardex.client.errors.NeardexError` subclasses.

    ``api_key`` (default: ``$NEARDEX_API_KEY``) is sent with every call as
    ``authorization: Bearer KEY``. ``tls=True`` connects over TLS, trusting the system's CAs or
    ``ca_cert``; ``client_cert`` and ``client_key`` authenticate the client (mutual TLS). PEM
    arguments are paths or bytes. ``credentials`` takes ready-made gRPC channel credentials instead.

    ``target`` is one server (``"host:port"``, or any gRPC target such as ``"dns:///neardex:50051"``)
    or several (``"a:50051,b:50051"`` or a list), e.g. replicas over one Milvus-backed collection:
    calls are spread round-robin over every address, and a server that goes away is skipped.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float = calls.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        options: list[tuple[str, Any]] | None = None,
        max_message_bytes: int = calls.DEFAULT_MAX_MESSAGE_BYTES,
        api_key: str | None = None,
        tls: bool = False,
        ca_cert: calls.PemSource | None = None,
        client_cert: calls.PemSource | None = None,
        client_key: calls.PemSource | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._settings = calls.Settings.make(
            timeout, retry, options, max_message_bytes, api_key=api_key, tls=tls, ca_cert=ca_cert,
            client_cert=client_cert, client_key=client_key, credentials=credentials)
        self.target = target if isinstance(target, str) else ",".join(target)
        opts, creds = self._settings.options, self._settings.credentials
        self._channel = (
            grpc.secure_channel(calls.channel_target(target), creds, options=opts)
            if creds is not None
            else grpc.insecure_channel(calls.channel_target(target), options=opts)
        )
        self._stub = neardex_pb2_grpc.NeardexStub(self._channel)  # type: ignore[no-untyped-call]
        self._health_check = self._channel.unary_unary(convert.HEALTH_CHECK_METHOD)

    def __repr__(self) -> str:
        return self._settings.describe("Client", self.target)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _invoke(self, call: calls.Prepared[calls.OutT], timeout: float | None) -> calls.OutT:
        method = getattr(self._stub, call.method)
        deadline = self._settings.deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = method(call.request, timeout=deadline, metadata=self._settings.metadata)
            except grpc.RpcError as err:
                time.sleep(delay_or_raise(self._settings.retry, err, call.idempotent, attempt))
            else:
                return call.parse(response)

    # -- collections ----------------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        *,
        model: str | None = None,
        index: str | Mapping[str, Any] | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
        default_mode: str | None = None,
        encoder: str | None = None,
        dimension: int | None = None,
        indexed_keys: Iterable[str] | None = None,
        store: str | None = None,
        exist_ok: bool = False,
        timeout: float | None = None,
    ) -> CollectionInfo:
        """``index`` is a kind ("flat", "hnsw", "ivfpq", "auto") or ``{"kind": ..., **params}``.
        ``indexed_keys`` names metadata keys whose filters use an index. ``model="none"`` with a
        ``dimension`` makes a collection of your own vectors: each document
        brings its ``vector`` (text optional, for lexical search); vectors are scaled to unit length
        and scores are cosines. ``store`` puts the collection's data in a Milvus instance
        (``"milvus://host:19530"``, or a milvus-lite file on the server) instead of the server's data
        folder, so that every server pointed at that instance serves it. With ``exist_ok`` an existing collection is returned as it is,
        whatever its settings."""
        prepared = calls.CREATE_COLLECTION.prepare(
            name,
            model=model,
            index=index,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            default_mode=default_mode,
            encoder=encoder,
            dimension=dimension,
            indexed_keys=indexed_keys,
            store=store,
        )
        try:
            return self._invoke(prepared, timeout)
        except AlreadyExists:
            if not exist_ok:
                raise
        return self.info(name, timeout=timeout)

    def collections(self, *, timeout: float | None = None) -> list[CollectionInfo]:
        return self._invoke(calls.LIST_COLLECTIONS.prepare(), timeout)

    def info(self, name: str, *, timeout: float | None = None) -> CollectionInfo:
        return self._invoke(calls.GET_COLLECTION.prepare(name), timeout)

    def collection_exists(self, name: str, *, timeout: float | None = None) -> bool:
        """Whether a collection of that name exists (an alias counts)."""
        try:
            self.info(name, timeout=timeout)
        except NotFound:
            return False
        return True

    def index_metadata(
        self, collection: str, keys: str | Iterable[str], *, timeout: float | None = None
    ) -> CollectionInfo:
        """Answer filters on these metadata keys from an index from now on (a filter on a key
        that is not indexed reads every document's metadata)."""
        return self._invoke(calls.INDEX_METADATA.prepare(collection, keys), timeout)

    def delete_collection(self, name: str, *, timeout: float | None = None) -> None:
        self._invoke(calls.DELETE_COLLECTION.prepare(name), timeout)

    # -- aliases and snapshots ------------------------------------------------------------------

    def create_alias(
        self, name: str, collection: str, *, replace: bool = False, timeout: float | None = None
    ) -> Alias:
        """Another name for a collection; with ``replace`` an existing alias switches to it in one step."""
        return self._invoke(calls.CREATE_ALIAS.prepare(name, collection, replace=replace), timeout)

    def delete_alias(self, name: str, *, timeout: float | None = None) -> None:
        self._invoke(calls.DELETE_ALIAS.prepare(name), timeout)

    def aliases(self, collection: str | None = None, *, timeout: float | None = None) -> list[Alias]:
        return self._invoke(calls.LIST_ALIASES.prepare(collection), timeout)

    def create_snapshot(self, collection: str, *, timeout: float | None = None) -> Snapshot:
        """A consistent copy of the collection in one file on the server, taken while writes go on."""
        return self._invoke(calls.CREATE_SNAPSHOT.prepare(collection), timeout)

    def snapshots(self, collection: str, *, timeout: float | None = None) -> list[Snapshot]:
        return self._invoke(calls.LIST_SNAPSHOTS.prepare(collection), timeout)

    def delete_snapshot(self, collection: str, name: str, *, timeout: float | None = None) -> None:
        self._invoke(calls.DELETE_SNAPSHOT.prepare(collection, name), timeout)

    def restore_snapshot(
        self,
        collection: str,
        snapshot: str,
        *,
        target: str | None = None,
        replace: bool = False,
        timeout: float | None = None,
    ) -> CollectionInfo:
        """The collection as the snapshot holds it, as ``target`` (default: ``collection``; ``replace`` puts it in place of an existing one)."""
        prepared = calls.RESTORE_SNAPSHOT.prepare(collection, snapshot, target=target, replace=replace)
        return self._invoke(prepared, timeout)

    # -- documents ------------------------------------------------------------------------------

    def upsert(
        self,
        collection: str,
        documents: Iterable[Document | Mapping[str, Any]],
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> UpsertResult:
        """Writes documents in batches of ``batch_size``, one Upsert call each, consuming
        ``documents`` lazily. Each batch is durable once its call returns: on failure, the
        batches before it stay written."""
        total = UpsertResult()
        for request in calls.upsert_batches(collection, documents, batch_size):
            total += self._invoke(calls.UPSERT.for_request(request), timeout)
        return total

    def upsert_stream(
        self,
        collection: str,
        documents: Iterable[Document | Mapping[str, Any]],
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> Iterator[UpsertResult]:
        """Sends all batches over one UpsertStream call and yields each batch's acknowledgement
        as it arrives. ``timeout`` bounds the whole stream, so give large uploads a larger one.
        The stream is not retried."""
        requests = calls.upsert_batches(collection, documents, batch_size)
        return self._stream(calls.UPSERT_STREAM, requests, self._settings.deadline(timeout))

    def _stream(
        self,
        rpc: calls.Rpc[Any, Any, Any, calls.OutT],
        requests: Iterator[Any],
        deadline: float,
    ) -> Iterator[calls.OutT]:
        feed = calls.StreamFeed()
        responses = getattr(self._stub, rpc.method)(
            feed.requests(requests), timeout=deadline, metadata=self._settings.metadata
        )
        try:
            for response in responses:
                yield rpc.parse(response)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            # Stops the call when the caller abandons the iteration early.
            responses.cancel()
        feed.raise_error()

    def delete(
        self,
        collection: str,
        ids: str | Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Deletes documents by id, or those matching ``filter`` (never an empty one); returns how
        many existed."""
        return self._invoke(calls.DELETE.prepare(collection, ids, filter=filter), timeout)

    def get(
        self,
        collection: str,
        ids: str | Iterable[str],
        *,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        vectors: bool = False,
        timeout: float | None = None,
    ) -> GetResult:
        """Documents by id, in the order asked; ``text=False`` leaves texts out, ``metadata=False``
        leaves metadata out and a list of keys keeps only those."""
        return self._invoke(calls.GET.prepare(collection, ids, text=text, metadata=metadata, vectors=vectors), timeout)

    def count(
        self, collection: str, *, filter: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> int:
        """How many documents match ``filter`` (all of them without one)."""
        return self._invoke(calls.COUNT.prepare(collection, filter=filter), timeout)

    def scroll(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        vectors: bool = False,
        timeout: float | None = None,
    ) -> ScrollPage:
        """One page of documents in id order, ``limit`` at most; pass the page's ``next_cursor`` (and
        the same filter) for the next. Each page reads the collection as it is then."""
        prepared = calls.SCROLL.prepare(
            collection, filter=filter, limit=limit, cursor=cursor, text=text, metadata=metadata, vectors=vectors
        )
        return self._invoke(prepared, timeout)

    def scroll_all(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        page_size: int = 100,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> Iterator[Document]:
        """Every matching document, fetched a page at a time as the iteration goes; ``timeout``
        bounds each page."""
        cursor: str | None = None
        while True:
            page = self.scroll(
                collection, filter=filter, limit=page_size, cursor=cursor, text=text, metadata=metadata,
                timeout=timeout,
            )
            yield from page.documents
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- retrieval ------------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: str | Sequence[float],
        *,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        mode: str | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> SearchResult:
        """``query`` is a text or a query vector. ``filter`` maps metadata keys to a value
        (equality), a list (membership) or an operator (see :func:`convert.filter_to_proto`);
        ``mode`` is "dense", "lexical", "hybrid" or None for the collection's default.
        ``text=False`` leaves the hits' texts out, ``metadata=False`` their metadata, and a list of
        keys keeps only those."""
        prepared = calls.SEARCH.prepare(
            collection,
            query,
            k=k,
            filter=filter,
            min_score=min_score,
            mode=mode,
            ef_search=ef_search,
            nprobe=nprobe,
            text=text,
            metadata=metadata,
        )
        return self._invoke(prepared, timeout)

    def batch_search(
        self,
        collection: str,
        queries: Sequence[str | Sequence[float]],
        *,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        mode: str | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> list[SearchResult]:
        """Several queries with the same options in one call; results in query order."""
        prepared = calls.BATCH_SEARCH.prepare(
            collection,
            queries,
            k=k,
            filter=filter,
            min_score=min_score,
            mode=mode,
            ef_search=ef_search,
            nprobe=nprobe,
            text=text,
            metadata=metadata,
        )
        return self._invoke(prepared, timeout)

    def ask(
        self,
        collection: str,
        question: str,
        *,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> AskResult:
        """Passages likely to answer ``question``, each with its answering sentence."""
        prepared = calls.ASK.prepare(
            collection, question, k=k, filter=filter, mode=mode, text=text, metadata=metadata
        )
        return self._invoke(prepared, timeout)

    def embed(
        self,
        texts: Sequence[str],
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """Embeds texts with the collection's model, or the server's default model."""
        return self._invoke(calls.EMBED.prepare(texts, collection=collection), timeout)

    def similar(
        self,
        collection: str,
        positive: str | Iterable[str],
        *,
        negative: str | Iterable[str] | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> SearchResult:
        """Documents like the stored ``positive`` ones (and unlike ``negative``), from their
        stored vectors: each document counts as the mean of its chunks' vectors, and the query is
        2 x mean(positive) - mean(negative). The given documents are not among the hits."""
        prepared = calls.SEARCH_SIMILAR.prepare(
            collection,
            positive,
            negative=negative,
            k=k,
            filter=filter,
            min_score=min_score,
            ef_search=ef_search,
            nprobe=nprobe,
            text=text,
            metadata=metadata,
        )
        return self._invoke(prepared, timeout)

    def similarity(
        self,
        texts: Sequence[str],
        others: Sequence[str] | None = None,
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """The cosine similarity of each of ``texts`` with each of ``others`` (with each other when
        ``others`` is None), from the collection's model or the server's default: a list of rows."""
        return self._invoke(calls.SIMILARITY.prepare(texts, others, collection=collection), timeout)

    def tokenize(
        self, text: str, *, collection: str | None = None, timeout: float | None = None
    ) -> Tokenization:
        """The model's subword tokens of ``text`` with their offsets, whether it fits one model
        call, and the chunks the collection (or the default chunking) would cut it into."""
        return self._invoke(calls.TOKENIZE.prepare(text, collection=collection), timeout)

    # -- health ---------------------------------------------------------------------------------

    def health(self, *, timeout: float | None = None) -> bool:
        """Whether the server reports SERVING on the standard grpc.health.v1 service. Not
        retried: a probe reports the present state."""
        try:
            payload = self._health_check(
                convert.HEALTH_CHECK_REQUEST, timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            return calls.health_from_error(err)
        return convert.health_serving(payload)
