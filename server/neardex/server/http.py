"""HTTP beside gRPC: every RPC over the Connect protocol, served by connectrpc on Hypercorn; and
the metrics port, served the same way.

`POST /neardex.v1.Neardex/Search` with the request as JSON (protobuf's JSON mapping, or binary
protobuf with `application/proto`) answers in the same form, or a Connect error
(`{"code": "not_found", "message": ...}` with the matching HTTP status). UpsertStream takes a
Connect stream (`application/connect+json`). Parsing HTTP is Hypercorn's (h11), the Connect
protocol (envelopes, timeouts, body limits, compression) the connectrpc library's: neither is
written here. Nothing here implements an RPC either: each call goes through the same gate (keys,
limits, deadlines, status codes, metrics) and the same servicer as a gRPC call, on the same thread
pool, so one limit counts both transports. `Authorization: Bearer KEY` (or `api-key: KEY`) carries
the key, `Connect-Timeout-Ms` the deadline and `traceparent` the caller's trace (tracing.py).
Beside the Connect app, `Routes` serves fixed paths outside the service's (`GET /openapi.json`,
the document generated from the .proto and shipped in neardex-proto, which needs no key: it
describes the API and holds no data) and the web console's static files (console/: `/` and
/console/..., no key either; the page's own calls carry the key typed into it).

The edge against slow or idle callers is Hypercorn's event loop, where a silent connection costs a
file handle and no thread: TLS handshakes run per connection with a timeout, a connection that has
not completed a request's headers within `http_idle_timeout_s` is closed (the same timer closes
idle keep-alive connections), a body must arrive within `http_body_timeout_s`, and at most
`http_max_connections` connections are open at once (past it new ones are closed on accept).
The metrics port has the same edge, and with keys on it serves only keys that may read metrics.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from prometheus_client import make_asgi_app

from neardex.indexer.errors import Unauthenticated
from neardex.v1 import neardex_pb2, neardex_pb2_grpc
from neardex.v1.neardex_connect import NeardexASGIApplication

from . import auth
from .console import routes as console_routes
from .errors import RETRY_AFTER_MS
from .gate import SERVICE_NAME, Gate
from .tracing import TRACE_HEADERS

log = logging.getLogger("neardex.server")

SERVICE = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"]
# How often a stream's thread, waiting for the caller's next message, looks whether the call ended.
STREAM_POLL_S = 0.5
# The headers a key may arrive in; with the trace context's, no other header reaches the gate.
KEY_HEADERS = ("authorization", "api-key")
GATE_HEADERS = KEY_HEADERS + TRACE_HEADERS


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int
    idle_timeout_s: float  # no complete request headers (or no new request) for this long: closed
    body_timeout_s: float  # a request body not received whole within this long: refused
    handshake_timeout_s: float  # TLS handshake
    max_connections: int


class _Aborted(Exception):
    pass


class HttpContext:
    """What the gate and the servicer ask of a gRPC call's context, for a call over HTTP."""

    def __init__(self, timeout_ms: float | None) -> None:
        self._expires = time.monotonic() + timeout_ms / 1000 if timeout_ms is not None else None
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: Sequence[tuple[str, str]] = ()
        self.cancelled = False  # the caller went away

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted(details)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailers = metadata

    def time_remaining(self) -> float | None:
        return None if self._expires is None else max(self._expires - time.monotonic(), 0.0)

    def is_active(self) -> bool:
        return not self.cancelled


@dataclass(frozen=True)
class _Details:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _Collector:
    """Stands in for a grpc.Server to collect the servicer's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)


class _Codec:
    """A codec whose refusals name the request and its message type, as gRPC's do."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def name(self) -> str:
        return str(self._inner.name())

    def encode(self, message: Any) -> bytes:
        return bytes(self._inner.encode(message))

    def decode(self, data: bytes | bytearray, message_class: Any) -> Any:
        try:
            return self._inner.decode(data, message_class)
        except Exception as exc:  # noqa: BLE001 - json_format's ParseError, protobuf's DecodeError, ...
            raise ConnectError(Code.INVALID_ARGUMENT,
                               f"request: not a valid {message_class.__name__}: {exc}") from None


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _connect_error(context: HttpContext) -> ConnectError:
    assert context.code is not None
    code = Code.CANCELED if context.code is grpc.StatusCode.CANCELLED else Code[context.code.name]
    return ConnectError(code, context.details)


