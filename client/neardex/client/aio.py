"""asyncio client for the neardex service: :class:`neardex.client.Client` with awaitable methods,
the transport that runs the shared methods of :mod:`neardex.client._methods` by awaiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from . import _calls as calls
from . import convert
from ._methods import Api, Batches, Documents, Emit, Invoke, Items, Plan, Probe, Pull, Relay, advance
from .errors import from_rpc_error
from .retry import delay_or_raise
from .tracing import with_trace

if TYPE_CHECKING:
    from typing import Self

__all__ = ["AsyncClient", "Documents"]


class AsyncClient(Api):
    """A connection to a neardex server for asyncio code; create it inside a running event loop.

    Same arguments, methods and errors as :class:`neardex.client.Client`; ``upsert`` and
    ``upsert_stream`` also take async iterables.
    """

    _iterator_type = "AsyncIterator"

    def _connect(self, target: str, credentials: grpc.ChannelCredentials | None,
                 options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        if credentials is not None:
            return grpc.aio.secure_channel(target, credentials, options=options)
        return grpc.aio.insecure_channel(target, options=options)

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

    # -- running plans --------------------------------------------------------------------------

    @classmethod
    def _adapt(cls, kind: str, plan: Callable[..., Any]) -> Callable[..., Any]:
        if kind == "unary":
            async def unary(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
                return await self._run(plan(self, *args, **kwargs))
            return unary
        if kind == "iterating":
            async def iterating(self: AsyncClient, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                async for item in self._iterate(plan(self, *args, **kwargs)):
                    yield item
            return iterating

        def streaming(self: AsyncClient, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            relay: Relay[Any] = plan(self, *args, **kwargs)
            return self._stream(relay, self._batches(relay.batches))
        return streaming

    async def _run(self, plan: Plan[Any]) -> Any:
        """Drives a plan to its end: each step it yields awaited here, each answer (or error) sent
        back into it."""
        answer: Any = None
        error: Exception | None = None
        while True:
            try:
                step = advance(plan, answer, error)
            except StopIteration as end:
                return end.value
            answer, error = await self._attempt(step)

    async def _iterate(self, plan: Items[Any]) -> AsyncIterator[Any]:
        answer: Any = None
        error: Exception | None = None
        while True:
            try:
                step = advance(plan, answer, error)
            except StopIteration:
                return
            if isinstance(step, Emit):
                for item in step.items:
                    yield item
                answer, error = None, None
            else:
                answer, error = await self._attempt(step)

    async def _attempt(self, step: Any) -> tuple[Any, Exception | None]:
        try:
            return await self._perform(step), None
        except Exception as exc:  # thrown into the plan, which may handle it
            return None, exc

    async def _perform(self, step: Any) -> Any:
        if isinstance(step, Invoke):
            return await self._invoke(step.call, step.timeout)
        if isinstance(step, Pull):
            return await anext(step.source, None)
        if isinstance(step, Batches):
            return self._batches(step)
        if isinstance(step, Probe):
            return await self._health_check(
                convert.HEALTH_CHECK_REQUEST, timeout=step.deadline, metadata=with_trace(self._settings.metadata)
            )
        raise TypeError(f"not a step: {step!r}")

    @staticmethod
    def _batches(step: Batches) -> AsyncIterator[Any]:
        return calls.aupsert_batches(step.collection, step.documents, step.batch_size)

    async def _invoke(self, call: calls.Prepared[calls.OutT], timeout: float | None) -> calls.OutT:
        method = getattr(self._stub, call.method)
        deadline = self._settings.deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await method(call.request, timeout=deadline, metadata=with_trace(self._settings.metadata))
            except grpc.RpcError as err:
                await asyncio.sleep(delay_or_raise(self._settings.retry, err, call.idempotent, attempt))
            else:
                return call.parse(response)

    async def _stream(self, relay: Relay[calls.OutT], requests: AsyncIterator[Any]) -> AsyncIterator[calls.OutT]:
        feed = calls.StreamFeed()
        call = getattr(self._stub, relay.rpc.method)(
            feed.arequests(requests), timeout=relay.deadline, metadata=with_trace(self._settings.metadata)
        )
        try:
            async for response in call:
                yield relay.rpc.parse(response)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        finally:
            # Stops the call when the caller abandons the iteration early.
            call.cancel()
        feed.raise_error()
