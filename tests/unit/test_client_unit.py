"""Unit tests of neardex.client: conversions, retry decisions, error mapping, and both clients
against a tiny in-process gRPC server that scripts each RPC (no neardex server involved)."""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2

from neardex.client import (
    AlreadyExists,
    AsyncClient,
    Client,
    DeadlineExceeded,
    Document,
    Internal,
    InvalidArgument,
    NeardexError,
    NotFound,
    ResourceExhausted,
    RetryPolicy,
    SearchResult,
    Unavailable,
    Unknown,
    UpsertResult,
    convert,
)
from neardex.client import _calls as calls
from neardex.client.errors import from_rpc_error
from neardex.v1 import neardex_pb2 as pb

# ---------------------------------------------------------------------------------------------
# Filters


def _condition(flt: pb.Filter | None, key: str) -> pb.Condition:
    assert flt is not None
    condition: pb.Condition = flt.conditions[key]
    return condition


def test_filter_scalar_is_equality() -> None:
    cond = _condition(convert.filter_to_proto({"lang": "en"}), "lang")
    assert cond.WhichOneof("kind") == "eq"
    assert cond.eq.string_value == "en"


@pytest.mark.parametrize("values", [["en", "fr"], ("en", "fr"), {"en", "fr"}])
def test_filter_collection_is_membership(values: Any) -> None:
    cond = _condition(convert.filter_to_proto({"lang": values}), "lang")
    assert cond.WhichOneof("kind") == "in"
    assert sorted(v.string_value for v in getattr(cond, "in").values) == ["en", "fr"]


def test_filter_range() -> None:
    cond = _condition(convert.filter_to_proto({"year": {"gte": 2000, "lt": 2010}}), "year")
    assert cond.WhichOneof("kind") == "range"
    assert cond.range.HasField("gte") and cond.range.gte == 2000.0
    assert cond.range.HasField("lt") and cond.range.lt == 2010.0
    assert not cond.range.HasField("gt") and not cond.range.HasField("lte")


def test_filter_explicit_operators() -> None:
    flt = convert.filter_to_proto({"lang": {"in": ["en", "de"]}, "draft": {"eq": False}})
    assert [v.string_value for v in getattr(_condition(flt, "lang"), "in").values] == ["en", "de"]
    draft = _condition(flt, "draft")
    assert draft.WhichOneof("kind") == "eq" and draft.eq.WhichOneof("kind") == "bool_value"


def test_filter_several_keys_and_numbers() -> None:
    flt = convert.filter_to_proto({"lang": "en", "stars": 5})
    assert flt is not None and set(flt.conditions) == {"lang", "stars"}
    assert _condition(flt, "stars").eq.number_value == 5.0