class GatedService:
    """The Connect service: each method, whatever its name, is one call through the gate and the
    servicer's gRPC handler on the gate's pool. Methods are made from the service descriptor, so
    a new RPC in the .proto is served here with no code."""

    def __init__(self, servicer: Any, gate: Gate) -> None:
        collector = _Collector()
        neardex_pb2_grpc.add_NeardexServicer_to_server(servicer, collector)
        self._handlers = collector.handlers
        self._gate = gate
        for method in SERVICE.methods:
            streaming = method.client_streaming or method.server_streaming
            setattr(self, _snake(method.name), self._stream(method.name) if streaming else self._unary(method.name))

    def _prepare(self, method: str, ctx: Any) -> tuple[Any, HttpContext, contextvars.Context]:
        headers = ctx.request_headers
        metadata = tuple((k, headers[k]) for k in GATE_HEADERS if k in headers)
        context = HttpContext(ctx.timeout_ms)
        call_context = contextvars.Context()
        handler = call_context.run(self._gate.intercept_service, lambda _: self._handlers[method],
                                   _Details(f"/{SERVICE_NAME}/{method}", metadata))
        return handler, context, call_context

    @staticmethod
    def _raise(context: HttpContext, ctx: Any) -> None:
        for key, value in context.trailers:
            if key == RETRY_AFTER_MS:
                ctx.response_headers[RETRY_AFTER_MS] = value
        raise _connect_error(context) from None

    def _unary(self, method: str) -> Any:
        async def call(request: Any, ctx: Any) -> Any:
            handler, context, call_context = self._prepare(method, ctx)
            behavior = handler.unary_unary or handler.stream_unary
            argument = request if handler.unary_unary is not None else iter((request,))
            future = self._gate.pool.submit(call_context.run, behavior, argument, context)
            try:
                return await asyncio.wrap_future(future)
            except _Aborted:
                self._raise(context, ctx)
            except asyncio.CancelledError:
                context.cancelled = True  # the stages still to run see a gone caller and stop
                raise

        return call

    def _stream(self, method: str) -> Any:
        """A stream, bridged: the async request messages feed a blocking iterator that the gRPC
        handler reads on the pool; its responses come back through an asyncio queue."""

        async def call(requests: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
            handler, context, call_context = self._prepare(method, ctx)
            loop = asyncio.get_running_loop()
            inbox: queue.Queue[Any] = queue.Queue(maxsize=8)
            outbox: asyncio.Queue[Any] = asyncio.Queue()

            async def feed() -> None:
                try:
                    async for message in requests:
                        await asyncio.to_thread(inbox.put, message)
                finally:
                    await asyncio.to_thread(inbox.put, _END)

            def incoming() -> Iterator[Any]:
                # Bounded waits: a stream whose caller or event loop is gone must free its thread.
                while not context.cancelled:
                    try:
                        message = inbox.get(timeout=STREAM_POLL_S)
                    except queue.Empty:
                        continue
                    if message is _END:
                        return
                    yield message

            def run() -> None:
                try:
                    behavior = handler.stream_stream or handler.stream_unary
                    result = behavior(incoming(), context)
                    for response in (result if handler.response_streaming else (result,)):
                        loop.call_soon_threadsafe(outbox.put_nowait, response)
                    loop.call_soon_threadsafe(outbox.put_nowait, _END)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's coroutine
                    loop.call_soon_threadsafe(outbox.put_nowait, exc)

            feeder = asyncio.create_task(feed())
            self._gate.pool.submit(call_context.run, run)
            try:
                while (item := await outbox.get()) is not _END:
                    if isinstance(item, _Aborted):
                        self._raise(context, ctx)
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                context.cancelled = True
                feeder.cancel()

        return call


_END = object()


class _BodyDeadline:
    """ASGI middleware: a request body not received whole within `seconds` is refused, so a
    caller trickling bytes cannot hold a call open (the caller's own Connect-Timeout-Ms, when
    shorter, is applied by connectrpc). A stream's body may last as long as its caller writes:
    there the limit is on the silence between two of its pieces."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        streaming = any(k.lower() == b"content-type" and v.lower().startswith(b"application/connect+")
                        for k, v in scope.get("headers", ()))
        expires = time.monotonic() + self.seconds
        body_done = False

        async def timed_receive() -> Any:
            nonlocal body_done, expires
            if body_done:  # later reads only watch for a disconnect while the call runs
                return await receive()
            if streaming:
                expires = time.monotonic() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(expires - time.monotonic(), 0.001))
            except TimeoutError:
                what = "the stream's next message" if streaming else "request body"
                raise ConnectError(Code.DEADLINE_EXCEEDED,
                                   f"{what}: not received within {self.seconds:g} s"
                                   " (NEARDEX_HTTP_BODY_TIMEOUT_S)") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class _CappedListener(socket.socket):
    """The listening socket, counting the connections it hands out: past `limit` open ones, a new
    connection is closed as soon as it is accepted (before any TLS or HTTP work)."""

    limit = 0
    open = 0
    refused = 0

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            fd, address = self._accept()  # type: ignore[attr-defined]
            if self.open < self.limit:
                break
            self.refused += 1
            socket.close(fd)
        self.open += 1
        return _Counted(self.family, self.type, self.proto, fileno=fd, listener=self), address


class _Counted(socket.socket):
    def __init__(self, *args: Any, listener: _CappedListener, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener: _CappedListener | None = listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.open -= 1
            self._listener = None
        super().close()


def connect_app(servicer: Any, gate: Gate, max_body_bytes: int) -> Any:
    """The Connect protocol's ASGI app over the gated servicer, JSON strict about unknown fields."""
    codecs = [_Codec(google_protobuf_binary_codec()),
              _Codec(google_protobuf_json_codec(ignore_unknown_fields=False))]
    return NeardexASGIApplication(GatedService(servicer, gate),  # type: ignore[arg-type]
                                  read_max_bytes=max_body_bytes, codecs=codecs)


class Document:
    """ASGI app of one fixed document, read by GET (or HEAD); it describes the API or is one of
    the console's files and holds no data, so it needs no key."""

    def __init__(self, body: bytes, content_type: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.body = body
        self.headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-cache"), *headers]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            body = f"{method} {scope['path']}: only GET and HEAD\n".encode()
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else self.body})


