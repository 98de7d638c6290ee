"""The trust boundary: every neardex RPC passes one interceptor before the servicer sees it.

For each call, in order: authentication and the role the method needs (API key from the call's
metadata, before anything else: a call without a valid key never holds a slot, and is refused
without waiting for its request message), admission (at most `max_concurrent_rpcs` admitted calls
held at once; past it RESOURCE_EXHAUSTED at once, saying which limit), the collection scope once
the request has arrived (see auth.py), the caller's deadline bound for the stages below
(deadline.py), then the servicer; afterwards its domain errors become status codes (errors.py) and
the call is counted and timed by method and code. The servicer itself checks no keys and maps no
errors. A stream's key is checked again at each message, so a revoked key stops at its next one.
With traces on (tracing.py), the call's span starts when the call arrives and ends where it is
counted, and the call runs with it current.

Health checking and reflection need no key, so probes and grpcurl keep working; their streams have
a small cap of their own (`SIDE_STREAMS`), apart from the calls that keys admit.

A call waiting for a message from its caller (a unary request not yet sent, or a stream's next
message) for longer than `request_timeout_s` is cancelled: a silent caller must not hold a thread.

Admission counts the admitted calls the server's thread pool holds (running or queued), not
threads: the pool has room for every admitted call, the side streams and spare threads, so a
refusal never waits behind the work that caused it. gRPC's own `maximum_concurrent_rpcs` stays
as a backstop above that, so even a flood of refusals holds bounded memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from neardex.indexer import deadline
from neardex.indexer.errors import InvalidArgument, Overloaded, PermissionDenied, Unauthenticated
from neardex.v1 import neardex_pb2

from . import auth, metrics
from .errors import RETRY_AFTER_MS, status_of
from .tracing import Tracing

log = logging.getLogger("neardex.server")

SERVICE_NAME = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"].full_name
_PREFIX = f"/{SERVICE_NAME}/"
# Threads beyond the admitted calls: refusals and health checks run on them without waiting.
SPARE_THREADS = 8
# A caller refused for load may try again after this long.
RETRY_AFTER = "100"
# Characters of a status message at most.
MAX_MESSAGE = 1024
# Health Watch and reflection streams held at once; past it RESOURCE_EXHAUSTED.
SIDE_STREAMS = 8
# How often the pool looks for calls whose caller has gone silent.
WATCH_INTERVAL_S = 0.25


@dataclass
class Call:
    method: str  # the neardex method's name, or the full path of a health or reflection call
    started: float = field(default_factory=time.perf_counter)
    metadata: dict[str, str] = field(default_factory=dict)
    ran: bool = False  # the handler started (the transport read the request)
    admitted: bool = False  # holds one of the max_concurrent_rpcs slots
    side: bool = False  # a health or reflection call
    capped: bool = False  # a health Watch or reflection stream: holds one of SIDE_STREAMS
    # time.monotonic() since which the call waits for its caller's next message; None: not waiting.
    waiting_since: float | None = field(default_factory=time.monotonic)
    key: auth.ApiKey | None = None
    span: Any = None  # the call's span, with traces on; ended where the call is counted


# A call without a span runs inside this (reusable, it does nothing).
_UNTRACED = contextlib.nullcontext()


# Set in the call's own context when the call arrives; the pool reads it back for calls whose
# handler never ran.
_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("neardex_call", default=None)


class CallPool(ThreadPoolExecutor):
    """The server's thread pool: it knows how many admitted calls and side streams it holds,
    cancels calls whose caller has gone silent for `request_timeout_s`, and reports each call that
    gRPC ended before its handler ran (a caller whose deadline passed, or who cancelled, while the
    call waited), so those are counted too."""

    def __init__(self, max_calls: int, request_timeout_s: float = 30.0) -> None:
        super().__init__(max_workers=max_calls + SIDE_STREAMS + SPARE_THREADS, thread_name_prefix="rpc")
        self.held = 0
        self.side = 0
        self.request_timeout_s = request_timeout_s
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[Call, Any]] = {}  # calls that may wait for their caller
        self._closed = threading.Event()
        self.on_unstarted: Callable[[Call, bool], None] | None = None
        threading.Thread(target=self._watch, name="rpc-watch", daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        # grpc submits `context.run` of the call's own contextvars.Context, with the call's event
        # (whose details carry the deadline, and whose call can be cancelled) among the arguments.
        context = getattr(fn, "__self__", None)
        call = context.get(_CALL) if isinstance(context, contextvars.Context) else None
        event = next((a for a in args if hasattr(a, "call_details")), None)
        with self._lock:
            if call is not None:
                self.held += call.admitted
                self.side += call.capped
                if event is not None:
                    self._waiting[id(call)] = (call, event)
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._done(call, event))
        return future

    def _done(self, call: Call | None, event: Any) -> None:
        if call is None:
            return
        with self._lock:
            self.held -= call.admitted
            self.side -= call.capped
            self._waiting.pop(id(call), None)
        if not call.ran and not call.side and self.on_unstarted is not None:
            expires = getattr(getattr(event, "call_details", None), "deadline", None)
            self.on_unstarted(call, expires is not None and time.time() >= expires)

    def _watch(self) -> None:
        while not self._closed.wait(WATCH_INTERVAL_S):
            now = time.monotonic()
            with self._lock:
                silent = [(c, e) for c, e in self._waiting.values()
                          if c.waiting_since is not None and now - c.waiting_since > self.request_timeout_s]
            for call, event in silent:
                call.waiting_since = None
                log.info("%s: no message from the caller for %.0f s; cancelled", call.method, self.request_timeout_s)
                event.call.cancel(grpc.StatusCode.CANCELLED.value[0],
                                  f"no request message within {self.request_timeout_s:g} s"
                                  " (NEARDEX_REQUEST_TIMEOUT_S)")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        super().shutdown(wait, cancel_futures=cancel_futures)


class Gate(grpc.ServerInterceptor):
    def __init__(self, pool: CallPool, max_calls: int, keys: auth.KeyStore | None,
                 resolve: Callable[[str], str] = lambda name: name, tracing: Tracing | None = None) -> None:
        self.pool = pool
        self.tracing = tracing
        self.max_calls = max_calls
        self.keys = keys
        self.resolve = resolve  # alias -> collection, so scopes judge the data a call reaches
        pool.on_unstarted = self._unstarted

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        if not details.method.startswith(_PREFIX):
            return self._side(details.method, handler)
        call = Call(details.method[len(_PREFIX):], metadata=dict(details.invocation_metadata or ()))
        _CALL.set(call)
        if self.tracing is not None:
            call.span = self.tracing.start_call(details.method, call.metadata)
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if self.keys is not None:
            try:
                with (self.tracing.child(call.span, "auth") if self.tracing is not None and call.span is not None
                      else _UNTRACED):
                    call.key = self.keys.authenticate(auth.presented_key(call.metadata))
                    auth.require_role(call.key, call.method)
            except (Unauthenticated, PermissionDenied) as exc:
                return _without_request(handler, self._refuse(call, exc))
        if self.pool.held >= self.max_calls:
            return _without_request(handler, self._refuse(call, Overloaded(
                f"server busy: {self.max_calls} calls in progress, the limit (NEARDEX_MAX_CONCURRENT_RPCS);"
                " retry later")))
        call.admitted = True
        return _replace(handler, self._unary(call, handler) if not handler.response_streaming
                        else self._streaming(call, handler))

    def _side(self, method: str, handler: Any) -> Any:
        """Health and reflection: no key; their streams within their own cap; a silent caller
        timed out like any other."""
        call = Call(method, side=True)
        _CALL.set(call)
        streams = handler.request_streaming or handler.response_streaming
        if streams and self.pool.side >= SIDE_STREAMS:
            return _without_request(handler, self._refuse(call, Overloaded(
                f"server busy: {SIDE_STREAMS} health and reflection streams open, the limit; retry later")))
        call.capped = streams
        arity = ("stream" if handler.request_streaming else "unary") + "_" + (
            "stream" if handler.response_streaming else "unary")
        behavior = getattr(handler, arity)

        def side(request: Any, context: grpc.ServicerContext) -> Any:
            call.ran = True
            call.waiting_since = None
            return behavior(_timed(call, request) if handler.request_streaming else request, context)

        return _replace(handler, side)

    # -- the wrapped handlers -----------------------------------------------------------------

    def _refuse(self, call: Call, error: Exception) -> Callable[[Any, grpc.ServicerContext], Any]:
        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            call.ran = True
            call.waiting_since = None
            self._fail(call, context, error)

        return refuse

    def _admit(self, call: Call, handler: Any, request: Any) -> tuple[auth.ApiKey | None, Any]:
        """The caller's key and the request as the servicer may take it: a unary request is
        decoded and authorised now, a streamed one message by message as it arrives."""
        call.ran = True
        call.waiting_since = None
        if handler.request_streaming:
            return call.key, self._checked(call, _timed(call, request))
        _decoded(request)
        if call.key is not None:
            auth.authorize(call.key, call.method, request, self.resolve)
        return call.key, request

    def _checked(self, call: Call, requests: Iterator[Any]) -> Iterator[Any]:
        for i, request in enumerate(requests):
            _decoded(request, f"requests[{i}]")
            if call.key is not None and self.keys is not None:
                # Again at every message: a key revoked while its stream is open stops here.
                call.key = self.keys.authenticate(auth.presented_key(call.metadata))
                auth.authorize(call.key, call.method, request, self.resolve)
            yield request

    def _unary(self, call: Call, handler: Any) -> Callable[[Any, grpc.ServicerContext], Any]:
        behavior = handler.unary_unary or handler.stream_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with self._serving(call):
                try:
                    key, request = self._admit(call, handler, request)
                    if call.span is not None:
                        Tracing.describe(call.span, request)
                    with deadline.bound(_deadline_of(context)):
                        response = behavior(request, context)
                    if key is not None:
                        response = auth.visible(key, call.method, response)
                except Exception as exc:  # noqa: BLE001 - every failure reaches the caller as a status
                    self._fail(call, context, exc)
                if call.span is not None:
                    Tracing.describe(call.span, response=response)
                self._record(call, grpc.StatusCode.OK)
            return response

        return unary

    def _streaming(self, call: Call, handler: Any) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        behavior = handler.unary_stream or handler.stream_stream

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                with self._serving(call):
                    _, request = self._admit(call, handler, request)
                    if call.span is not None:
                        Tracing.describe(call.span, request)
                    bound = _deadline_of(context)
                    responses = iter(behavior(request, context))
                while True:
                    # Bound around each step only: between steps this thread is gRPC's.
                    with deadline.bound(bound), self._serving(call):
                        response = next(responses, _END)
                    if response is _END:
                        break
                    yield response
            except GeneratorExit:  # the caller went away mid-stream
                self._record(call, grpc.StatusCode.CANCELLED)
                raise
            except Exception as exc:  # noqa: BLE001
                self._fail(call, context, exc)
            self._record(call, grpc.StatusCode.OK)

        return streaming

    def _serving(self, call: Call) -> contextlib.AbstractContextManager[Any]:
        """The block runs with the call's span current and its stages traced, when it has one."""
        return self.tracing.serving(call.span) if self.tracing is not None and call.span is not None else _UNTRACED

    # -- outcomes -----------------------------------------------------------------------------

    def _fail(self, call: Call, context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
        code, message = status_of(exc)
        if len(message) > MAX_MESSAGE:
            # Messages quote what was sent; gRPC refuses a status message past its metadata limit
            # (16 KiB, percent-encoded), so a huge input must not make a huge message.
            message = message[: MAX_MESSAGE - 1] + "…"
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s failed", call.method, exc_info=exc)
        if isinstance(exc, Overloaded):
            context.set_trailing_metadata(((RETRY_AFTER_MS, RETRY_AFTER),))
        if not call.side:
            self._record(call, code)
        context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    def _unstarted(self, call: Call, deadline_passed: bool) -> None:
        self._record(call, grpc.StatusCode.DEADLINE_EXCEEDED if deadline_passed else grpc.StatusCode.CANCELLED)

    @staticmethod
    def _record(call: Call, code: grpc.StatusCode) -> None:
        metrics.RPC_REQUESTS.labels(call.method, code.name).inc()
        metrics.RPC_LATENCY.labels(call.method).observe(time.perf_counter() - call.started)
        span, call.span = call.span, None
        if span is not None:
            Tracing.end_call(span, code.name)


_END = object()


def _timed(call: Call, requests: Iterator[Any]) -> Iterator[Any]:
    """A stream's messages, marking the call as waiting for its caller between them."""
    while True:
        call.waiting_since = time.monotonic()
        try:
            request = next(requests, _END)
        finally:
            call.waiting_since = None
        if request is _END:
            return
        yield request


@dataclass(frozen=True)
class Undecodable:
    """A request message that did not parse, in place of the message: the gate refuses it with
    INVALID_ARGUMENT (gRPC itself would answer INTERNAL)."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, or a UnicodeDecodeError
            return Undecodable(str(exc) or type(exc).__name__)

    return parse


def _decoded(request: Any, field: str = "request") -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument(f"{field}: not a valid message of this RPC: {request.reason}")


def _without_request(handler: Any, behavior: Callable[..., Any]) -> Any:
    """The handler as a request-streaming one running `behavior`: gRPC then starts it without
    waiting for the request message, which a refusal never needs."""
    arity = "stream_stream" if handler.response_streaming else "stream_unary"
    handlers = {"unary_unary": None, "unary_stream": None, "stream_unary": None, "stream_stream": None}
    return handler._replace(request_streaming=True, **{**handlers, arity: behavior})


def _replace(handler: Any, behavior: Callable[..., Any]) -> Any:
    """The handler with its behaviour swapped, whatever its streaming arity."""
    arity = ("stream" if handler.request_streaming else "unary") + "_" + (
        "stream" if handler.response_streaming else "unary")
    return handler._replace(**{arity: behavior})


def _deadline_of(context: grpc.ServicerContext) -> deadline.Deadline:
    remaining = context.time_remaining()
    # A call without a deadline reports a remaining time of centuries.
    expires = time.monotonic() + remaining if remaining is not None and remaining < 1e8 else None
    return deadline.Deadline(expires, context.is_active)
