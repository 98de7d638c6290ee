"""The one place where domain errors become gRPC status codes, and where RPCs are measured."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from neardex.indexer import errors

from . import metrics

log = logging.getLogger("neardex.server")

STATUS: dict[type[errors.NeardexError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls], str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


F = TypeVar("F", bound=Callable[..., Any])


def rpc(func: F) -> F:
    """Wrap a unary or server-streaming servicer method: count it, time it, map its errors."""
    method = func.__name__  # servicer methods carry the RPC's own name

    def finish(context: grpc.ServicerContext, started: float, exc: BaseException | None) -> None:
        code = grpc.StatusCode.OK
        if exc is not None:
            code, message = status_of(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method, exc_info=exc)
            metrics.RPC_REQUESTS.labels(method, code.name).inc()
            metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
            context.abort(code, message)
        metrics.RPC_REQUESTS.labels(method, code.name).inc()
        metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)

    @functools.wraps(func)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = func(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as a status
            finish(context, started, exc)
            raise  # unreachable: abort raises
        finish(context, started, None)
        return response

    @functools.wraps(func)
    def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            yield from func(self, request, context)
        except Exception as exc:  # noqa: BLE001
            finish(context, started, exc)
            raise
        finish(context, started, None)

    return streaming if inspect.isgeneratorfunction(func) else unary  # type: ignore[return-value]
