"""Each RPC of ``neardex.v1.Neardex`` described once, for both clients.

A spec names the stub method, says whether repeating the call is harmless (which decides
retrying on DEADLINE_EXCEEDED), and pairs the request builder with the response parser from
:mod:`neardex.client.convert`. The clients only add the transport: how to invoke and wait.
"""

from __future__ import annotations

import os
import socket
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

import grpc

from neardex.v1 import neardex_pb2 as pb

from . import convert
from .errors import InvalidArgument, from_rpc_error, status_code_of
from .models import Document
from .retry import RetryPolicy

P = ParamSpec("P")
ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
OutT = TypeVar("OutT")

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class Prepared(Generic[OutT]):
    """A built request, ready to be sent by either client."""

    method: str
    idempotent: bool
    request: Any
    parse: Callable[[Any], OutT]


@dataclass(frozen=True)
class Rpc(Generic[P, ReqT, RespT, OutT]):
    method: str
    idempotent: bool
    build: Callable[P, ReqT]
    parse: Callable[[RespT], OutT]

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Prepared[OutT]:
        return self.for_request(self.build(*args, **kwargs))

    def for_request(self, request: ReqT) -> Prepared[OutT]:
        return Prepared(self.method, self.idempotent, request, self.parse)


CREATE_COLLECTION = Rpc(
    "CreateCollection",
    idempotent=False,
    build=convert.create_collection_request,
    parse=convert.collection_info,
)
LIST_COLLECTIONS = Rpc(
    "ListCollections",
    idempotent=True,
    build=convert.list_collections_request,
    parse=convert.collection_infos,
)
GET_COLLECTION = Rpc(
    "GetCollection",
    idempotent=True,
    build=convert.get_collection_request,
    parse=convert.collection_info,
)
DELETE_COLLECTION = Rpc(
    "DeleteCollection",
    idempotent=False,
    build=convert.delete_collection_request,
    parse=convert.deleted_collection,
)
CREATE_ALIAS = Rpc("CreateAlias", idempotent=True, build=convert.create_alias_request, parse=convert.alias)
DELETE_ALIAS = Rpc("DeleteAlias", idempotent=False, build=convert.delete_alias_request, parse=convert.nothing)
LIST_ALIASES = Rpc("ListAliases", idempotent=True, build=convert.list_aliases_request, parse=convert.aliases)
CREATE_SNAPSHOT = Rpc(
    "CreateSnapshot", idempotent=False, build=convert.create_snapshot_request, parse=convert.snapshot
)
LIST_SNAPSHOTS = Rpc(
    "ListSnapshots", idempotent=True, build=convert.list_snapshots_request, parse=convert.snapshot_list
)
DELETE_SNAPSHOT = Rpc(
    "DeleteSnapshot", idempotent=False, build=convert.delete_snapshot_request, parse=convert.nothing
)
RESTORE_SNAPSHOT = Rpc(
    "RestoreSnapshot", idempotent=False, build=convert.restore_snapshot_request, parse=convert.collection_info
)
MIGRATE_COLLECTION = Rpc(
    "MigrateCollection", idempotent=False, build=convert.migrate_collection_request, parse=convert.migration
)
INDEX_METADATA = Rpc(
    "IndexMetadata",
    idempotent=True,
    build=convert.index_metadata_request,
    parse=convert.collection_info,
)
UPDATE_COLLECTION = Rpc(
    "UpdateCollection",
    idempotent=True,
    build=convert.update_collection_request,
    parse=convert.collection_info,
)
UPSERT = Rpc(
    "Upsert",
    idempotent=False,
    build=convert.upsert_request,
    parse=convert.upsert_result,
)
# Streaming: ``build`` makes the request message of one batch, ``parse`` reads one
# acknowledgement.
UPSERT_STREAM = Rpc(
    "UpsertStream",
    idempotent=False,
    build=convert.upsert_request,
    parse=convert.upsert_result,
)
DELETE = Rpc(
    "Delete",
    idempotent=False,
    build=convert.delete_request,
    parse=convert.deleted_count,
)
# Not idempotent: an update by a filter that the update itself changes selects other documents
# when repeated, and a retry after a timeout must not apply an update twice unasked.
UPDATE_METADATA = Rpc(
    "UpdateMetadata",
    idempotent=False,
    build=convert.update_metadata_request,
    parse=convert.metadata_updated,
)
GET = Rpc(
    "Get",
    idempotent=True,
    build=convert.get_request,
    parse=convert.get_result,
)
COUNT = Rpc(
    "Count",
    idempotent=True,
    build=convert.count_request,
    parse=convert.counted,
)
FACET = Rpc(
    "Facet",
    idempotent=True,
    build=convert.facet_request,
    parse=convert.facet_result,
)
SCROLL = Rpc(
    "Scroll",
    idempotent=True,
    build=convert.scroll_request,
    parse=convert.scroll_page,
)
SEARCH = Rpc(
    "Search",
    idempotent=True,
    build=convert.search_request,
    parse=convert.search_result,
)
BATCH_SEARCH = Rpc(
    "BatchSearch",
    idempotent=True,
    build=convert.batch_search_request,
    parse=convert.batch_search_results,
)
ASK = Rpc(
    "Ask",
    idempotent=True,
    build=convert.ask_request,
    parse=convert.ask_result,
)
SEARCH_SIMILAR = Rpc(
    "SearchSimilar",
    idempotent=True,
    build=convert.similar_request,
    parse=convert.search_result,
)
SIMILARITY = Rpc(
    "Similarity",
    idempotent=True,
    build=convert.similarity_request,
    parse=convert.similarity_matrix,
)
TOKENIZE = Rpc(
    "Tokenize",
    idempotent=True,
    build=convert.tokenize_request,
    parse=convert.tokenization,
)
EMBED = Rpc(
    "Embed",
    idempotent=True,
    build=convert.embed_request,
    parse=convert.embeddings,
)