@pytest.mark.parametrize("empty", [None, {}])
def test_filter_empty_is_absent(empty: Any) -> None:
    assert convert.filter_to_proto(empty) is None


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        ({"year": {"gte": 2000, "before": 2010}}, "filter.year"),
        ({"year": {}}, "filter.year"),
        ({"year": {"eq": 1, "gt": 0}}, "filter.year"),
        ({"year": {"gte": 2000, "lt": "2010"}}, "filter.year"),
        ({"year": {"gte": [2000]}}, "filter.year.gte"),
        ({"year": {"exists": "yes"}}, "filter.year.exists"),
        ({"$or": [{}]}, "filter.$or[0]"),
        ({"year": {"lt": True}}, "filter.year.lt"),
        ({"lang": {"in": "en"}}, "filter.lang.in"),
        ({"lang": []}, "filter.lang"),
        ({"lang": [["en"]]}, "filter.lang[0]"),
        ({"lang": object()}, "filter.lang"),
        ({"": "x"}, "filter"),
    ],
)
def test_filter_errors_name_the_field(flt: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.filter_to_proto(flt)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details.startswith(field + ":"), err.details


# ---------------------------------------------------------------------------------------------
# Metadata


def test_metadata_round_trip_keeps_whole_numbers_whole() -> None:
    metadata = {
        "year": 2020,
        "score": 0.5,
        "tags": ["a", 1, None, True],
        "nested": {"ok": False, "deep": {"x": "y"}},
        "empty": [],
        "nothing": None,
    }
    back = convert.struct_to_metadata(convert.metadata_to_struct(metadata))
    assert back == metadata
    assert isinstance(back["year"], int) and isinstance(back["tags"][1], int)
    assert isinstance(back["score"], float) and back["tags"][3] is True


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"when": object()}, "metadata.when"),
        ({"tags": ["a", b"b"]}, "metadata.tags[1]"),
        ({"id": 2**60}, "metadata.id"),
        ({"x": float("nan")}, "metadata.x"),
        ({"outer": {1: "x"}}, "metadata.outer"),
    ],
)
def test_metadata_rejects_values_struct_cannot_hold(metadata: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.metadata_to_struct(metadata)
    assert info.value.details.startswith(field + ":"), info.value.details


# ---------------------------------------------------------------------------------------------
# Requests


def test_search_request_text_query() -> None:
    req = convert.search_request("docs", "what is a vector?", k=3, mode="hybrid")
    assert req.collection == "docs"
    assert req.WhichOneof("query") == "text"
    assert req.text == "what is a vector?"
    assert req.top_k == 3
    assert req.mode == pb.SEARCH_MODE_HYBRID
    assert not req.HasField("min_score")
    assert not req.HasField("filter")
    assert req.ef_search == 0 and req.nprobe == 0


def test_search_request_vector_query_and_options() -> None:
    req = convert.search_request(
        "docs",
        [0.25, 1, -0.5],
        k=7,
        filter={"lang": "en"},
        min_score=0.0,
        ef_search=64,
        nprobe=8,
    )
    assert req.WhichOneof("query") == "vector"
    assert list(req.vector.values) == [0.25, 1.0, -0.5]
    assert req.HasField("min_score") and req.min_score == 0.0
    assert req.filter.conditions["lang"].eq.string_value == "en"
    assert (req.ef_search, req.nprobe) == (64, 8)
    assert req.mode == pb.SEARCH_MODE_UNSPECIFIED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": []}, "query"),
        ({"query": [1.0, "x"]}, "query[1]"),
        ({"query": [True]}, "query[0]"),
        ({"query": b"bytes"}, "query"),
        ({"query": "q", "k": 0}, "k"),
        ({"query": "q", "mode": "semantic"}, "mode"),
        ({"query": "q", "ef_search": -1}, "ef_search"),
        ({"query": "q", "min_score": "high"}, "min_score"),
    ],
)
def test_search_request_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.search_request("docs", **kwargs)
    assert info.value.details.startswith(field + ":"), info.value.details


def test_batch_search_request_mixes_queries_and_names_bad_ones() -> None:
    req = convert.batch_search_request("docs", ["text", [1.0, 2.0]], k=2, filter={"a": 1})
    assert [r.WhichOneof("query") for r in req.requests] == ["text", "vector"]
    assert all(r.top_k == 2 and r.filter.conditions["a"].eq.number_value == 1 for r in req.requests)
    with pytest.raises(InvalidArgument, match=r"^INVALID_ARGUMENT: queries\[1\]"):
        convert.batch_search_request("docs", ["ok", []])


@pytest.mark.parametrize(("mode", "wire"), [(None, 0), ("", 0), ("dense", 1), ("lexical", 2)])
def test_mode_mapping(mode: str | None, wire: int) -> None:
    assert convert.mode_to_proto(mode) == wire
    assert convert.mode_from_proto(wire) == (mode or "")


def test_create_collection_request() -> None:
    req = convert.create_collection_request("docs", index={"kind": "hnsw", "m": 32}, default_mode="lexical")
    assert req.index.kind == "hnsw" and dict(req.index.params) == {"m": 32}
    assert req.overlap_tokens == -1 and req.chunk_tokens == 0
    assert req.default_mode == pb.SEARCH_MODE_LEXICAL
    assert not convert.create_collection_request("docs").HasField("index")
    assert convert.create_collection_request("d", index="flat", overlap_tokens=0).index.kind == "flat"
    assert convert.create_collection_request("d", overlap_tokens=0).overlap_tokens == 0
    with pytest.raises(InvalidArgument, match=r"index\.m:"):
        convert.create_collection_request("docs", index={"kind": "hnsw", "m": 1.5})


