"""The gRPC service on a real port: every RPC through the typed client, bad input through the raw
stub (so the server's own validation answers), health checking and reflection."""

from __future__ import annotations

import math
import threading

import grpc
import pytest

from neardex.client import AlreadyExists, AsyncClient, Client, NotFound
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

DOCS = [
    {"id": "apollo", "text": "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong stepped out first.",
     "title": "Apollo 11", "metadata": {"topic": "space", "year": 1969}},
    {"id": "nile", "text": "The Nile is about 6,650 km long and flows north into the Mediterranean.",
     "metadata": {"topic": "geography", "year": 2000}},
    {"id": "bread", "text": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
     "metadata": {"topic": "cooking", "year": 2015}},
]


@pytest.fixture
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server[1]}")
    yield neardex_pb2_grpc.NeardexStub(channel)
    channel.close()


@pytest.fixture
def filled(client: Client) -> Client:
    client.create_collection("docs")
    client.upsert("docs", DOCS)
    return client


def test_collection_lifecycle(client: Client) -> None:
    info = client.create_collection("docs")
    assert (info.name, info.dimension, info.model, info.index_kind) == ("docs", 384, "all-MiniLM-L6-v2", "flat")
    client.upsert("docs", DOCS)
    info = client.info("docs")
    assert (info.documents, info.chunks, info.vectors) == (3, 3, 3) and info.bytes > 0
    assert [c.name for c in client.collections()] == ["docs"]
    with pytest.raises(AlreadyExists):
        client.create_collection("docs")
    assert client.create_collection("docs", exist_ok=True).documents == 3
    client.delete_collection("docs")
    assert client.collections() == []
    with pytest.raises(NotFound, match="docs"):
        client.info("docs")


def test_search_returns_documents_with_best_chunk_and_timings(filled: Client) -> None:
    result = filled.search("docs", "when did people first land on the moon", k=2)
    top = result.hits[0]
    assert top.id == "apollo" and top.title == "Apollo 11"
    assert top.metadata["topic"] == "space"
    assert DOCS[0]["text"][top.chunk_start : top.chunk_end] == top.text
    assert result.hits[0].score >= result.hits[1].score
    assert {"embed", "dense", "fetch", "total"} <= set(result.timings_ms)
    assert [h.id for h in filled.search("docs", "moon", k=3, filter={"topic": "cooking"})] == ["bread"]
    assert [h.id for h in filled.search("docs", "river", k=3, filter={"year": {"gte": 1990, "lt": 2010}})] == ["nile"]
    assert [h.id for h in filled.search("docs", "moon", k=3, filter={"topic": ["space", "x"]})] == ["apollo"]
    assert len(filled.search("docs", "moon landing", k=3, min_score=0.99, mode="dense")) == 0
    # Hybrid scores are cosines too: the same threshold finds nothing there either.
    assert len(filled.search("docs", "moon landing", k=3, min_score=0.99)) == 0


def test_vector_search_embed_and_batch_search(filled: Client) -> None:
    [vector] = filled.embed([DOCS[1]["text"]])
    assert len(vector) == 384 and math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)
    assert filled.search("docs", vector, k=1).hits[0].id == "nile"
    results = filled.batch_search("docs", ["moon landing", "yeast fermentation"], k=1)
    assert [r.hits[0].id for r in results] == ["apollo", "bread"]


def test_modes_and_ask_over_grpc(filled: Client) -> None:
    assert filled.info("docs").default_mode == "hybrid"
    for mode in ("dense", "lexical", "hybrid"):
        result = filled.search("docs", "sourdough yeast ferment", k=2, mode=mode)
        assert result.mode == mode and result.hits[0].id == "bread"
    hybrid = filled.search("docs", "Apollo 11 Moon", k=1).hits[0]
    assert {r.retriever for r in hybrid.retrievers} == {"dense", "lexical"}
    answers = filled.ask("docs", "Who stepped onto the Moon first?", k=2)
    top = answers[0]
    assert top.passage.id == "apollo" and top.sentence == "Neil Armstrong stepped out first."
    assert top.passage.text[top.sentence_start : top.sentence_end] == top.sentence
    assert 0 <= top.confidence <= 1 and "sentences" in answers.timings_ms