# ---------------------------------------------------------------------------------------------
# Settings shared by both clients


def _check_timeout(timeout: object, field: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgument(f"{field}: expected a positive number of seconds, got {timeout!r}")
    return float(timeout)


# Where the client and the command line find an API key when none is passed.
API_KEY_ENV = "NEARDEX_API_KEY"
PemSource = str | os.PathLike[str] | bytes


def _pem(source: PemSource | None, field: str) -> bytes | None:
    """PEM bytes given directly, or read from a path."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{field}: cannot read {source}: {exc.strerror}") from None


def channel_credentials(
    tls: bool,
    ca_cert: PemSource | None,
    client_cert: PemSource | None,
    client_key: PemSource | None,
    credentials: grpc.ChannelCredentials | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials for the channel, or None for plaintext. Giving a CA or a client
    certificate implies TLS."""
    wants_tls = tls or any(x is not None for x in (ca_cert, client_cert, client_key))
    if credentials is not None:
        if wants_tls:
            raise InvalidArgument("credentials: give either credentials or tls/ca_cert/client_cert, not both")
        return credentials
    if not wants_tls:
        return None
    if (client_cert is None) != (client_key is None):
        raise InvalidArgument("client_cert, client_key: a client certificate needs its private key, and back")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(ca_cert, "ca_cert"),
        private_key=_pem(client_key, "client_key"),
        certificate_chain=_pem(client_cert, "client_cert"),
    )


def channel_target(target: str | Sequence[str]) -> str:
    """The gRPC target for one server ("host:port", or any gRPC target such as
    "dns:///neardex:50051") or for several ("host1:port,host2:port", or a list), which the channel
    balances over. Several servers' names are resolved once, here."""
    addresses = [t.strip() for t in target.split(",")] if isinstance(target, str) else [str(t).strip() for t in target]
    if not addresses or not all(addresses):
        raise InvalidArgument(f"target: expected HOST:PORT, or several separated by commas; got {target!r}")
    if len(addresses) == 1:
        return addresses[0]
    resolved: dict[str, list[str]] = {"ipv4": [], "ipv6": []}
    for i, address in enumerate(addresses):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"target[{i}]: expected HOST:PORT, got {address!r}")
        try:
            infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise InvalidArgument(f"target[{i}]: cannot resolve {host!r}: {exc}") from None
        for family, _, _, _, sockaddr in infos:
            if family == socket.AF_INET:
                resolved["ipv4"].append(f"{sockaddr[0]}:{port}")
            elif family == socket.AF_INET6:
                resolved["ipv6"].append(f"[{sockaddr[0]}]:{port}")
    # One address family per target (gRPC's ipv4: and ipv6: schemes); IPv4 where there is any.
    scheme = "ipv4" if resolved["ipv4"] else "ipv6"
    return f"{scheme}:" + ",".join(dict.fromkeys(resolved[scheme]))


