"""Blocking client for the neardex service: the transport that runs the shared methods of
:mod:`neardex.client._methods` by calling and sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from . import _calls as calls
from . import convert
from ._methods import Api, Batches, Emit, Invoke, Items, Plan, Probe, Pull, Relay, advance
from .errors import from_rpc_error
from .retry import delay_or_raise
from .tracing import with_trace

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Client"]


class Client(Api):
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

    def _connect(self, target: str, credentials: grpc.ChannelCredentials | None,
                 options: list[tuple[str, Any]]) -> grpc.Channel:
        if credentials is not None:
            return grpc.secure_channel(target, credentials, options=options)
        return grpc.insecure_channel(target, options=options)

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

    # -- running plans --------------------------------------------------------------------------

    @classmethod
    def _adapt(cls, kind: str, plan: Callable[..., Any]) -> Callable[..., Any]:
        if kind == "unary":
            def unary(self: Client, *args: Any, **kwargs: Any) -> Any:
                return self._run(plan(self, *args, **kwargs))
            return unary
        if kind == "iterating":
            def iterating(self: Client, *args: Any, **kwargs: Any) -> Iterator[Any]:
                yield from self._iterate(plan(self, *args, **kwargs))
            return iterating

        def streaming(self: Client, *args: Any, **kwargs: Any) -> Iterator[Any]:
            relay: Relay[Any] = plan(self, *args, **kwargs)
            return self._stream(relay, self._batches(relay.batches))
        return streaming

    def _run(self, plan: Plan[Any]) -> Any:
        """Drives a plan to its end: each step it yields done here, each answer (or error) sent
        back into it."""
        answer: Any = None
        error: Exception | None = None
        while True:
            try:
                step = advance(plan, answer, error)
            except StopIteration as end:
                return end.value
            answer, error = self._attempt(step)

    def _iterate(self, plan: Items[Any]) -> Iterator[Any]:
        answer: Any = None
        error: Exception | None = None
        while True:
            try:
                step = advance(plan, answer, error)
            except StopIteration:
                return
            if isinstance(step, Emit):
                yield from step.items
                answer, error = None, None
            else:
                answer, error = self._attempt(step)

    def _attempt(self, step: Any) -> tuple[Any, Exception | None]:
        try:
            return self._perform(step), None
        except Exception as exc:  # thrown into the plan, which may handle it
            return None, exc

    def _perform(self, step: Any) -> Any:
        if isinstance(step, Invoke):
            return self._invoke(step.call, step.timeout)
        if isinstance(step, Pull):
            return next(step.source, None)
        if isinstance(step, Batches):
            return self._batches(step)
        if isinstance(step, Probe):
            return self._health_check(
                convert.HEALTH_CHECK_REQUEST, timeout=step.deadline, metadata=with_trace(self._settings.metadata)
            )
        raise TypeError(f"not a step: {step!r}")

    @staticmethod
    def _batches(step: Batches) -> Iterator[Any]:
        return calls.upsert_batches(step.collection, step.documents, step.batch_size)  # type: ignore[arg-type]

    def _invoke(self, call: calls.Prepared[calls.OutT], timeout: float | None) -> calls.OutT:
        method = getattr(self._stub, call.method)
        deadline = self._settings.deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = method(call.request, timeout=deadline, metadata=with_trace(self._settings.metadata))
            except grpc.RpcError as err:
                time.sleep(delay_or_raise(self._settings.retry, err, call.idempotent, attempt))
            else:
                return call.parse(response)

    def _stream(self, relay: Relay[calls.OutT], requests: Iterator[Any]) -> Iterator[calls.OutT]:
        feed = calls.StreamFeed()
        responses = getattr(self._stub, relay.rpc.method)(
            feed.requests(requests), timeout=relay.deadline, metadata=with_trace(self._settings.metadata)
        )
        try:
            for response in responses:
                yield relay.rpc.parse(response)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            # Stops the call when the caller abandons the iteration early.
            responses.cancel()
        feed.raise_error()