class Routes:
    """ASGI dispatch of the HTTP port: a request for one of `routes`' paths goes to its app, every
    other request to the Connect app as it came. Connect's paths all start with the service's
    name (/neardex.v1.Neardex/), so other paths (documents, the console's files) never take one
    of its calls."""

    def __init__(self, connect: Any, routes: dict[str, Any]) -> None:
        self.connect, self.routes = connect, routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        await (route or self.connect)(scope, receive, send)


def openapi_document() -> bytes:
    """The OpenAPI document of the HTTP API, shipped beside the generated code it describes."""
    return Path(neardex_pb2.__file__).with_name("openapi.json").read_bytes()


def http_app(servicer: Any, gate: Gate, max_body_bytes: int, console: bool = True) -> Any:
    """The HTTP port: the Connect app, the OpenAPI document at /openapi.json, and the web console
    at / unless turned off."""
    routes = {"/openapi.json": Document(openapi_document(), "application/json")}
    if console:
        routes.update(console_routes(Document))
    return Routes(connect_app(servicer, gate, max_body_bytes), routes)


class _MetricsGate:
    """ASGI middleware of the metrics port: with keys on, a scrape needs a key that may read
    metrics (they name every collection); the key arrives as Prometheus sends it."""

    def __init__(self, app: Any, keys: auth.KeyStore | None) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.keys is not None:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            try:
                key = self.keys.authenticate(auth.presented_key(headers))
                refusal = None if auth.may_scrape(key) else (
                    403, f"key {key.name!r} may not read metrics: it needs role metrics or admin, unscoped")
            except Unauthenticated as exc:
                refusal = (401, f"{exc}; Prometheus: authorization.credentials_file in the scrape config")
            if refusal is not None:
                body = refusal[1].encode() + b"\n"
                await send({"type": "http.response.start", "status": refusal[0],
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def metrics_app(keys: auth.KeyStore | None) -> Any:
    return _MetricsGate(make_asgi_app(), keys)


class AsgiServer:
    """An ASGI app under Hypercorn, on an event loop of its own thread, behind the edge limits."""

    def __init__(self, app: Any, host: str, port: int, limits: HttpLimits,
                 tls: tuple[str, str, str | None] | None = None) -> None:
        config = Config()
        config.keep_alive_timeout = limits.idle_timeout_s
        config.ssl_handshake_timeout = limits.handshake_timeout_s
        config.graceful_timeout = 1.0
        config.accesslog = None
        config.errorlog = log
        config.alpn_protocols = ["http/1.1"]
        if tls is not None:
            config.certfile, config.keyfile, config.ca_certs = tls
            if config.ca_certs is not None:
                config.verify_mode = ssl.CERT_REQUIRED
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        listener = _CappedListener(family, socket.SOCK_STREAM)
        listener.limit = limits.max_connections
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host.strip("[]"), port))
            listener.listen(config.backlog)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self.listener = listener
        self.port: int = listener.getsockname()[1]
        sockets = Sockets(secure_sockets=[listener] if tls else [], insecure_sockets=[] if tls else [listener],
                          quic_sockets=[])
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        started = threading.Event()
        wrapped = ASGIWrapper(_BodyDeadline(app, limits.body_timeout_s))

        async def main() -> None:
            started.set()
            await worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=self._stop.wait)

        def run() -> None:
            try:
                self._loop.run_until_complete(main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        started.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:  # the loop closed in between
            pass
        self._thread.join(timeout)
        self.listener.close()