def test_ids_and_texts() -> None:
    assert list(convert.get_request("docs", "one-id").ids) == ["one-id"]
    assert list(convert.delete_request("docs", iter(["a", "b"])).ids) == ["a", "b"]
    assert convert.embed_request(["a"], collection=None).collection == ""
    with pytest.raises(InvalidArgument, match=r"texts: "):
        convert.embed_request("not a list")


# ---------------------------------------------------------------------------------------------
# Documents and batching


def test_document_from_dict_accepts_underscore_id() -> None:
    doc = convert.to_document({"_id": "d1", "text": "hello", "metadata": {"a": 1}})
    assert doc == Document(id="d1", text="hello", metadata={"a": 1})


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"id": "d", "text": "t", "_id": "e"}, "documents[3]"),
        ({"id": "d"}, "documents[3].text"),
        ({"text": "t"}, "documents[3].id"),
        ({"id": "", "text": "t"}, "documents[3].id"),
        ({"id": "d", "text": "t", "meta": {}}, "documents[3].meta"),
        ("just text", "documents[3]"),
    ],
)
def test_document_errors_name_the_document(value: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.to_document(value, "documents[3]")
    assert info.value.details.startswith(field + ":"), info.value.details


def _docs(n: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield {"id": f"d{i}", "text": f"text {i}", "metadata": {"i": i}}


def test_upsert_batches_from_a_generator() -> None:
    requests = list(calls.upsert_batches("docs", _docs(150), 64))
    assert [len(r.documents) for r in requests] == [64, 64, 22]
    assert requests[2].documents[-1].id == "d149"
    assert requests[2].documents[-1].metadata.fields["i"].number_value == 149.0


def test_upsert_batches_name_the_bad_document_by_its_overall_position() -> None:
    docs = [*_docs(70), {"id": "bad"}]
    batches = calls.upsert_batches("docs", docs, 64)
    assert len(next(batches).documents) == 64
    with pytest.raises(InvalidArgument, match=r"documents\[70\]\.text: "):
        next(batches)
    with pytest.raises(InvalidArgument, match=r"documents\[2\]\.metadata\.x: "):
        list(calls.upsert_batches("docs", [*_docs(2), {"id": "m", "text": "t", "metadata": {"x": {1}}}], 64))


def test_upsert_batches_check_arguments_at_once() -> None:
    with pytest.raises(InvalidArgument, match="batch_size"):
        calls.upsert_batches("docs", [], 0)
    with pytest.raises(InvalidArgument, match="documents: "):
        calls.upsert_batches("docs", {"id": "d", "text": "t"}, 64)  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------
# Responses


def _hit(doc_id: str, score: float) -> pb.Hit:
    hit = pb.Hit(id=doc_id, score=score, text="chunk", title="T", chunk_index=1, chunk_start=5)
    hit.chunk_end = 10
    hit.metadata.update({"lang": "en", "year": 1999})
    hit.retrievers.add(retriever="dense", score=score, rank=1)
    return hit


def test_search_result_parsing_and_sequence_behaviour() -> None:
    response = pb.SearchResponse(
        hits=[_hit("a", 0.5), _hit("b", 0.25)],
        timings_ms={"embed": 1.5, "total": 3.0},
        mode=pb.SEARCH_MODE_HYBRID,
    )
    result = convert.search_result(response)
    assert isinstance(result, SearchResult)
    assert len(result) == 2 and result[0].id == "a" and [h.id for h in result] == ["a", "b"]
    assert [h.id for h in result[1:]] == ["b"]
    assert result.mode == "hybrid" and result.timings_ms == {"embed": 1.5, "total": 3.0}
    hit = result[0]
    assert hit.metadata == {"lang": "en", "year": 1999.0}
    assert (hit.chunk_index, hit.chunk_start, hit.chunk_end, hit.title) == (1, 5, 10, "T")
    assert hit.retrievers[0].retriever == "dense" and hit.retrievers[0].rank == 1
    field = "id"
    with pytest.raises(ValueError, match="frozen"):
        setattr(hit, field, "changed")


def test_ask_collection_get_and_embed_parsing() -> None:
    answer = pb.Answer(passage=_hit("a", 0.9), sentence="It is.", sentence_start=0, sentence_end=6)
    answer.confidence = 0.75
    asked = convert.ask_result(pb.AskResponse(answers=[answer], timings_ms={"total": 2.0}))
    assert asked[0].sentence == "It is." and asked[0].passage.id == "a" and len(asked) == 1

    info = convert.collection_info(
        pb.CollectionInfo(
            name="docs",
            documents=3,
            dimension=384,
            default_mode=pb.SEARCH_MODE_DENSE,
            index_params={"m": 32},
        )
    )
    assert (info.name, info.documents, info.dimension) == ("docs", 3, 384)
    assert info.default_mode == "dense" and info.index_params == {"m": 32}

    stored = pb.Document(id="d", text="t")
    stored.metadata.update({"k": "v"})
    got = convert.get_result(pb.GetResponse(documents=[stored], missing=["x"]))
    assert got.documents == [Document(id="d", text="t", metadata={"k": "v"})]
    assert got.missing == ["x"]

    vectors = convert.embeddings(pb.EmbedResponse(vectors=[pb.Vector(values=[0.5, 1.0])]))
    assert vectors == [[0.5, 1.0]]


def test_upsert_results_add_up() -> None:
    total = UpsertResult(upserted=2, chunks=3, ids=["a", "b"]) + UpsertResult(
        unchanged=1, chunks=1, ids=["c"]
    )
    assert total == UpsertResult(upserted=2, unchanged=1, chunks=4, ids=["a", "b", "c"])


@pytest.mark.parametrize(
    ("payload", "serving"),
    [
        (b"\x08\x01", True),
        (b"", False),
        (b"\x08\x02", False),
        (b"\x12\x03abc\x08\x01", True),
    ],
)
def test_health_response_decoding(payload: bytes, serving: bool) -> None:
    assert convert.health_serving(payload) is serving


def test_health_response_malformed() -> None:
    with pytest.raises(Internal):
        convert.health_serving(b"\x08")


# ---------------------------------------------------------------------------------------------
# Retry policy and errors


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy()
    unavailable, deadline = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED
    assert policy.should_retry(unavailable, idempotent=False, attempt=1)
    assert policy.should_retry(unavailable, idempotent=True, attempt=3)
    assert not policy.should_retry(unavailable, idempotent=True, attempt=4)
    assert policy.should_retry(deadline, idempotent=True, attempt=1)
    assert not policy.should_retry(deadline, idempotent=False, attempt=1)
    for code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
    ):
        assert not policy.should_retry(code, idempotent=True, attempt=1)
    assert not RetryPolicy(max_attempts=1).should_retry(unavailable, idempotent=True, attempt=1)


def test_retry_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy()
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (500, 2.0)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        if attempt < 500:
            assert len(set(delays)) > 1
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_error_mapping_sync_and_aio() -> None:
    err = from_rpc_error(_FakeRpcError(grpc.StatusCode.NOT_FOUND, "collection 'x' not found"))
    assert type(err) is NotFound and err.details == "collection 'x' not found"
    assert str(err) == "NOT_FOUND: collection 'x' not found"

    aio_err = grpc.aio.AioRpcError(
        grpc.StatusCode.ALREADY_EXISTS, grpc.aio.Metadata(), grpc.aio.Metadata(), details="dup"
    )
    mapped = from_rpc_error(aio_err)
    assert type(mapped) is AlreadyExists and mapped.code == grpc.StatusCode.ALREADY_EXISTS

    other = from_rpc_error(_FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "no"))
    assert type(other) is NeardexError and other.code == grpc.StatusCode.UNIMPLEMENTED
    assert type(from_rpc_error(grpc.RpcError())) is Unknown


