"""The rerank stage served: over HTTP (Connect JSON), gRPC and both clients the same hits in the
cross-encoder's order, through the server's model scheduler; a collection's default shown in its
info and applied; Ask's confidence the cross-encoder's; a model outside the server's model folder,
a missing one and a bad depth each one error naming the field; a passed deadline
DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neardex.client import AsyncClient, Client, DeadlineExceeded, InvalidArgument, PermissionDenied
from neardex.indexer.embedding.rerankers import CrossEncoderModel
from neardex.server import auth
from neardex.server.app import Server, create_server
from neardex.server.settings import Settings
from tests.integration.test_http import post
from tests.support.models import cross_encoder

BOOKS = [
    {"id": "nile", "text": "The Nile flows north into the Mediterranean Sea."},
    {"id": "nile-2", "text": "The Nile river flows north through Egypt."},
    {"id": "amazon", "text": "The Amazon carries more water than any other river."},
    {"id": "andes", "text": "The Andes are the longest mountain range above sea level."},
    {"id": "danube", "text": "The Danube flows east into the Black Sea."},
    {"id": "bread", "text": "Sourdough bread rises because wild yeast ferments the dough."},
]
QUERY = "which way does the river flow"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    cross_encoder(folder / "ce")
    return folder


@pytest.fixture
def served(tmp_path: Path, models: Path) -> Iterator[tuple[str, int, dict[str, str], Server]]:
    keys_file = tmp_path / "keys.json"
    keys = {role: auth.create_key(keys_file, role, role) for role in ("read", "admin")}
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=0, api_keys_file=keys_file, model_dir=models))
    base = f"http://127.0.0.1:{server.http_port}"
    assert post(base, "CreateCollection", {"name": "books"}, keys["admin"])[0] == 200
    assert post(base, "Upsert", {"collection": "books", "documents": BOOKS}, keys["admin"])[0] == 200
    yield base, port, keys, server
    server.stop(grace=1)


def _rerank_of(hit: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in hit.get("retrievers", []) if r["retriever"] == "rerank"), None)


def test_rerank_over_http_grpc_and_both_clients(served: tuple[str, int, dict[str, str], Server]) -> None:
    base, port, keys, server = served
    read = keys["read"]
    query = {"collection": "books", "text": QUERY, "topK": 5, "mode": "SEARCH_MODE_DENSE"}
    plain = post(base, "Search", query, read)[1]["hits"]
    status, body = post(base, "Search", {**query, "rerank": {"model": "ce", "depth": 4}}, read)
    assert status == 200 and "rerank" in body["timingsMs"]
    hits = body["hits"]
    entries = [_rerank_of(h) for h in hits]
    assert all(entries[:4]) and entries[4] is None
    assert [e["rank"] for e in entries[:4]] == [1, 2, 3, 4]
    scores = [e["score"] for e in entries[:4]]
    assert scores == sorted(scores, reverse=True)
    assert {h["id"] for h in hits[:4]} == {h["id"] for h in plain[:4]} and hits[4]["id"] == plain[4]["id"]
    by_id = {h["id"]: h["score"] for h in plain}
    assert all(h["score"] == pytest.approx(by_id[h["id"]], abs=1e-5) for h in hits)
    # The cross-encoder's calls went through the server's model scheduler.
    assert any(isinstance(getattr(s._encode, "__self__", None), CrossEncoderModel) for s in server.schedulers.values())
    ids = [h["id"] for h in hits]
    rerank = {"model": "ce", "depth": 4}
    with Client(f"127.0.0.1:{port}", api_key=read) as client:
        found = client.search("books", QUERY, k=5, mode="dense", rerank=rerank)
        assert [h.id for h in found] == ids
        assert [r.score for h in found[:4] for r in h.retrievers if r.retriever == "rerank"] == \
            pytest.approx(scores, abs=1e-5)
        assert [h.id for h in client.batch_search("books", [QUERY, QUERY], k=5, mode="dense", rerank=rerank)[1]] == ids
        answers = client.ask("books", QUERY, k=2, rerank="ce").answers
        assert [a.confidence for a in answers] == pytest.approx(
            [r.score for a in answers for r in a.passage.retrievers if r.retriever == "rerank"])
        with pytest.raises(DeadlineExceeded):
            client.search("books", QUERY, k=5, rerank=rerank, timeout=0.001)

    async def run() -> list[str]:
        async with AsyncClient(f"127.0.0.1:{port}", api_key=read) as aclient:
            return [h.id for h in await aclient.search("books", QUERY, k=5, mode="dense", rerank=rerank)]

    assert asyncio.run(run()) == ids
    status, error = post(base, "Search", {**query, "rerank": rerank}, read, headers={"connect-timeout-ms": "0"})
    assert (status, error["code"]) == (504, "deadline_exceeded")


def test_a_collection_default_over_the_wire(served: tuple[str, int, dict[str, str], Server]) -> None:
    base, port, keys, _ = served
    status, info = post(base, "CreateCollection", {"name": "ranked", "rerank": {"model": "ce", "depth": 3}}, keys["admin"])
    assert status == 200 and info["rerank"]["depth"] == 3 and info["rerank"]["model"].endswith("/ce")
    assert post(base, "Upsert", {"collection": "ranked", "documents": BOOKS}, keys["admin"])[0] == 200
    hits = post(base, "Search", {"collection": "ranked", "text": QUERY, "topK": 5}, keys["read"])[1]["hits"]
    assert [_rerank_of(h) is not None for h in hits] == [True] * 3 + [False] * 2
    off = post(base, "Search", {"collection": "ranked", "text": QUERY, "topK": 5, "rerank": {"model": "none"}},
               keys["read"])[1]["hits"]
    assert all(_rerank_of(h) is None for h in off)
    with Client(f"127.0.0.1:{port}", api_key=keys["admin"]) as client:
        assert client.info("ranked").rerank.depth == 3
        assert client.create_collection("ranked2", rerank="ce").rerank.model.endswith("/ce")
        assert client.info("books").rerank is None


def test_bad_rerank_requests_name_the_field(served: tuple[str, int, dict[str, str], Server], tmp_path: Path) -> None:
    base, port, keys, _ = served
    read = keys["read"]
    query = {"collection": "books", "text": QUERY, "topK": 3}
    status, error = post(base, "Search", {**query, "rerank": {"model": str(tmp_path)}}, read)
    assert (status, error["code"]) == (403, "permission_denied")
    assert error["message"].startswith("rerank.model: ") and "--model-dir" in error["message"]
    status, error = post(base, "Search", {**query, "rerank": {"model": "missing"}}, read)
    assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("rerank.model: ")
    status, error = post(base, "BatchSearch", {"requests": [query, {**query, "rerank": {"model": "ce", "depth": 5000}}]},
                         read)
    assert (status, error["code"]) == (400, "invalid_argument")
    assert error["message"].startswith("requests[1].rerank.depth: must be between 0 and 1000")
    status, error = post(base, "Ask", {"collection": "books", "question": QUERY, "topK": 2, "rerank": {"model": "missing"}},
                         read)
    assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("rerank.model: ")
    status, error = post(base, "CreateCollection", {"name": "bad", "rerank": {"model": "missing"}}, keys["admin"])
    assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("rerank.model: ")
    with Client(f"127.0.0.1:{port}", api_key=read) as client:
        with pytest.raises(PermissionDenied, match=r"rerank\.model: "):
            client.search("books", QUERY, rerank=str(tmp_path))
        with pytest.raises(InvalidArgument, match=r"rerank\.depth"):
            client.search("books", QUERY, rerank={"model": "ce", "depth": -1})


def test_the_servers_cross_encoder_is_asks_default(tmp_path: Path, models: Path) -> None:
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=-1, cross_encoder=str(models / "ce")))
    try:
        with Client(f"127.0.0.1:{port}") as client:
            client.create_collection("books")
            client.upsert("books", BOOKS)
            answers = client.ask("books", QUERY, k=3).answers
            reranked = [[r.score for r in a.passage.retrievers if r.retriever == "rerank"] for a in answers]
            assert all(reranked) and [a.confidence for a in answers] == pytest.approx([r[0] for r in reranked])
            assert sorted((a.confidence for a in answers), reverse=True) == [a.confidence for a in answers]
            # Search keeps its own default (none), and Ask's request can turn the server's off.
            assert all(not h.retrievers or all(r.retriever != "rerank" for r in h.retrievers)
                       for h in client.search("books", QUERY, k=3))
            off = client.ask("books", QUERY, k=3, rerank="none").answers
            assert all(r.retriever != "rerank" for a in off for r in a.passage.retrievers)
    finally:
        server.stop(grace=1)


def test_the_cli_reranks(served: tuple[str, int, dict[str, str], Server], capsys: pytest.CaptureFixture[str]) -> None:
    from neardex.client import cli

    base, port, keys, _ = served
    server = ["--server", f"127.0.0.1:{port}", "--api-key", keys["read"]]
    assert cli.main(["search", "books", QUERY, "--k", "4", "--mode", "dense", "--rerank", "ce", "--rerank-depth", "3",
                     "--json", *server]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [any(r["retriever"] == "rerank" for r in h["retrievers"]) for h in hits] == [True, True, True, False]
    assert cli.main(["search", "books", QUERY, "--k", "2", "--rerank", "ce", *server]) == 0
    assert "(rerank 0." in capsys.readouterr().out
