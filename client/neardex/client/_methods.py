"""Every public method of :class:`~neardex.client.Client` and :class:`~neardex.client.AsyncClient`,
written once.

A method here is a plan: a generator that yields what it needs done (invoke this RPC, pull the
next batch, probe health) and gets the answer back, holding all the argument handling and
control flow (``exist_ok``, counting batches, following cursors) but no I/O. Each client is a
transport that runs plans: the blocking one calls and sleeps, the asyncio one awaits. When a
transport class is defined, every plan becomes one of its methods (a plain method there, an
``async def`` here), carrying the plan's signature and docstring, so the two clients cannot drift
apart: there is nothing to keep in step.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import grpc

from neardex.v1 import neardex_pb2_grpc

from . import _calls as calls
from . import convert
from .errors import AlreadyExists, NotFound
from .models import (
    Alias,
    AskResult,
    CollectionInfo,
    Document,
    FacetResult,
    GetResult,
    Migration,
    ScrollPage,
    SearchResult,
    Snapshot,
    Tokenization,
    UpdateMetadataResult,
    UpsertResult,
)
from .retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .aio import AsyncClient
    from .client import Client

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# What upsert and upsert_stream take; async iterables only on AsyncClient.
Documents = Iterable[Document | Mapping[str, Any]] | AsyncIterable[Document | Mapping[str, Any]]


# ---------------------------------------------------------------------------------------------
# What a plan asks its transport to do


@dataclass(frozen=True)
class Invoke(Generic[R]):
    """Send one request, retrying as the settings say; answers the parsed response or raises
    the mapped :class:`~neardex.client.errors.NeardexError` into the plan."""

    call: calls.Prepared[R]
    timeout: float | None


@dataclass(frozen=True)
class Batches:
    """Open the UpsertRequests of ``documents`` (checking the arguments at once); answers an
    iterator, an async one on the asyncio transport."""

    collection: str
    documents: Documents
    batch_size: int


@dataclass(frozen=True)
class Pull:
    """The next request of an opened :class:`Batches`, or None at the end."""

    source: Any


@dataclass(frozen=True)
class Probe:
    """One standard health check, never retried; answers its payload or raises the
    ``grpc.RpcError`` into the plan."""

    deadline: float


@dataclass(frozen=True)
class Emit(Generic[T]):
    """Hand these items to the caller of an iterating method."""

    items: Sequence[T]


@dataclass(frozen=True)
class Relay(Generic[T]):
    """A streaming call: every batch over one stream, each acknowledgement to the caller."""

    rpc: calls.Rpc[Any, Any, Any, T]
    batches: Batches
    deadline: float


Plan = Generator[Any, Any, R]
# An iterating method's plan: it invokes calls and emits items of type T.
Items = Generator[Invoke[Any] | Emit[T], Any, None]


def advance(plan: Generator[Any, Any, Any], answer: Any, error: Exception | None) -> Any:
    """The plan's next step, once the last one is answered or has failed (the error is raised
    inside the plan, which may handle it); StopIteration when the plan has ended."""
    return plan.throw(error) if error is not None else plan.send(answer)


# ---------------------------------------------------------------------------------------------
# The three kinds of method, as the type checker sees them on each client


class _Kind(Generic[P, R]):
    """A plan in the shared class; each transport class replaces it with a method of its own."""

    kind: str

    def __init__(self, plan: Callable[..., Any]) -> None:
        self.plan = plan
        functools.update_wrapper(self, plan)  # type: ignore[arg-type]

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        return self  # only ever read on the shared class itself


class unary(_Kind[P, R]):
    """A method that answers one value: ``R`` on Client, an awaitable ``R`` on AsyncClient."""

    kind = "unary"

    def __init__(self, plan: Callable[Concatenate[Any, P], Plan[R]]) -> None:
        super().__init__(plan)

    if TYPE_CHECKING:
        @overload  # type: ignore[override]
        def __get__(self, instance: Client, owner: type[Any] | None = None) -> Callable[P, R]: ...
        @overload
        def __get__(
            self, instance: AsyncClient, owner: type[Any] | None = None
        ) -> Callable[P, Coroutine[Any, Any, R]]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


class iterating(_Kind[P, R]):
    """A method that yields items as it fetches them, starting on the first ``next``:
    ``Iterator[R]`` on Client, ``AsyncIterator[R]`` on AsyncClient."""

    kind = "iterating"

    def __init__(self, plan: Callable[Concatenate[Any, P], Items[R]]) -> None:
        super().__init__(plan)

    if TYPE_CHECKING:
        @overload  # type: ignore[override]
        def __get__(self, instance: Client, owner: type[Any] | None = None) -> Callable[P, Iterator[R]]: ...
        @overload
        def __get__(self, instance: AsyncClient, owner: type[Any] | None = None) -> Callable[P, AsyncIterator[R]]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


class streaming(_Kind[P, R]):
    """A method that checks its arguments at once and returns the acknowledgements of one
    streaming call: ``Iterator[R]`` on Client, ``AsyncIterator[R]`` on AsyncClient."""

    kind = "streaming"

    def __init__(self, plan: Callable[Concatenate[Any, P], Relay[R]]) -> None:
        super().__init__(plan)

    if TYPE_CHECKING:
        @overload  # type: ignore[override]
        def __get__(self, instance: Client, owner: type[Any] | None = None) -> Callable[P, Iterator[R]]: ...
        @overload
        def __get__(self, instance: AsyncClient, owner: type[Any] | None = None) -> Callable[P, AsyncIterator[R]]: ...
        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


def _item_type(annotation: str) -> str:
    """``SearchResult`` from ``Plan[SearchResult]``: the type inside a plan's annotation."""
    return annotation[annotation.index("[") + 1 : annotation.rindex("]")]