@dataclass(frozen=True)
class Settings:
    timeout: float
    retry: RetryPolicy
    options: list[tuple[str, Any]]
    # Neither is ever shown: the metadata carries the API key.
    credentials: grpc.ChannelCredentials | None = field(default=None, repr=False)
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def make(
        cls,
        timeout: float,
        retry: RetryPolicy | None,
        options: Iterable[tuple[str, Any]] | None,
        max_message_bytes: int,
        *,
        api_key: str | None = None,
        tls: bool = False,
        ca_cert: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> Settings:
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise InvalidArgument(f"max_message_bytes: expected an int, got {max_message_bytes!r}")
        given = list(options or [])
        keys = {key for key, _ in given}
        # Explicit channel options win over the limits derived from max_message_bytes.
        limits = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Calls spread over every address of the target (each server of a list, each
            # address a DNS name resolves to) instead of all going to the first.
            ("grpc.lb_policy_name", "round_robin"),
        ]
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not isinstance(key, str) or any(c in key for c in "\r\n"):
            raise InvalidArgument("api_key: expected a string on one line")
        return cls(
            timeout=_check_timeout(timeout),
            retry=retry if retry is not None else RetryPolicy(),
            options=[opt for opt in limits if opt[0] not in keys] + given,
            credentials=channel_credentials(tls, ca_cert, client_cert, client_key, credentials),
            metadata=(("authorization", f"Bearer {key.strip()}"),) if key.strip() else (),
        )

    def deadline(self, timeout: float | None) -> float:
        """Seconds allowed for one attempt of a call (or for a whole stream)."""
        return self.timeout if timeout is None else _check_timeout(timeout)

    def describe(self, cls: str, target: str) -> str:
        """The client's repr: where it connects and how, never with what key."""
        parts = [repr(target), f"tls={self.credentials is not None}"]
        if self.metadata:
            parts.append("api_key=<set>")
        return f"{cls}({', '.join(parts)})"


def health_from_error(err: grpc.RpcError) -> bool:
    """A server that cannot be reached, or does not know the service, is simply not healthy;
    anything else (bad credentials, no health service at all) is a misconfiguration to raise."""
    if status_code_of(err) in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
    ):
        return False
    raise from_rpc_error(err) from err


# ---------------------------------------------------------------------------------------------
# Batching documents, shared by the sync and async upserts


class UpsertBatcher:
    """Validates documents one at a time and groups them into UpsertRequests, numbering them
    across the caller's whole iterable so errors point at the caller's ``documents[i]``."""

    def __init__(self, collection: str, batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        self._collection = collection
        self._batch_size = batch_size
        self._count = 0
        self._pending: list[Document] = []

    def add(self, item: Document | Mapping[str, Any]) -> pb.UpsertRequest | None:
        """Adds one document; returns a request once a batch is full."""
        self._pending.append(convert.to_document(item, f"documents[{self._count}]"))
        self._count += 1
        return self.flush() if len(self._pending) >= self._batch_size else None

    def flush(self) -> pb.UpsertRequest | None:
        """The request for the pending documents, if any."""
        if not self._pending:
            return None
        batch, self._pending = self._pending, []
        return UPSERT.build(self._collection, batch, first_index=self._count - len(batch))


def _check_iterable(documents: object) -> None:
    # Iterating one document would walk its fields (or characters) instead of failing clearly.
    if isinstance(documents, Document | Mapping | str | bytes):
        raise InvalidArgument(
            f"documents: expected an iterable of documents, got a single {type(documents).__name__}"
        )


def upsert_batches(
    collection: str, documents: Iterable[Document | Mapping[str, Any]], batch_size: int
) -> Iterator[pb.UpsertRequest]:
    """UpsertRequest messages of at most ``batch_size`` documents each, built lazily; the
    arguments themselves are checked at once."""
    _check_iterable(documents)
    return _batches(documents, UpsertBatcher(collection, batch_size))


def aupsert_batches(
    collection: str,
    documents: Iterable[Document | Mapping[str, Any]] | AsyncIterable[Document | Mapping[str, Any]],
    batch_size: int,
) -> AsyncIterator[pb.UpsertRequest]:
    """Like :func:`upsert_batches`, also accepting an async iterable."""
    _check_iterable(documents)
    return _abatches(documents, UpsertBatcher(collection, batch_size))


def _batches(
    documents: Iterable[Document | Mapping[str, Any]], batcher: UpsertBatcher
) -> Iterator[pb.UpsertRequest]:
    for item in documents:
        request = batcher.add(item)
        if request is not None:
            yield request
    request = batcher.flush()
    if request is not None:
        yield request


async def _abatches(
    documents: Iterable[Document | Mapping[str, Any]] | AsyncIterable[Document | Mapping[str, Any]],
    batcher: UpsertBatcher,
) -> AsyncIterator[pb.UpsertRequest]:
    if not isinstance(documents, AsyncIterable):
        for ready in _batches(documents, batcher):
            yield ready
        return
    async for item in documents:
        request = batcher.add(item)
        if request is not None:
            yield request
    request = batcher.flush()
    if request is not None:
        yield request


class StreamFeed:
    """Feeds a stream's requests and keeps an exception raised while producing them (an invalid
    document, a failing source). gRPC would turn it into an opaque cancellation; instead the
    stream is closed normally, so every batch already sent is still acknowledged, and the
    caller's own exception is raised after the acknowledgements."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def requests(self, source: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from source
        except Exception as exc:  # re-raised by raise_error() once the stream has ended
            self.error = exc

    async def arequests(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for request in source:
                yield request
        except Exception as exc:  # re-raised by raise_error() once the stream has ended
            self.error = exc

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error