def test_every_error_class_has_its_code_and_survives_pickling() -> None:
    for code in grpc.StatusCode:
        err = from_rpc_error(_FakeRpcError(code, "why"))
        assert err.code == code and isinstance(err, NeardexError)
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and again.code == code and again.details == "why"


# ---------------------------------------------------------------------------------------------
# Both clients against an in-process gRPC server

Behaviour = Callable[[Any, grpc.ServicerContext], Any]

_SERVICE = pb.DESCRIPTOR.services_by_name["Neardex"]


class ScriptedServer(grpc.GenericRpcHandler):
    """Answers each /neardex.v1.Neardex/<Method> with a behaviour the test installs, and counts
    calls; anything not scripted is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.calls: dict[str, int] = {}
        self.health_payload = b"\x08\x01"
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        if method == convert.HEALTH_CHECK_METHOD:
            return grpc.unary_unary_rpc_method_handler(lambda req, ctx: self.health_payload)
        prefix = f"/{_SERVICE.full_name}/"
        name = method.removeprefix(prefix)
        behaviour = self.behaviours.get(name)
        if not method.startswith(prefix) or behaviour is None:
            return None
        desc = _SERVICE.methods_by_name[name]
        request_cls = getattr(pb, desc.input_type.name)
        response_cls = getattr(pb, desc.output_type.name)

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            self._count(name)
            return behaviour(request, context)

        kwargs: dict[str, Any] = {
            "request_deserializer": request_cls.FromString,
            "response_serializer": response_cls.SerializeToString,
        }
        if desc.client_streaming and desc.server_streaming:
            return grpc.stream_stream_rpc_method_handler(handler, **kwargs)
        return grpc.unary_unary_rpc_method_handler(handler, **kwargs)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.start()
    yield scripted
    scripted.stop()


FAST = RetryPolicy(base_delay=0.01, max_delay=0.02)


def _fails_then(code: grpc.StatusCode, times: int, answer: Any) -> Behaviour:
    state = {"failures": 0}

    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        if state["failures"] < times:
            state["failures"] += 1
            context.abort(code, f"scripted failure {state['failures']}")
        return answer

    return behaviour


def _always(code: grpc.StatusCode) -> Behaviour:
    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, "scripted")

    return behaviour


LISTING = pb.ListCollectionsResponse(collections=[pb.CollectionInfo(name="docs", documents=2)])


def test_sync_client_retries_flaky_unavailable(server: ScriptedServer) -> None:
    server.behaviours["ListCollections"] = _fails_then(grpc.StatusCode.UNAVAILABLE, 2, LISTING)
    with Client(server.target, timeout=5) as client:
        infos = client.collections()
    assert [(i.name, i.documents) for i in infos] == [("docs", 2)]
    assert server.calls["ListCollections"] == 3


def test_async_client_retries_flaky_unavailable(server: ScriptedServer) -> None:
    server.behaviours["ListCollections"] = _fails_then(grpc.StatusCode.UNAVAILABLE, 2, LISTING)

    async def scenario() -> list[str]:
        async with AsyncClient(server.target, timeout=5) as client:
            return [i.name for i in await client.collections()]

    assert asyncio.run(scenario()) == ["docs"]
    assert server.calls["ListCollections"] == 3


def test_gives_up_after_max_attempts(server: ScriptedServer) -> None:
    server.behaviours["ListCollections"] = _always(grpc.StatusCode.UNAVAILABLE)
    with Client(server.target, retry=FAST) as client, pytest.raises(Unavailable, match="scripted"):
        client.collections()
    assert server.calls["ListCollections"] == FAST.max_attempts


def test_deadline_exceeded_retried_only_for_idempotent_calls(server: ScriptedServer) -> None:
    server.behaviours["Upsert"] = _always(grpc.StatusCode.DEADLINE_EXCEEDED)
    server.behaviours["Search"] = _always(grpc.StatusCode.DEADLINE_EXCEEDED)
    with Client(server.target, retry=FAST) as client:
        with pytest.raises(DeadlineExceeded):
            client.upsert("docs", [{"id": "a", "text": "x"}])
        with pytest.raises(DeadlineExceeded):
            client.search("docs", "query")
    assert server.calls["Upsert"] == 1
    assert server.calls["Search"] == FAST.max_attempts

    async def scenario() -> None:
        async with AsyncClient(server.target, retry=FAST) as client:
            with pytest.raises(DeadlineExceeded):
                await client.upsert("docs", [{"id": "a", "text": "x"}])

    asyncio.run(scenario())
    assert server.calls["Upsert"] == 2


def _overloaded_then(times: int, answer: Any, retry_after: bool = True) -> Behaviour:
    state = {"refusals": 0}

    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        if state["refusals"] < times:
            state["refusals"] += 1
            if retry_after:
                context.set_trailing_metadata((("neardex-retry-after-ms", "20"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "server busy")
        return answer

    return behaviour


def test_a_refusal_for_load_is_retried_but_a_limit_is_not(server: ScriptedServer) -> None:
    server.behaviours["Upsert"] = _overloaded_then(2, pb.UpsertResponse(upserted=1, ids=["a"]))
    server.behaviours["ListCollections"] = _overloaded_then(5, LISTING, retry_after=False)
    with Client(server.target, retry=FAST) as client:
        # Refused before any work: safe to send again, even a write.
        assert client.upsert("docs", [{"id": "a", "text": "x"}]).upserted == 1
        with pytest.raises(ResourceExhausted, match="server busy"):
            client.collections()
    assert server.calls["Upsert"] == 3
    assert server.calls["ListCollections"] == 1

    async def scenario() -> list[str]:
        server.behaviours["ListCollections"] = _overloaded_then(1, LISTING)
        async with AsyncClient(server.target, retry=FAST) as client:
            return [i.name for i in await client.collections()]

    assert asyncio.run(scenario()) == ["docs"]


def test_client_deadline_applies_per_call(server: ScriptedServer) -> None:
    release = threading.Event()

    def slow(request: Any, context: grpc.ServicerContext) -> Any:
        release.wait(5)
        return pb.UpsertResponse(upserted=1)

    server.behaviours["Upsert"] = slow
    server.behaviours["ListCollections"] = lambda req, ctx: LISTING
    try:
        with Client(server.target, timeout=5, retry=FAST) as client:
            client.collections()  # connects, so the deadline below times the call alone
            with pytest.raises(DeadlineExceeded):
                client.upsert("docs", [{"id": "a", "text": "x"}], timeout=0.2)
    finally:
        release.set()
    assert server.calls["Upsert"] == 1


def _acknowledge(request: pb.UpsertRequest, context: grpc.ServicerContext) -> pb.UpsertResponse:
    return pb.UpsertResponse(
        upserted=len(request.documents),
        chunks=2 * len(request.documents),
        ids=[d.id for d in request.documents],
    )


def _acknowledge_stream(
    requests: Iterator[pb.UpsertRequest], context: grpc.ServicerContext
) -> Iterator[pb.UpsertResponse]:
    for request in requests:
        yield _acknowledge(request, context)


def test_upsert_sends_batches_and_sums_results(server: ScriptedServer) -> None:
    server.behaviours["Upsert"] = _acknowledge
    with Client(server.target) as client:
        total = client.upsert("docs", _docs(150), batch_size=64)
        assert server.calls["Upsert"] == 3
        assert total.upserted == 150 and total.chunks == 300
        assert total.ids == [f"d{i}" for i in range(150)]

        small = client.upsert("docs", [Document(id="x", text="y"), {"_id": "z", "text": "w"}])
        assert server.calls["Upsert"] == 4 and small.ids == ["x", "z"]

        with pytest.raises(InvalidArgument, match=r"documents\[3\]\.text"):
            client.upsert("docs", [*_docs(3), {"id": "no-text"}])
        assert server.calls["Upsert"] == 4


def test_upsert_stream_yields_each_acknowledgement(server: ScriptedServer) -> None:
    server.behaviours["UpsertStream"] = _acknowledge_stream
    with Client(server.target) as client:
        acks = list(client.upsert_stream("docs", _docs(130), batch_size=64))
        assert [a.upserted for a in acks] == [64, 64, 2]

        # The bad document ends the stream: earlier batches are still acknowledged, then the
        # caller's own error is raised rather than a cancelled call.
        seen: list[UpsertResult] = []
        with pytest.raises(InvalidArgument, match=r"documents\[70\]\.text"):
            for ack in client.upsert_stream("docs", [*_docs(70), {"id": "bad"}], batch_size=64):
                seen.append(ack)
        assert [a.upserted for a in seen] == [64]


def test_async_upsert_and_stream_accept_async_iterables(server: ScriptedServer) -> None:
    server.behaviours["Upsert"] = _acknowledge
    server.behaviours["UpsertStream"] = _acknowledge_stream

    async def adocs(n: int) -> AsyncIterator[dict[str, Any]]:
        for doc in _docs(n):
            await asyncio.sleep(0)
            yield doc

    async def scenario() -> tuple[UpsertResult, list[int]]:
        async with AsyncClient(server.target) as client:
            total = await client.upsert("docs", adocs(100), batch_size=40)
            acks = [a.upserted async for a in client.upsert_stream("docs", adocs(100), batch_size=40)]
            return total, acks

    total, acks = asyncio.run(scenario())
    assert total.upserted == 100 and server.calls["Upsert"] == 3
    assert acks == [40, 40, 20]


def test_create_collection_exist_ok(server: ScriptedServer) -> None:
    existing = pb.CollectionInfo(name="docs", documents=7, default_mode=pb.SEARCH_MODE_HYBRID)
    server.behaviours["CreateCollection"] = _always(grpc.StatusCode.ALREADY_EXISTS)
    server.behaviours["GetCollection"] = lambda req, ctx: existing
    with Client(server.target) as client:
        info = client.create_collection("docs", exist_ok=True)
        assert (info.documents, info.default_mode) == (7, "hybrid")
        with pytest.raises(AlreadyExists):
            client.create_collection("docs")
    assert server.calls["CreateCollection"] == 2  # never retried


def test_search_reaches_server_as_built(server: ScriptedServer) -> None:
    seen: list[pb.SearchRequest] = []

    def search(request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        seen.append(request)
        return pb.SearchResponse(hits=[_hit("a", 0.5)], mode=pb.SEARCH_MODE_DENSE)

    server.behaviours["Search"] = search
    server.behaviours["Get"] = _always(grpc.StatusCode.NOT_FOUND)
    with Client(server.target) as client:
        hits = client.search("docs", [0.5, 0.25], k=4, filter={"year": {"gt": 1}}, mode="dense")
        assert hits[0].id == "a" and hits.mode == "dense"
        with pytest.raises(NotFound, match="scripted"):
            client.get("missing", ["a"])
    assert seen[0].vector.values == [0.5, 0.25] and seen[0].top_k == 4
    assert seen[0].filter.conditions["year"].range.gt == 1.0


def test_health(server: ScriptedServer) -> None:
    with Client(server.target) as client:
        assert client.health() is True
        server.health_payload = b"\x08\x02"
        assert client.health() is False

    async def scenario() -> bool:
        async with AsyncClient(server.target) as client:
            return await client.health()

    server.health_payload = b"\x08\x01"
    assert asyncio.run(scenario()) is True

    server.stop()
    with Client(server.target, timeout=2) as client:
        assert client.health() is False


def test_struct_module_is_the_wire_type() -> None:
    # The client promises google.protobuf.Struct semantics; guard against a contract change.
    field = pb.Document.DESCRIPTOR.fields_by_name["metadata"]
    assert field.message_type.full_name == struct_pb2.Struct.DESCRIPTOR.full_name
