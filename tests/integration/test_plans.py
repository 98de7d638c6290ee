"""The plans the LangChain and LlamaIndex integrations share (neardex.client._plans) against a real
server: a client's error thrown into the plan that asked, steps that are not client calls answered
by the integration's handler, the clients made from an address (one AsyncClient per event loop,
closed by whoever made them), the worker-thread fallback and each integration's own refusals."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest

from neardex.client import AsyncClient, Client, NotFound
from neardex.client._plans import Clients, Plan, arun, call, run

REFUSALS: dict[str, Any] = {"none_given": (LookupError, "nothing given"),
                            "async_only": (PermissionError, "async only")}


def info_or_create(name: str) -> Plan[tuple[str, str]]:
    """The model of collection ``name``, creating it when the server says it is not there."""
    try:
        info = yield call("info", name)
        how = "found"
    except NotFound:
        info = yield call("create_collection", name)
        how = "created"
    return how, info.model


def info(name: str) -> Plan[Any]:
    return (yield call("info", name))


def shout(word: str) -> Plan[str]:
    loud = yield ("shout", word)
    return str(loud)


def test_an_error_is_thrown_into_the_plan_blocking_and_awaited(server: tuple[object, int], client: Client) -> None:
    assert run(client, info_or_create("one")) == ("created", client.info("one").model)
    assert run(client, info_or_create("one"))[0] == "found"

    async def awaited() -> None:
        async with AsyncClient(f"127.0.0.1:{server[1]}") as aclient:
            assert (await arun(aclient, info_or_create("two")))[0] == "created"
            assert (await arun(aclient, info_or_create("two")))[0] == "found"
            with pytest.raises(NotFound):  # a plan that does not catch lets the error out as it came
                await arun(aclient, info("absent"))

    asyncio.run(awaited())


def test_steps_that_are_not_calls_go_to_the_handler(client: Client) -> None:
    assert run(client, shout("hey"), lambda step: step[1].upper()) == "HEY"

    async def ahandle(step: Any) -> str:
        return str(step[1]).upper() + "!"

    assert asyncio.run(arun(client, shout("hey"), ahandle)) == "HEY!"
    with pytest.raises(TypeError, match="not a client call"):
        run(client, shout("hey"))


def test_clients_made_from_an_address_one_asyncclient_per_loop(server: tuple[object, int], client: Client) -> None:
    clients = Clients(address=f"127.0.0.1:{server[1]}", options={"timeout": 30}, **REFUSALS)
    made = clients.blocking()
    assert clients.run(info_or_create("three"))[0] == "created" and clients.blocking() is made
    clients.close()
    assert clients.client is None and clients.blocking() is not made  # a new one, when needed again

    async def in_a_loop() -> AsyncClient | None:
        first = clients.awaiting()
        assert clients.awaiting() is first
        assert (await clients.arun(info_or_create("three")))[0] == "found"
        return first

    first, second = asyncio.run(in_a_loop()), asyncio.run(in_a_loop())
    assert first is not None and second is not None and first is not second
    asyncio.run(clients.aclose())
    assert clients.client is None


def test_a_client_alone_serves_the_async_forms_in_a_worker_thread(client: Client) -> None:
    threads: list[int] = []

    def plan() -> Plan[str]:
        threads.append(threading.get_ident())
        how, _ = yield from info_or_create("four")
        return how

    given = Clients(client, **REFUSALS)
    assert asyncio.run(given.arun(plan())) == "created"
    assert threads and threads[0] != threading.get_ident()
    given.close()  # not made here: stays open
    assert client.info("four").documents == 0


async def test_each_integration_words_its_refusals(server: tuple[object, int]) -> None:
    with pytest.raises(LookupError, match="nothing given"):
        Clients(**REFUSALS)
    async with AsyncClient(f"127.0.0.1:{server[1]}") as aclient:
        clients = Clients(async_client=aclient, **REFUSALS)
        plan = info_or_create("five")
        with pytest.raises(PermissionError, match="async only"):
            clients.run(plan)
        assert inspect.getgeneratorstate(plan) == inspect.GEN_CLOSED
        assert (await clients.arun(info_or_create("five")))[0] == "created"
