"""Count, Scroll and field selection over a real server, against what was written; and
`neardex index --server --delete-missing`, which pages through the ids with Scroll."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from neardex.client import AsyncClient, Client, InvalidArgument
from tests.support.processes import free_port, run_cli, start_serve, stop_process

DOCS = [{"id": f"d{i:03d}", "text": f"Document {i} about {'rivers' if i % 2 else 'mountains'}.",
         "metadata": {"parity": "odd" if i % 2 else "even", "n": i, "tag": f"t{i % 5}"}} for i in range(250)]


@pytest.fixture
def filled(client: Client) -> Client:
    client.create_collection("docs")
    client.upsert("docs", DOCS, batch_size=100)
    return client


def test_count_with_and_without_a_filter(filled: Client) -> None:
    assert filled.count("docs") == 250
    assert filled.count("docs", filter={"parity": "odd"}) == 125
    assert filled.count("docs", filter={"n": {"gte": 10, "lt": 20}, "parity": "even"}) == 5
    assert filled.count("docs", filter={"tag": ["t1", "t2"]}) == 100
    assert filled.count("docs", filter={"parity": "none"}) == 0


def test_scroll_pages_through_everything_once_in_id_order(filled: Client) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        page = filled.scroll("docs", limit=40, cursor=cursor)
        seen += [d.id for d in page]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(d["id"] for d in DOCS) and pages == 7
    assert [d.id for d in filled.scroll_all("docs", filter={"parity": "odd"}, page_size=7)] == \
        [d["id"] for d in DOCS if d["metadata"]["parity"] == "odd"]
    first = filled.scroll("docs", limit=3)
    assert first.documents[0].text == DOCS[0]["text"] and first.documents[0].metadata["tag"] == "t0"


def test_field_selection(filled: Client) -> None:
    [bare] = filled.scroll("docs", limit=1, text=False, metadata=False)
    assert (bare.id, bare.text, bare.metadata) == ("d000", "", {})
    [some] = filled.get("docs", ["d007"], metadata=["tag", "absent"]).documents
    assert some.text == DOCS[7]["text"] and some.metadata == {"tag": "t2"}
    [whole] = filled.get("docs", ["d007"]).documents
    assert set(whole.metadata) == {"parity", "n", "tag"}
    with pytest.raises(InvalidArgument, match="metadata"):
        filled.get("docs", ["d007"], metadata=[])


def test_scroll_under_concurrent_writes_returns_each_document_at_most_once(filled: Client) -> None:
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            filled.upsert("docs", [{"id": f"d{i % 250:03d}x", "text": f"Added while scrolling {i}."}])
            filled.delete("docs", [f"d{(i * 7) % 250:03d}"])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        ids = [d.id for d in filled.scroll_all("docs", page_size=10, text=False)]
    finally:
        stop.set()
        thread.join()
    assert ids == sorted(set(ids))  # in id order, none twice
    untouched = {d["id"] for d in DOCS} - {f"d{(i * 7) % 250:03d}" for i in range(250)}
    assert untouched <= set(ids)


def test_bad_scroll_arguments(filled: Client, server) -> None:
    from neardex.v1 import neardex_pb2 as pb
    from neardex.v1 import neardex_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = neardex_pb2_grpc.NeardexStub(channel)
        for request, field in ((pb.ScrollRequest(collection="docs", cursor="not-a-cursor"), "cursor"),
                               (pb.ScrollRequest(collection="docs", limit=-1), "limit"),
                               (pb.ScrollRequest(collection="docs", limit=10**6), "limit"),
                               (pb.CountRequest(collection="nope"), "collection")):
            with pytest.raises(grpc.RpcError) as err:
                getattr(stub, type(request).__name__.removesuffix("Request"))(request)
            assert err.value.details().startswith(f"{field}:")


async def test_async_scroll_all(server, filled: Client) -> None:
    async with AsyncClient(f"127.0.0.1:{server[1]}") as client:
        assert await client.count("docs") == 250
        ids = [d.id async for d in client.scroll_all("docs", page_size=64, metadata=False)]
    assert len(ids) == 250


def test_index_through_a_server_deletes_missing_documents(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(f'{{"id": "d{i}", "text": "Passage {i} about tides."}}\n' for i in range(30)))
    port = free_port()
    proc = start_serve(tmp_path / "data", port)
    try:
        server = ["--server", f"127.0.0.1:{port}", "--quiet"]
        run_cli("index", str(corpus), "--collection", "docs", *server)
        corpus.write_text("".join(f'{{"id": "d{i}", "text": "Passage {i} about tides."}}\n' for i in range(20)))
        out = run_cli("index", str(corpus), "--collection", "docs", "--delete-missing", *server).stdout
        assert "0 written" in out and "20 unchanged" in out and "10 deleted" in out
        with Client(f"127.0.0.1:{port}") as client:
            assert client.count("docs") == 20
    finally:
        stop_process(proc)


def test_field_selection_on_search_ask_and_similar(filled: Client) -> None:
    [hit] = filled.search("docs", "rivers", k=1, text=False, metadata=["tag"])
    assert hit.text == "" and set(hit.metadata) == {"tag"} and hit.score > 0
    [hit] = filled.search("docs", "rivers", k=1, metadata=False)
    assert hit.metadata == {} and hit.text.startswith("Document")
    [answer] = filled.ask("docs", "Which documents are about rivers?", k=1, text=False, metadata=False)
    assert answer.passage.text == "" and answer.sentence and answer.passage.metadata == {}
    [similar] = filled.similar("docs", ["d001"], k=1, metadata=["parity"])
    assert set(similar.metadata) == {"parity"}
    [batch] = filled.batch_search("docs", ["mountains"], k=1, text=False)
    assert batch[0].text == "" and "n" in batch[0].metadata