# ---------------------------------------------------------------------------------------------
# The shared class


class Api:
    """Connection setup and every public call; a transport subclass supplies ``_connect`` (the
    channel), ``_adapt`` (a plan made a method of its kind) and the I/O the plans ask for."""

    # What an iterating or streaming method returns on this transport.
    _iterator_type = "Iterator"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in vars(Api):
            member = getattr(cls, name)
            if isinstance(member, _Kind):  # not yet a method of a transport above this class
                setattr(cls, name, cls._method(member))

    @classmethod
    def _method(cls, member: _Kind[Any, Any]) -> Callable[..., Any]:
        """The plan as a method of this transport, with the plan's name, docstring and signature
        (its return type as the caller sees it)."""
        method = cls._adapt(member.kind, member.plan)
        functools.update_wrapper(method, member.plan)
        signature = inspect.signature(member.plan)
        inner = _item_type(str(signature.return_annotation))
        returns = inner if member.kind == "unary" else f"{cls._iterator_type}[{inner}]"
        method.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
        method.__annotations__ = {**member.plan.__annotations__, "return": returns}
        return method

    @classmethod
    def _adapt(cls, kind: str, plan: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def _connect(self, target: str, credentials: grpc.ChannelCredentials | None,
                 options: list[tuple[str, Any]]) -> Any:
        raise NotImplementedError

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
        self._channel = self._connect(
            calls.channel_target(target), self._settings.credentials, self._settings.options
        )
        self._stub = neardex_pb2_grpc.NeardexStub(self._channel)  # type: ignore[no-untyped-call]
        self._health_check = self._channel.unary_unary(convert.HEALTH_CHECK_METHOD)

    def __repr__(self) -> str:
        return self._settings.describe(type(self).__name__, self.target)

    # -- collections ----------------------------------------------------------------------------

    @unary
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
        language: str | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        rerank: str | Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
        exist_ok: bool = False,
        timeout: float | None = None,
    ) -> Plan[CollectionInfo]:
        """``index`` is a kind ("flat", "hnsw", "ivfpq", "auto") or ``{"kind": ..., **params}``.
        ``indexed_keys`` names metadata keys whose filters use an index. ``model="none"`` with a
        ``dimension`` makes a collection of your own vectors: each document
        brings its ``vector`` (text optional, for lexical search); vectors are scaled to unit length
        and scores are cosines. ``store`` puts the collection's data in a Milvus instance
        (``"milvus://host:19530"``, or a milvus-lite file on the server) instead of the server's data
        folder, so that every server pointed at that instance serves it. ``model`` is the bundled
        model's name, a folder or a Hugging Face id (``"org/name"`` or ``"org/name@revision"``) the
        server may load. ``query_prompt`` and ``document_prompt`` go before each query and each
        document text the model embeds (``"query: "``, ``"passage: "`` for e5 models); None takes
        the model's own prompts, ``""`` none. ``language`` is its lexical analyzer's: "auto" (the
        default: each document and query in the language detected), "none" (case and diacritic
        folding only) or a Snowball language ("german" or "de"). ``rerank`` is its searches' and
        questions' default rerank stage (see :meth:`search`). Documents written without
        ``expires_at`` expire ``ttl_seconds`` after their write (None or 0: never): expired
        documents vanish from every read at once and are purged in the background. With ``exist_ok`` an existing
        collection is returned as it is, whatever its settings."""
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
            language=language,
            query_prompt=query_prompt,
            document_prompt=document_prompt,
            rerank=rerank,
            ttl_seconds=ttl_seconds,
        )
        try:
            return (yield Invoke(prepared, timeout))
        except AlreadyExists:
            if not exist_ok:
                raise
        return (yield Invoke(calls.GET_COLLECTION.prepare(name), timeout))

    @unary
    def collections(self, *, timeout: float | None = None) -> Plan[list[CollectionInfo]]:
        return (yield Invoke(calls.LIST_COLLECTIONS.prepare(), timeout))

    @unary
    def info(self, name: str, *, timeout: float | None = None) -> Plan[CollectionInfo]:
        return (yield Invoke(calls.GET_COLLECTION.prepare(name), timeout))

    @unary
    def collection_exists(self, name: str, *, timeout: float | None = None) -> Plan[bool]:
        """Whether a collection of that name exists (an alias counts)."""
        try:
            yield Invoke(calls.GET_COLLECTION.prepare(name), timeout)
        except NotFound:
            return False
        return True

    @unary
    def index_metadata(
        self, collection: str, keys: str | Iterable[str], *, timeout: float | None = None
    ) -> Plan[CollectionInfo]:
        """Answer filters on these metadata keys from an index from now on (a filter on a key
        that is not indexed reads every document's metadata)."""
        return (yield Invoke(calls.INDEX_METADATA.prepare(collection, keys), timeout))

    @unary
    def update_collection(
        self, name: str, *, language: str | None = None, ttl_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Plan[CollectionInfo]:
        """Change a collection's settings: ``language`` its lexical analyzer's (the lexical index
        is rebuilt in the background; ``lexical_language`` says which one answers meanwhile);
        ``ttl_seconds`` the lifetime of documents written from now on (0: none; documents
        stored keep their expiry). None leaves a setting as it is."""
        return (yield Invoke(calls.UPDATE_COLLECTION.prepare(name, language=language, ttl_seconds=ttl_seconds),
                             timeout))

    @unary
    def delete_collection(self, name: str, *, timeout: float | None = None) -> Plan[None]:
        yield Invoke(calls.DELETE_COLLECTION.prepare(name), timeout)

    # -- aliases and snapshots ------------------------------------------------------------------

    @unary
    def create_alias(
        self, name: str, collection: str, *, replace: bool = False, timeout: float | None = None
    ) -> Plan[Alias]:
        """Another name for a collection; with ``replace`` an existing alias switches to it in one step."""
        return (yield Invoke(calls.CREATE_ALIAS.prepare(name, collection, replace=replace), timeout))

    @unary
    def delete_alias(self, name: str, *, timeout: float | None = None) -> Plan[None]:
        yield Invoke(calls.DELETE_ALIAS.prepare(name), timeout)

    @unary
    def aliases(self, collection: str | None = None, *, timeout: float | None = None) -> Plan[list[Alias]]:
        return (yield Invoke(calls.LIST_ALIASES.prepare(collection), timeout))

    @unary
    def create_snapshot(self, collection: str, *, timeout: float | None = None) -> Plan[Snapshot]:
        """A consistent copy of the collection in one file on the server, taken while writes go on."""
        return (yield Invoke(calls.CREATE_SNAPSHOT.prepare(collection), timeout))

    @unary
    def snapshots(self, collection: str, *, timeout: float | None = None) -> Plan[list[Snapshot]]:
        return (yield Invoke(calls.LIST_SNAPSHOTS.prepare(collection), timeout))

    @unary
    def delete_snapshot(self, collection: str, name: str, *, timeout: float | None = None) -> Plan[None]:
        yield Invoke(calls.DELETE_SNAPSHOT.prepare(collection, name), timeout)

    @unary
    def restore_snapshot(
        self,
        collection: str,
        snapshot: str,
        *,
        target: str | None = None,
        replace: bool = False,
        store: str | None = None,
        timeout: float | None = None,
    ) -> Plan[CollectionInfo]:
        """The collection as the snapshot holds it, as ``target`` (default: ``collection``; ``replace`` puts it in place of an existing one), made in ``store`` ("local", or a Milvus instance the server may use; default: where the snapshot was taken)."""
        prepared = calls.RESTORE_SNAPSHOT.prepare(collection, snapshot, target=target, replace=replace, store=store)
        return (yield Invoke(prepared, timeout))

    @unary
    def migrate_collection(
        self,
        name: str,
        to: str | None = None,
        *,
        target: str | None = None,
        keep_as: str | None = None,
        timeout: float | None = None,
    ) -> Plan[Migration]:
        """Move collection ``name`` to store ``to`` ("local", or a Milvus instance the server may use) without embedding anything: copied as ``target`` (default NAME-milvus or NAME-local) while it goes on serving, then ``name`` and its aliases point at the copy and the source is kept as ``keep_as`` (default NAME-before-migrate). Called again (without ``to``) it goes on with one stopped midway. Give a ``timeout`` long enough for the copy."""
        prepared = calls.MIGRATE_COLLECTION.prepare(name, to, target=target, keep_as=keep_as)
        return (yield Invoke(prepared, timeout))

    # -- documents ------------------------------------------------------------------------------

    @unary
    def upsert(
        self,
        collection: str,
        documents: Documents,
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> Plan[UpsertResult]:
        """Writes documents in batches of ``batch_size``, one Upsert call each, consuming
        ``documents`` lazily (an async iterable too, on AsyncClient). Each batch is durable once
        its call returns: on failure, the batches before it stay written."""
        total = UpsertResult()
        requests = yield Batches(collection, documents, batch_size)
        while (request := (yield Pull(requests))) is not None:
            total += yield Invoke(calls.UPSERT.for_request(request), timeout)
        return total

    @streaming
    def upsert_stream(
        self,
        collection: str,
        documents: Documents,
        *,
        batch_size: int = calls.DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
    ) -> Relay[UpsertResult]:
        """Sends all batches over one UpsertStream call and yields each batch's acknowledgement
        as it arrives (use ``async for`` on AsyncClient). ``timeout`` bounds the whole stream, so
        give large uploads a larger one. The stream is not retried."""
        return Relay(
            calls.UPSERT_STREAM, Batches(collection, documents, batch_size), self._settings.deadline(timeout)
        )

    @unary
    def delete(
        self,
        collection: str,
        ids: str | Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Plan[int]:
        """Deletes documents by id, or those matching ``filter`` (never an empty one); returns how
        many existed."""
        return (yield Invoke(calls.DELETE.prepare(collection, ids, filter=filter), timeout))

    @unary
    def update_metadata(
        self,
        collection: str,
        ids: str | Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        set: Mapping[str, Any] | None = None,
        unset: str | Iterable[str] = (),
        replace: bool = False,
        timeout: float | None = None,
    ) -> Plan[UpdateMetadataResult]:
        """Changes the metadata of documents by id, or of those matching ``filter`` (never an empty
        one), without embedding anything: ``set`` gives keys (dotted paths reach inside objects) their
        values, ``unset`` removes keys, and ``replace=True`` makes the metadata exactly ``set``.
        Filters see the change at once; ids not stored come back in ``missing``."""
        prepared = calls.UPDATE_METADATA.prepare(collection, ids, filter=filter, set=set, unset=unset,
                                                 replace=replace)
        return (yield Invoke(prepared, timeout))

    @unary
    def get(
        self,
        collection: str,
        ids: str | Iterable[str],
        *,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        vectors: bool = False,
        timeout: float | None = None,
    ) -> Plan[GetResult]:
        """Documents by id, in the order asked; ``text=False`` leaves texts out, ``metadata=False``
        leaves metadata out and a list of keys keeps only those."""
        prepared = calls.GET.prepare(collection, ids, text=text, metadata=metadata, vectors=vectors)
        return (yield Invoke(prepared, timeout))

    @unary
    def count(
        self, collection: str, *, filter: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Plan[int]:
        """How many documents match ``filter`` (all of them without one)."""
        return (yield Invoke(calls.COUNT.prepare(collection, filter=filter), timeout))

    @unary
    def facet(
        self,
        collection: str,
        key: str,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int = 10,
        timeout: float | None = None,
    ) -> Plan[FacetResult]:
        """The ``limit`` most frequent values of metadata ``key`` (a dotted path, as in filters) among
        the documents matching ``filter`` (all without one), each with its number of documents;
        an array counts each distinct element once per document."""
        return (yield Invoke(calls.FACET.prepare(collection, key, filter=filter, limit=limit), timeout))

    @unary
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
    ) -> Plan[ScrollPage]:
        """One page of documents in id order, ``limit`` at most; pass the page's ``next_cursor`` (and
        the same filter) for the next. Each page reads the collection as it is then."""
        prepared = calls.SCROLL.prepare(
            collection, filter=filter, limit=limit, cursor=cursor, text=text, metadata=metadata, vectors=vectors
        )
        return (yield Invoke(prepared, timeout))

    @iterating
    def scroll_all(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        page_size: int = 100,
        text: bool = True,
        metadata: bool | Sequence[str] = True,
        timeout: float | None = None,
    ) -> Items[Document]:
        """Every matching document, fetched a page at a time as the iteration goes; ``timeout``
        bounds each page."""
        cursor: str | None = None
        while True:
            prepared = calls.SCROLL.prepare(
                collection, filter=filter, limit=page_size, cursor=cursor, text=text, metadata=metadata
            )
            page: ScrollPage = yield Invoke(prepared, timeout)
            yield Emit(page.documents)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- retrieval ------------------------------------------------------------------------------

    @unary
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
        offset: int = 0,
        diversity: float = 0.0,
        rerank: str | Mapping[str, Any] | None = None,
        group_by: str | None = None,
        group_size: int | None = None,
        chunks_per_document: int | None = None,
        timeout: float | None = None,
    ) -> Plan[SearchResult]:
        """``query`` is a text or a query vector. ``filter`` maps metadata keys to a value
        (equality), a list (membership) or an operator (see :func:`convert.filter_to_proto`);
        ``mode`` is "dense", "lexical", "hybrid" or None for the collection's default.
        ``text=False`` leaves the hits' texts out, ``metadata=False`` their metadata, and a list of
        keys keeps only those. ``offset`` skips that many hits (a page after the first; stable while
        the collection does not change); ``diversity`` (0 to 1, 0 off) re-orders the hits by
        maximal marginal relevance, so near-copies give way to other documents. ``rerank`` is a
        cross-encoder (a folder or Hugging Face id the server may load) or ``{"model": ...,
        "depth": 50}``: it reads the query with each of the best ``depth`` candidates and orders
        them by its probability (each reranked hit's "rerank" retriever), before the page is cut;
        hit scores stay on their scale. None takes the collection's default, ``"none"`` turns it
        off. ``group_by="metadata.source"`` groups the hits by a metadata key: ``k`` and ``offset`` then
        count groups (``result.groups``), each with the best ``group_size`` documents (default 1)
        of one value, and every hit names its group (``hit.group``); documents without the key are
        left out. ``chunks_per_document`` (up to 16) gives each hit its best matching chunks
        (``hit.chunks``, with offsets into the document's text) to highlight."""
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
            offset=offset,
            diversity=diversity,
            rerank=rerank,
            group_by=group_by,
            group_size=group_size,
            chunks_per_document=chunks_per_document,
        )
        return (yield Invoke(prepared, timeout))

    @unary
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
        offset: int = 0,
        diversity: float = 0.0,
        rerank: str | Mapping[str, Any] | None = None,
        group_by: str | None = None,
        group_size: int | None = None,
        chunks_per_document: int | None = None,
        timeout: float | None = None,
    ) -> Plan[list[SearchResult]]:
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
            offset=offset,
            diversity=diversity,
            rerank=rerank,
            group_by=group_by,
            group_size=group_size,
            chunks_per_document=chunks_per_document,
        )
        return (yield Invoke(prepared, timeout))

    @unary
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
        rerank: str | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Plan[AskResult]:
        """Passages likely to answer ``question``, each with its answering sentence. ``rerank``
        as in :meth:`search` (None: the collection's default, else the server's cross-encoder);
        with one, the confidence is its probability."""
        prepared = calls.ASK.prepare(
            collection, question, k=k, filter=filter, mode=mode, text=text, metadata=metadata, rerank=rerank
        )
        return (yield Invoke(prepared, timeout))

    @unary
    def embed(
        self,
        texts: Sequence[str],
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> Plan[list[list[float]]]:
        """Embeds texts with the collection's model, or the server's default model."""
        return (yield Invoke(calls.EMBED.prepare(texts, collection=collection), timeout))

    @unary
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
    ) -> Plan[SearchResult]:
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
        return (yield Invoke(prepared, timeout))

    @unary
    def similarity(
        self,
        texts: Sequence[str],
        others: Sequence[str] | None = None,
        *,
        collection: str | None = None,
        timeout: float | None = None,
    ) -> Plan[list[list[float]]]:
        """The cosine similarity of each of ``texts`` with each of ``others`` (with each other when
        ``others`` is None), from the collection's model or the server's default: a list of rows."""
        return (yield Invoke(calls.SIMILARITY.prepare(texts, others, collection=collection), timeout))

    @unary
    def tokenize(
        self, text: str, *, collection: str | None = None, language: str | None = None,
        timeout: float | None = None,
    ) -> Plan[Tokenization]:
        """The model's subword tokens of ``text`` with their offsets, whether it fits one model
        call, and the chunks the collection (or the default chunking) would cut it into; beside
        them the lexical analyzer's terms with their offsets (the collection's analyzer, or that of
        ``language``)."""
        return (yield Invoke(calls.TOKENIZE.prepare(text, collection=collection, language=language), timeout))

    # -- health ---------------------------------------------------------------------------------

    @unary
    def health(self, *, timeout: float | None = None) -> Plan[bool]:
        """Whether the server reports SERVING on the standard grpc.health.v1 service. Not
        retried: a probe reports the present state."""
        try:
            payload = yield Probe(self._settings.deadline(timeout))
        except grpc.RpcError as err:
            return calls.health_from_error(err)
        return convert.health_serving(payload)
