"""asyncio client for the neardex service: :class:`neardex.client.Client` with awaitable methods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

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

__all__ = ["AsyncClient"]

Documents = Iterable[Document | Mapping[str, Any]] | AsyncIterable[Document | Mapping[str, Any]]


class AsyncClient:
    """A connection to a neardex server for asyncio code; create it inside a running event loop.

    Same arguments, methods and errors as :class:`neardex.client.Client`; ``upsert`` and
    ``upsert_stream`` also take async iterables.
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
            grpc.aio.secure_channel(calls.channel_target(target), creds, options=opts)
            if creds is not None
            else grpc.aio.insecure_channel(calls.channel_target(target), options=opts)
        )
        self._stub = neardex_pb2_grpc.NeardexStub(self._channel)  # type: ignore[no-untyped-call]
        self._health_check = self._channel.unary_unary(convert.HEALTH_CHECK_METHOD)

    def __repr__(self) -> str:
        return self._settings.describe("AsyncClient", self.target)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _invoke(self, call: calls.Prepared[calls.OutT], timeout: float | None) -> calls.OutT:
        method = getattr(self._stub, call.method)
        deadline = self._settings.deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await method(call.request, timeout=deadline, metadata=self._settings.metadata)
            except grpc.RpcError as err:
                delay = delay_or_raise(self._settings.retry, err, call.idempotent, attempt)
                await asyncio.sleep(delay)
            else:
                return call.parse(response)

    # -- collections ----------------------------------------------------------------------------

    async def create_collection(
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
            return await self._invoke(prepared, timeout)
        except AlreadyExists:
            if not exist_ok:
                raise
        return await self.info(name, timeout=timeout)

    async def collections(self, *, timeout: float | None = None) -> list[CollectionInfo]:
        return await self._invoke(calls.LIST_COLLECTIONS.prepare(), timeout)

    async def info(self, name: str, *, timeout: float | None = None) -> CollectionInfo:
        return await self._invoke(calls.GET_COLLECTION.prepare(name), timeout)

    async def collection_exists(self, name: str, *, timeout: float | None = None) -> bool:
        try:
            await self.info(name, timeout=timeout)
        except NotFound:
            return False
        return True

    async def index_metadata(
        self, collection: str, keys: str | Iterable[str], *, timeout: float | None = None
    ) -> CollectionInfo:
        return await self._invoke(calls.INDEX_METADATA.prepare(collection, keys), timeout)

    async def delete_collection(self, name: str, *, timeout: float | None = None) -> None:
        await self._invoke(calls.DELETE_COLLECTION.prepare(name), timeout)

    # -- aliases and snapshots ------------------------------------------------------------------

    async def create_alias(
        self, name: str, collection: str, *, replace: bool = False, timeout: float | None = None
    ) -> Alias:
        return await self._invoke(calls.CREATE_ALIAS.prepare(name, collection, replace=replace), timeout)

    async def delete_alias(self, name: str, *, timeout: float | None = None) -> None:
        await self._invoke(calls.DELETE_ALIAS.prepare(name), timeout)

    async def aliases(self, collection: str | None = None, *, timeout: float | None = None) -> list[Alias]:
        return await self._invoke(calls.LIST_ALIASES.prepare(collection), timeout)

    async def create_snapshot(self, collection: str, *, timeout: float | None = None) -> Snapshot:
        return await self._invoke(calls.CREATE_SNAPSHOT.prepare(collection), timeout)

    async def snapshots(self, collection: str, *, timeout: float | None = None) -> list[Snapshot]:
        return await self._invoke(calls.LIST_SNAPSHOTS.prepare(collection), timeout)

    async def delete_snapshot(self, collection: str, name: str, *, timeout: float | None = None) -> None:
        await self._invoke(calls.DELETE_SNAPSHOT.prepare(collection, name), timeout)

    async def restore_snapshot(
        self,
        collection: str,
        snapshot: str,
        *,
        target: str | None = None,
        replace: bool = False,
        timeout: float | None = None,
    ) -> CollectionInfo:
        prepared = calls.RESTORE_SNAPSHOT.prepare(collection, snapshot, target=target, replace=replace)
        return await self._invoke(prepared, timeout)

    # -- documents ------------------------------------------------------------------------------

    async def upsert(
        self,
        collection: str,
        documents: Documents,
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> UpsertResult:
        total = UpsertResult()
        async for request in calls.aupsert_batches(collection, documents, batch_size):
            total += await self._invoke(calls.UPSERT.for_request(request), timeout)
        return total

    def upsert_stream(
        self,
        collection: str,
        documents: Documents,
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> AsyncIterator[UpsertResult]:
        """Use with ``async for``; see :meth:`neardex.client.Client.upsert_stream`."""
        requests = calls.aupsert_batches(collection, documents, batch_size)
        return self._stream(calls.UPSERT_STREAM, requests, self._settings.deadline(timeout))

    async def _stream(
        self,
        rpc: calls.Rpc[Any, Any, Any, calls.OutT],
        requests: AsyncIterator[Any],
        deadline: float,
    ) -> AsyncIterator[calls.OutT]:
        feed = calls.StreamFeed()
        call = getattr(self._stub, rpc.method)(
            feed.arequests(requests), timeout=deadline, metadata=self._settings.metadata
        )
        try:
            async for response in call:
                yield rpc.parse(response)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            # Stops the call when the caller abandons the iteration early.
            call.cancel()
        feed.raise_error()

    async def delete(
        self,
        collection: str,
        ids: str | Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> int:
        return await self._invoke(calls.DELETE.prepare(collection, ids, filter=filter), timeout)

    async def get(
        self,
        collection: str,
        ids: str | Iterable[str],
        *,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        vectors: bool = False,
        timeout: float | None = None,
    ) -> GetResult:
        return await self._invoke(calls.GET.prepare(collection, ids, text=text, metadata=metadata, vectors=vectors), timeout)

    async def count(
        self, collection: str, *, filter: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> int:
        """How many documents match ``filter`` (all of them without one)."""
        return await self._invoke(calls.COUNT.prepare(collection, filter=filter), timeout)

    async def scroll(
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
        prepared = calls.SCROLL.prepare(
            collection, filter=filter, limit=limit, cursor=cursor, text=text, metadata=metadata, vectors=vectors
        )
        return await self._invoke(prepared, timeout)

    async def scroll_all(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        page_size: int = 100,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> AsyncIterator[Document]:
        """Every matching document, page after page (see :meth:`Client.scroll_all`)."""
        cursor: str | None = None
        while True:
            page = await self.scroll(
                collection, filter=filter, limit=page_size, cursor=cursor, text=text, metadata=metadata,
                timeout=timeout,
            )
            for document in page.documents:
                yield document
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- retrieval ------------------------------------------------------------------------------

    async def search(
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
        return await self._invoke(prepared, timeout)

    async def batch_search(
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
        return await self._invoke(prepared, timeout)

    async def ask(
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
        prepared = calls.ASK.prepare(
            collection, question, k=k, filter=filter, mode=mode, text=text, metadata=metadata
        )
        return await self._invoke(prepared, timeout)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        return await self._invoke(calls.EMBED.prepare(texts, collection=collection), timeout)

    async def similar(
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
        return await self._invoke(prepared, timeout)

    async def similarity(
        self,
        texts: Sequence[str],
        others: Sequence[str] | None = None,
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        return await self._invoke(calls.SIMILARITY.prepare(texts, others, collection=collection), timeout)

    async def tokenize(
        self, text: str, *, collection: str | None = None, timeout: float | None = None
    ) -> Tokenization:
        return await self._invoke(calls.TOKENIZE.prepare(text, collection=collection), timeout)

    # -- health ---------------------------------------------------------------------------------

    async def health(self, *, timeout: float | None = None) -> bool:
        try:
            payload = await self._health_check(
                convert.HEALTH_CHECK_REQUEST, timeout=self._settings.deadline(timeout),
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as err:
            return calls.health_from_error(err)
        return convert.health_serving(payload)
