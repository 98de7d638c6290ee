"""Documented inputs at their limits, and values JSON cannot spell, on both stores and through a
real server: never INTERNAL, never a store's refusal.

- Filters of every documented size compile and answer right: a list of MAX_VALUES values, `any`
  and `all` over thousands of conditions, MAX_DEPTH levels of nesting with wide levels, up to
  MAX_CONDITIONS conditions; past each limit, INVALID_ARGUMENT naming the field.
- NaN and infinite numbers in metadata (Upsert and UpsertStream, at any depth, inside lists), in
  filter values and in min_score are INVALID_ARGUMENT naming the field, and nothing is stored.
- Control characters in ids, metadata keys and values and filter strings are stored, found,
  filtered and deleted alike by the embedded store and the Milvus store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from filter_model import matches
from google.protobuf import struct_pb2

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.query.filters import MAX_CONDITIONS, MAX_DEPTH, MAX_VALUES, Filter, parse_filter
from neardex.indexer.retrieval.engine import Collection
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

pytest.importorskip("pymilvus")

NAN, INF = float("nan"), float("inf")
CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"


def metadata_of(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {"year": 1990 + i % 40, "tag": f"t{i % 50}", "tags": [f"t{(i * 7) % 50}", f"t{(i * 3) % 50}", "all"],
            "score": rng.choice([0.5, 1, 2.25]), "pub": {"city": rng.choice(["Cairo", "Lima", "Oslo"])}}


DOCS = [Document(f"d{i:03d}", f"document {i}", metadata=metadata_of(i), vector=(1.0, float(i))) for i in range(60)]


@pytest.fixture(scope="module", params=["local", "milvus-lite"])
def collection(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    root = tmp_path_factory.mktemp(request.param)
    store = "" if request.param == "local" else str(root / "milvus.db")
    with Catalog(root / "data") as catalog:
        col = catalog.create("docs", model="none", dimension=2, indexed_keys=["tag"], store=store)
        col.upsert(DOCS)
        yield col


_EXPECTED: dict[str, int] = {}


def expected(flt: Filter) -> int:
    """How many of DOCS match, read plainly (once per filter: both stores ask)."""
    key = repr(flt)
    if key not in _EXPECTED:
        _EXPECTED[key] = sum(matches(d.metadata, flt, ranges_in_arrays=True) for d in DOCS)
    return _EXPECTED[key]


def nested(kind: str, depth: int, width: int, leaf: dict[str, Any]) -> dict[str, Any]:
    """A filter `depth` levels deep, each level `width` parts wide."""
    spec = leaf
    for level in range(depth):
        siblings = [{"year": {"gte": 1990 + level % 3}}] * (width - 1)
        spec = ({"$not": spec, **{f"w{j}": {"exists": False} for j in range(width - 1)}} if kind == "$not"
                else {kind: [spec, *siblings]})
    return spec


# -- filters of every documented size ------------------------------------------------------------

LARGE = {
    "in MAX_VALUES numbers": {"year": {"in": list(range(1000, 1000 + MAX_VALUES - 5)) + [1991, 1995, 2000, 2010, 2029]}},
    "in MAX_VALUES strings, indexed key": {"tag": {"in": [f"t{i}" for i in range(MAX_VALUES)]}},
    "not_in MAX_VALUES": {"year": {"not_in": list(range(1995, 1995 + MAX_VALUES))}},
    "contains_any MAX_VALUES": {"tags": {"contains_any": [f"x{i}" for i in range(MAX_VALUES - 1)] + ["t3"]}},
    "contains_all MAX_VALUES": {"tags": {"contains_all": ["all"] * (MAX_VALUES - 1) + ["t0"]}},
    "contains_all of distinct values": {"tags": {"contains_all": ["all", "t3", "t7", "t3"]}},
    "contains_all on an indexed scalar": {"tag": {"contains_all": ["t1", "t1"]}},
    # Cheap conditions where there are thousands: milvus-lite reads a JSON array slowly.
    "any over 3,000 conditions": {"$or": [{"year": 1990 + i} for i in range(3, 3000, 7)] + [
        {"year": {"gte": 3000 + i}} for i in range(3000 - 429)]},
    "all over 1,200 conditions": {"$and": [{"year": {"lt": 2100 + i}} for i in range(1200)]},
    "MAX_CONDITIONS conditions": {"$or": [{"tag": f"t{i}", "year": {"gte": 1990 + i % 40}} for i in range(MAX_CONDITIONS // 2)]},
}


@pytest.mark.parametrize("name", list(LARGE))
def test_large_filters_answer_right(collection: Collection, name: str) -> None:
    flt = parse_filter(LARGE[name])
    assert collection.count(flt) == expected(flt)
    assert expected(flt) > 0


@pytest.mark.parametrize("kind", ["$and", "$or", "$not"])
@pytest.mark.parametrize("width", [2, 12])
def test_filters_nested_max_depth_levels_with_wide_levels(collection: Collection, kind: str, width: int) -> None:
    leaf = {"tags": {"contains_any": ["t1", "t2", "t3"]}, "tag": {"in": ["t1", "t2", "t3"]}, "pub.city": "Lima"}
    flt = parse_filter(nested(kind, MAX_DEPTH, width, leaf))
    assert collection.count(flt) == expected(flt)
    with pytest.raises(InvalidArgument, match="nested deeper than 32 levels"):
        parse_filter(nested(kind, MAX_DEPTH + 1, width, leaf))


def test_past_the_limits_is_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^filter.year: in takes at most 1000 values, got 1001"):
        parse_filter({"year": {"in": list(range(MAX_VALUES + 1))}})
    with pytest.raises(InvalidArgument, match=r"^filter: 4097 conditions \(a list counts one per value\);"
                                              r" a filter holds at most 4096"):
        parse_filter({"$or": [{"year": i} for i in range(MAX_CONDITIONS + 1)]})
    with pytest.raises(InvalidArgument, match=r"^filter: 5000 conditions"):  # five lists of 1,000 values
        parse_filter({"$and": [{"year": {"not_in": list(range(MAX_VALUES))}}] * 5})
    with pytest.raises(InvalidArgument, match=r"^filter: 4097 sub-filters"):
        parse_filter({"$or": [{}] * (MAX_CONDITIONS + 1)})


# -- control characters -----------------------------------------------------------------------


def test_control_characters_in_ids_keys_values_and_filters(collection: Collection) -> None:
    ids = [f"c{ch}{i}" for i, ch in enumerate(CONTROL + '"\\\'')]
    docs = [Document(doc_id, "text", metadata={"label": f"v{doc_id}", f"k{doc_id}": 1, "marks": [doc_id, "m"]},
                     vector=(0.5, 1.0)) for doc_id in ids]
    collection.upsert(docs)
    try:
        found, missing = collection.get(ids)
        assert [d.id for d in found] == ids and not missing
        assert [d.metadata for d in found] == [d.metadata for d in docs]
        for doc_id in ids:
            assert collection.count(parse_filter({"label": f"v{doc_id}"})) == 1, repr(doc_id)
            assert collection.count(parse_filter({"marks": {"contains_all": [doc_id, "m"]}})) == 1, repr(doc_id)
        assert collection.count(parse_filter({"label": {"in": [f"v{doc_id}" for doc_id in ids]}})) == len(ids)
        page = collection.scroll(ids[3], 1000, parse_filter({"marks": "m"}), text=False)
        assert [d.id for d in page] == sorted(i for i in ids if i > ids[3])
        assert collection.upsert(docs).unchanged == len(ids)  # the stored hashes are found by id
    finally:
        assert collection.delete(ids) == len(ids)
    assert collection.count() == len(DOCS)


# -- non-finite numbers through the server -------------------------------------------------------


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
