"""The trust boundary: every neardex RPC passes one interceptor before the servicer sees it.

For each call, in order: admission (at most `max_concurrent_rpcs` calls held at once; past it
RESOURCE_EXHAUSTED at once, saying which limit), authentication and authorisation (API key, role,
collection scope; see auth.py), the caller's deadline bound for the stages below (deadline.py),
then the servicer; afterwards its domain errors become status codes (errors.py) and the call is
counted and timed by method and code. The servicer itself checks no keys and maps no errors.

Health checking and reflection pass untouched, so probes and grpcurl keep working without a key.

Admission counts the calls the server's thread pool holds (running or queued), not threads: the
pool has room for every admitted call plus spare threads, so a refusal never waits behind the
work that caused it. gRPC's own `maximum_concurrent_rpcs` stays as a backstop above that, so even
a flood of refusals holds bounded memory.
"""

from __future__ import annotations

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
from neardex.indexer.errors import InvalidArgument, Overloaded
from neardex.v1 import neardex_pb2

from . import auth, metrics
from .errors import RETRY_AFTER_MS, status_of

log = logging.getLogger("neardex.server")

SERVICE_NAME = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"].full_name
_PREFIX = f"/{SERVICE_NAME}/"
# Threads beyond the admitted calls: refusals and health checks run on them without waiting.
SPARE_THREADS = 8
# A caller refused for load may try again after this long.
RETRY_AFTER = "100"
# Characters of a status message at most.
MAX_MESSAGE = 1024


@dataclass
class Call:
    method: str
    started: float = field(default_factory=time.perf_counter)
    metadata: dict[str, str] = field(default_factory=dict)
    ran: bool = False  # the handler started (the transport read the request)


# Set in the call's own context when the call arrives; the pool reads it back for calls whose
# handler never ran.
_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("neardex_call", default=None)


class CallPool(ThreadPoolExecutor):
    """The server's thread pool: it knows how many calls it holds, and reports each call that gRPC
    ended before its handler ran (a caller whose deadline passed, or who cancelled, while the call
    waited), so those are counted too."""

    def __init__(self, max_calls: int) -> None:
        super().__init__(max_workers=max_calls + SPARE_THREADS, thread_name_prefix="rpc")
        self.held = 0
        self._lock = threading.Lock()
        self.on_unstarted: Callable[[Call, bool], None] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.held += 1
        future = super().submit(fn, *args, **kwargs)
        # grpc submits `context.run` of the call's own contextvars.Context, with the call's event
        # (whose details carry the deadline) among the arguments.
        context = getattr(fn, "__self__", None)
        event = next((a for a in args if hasattr(a, "call_details")), None)
        future.add_done_callback(lambda _: self._done(context, event))
        return future

    def _done(self, context: Any, event: Any) -> None:
        with self._lock:
            self.held -= 1
        call = context.get(_CALL) if isinstance(context, contextvars.Context) else None
        if call is not None and not call.ran and self.on_unstarted is not None:
            expires = getattr(getattr(event, "call_details", None), "deadline", None)
            self.on_unstarted(call, expires is not None and time.time() >= expires)


class Gate(grpc.ServerInterceptor):
    def __init__(self, pool: CallPool, max_calls: int, keys: auth.KeyStore | None,
                 resolve: Callable[[str], str] = lambda name: name) -> None:
        self.pool = pool
        self.max_calls = max_calls
        self.keys = keys
        self.resolve = resolve  # alias -> collection, so scopes judge the data a call reaches
        pool.on_unstarted = self._unstarted

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not details.method.startswith(_PREFIX):
            return handler
        call = Call(details.method[len(_PREFIX):], metadata=dict(details.invocation_metadata or ()))
        _CALL.set(call)
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if self.pool.held >= self.max_calls:
            return _replace(handler, self._refuse(call))
        return _replace(handler, self._unary(call, handler) if not handler.response_streaming
                        else self._streaming(call, handler))

    # -- the wrapped handlers -----------------------------------------------------------------

    def _refuse(self, call: Call) -> Callable[[Any, grpc.ServicerContext], Any]:
        error = Overloaded(
            f"server busy: {self.max_calls} calls in progress, the limit (NEARDEX_MAX_CONCURRENT_RPCS);"
            " retry later")

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            call.ran = True
            self._fail(call, context, error)

        return refuse

    def _admit(self, call: Call, handler: Any, request: Any) -> tuple[auth.ApiKey | None, Any]:
        """The caller's key and the request as the servicer may take it: a unary request is
        decoded and authorised now, a streamed one message by message as it arrives."""
        call.ran = True
        key = self.keys.authenticate(auth.presented_key(call.metadata)) if self.keys is not None else None
        if handler.request_streaming:
            return key, self._checked(call, key, request)
        _decoded(request)
        if key is not None:
            auth.authorize(key, call.method, request, self.resolve)
        return key, request

    def _checked(self, call: Call, key: auth.ApiKey | None, requests: Iterator[Any]) -> Iterator[Any]:
        for i, request in enumerate(requests):
            _decoded(request, f"requests[{i}]")
            if key is not None:
                auth.authorize(key, call.method, request, self.resolve)
            yield request

    def _unary(self, call: Call, handler: Any) -> Callable[[Any, grpc.ServicerContext], Any]:
        behavior = handler.unary_unary or handler.stream_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                key, request = self._admit(call, handler, request)
                with deadline.bound(_deadline_of(context)):
                    response = behavior(request, context)
                if key is not None:
                    response = auth.visible(key, call.method, response)
            except Exception as exc:  # noqa: BLE001 - every failure reaches the caller as a status
                self._fail(call, context, exc)
            self._record(call, grpc.StatusCode.OK)
            return response

        return unary

    def _streaming(self, call: Call, handler: Any) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        behavior = handler.unary_stream or handler.stream_stream

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                _, request = self._admit(call, handler, request)
                bound = _deadline_of(context)
                responses = iter(behavior(request, context))
                while True:
                    # Bound around each step only: between steps this thread is gRPC's.
                    with deadline.bound(bound):
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
        self._record(call, code)
        context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    def _unstarted(self, call: Call, deadline_passed: bool) -> None:
        self._record(call, grpc.StatusCode.DEADLINE_EXCEEDED if deadline_passed else grpc.StatusCode.CANCELLED)

    @staticmethod
    def _record(call: Call, code: grpc.StatusCode) -> None:
        metrics.RPC_REQUESTS.labels(call.method, code.name).inc()
        metrics.RPC_LATENCY.labels(call.method).observe(time.perf_counter() - call.started)


_END = object()


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
