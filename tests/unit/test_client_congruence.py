"""Client and AsyncClient offer the same calls: every public method of one exists on the other
with the same parameters, defaults, annotations and docstring, the async one awaitable (or an
async iterator where the blocking one is an iterator). The check is run on the real classes and
on deliberately drifted copies, so it is known to catch a drift."""

from __future__ import annotations

import inspect
from typing import Any

from neardex.client import AsyncClient, Client


def public_methods(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")
            and callable(getattr(cls, name))}


def _async_return(sync_return: str) -> str:
    return "Async" + sync_return if sync_return.startswith("Iterator[") else sync_return


def drift(sync_cls: type, async_cls: type) -> list[str]:
    """What differs between the two clients, one line a difference; empty when congruent."""
    sync, aio = public_methods(sync_cls), public_methods(async_cls)
    problems = [f"{name}: only on {sync_cls.__name__}" for name in sorted(sync.keys() - aio.keys())]
    problems += [f"{name}: only on {async_cls.__name__}" for name in sorted(aio.keys() - sync.keys())]
    for name in sorted(sync.keys() & aio.keys()) + ["__init__"]:
        blocking, awaitable = getattr(sync_cls, name), getattr(async_cls, name)
        s_sig, a_sig = inspect.signature(blocking), inspect.signature(awaitable)
        if list(s_sig.parameters.values()) != list(a_sig.parameters.values()):
            problems.append(f"{name}: parameters {s_sig} != {a_sig}")
        if _async_return(str(s_sig.return_annotation)) != str(a_sig.return_annotation):
            problems.append(f"{name}: returns {s_sig.return_annotation} != {a_sig.return_annotation}")
        if inspect.getdoc(blocking) != inspect.getdoc(awaitable) and name != "__init__":
            problems.append(f"{name}: docstrings differ")
        iterates = str(s_sig.return_annotation).startswith("Iterator[")
        if name != "__init__" and not iterates and not inspect.iscoroutinefunction(awaitable):
            problems.append(f"{name}: not awaitable on {async_cls.__name__}")
    return problems


def test_the_clients_are_congruent() -> None:
    assert drift(Client, AsyncClient) == []
    # The whole surface is compared, not a few names.
    assert {"search", "upsert", "upsert_stream", "scroll_all", "health", "close"} <= public_methods(Client).keys()
    assert len(public_methods(Client)) >= 27


def test_the_async_client_awaits_and_iterates_asynchronously() -> None:
    assert inspect.iscoroutinefunction(AsyncClient.search)
    assert not inspect.iscoroutinefunction(Client.search)
    assert inspect.isasyncgenfunction(AsyncClient.scroll_all) and inspect.isgeneratorfunction(Client.scroll_all)
    assert str(inspect.signature(AsyncClient.upsert_stream).return_annotation) == "AsyncIterator[UpsertResult]"


def test_a_drifted_default_is_caught() -> None:
    class Drifted(AsyncClient):
        async def count(self, collection: str, *, filter: Any = None, timeout: float | None = 5.0) -> int:
            """How many documents match ``filter`` (all of them without one)."""
            return 0

    assert [line.split(":")[0] for line in drift(Client, Drifted)] == ["count"]


def test_a_missing_method_a_docstring_and_a_blocking_method_are_caught() -> None:
    class Extra(Client):
        def extra(self) -> None:
            pass

    class Redocumented(AsyncClient):
        async def info(self, name: str, *, timeout: float | None = None) -> Any:
            """Something else."""

    class Blocking(AsyncClient):
        def info(self, name: str, *, timeout: float | None = None) -> Any:  # type: ignore[override]
            pass

    assert drift(Extra, AsyncClient) == ["extra: only on Extra"]
    assert "info: docstrings differ" in drift(Client, Redocumented)
    assert "info: not awaitable on Blocking" in drift(Client, Blocking)
