"""Plans of public client calls, and the clients they run on: what the LangChain and LlamaIndex
integrations share.

Each integration writes an operation once, as a plan: a generator that yields the client calls it
needs (:class:`Call`) and gets their answers back, holding the mapping from the framework's types
to neardex's and back but no I/O. :func:`run` answers a plan on a blocking
:class:`~neardex.client.Client`, :func:`arun` awaits it on an :class:`~neardex.client.AsyncClient`,
so an integration's sync and async forms cannot drift apart. A call's error is thrown into the plan
at its ``yield``, so a plan may handle it; one that does not lets it out as it came.

The client's own methods are plans too (``_methods.py``), one level down: their steps are RPCs,
batches and health probes, and they are turned into the client's methods when its classes are
made. The integrations stay on the public methods on purpose: they are thin and sit on what any
caller has, so they get the client's retries, deadlines, keys, TLS, batching and cursors as they
are, and a user hands them the clients they already hold.

:class:`Clients` is what an integration object calls through: the clients it was given, or those
it makes from an address (and closes), with each integration's own refusals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .aio import AsyncClient
from .client import Client

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call this method of the client: the blocking one, or the asyncio one awaited."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, kwargs)


# A plan yields Calls (and any step of the integration's own, answered by its handler) and returns T.
Plan = Generator[Any, Any, T]
# What to raise, and its message, in a situation an integration words its own way.
Refusal = tuple[type[Exception], str]


class _Steps(Generic[T]):
    """A plan's steps, one at a time, each resumed with the answer (or the error) to the one
    before; ``result`` is what the plan returns."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._answer: Any = None
        self._error: Exception | None = None
        self.result: T

    def __iter__(self) -> _Steps[T]:
        return self

    def __next__(self) -> Any:
        answer, error, self._answer, self._error = self._answer, self._error, None, None
        try:
            return self._plan.throw(error) if error is not None else self._plan.send(answer)
        except StopIteration as end:
            self.result = end.value
            raise StopIteration from None

    def answer(self, answer: Any) -> None:
        self._answer = answer

    def fail(self, error: Exception) -> None:
        """Thrown into the plan at its ``yield``, which may handle it."""
        self._error = error


def run(client: Any, plan: Plan[T], handle: Callable[[Any], Any] | None = None) -> T:
    """Drives a plan on a blocking client: each call made (a step that is not a :class:`Call`
    given to ``handle``), its answer or its error sent back in."""
    steps = _Steps(plan)
    for step in steps:
        try:
            if isinstance(step, Call):
                steps.answer(getattr(client, step.method)(*step.args, **step.kwargs))
            else:
                steps.answer(_handler(handle, step)(step))
        except Exception as exc:
            steps.fail(exc)
    return steps.result


async def arun(aclient: Any, plan: Plan[T], ahandle: Callable[[Any], Awaitable[Any]] | None = None) -> T:
    """The same on an asyncio client, each call (and ``ahandle``) awaited."""
    steps = _Steps(plan)
    for step in steps:
        try:
            if isinstance(step, Call):
                steps.answer(await getattr(aclient, step.method)(*step.args, **step.kwargs))
            else:
                steps.answer(await _handler(ahandle, step)(step))
        except Exception as exc:
            steps.fail(exc)
    return steps.result


def _handler(handle: Callable[[Any], T] | None, step: Any) -> Callable[[Any], T]:
    if handle is None:
        raise TypeError(f"a plan yielded {step!r}, which is not a client call, and nothing handles it")
    return handle


class Clients:
    """The clients an integration object calls through, and the plans run on them.

    Given a ``Client``, an ``AsyncClient`` or both, it uses them and never closes them. Given an
    ``address`` instead (with ``options``, the clients' keyword arguments), it makes each client
    when first needed and closes what it made (:meth:`close`, :meth:`aclose`); an ``AsyncClient``
    it makes belongs to the event loop it was made in (grpc.aio channels do), so it makes one per
    loop. Without any asyncio client, :meth:`arun` runs the blocking plan in a worker thread, off
    the event loop, as LangChain's and LlamaIndex's own defaults do.

    ``none_given`` is raised when there is nothing to connect with, ``async_only`` when a blocking
    method is called with only an ``AsyncClient``: each integration words them (and picks their
    types) as its users expect. ``handle`` and ``ahandle`` answer the steps of the integration's
    own that are not client calls, blocking and awaited.
    """

    def __init__(
        self,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
        *,
        none_given: Refusal,
        async_only: Refusal,
        address: str | None = None,
        options: Mapping[str, Any] | None = None,
        handle: Callable[[Any], Any] | None = None,
        ahandle: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> None:
        if client is None and async_client is None and address is None:
            raise none_given[0](none_given[1])
        self.client = client
        self.async_client = async_client
        self.address = address
        self.options = dict(options or {})
        self._async_only = async_only
        self._handle = handle
        self._ahandle = ahandle
        self._made_client: Client | None = None
        self._made_async: tuple[asyncio.AbstractEventLoop, AsyncClient] | None = None

    def blocking(self) -> Client:
        """The blocking client: the one given, else one made from the address."""
        if self.client is None:
            if self.address is None:
                raise self._async_only[0](self._async_only[1])
            self.client = self._made_client = Client(self.address, **self.options)
        return self.client

    def awaiting(self) -> AsyncClient | None:
        """The asyncio client for the running loop: the one given, else one made from the address
        for this loop; None when there is neither."""
        if self.async_client is not None:
            return self.async_client
        if self.address is None:
            return None
        loop = asyncio.get_running_loop()
        if self._made_async is None or self._made_async[0] is not loop:
            self._made_async = (loop, AsyncClient(self.address, **self.options))
        return self._made_async[1]

    def run(self, plan: Plan[T]) -> T:
        try:
            client = self.blocking()
        except Exception:
            plan.close()
            raise
        return run(client, plan, self._handle)

    async def arun(self, plan: Plan[T]) -> T:
        aclient = self.awaiting()
        if aclient is None:
            return await asyncio.to_thread(self.run, plan)
        return await arun(aclient, plan, self._ahandle)

    def close(self) -> None:
        """Closes the blocking client made from the address (not one given)."""
        if self._made_client is not None:
            made, self._made_client = self._made_client, None
            self.client = None
            made.close()

    async def aclose(self) -> None:
        """Closes the clients made from the address (not those given)."""
        self.close()
        if self._made_async is not None:
            made_async, self._made_async = self._made_async[1], None
            await made_async.close()