def test_get_delete_and_streamed_upserts(filled: Client) -> None:
    got = filled.get("docs", ["nile", "missing"])
    assert [d.id for d in got.documents] == ["nile"] and got.missing == ["missing"]
    assert got.documents[0].metadata["topic"] == "geography"
    assert filled.delete("docs", ["nile", "missing"]) == 1
    acks = list(filled.upsert_stream("docs", ({"id": f"s{i}", "text": f"stream document {i}"} for i in range(10)),
                                     batch_size=4))
    assert [a.ids for a in acks] == [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"], ["s8", "s9"]]
    again = filled.upsert("docs", DOCS)
    assert (again.upserted, again.unchanged) == (1, 2)  # only the deleted one is written again
    assert filled.info("docs").documents == 13


async def test_async_client_matches_sync(server, filled: Client) -> None:
    async with AsyncClient(f"127.0.0.1:{server[1]}", timeout=60) as aclient:
        result = await aclient.search("docs", "sourdough yeast", k=1)
        assert result.hits[0].id == "bread"
        assert [c.name for c in await aclient.collections()] == ["docs"]
        with pytest.raises(NotFound):
            await aclient.search("nope", "x")


def _count(stub) -> int:
    return stub.GetCollection(pb.GetCollectionRequest(name="docs")).documents


BAD_REQUESTS = [
    ("Search", pb.SearchRequest(collection="docs", text="", top_k=5), grpc.StatusCode.INVALID_ARGUMENT, "query"),
    ("Search", pb.SearchRequest(collection="docs", text="moon", top_k=0), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    ("Search", pb.SearchRequest(collection="docs", text="moon", top_k=100_000), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    ("Search", pb.SearchRequest(collection="docs", vector=pb.Vector(values=[0.1] * 10), top_k=5),
     grpc.StatusCode.INVALID_ARGUMENT, "vector: has dimension 10"),
    ("Search", pb.SearchRequest(collection="docs", vector=pb.Vector(values=[float("nan")] * 384), top_k=5),
     grpc.StatusCode.INVALID_ARGUMENT, "vector: contains NaN"),
    ("Search", pb.SearchRequest(collection="nope", text="moon", top_k=5), grpc.StatusCode.NOT_FOUND, "nope"),
    ("Search", pb.SearchRequest(collection="../etc", text="moon", top_k=5), grpc.StatusCode.INVALID_ARGUMENT, "collection"),
    ("Search", pb.SearchRequest(collection="docs", text="moon", top_k=5, mode=17), grpc.StatusCode.INVALID_ARGUMENT, "mode"),
    ("Search", pb.SearchRequest(collection="docs", text="moon", top_k=5, filter=pb.Filter(
        conditions={"year": pb.Condition(range=pb.Range())})), grpc.StatusCode.INVALID_ARGUMENT, "filter.year"),
    ("Search", pb.SearchRequest(collection="docs", text="word " * 400, top_k=5),
     grpc.StatusCode.INVALID_ARGUMENT, "query: 400 tokens exceeds"),
    ("CreateCollection", pb.CreateCollectionRequest(name="docs"), grpc.StatusCode.ALREADY_EXISTS, "docs"),
    ("CreateCollection", pb.CreateCollectionRequest(name="a/b"), grpc.StatusCode.INVALID_ARGUMENT, "name"),
    ("CreateCollection", pb.CreateCollectionRequest(name=".."), grpc.StatusCode.INVALID_ARGUMENT, "name"),
    ("CreateCollection", pb.CreateCollectionRequest(name="x", index=pb.IndexSpec(kind="btree")),
     grpc.StatusCode.INVALID_ARGUMENT, "index.kind"),
    ("CreateCollection", pb.CreateCollectionRequest(name="x", chunk_tokens=100_000),
     grpc.StatusCode.INVALID_ARGUMENT, "chunk_tokens"),
    ("CreateCollection", pb.CreateCollectionRequest(name="x", model="/no/such/model"),
     grpc.StatusCode.PERMISSION_DENIED, "model"),
    ("CreateCollection", pb.CreateCollectionRequest(name="x", model="none", dimension=2, store="elsewhere"),
     grpc.StatusCode.INVALID_ARGUMENT, "store"),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="new", text="fine"), pb.Document(id="e", text=" ")]),
     grpc.StatusCode.INVALID_ARGUMENT, "documents[1].text"),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="d", text="a"), pb.Document(id="d", text="b")]),
     grpc.StatusCode.INVALID_ARGUMENT, "documents[1].id: duplicate"),
    ("Upsert", pb.UpsertRequest(collection="docs", documents=[pb.Document(id="", text="a")]),
     grpc.StatusCode.INVALID_ARGUMENT, "documents[0].id"),
    ("Upsert", pb.UpsertRequest(collection="nope", documents=[pb.Document(id="a", text="a")]),
     grpc.StatusCode.NOT_FOUND, "nope"),
    ("Ask", pb.AskRequest(collection="docs", question=" ", top_k=3), grpc.StatusCode.INVALID_ARGUMENT, "question"),
    ("Ask", pb.AskRequest(collection="docs", question="why " * 300, top_k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "question: 300 tokens exceeds"),
    ("Ask", pb.AskRequest(collection="docs", question="when", top_k=0), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    ("Ask", pb.AskRequest(collection="docs", question="when", top_k=3, mode=9), grpc.StatusCode.INVALID_ARGUMENT, "mode"),
    ("Ask", pb.AskRequest(collection="nope", question="when", top_k=3), grpc.StatusCode.NOT_FOUND, "nope"),
    ("Search", pb.SearchRequest(collection="docs", vector=pb.Vector(values=[0.1] * 384), top_k=5,
                                mode=pb.SEARCH_MODE_LEXICAL), grpc.StatusCode.INVALID_ARGUMENT, "query: lexical"),
    ("Embed", pb.EmbedRequest(texts=[]), grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    ("Embed", pb.EmbedRequest(texts=["ok", ""]), grpc.StatusCode.INVALID_ARGUMENT, "texts[1]"),
    ("BatchSearch", pb.BatchSearchRequest(requests=[pb.SearchRequest(collection="docs", text="a", top_k=1),
                                                    pb.SearchRequest(collection="docs", text="b", top_k=0)]),
     grpc.StatusCode.INVALID_ARGUMENT, "requests[1].top_k"),
]


@pytest.mark.parametrize(("method", "request_", "code", "field"), BAD_REQUESTS,
                         ids=[f"{m}-{f}" for m, _, _, f in BAD_REQUESTS])
def test_bad_input_gets_the_right_code_names_the_field_and_changes_nothing(
        filled: Client, stub, method: str, request_, code: grpc.StatusCode, field: str) -> None:
    before = filled.get("docs", [d["id"] for d in DOCS])
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request_)
    assert err.value.code() == code
    assert field in err.value.details()
    assert _count(stub) == 3
    assert filled.get("docs", [d["id"] for d in DOCS]) == before
    assert [c.name for c in filled.collections()] == ["docs"]


def test_oversized_messages_are_refused_not_crashing(server, filled: Client, stub) -> None:
    big = pb.UpsertRequest(collection="docs", documents=[pb.Document(id="big", text="x " * (40 * 1024 * 1024))])
    with pytest.raises(grpc.RpcError) as err:
        stub.Upsert(big, timeout=60)
    assert err.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert _count(stub) == 3
    assert filled.search("docs", "moon", k=1).hits[0].id == "apollo"  # still serving


def test_metadata_keeps_its_types(filled: Client) -> None:
    meta = {"s": "x", "b": True, "n": 2.5, "list": ["a", "b"], "nested": {"k": "v"}}
    filled.upsert("docs", [{"id": "m", "text": "metadata types", "metadata": meta}])
    assert filled.get("docs", ["m"]).documents[0].metadata == meta
    assert [h.id for h in filled.search("docs", "metadata", k=5, filter={"b": True})] == ["m"]


def test_health_and_reflection(server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "neardex.v1.Neardex"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in answer.list_services_response.service}
        assert {"neardex.v1.Neardex", "grpc.health.v1.Health"} <= names


def test_searches_during_writes_never_see_half_a_document(filled: Client) -> None:
    """Each version of a document has a marker word in every chunk; a hit must show one version
    whole: its text, chunk and metadata agree, and the document is never missing."""
    stop = threading.Event()
    errors: list[str] = []
    long_text = " ".join(f"Version {{v}} sentence {i} about lighthouses on rocky shores." for i in range(60))

    def writer() -> None:
        v = 0
        while not stop.is_set() and v < 40:
            filled.upsert("docs", [{"id": "lh", "text": long_text.replace("{v}", str(v)), "metadata": {"v": v}}])
            v += 1

    filled.upsert("docs", [{"id": "lh", "text": long_text.replace("{v}", "0"), "metadata": {"v": 0}}])
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(60):
            hits = [h for h in filled.search("docs", "lighthouses on rocky shores", k=3) if h.id == "lh"]
            if len(hits) != 1:
                errors.append(f"document missing or doubled: {[h.id for h in hits]}")
                continue
            version = int(hits[0].metadata["v"])
            if f"Version {version} " not in hits[0].text:
                errors.append(f"chunk of another version than metadata v={version}")
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert filled.info("docs").chunks == filled.info("docs").vectors
