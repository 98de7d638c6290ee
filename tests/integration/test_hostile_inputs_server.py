"""Values JSON cannot spell, and filters at their limits, through a real server: NaN and infinite
numbers in metadata (Upsert and UpsertStream, at any depth, inside lists), in filter values, in
min_score and in vectors are INVALID_ARGUMENT naming the field, and nothing is stored; a filter of
MAX_VALUES values or thousands of conditions answers, one past MAX_CONDITIONS is refused. (The
same limits on both stores in process: tests/unit/test_hostile_inputs.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from neardex.indexer.query.filters import MAX_CONDITIONS, MAX_VALUES
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def stub(client: Any, server: tuple[object, int]) -> Iterator[Any]:
    client.create_collection("docs")
    client.upsert("docs", [{"id": "keep", "text": "A document already stored.", "metadata": {"year": 2001}}])
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        yield neardex_pb2_grpc.NeardexStub(channel)


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


def refused(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        response = call(request)
        list(response) if not hasattr(response, "DESCRIPTOR") else None
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return str(err.value.details())


NON_FINITE_METADATA = [
    ({"score": NAN}, "documents[2].metadata.score"),
    ({"score": -INF}, "documents[2].metadata.score"),
    ({"a": {"b": [1, {"c": INF}]}}, "documents[2].metadata.a.b[1].c"),
    ({"odd key": [[NAN]]}, "documents[2].metadata['odd key'][0][0]"),
]


def test_non_finite_metadata_is_refused_naming_the_field(stub: Any) -> None:
    for metadata, field in NON_FINITE_METADATA:
        docs = [pb.Document(id=f"n{i}", text="Some text.") for i in range(3)]
        docs[2].metadata.CopyFrom(struct(metadata))
        details = refused(stub.Upsert, pb.UpsertRequest(collection="docs", documents=docs))
        assert details == f"{field}: not a finite number"
        assert stub.Count(pb.CountRequest(collection="docs")).count == 1
    stream = iter([pb.UpsertRequest(collection="docs", documents=docs[:2]),
                   pb.UpsertRequest(collection="docs", documents=docs)])
    with pytest.raises(grpc.RpcError) as err:
        list(stub.UpsertStream(stream))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details() == details
    # The stream's first batch is stored; the refused one is not, and what was there before is whole.
    assert stub.Count(pb.CountRequest(collection="docs")).count == 3


def value(number: float) -> struct_pb2.Value:
    return struct_pb2.Value(number_value=number)


NON_FINITE_CONDITIONS = [
    (pb.Condition(eq=value(NAN)), "filter.year: eq needs"),
    (pb.Condition(ne=value(INF)), "filter.year: ne needs"),
    (pb.Condition(**{"in": struct_pb2.ListValue(values=[value(1), value(-INF)])}), "filter.year: in values"),
    (pb.Condition(contains_all=struct_pb2.ListValue(values=[value(NAN)])), "filter.year: contains_all values"),
    (pb.Condition(range=pb.Range(gte=INF)), "filter.year: range bounds"),
]


def test_non_finite_filter_values_are_refused_naming_the_field(stub: Any) -> None:
    for condition, message in NON_FINITE_CONDITIONS:
        flt = pb.Filter(conditions={"year": condition})
        assert refused(stub.Count, pb.CountRequest(collection="docs", filter=flt)).startswith(message)
        inside = pb.Filter(any=[pb.Filter(), flt])
        assert refused(stub.Count, pb.CountRequest(collection="docs", filter=inside)).startswith(
            message.replace("filter.", "filter.any[1]."))
        batch = pb.BatchSearchRequest(requests=[pb.SearchRequest(collection="docs", text="stored", top_k=3),
                                                pb.SearchRequest(collection="docs", text="stored", top_k=3, filter=flt)])
        assert refused(stub.BatchSearch, batch).startswith(message.replace("filter.", "requests[1].filter."))


def test_non_finite_min_score_and_vectors(stub: Any) -> None:
    assert refused(stub.Search, pb.SearchRequest(collection="docs", text="stored", top_k=3, min_score=NAN)) \
        == "min_score: not a number"
    assert refused(stub.SearchSimilar, pb.SearchSimilarRequest(collection="docs", positive=["keep"], top_k=3, min_score=NAN)) \
        == "min_score: not a number"
    vector = pb.Vector(values=[INF] + [0.0] * 383)
    assert refused(stub.Search, pb.SearchRequest(collection="docs", vector=vector, top_k=3)).startswith("vector: ")
    assert stub.Search(pb.SearchRequest(collection="docs", text="stored", top_k=3, min_score=-INF)).hits[0].id == "keep"


def test_large_filters_through_the_server(stub: Any) -> None:
    values = struct_pb2.ListValue(values=[value(1002 + i) for i in range(MAX_VALUES)])
    condition = pb.Condition(**{"in": values})
    assert stub.Count(pb.CountRequest(collection="docs", filter=pb.Filter(conditions={"year": condition}))).count == 1
    many = pb.Filter(any=[pb.Filter(conditions={"year": pb.Condition(eq=value(i))}) for i in range(2001, -999, -1)])
    assert stub.Count(pb.CountRequest(collection="docs", filter=many)).count == 1
    many.any.append(pb.Filter(conditions={"year": pb.Condition(exists=True)}))
    many.any.extend([many.any[0]] * (MAX_CONDITIONS - 3000))
    assert refused(stub.Count, pb.CountRequest(collection="docs", filter=many)).startswith(
        "filter: 4097 conditions")
