"""The filter language: the store's SQL (with and without a metadata index) agrees with a plain
Python reading of the same filter over random metadata; every condition and combinator works the
same through the real server in Count, Scroll, Delete and every search mode; whole numbers stay
whole from client to store and back."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from filter_model import filter_strategy, matches, random_metadata
from hypothesis import HealthCheck, given, seed, settings

from neardex.client import Client, InvalidArgument
from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.query.filters import Condition, Filter
from neardex.indexer.stores.local import sql_filters

# -- the store against it ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, list[dict[str, Any]]]]:
    """The same 300 random documents in a plain collection and in one with every key indexed."""
    documents = random_metadata(300)
    with Catalog(tmp_path_factory.mktemp("filters")) as catalog:
        plain = catalog.create("plain", model="none", dimension=2)
        indexed = catalog.create("indexed", model="none", dimension=2, indexed_keys=["a", "b", "n.x"])
        docs = [Document(f"d{i}", "", metadata=m, vector=(1.0, float(i))) for i, m in enumerate(documents)]
        plain.upsert(docs)
        indexed.upsert(docs[:150])
        indexed.index_metadata(["n.y"])  # a key indexed after documents were stored
        indexed.upsert(docs[150:])
        yield plain, indexed, documents


@seed(11)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_the_store_agrees_with_python(stores: tuple[Any, Any, list[dict[str, Any]]], flt: Filter) -> None:
    plain, indexed, documents = stores
    expected = sorted(f"d{i}" for i, m in enumerate(documents) if matches(m, flt))
    for collection in (plain, indexed):
        assert collection.count(flt) == len(expected)
        assert sorted(d.id for d in collection.scroll("", 1000, flt, text=False)) == expected


@seed(12)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_the_flat_sql_forms_agree_with_python(stores: tuple[Any, Any, list[dict[str, Any]]], flt: Filter) -> None:
    """The forms large filters compile to (flat AND / OR lists, sub-filters as WITH sets), used
    here for every filter, give the same answers."""
    plain, indexed, documents = stores
    expected = sorted(f"d{i}" for i, m in enumerate(documents) if matches(m, flt))
    with mock.patch.multiple(sql_filters, _CHAIN=1, _INLINE=1):
        for collection in (plain, indexed):
            assert collection.count(flt) == len(expected)
            assert sorted(d.id for d in collection.scroll("", 1000, flt, text=False)) == expected


# -- through the server --------------------------------------------------------------------------


BOOKS = [
    {"id": "b1", "text": "A history of the river Nile and its delta.",
     "metadata": {"year": 2001, "tags": ["river", "history"], "price": 12.5, "pub": {"city": "Cairo", "date": "2001-05-02"}}},
    {"id": "b2", "text": "Mountains of the Andes and their glaciers.",
     "metadata": {"year": 2015, "tags": ["mountain"], "pub": {"city": "Lima", "date": "2015-11-20"}}},
    {"id": "b3", "text": "The river Amazon through the rainforest.",
     "metadata": {"year": 2020, "tags": ["river", "forest"], "price": 30, "pub": {"city": "Manaus", "date": "2020-01-09"}}},
    {"id": "b4", "text": "Deserts of Africa and the river that crosses one.",
     "metadata": {"year": 1999, "tags": "desert", "draft": True}},
]


@pytest.fixture
def books(client: Client) -> Client:
    client.create_collection("books", indexed_keys=["year"])
    client.upsert("books", BOOKS)
    return client


@pytest.mark.parametrize(("flt", "expected"), [
    ({"tags": "river"}, {"b1", "b3"}),
    ({"tags": {"contains_all": ["river", "history"]}}, {"b1"}),
    ({"tags": {"contains_any": ["forest", "desert"]}}, {"b3", "b4"}),
    ({"tags": {"ne": "river"}}, {"b2", "b4"}),
    ({"year": {"not_in": [2001, 2015]}}, {"b3", "b4"}),
    ({"year": {"gte": 2001, "lt": 2020}}, {"b1", "b2"}),
    ({"pub.date": {"gte": "2010-01-01"}}, {"b2", "b3"}),
    ({"pub.city": "Lima"}, {"b2"}),
    ({"price": {"exists": True}}, {"b1", "b3"}),
    ({"draft": {"exists": False}}, {"b1", "b2", "b3"}),
    ({"$or": [{"year": 1999}, {"pub.city": "Cairo"}]}, {"b1", "b4"}),
    ({"$not": {"tags": "river"}, "year": {"lt": 2016}}, {"b2", "b4"}),
    ({"$and": [{"$or": [{"price": {"gt": 20}}, {"draft": True}]}, {"$not": [{"year": 1999}]}]}, {"b3"}),
])
def test_every_condition_in_every_mode(books: Client, flt: dict[str, Any], expected: set[str]) -> None:
    assert books.count("books", filter=flt) == len(expected)
    assert {d.id for d in books.scroll_all("books", filter=flt, page_size=2)} == expected
    for mode in ("dense", "lexical", "hybrid"):
        assert {h.id for h in books.search("books", "river", k=10, mode=mode, filter=flt)} <= expected
    assert {h.id for h in books.search("books", "books about places", k=10, mode="dense", filter=flt)} == expected


def test_whole_numbers_stay_whole(books: Client) -> None:
    [doc] = books.get("books", ["b1"]).documents
    assert doc.metadata["year"] == 2001 and isinstance(doc.metadata["year"], int)
    assert isinstance(doc.metadata["price"], float)
    [hit] = books.search("books", "Nile", k=1, mode="lexical")
    assert isinstance(hit.metadata["year"], int)


def test_delete_by_filter(books: Client) -> None:
    assert books.delete("books", filter={"tags": "river", "year": {"gt": 2010}}) == 1
    assert sorted(d.id for d in books.scroll_all("books")) == ["b1", "b2", "b4"]
    assert books.count("books", filter={"year": 2020}) == 0
    with pytest.raises(InvalidArgument, match="empty filter"):
        books.delete("books", filter={})
    with pytest.raises(InvalidArgument, match="ids, filter"):
        books.delete("books", ["b1"], filter={"year": 2001})
    assert books.count("books") == 3


def test_indexing_a_key_later_keeps_results(books: Client) -> None:
    before = books.count("books", filter={"pub.city": {"in": ["Lima", "Cairo"]}})
    info = books.index_metadata("books", ["pub.city", "tags"])
    assert info.indexed_keys == ["year", "pub.city", "tags"]
    assert books.count("books", filter={"pub.city": {"in": ["Lima", "Cairo"]}}) == before == 2
    assert books.count("books", filter={"tags": "river"}) == 2
    books.upsert("books", [{"id": "b5", "text": "Another river book.", "metadata": {"tags": ["river"], "pub": {"city": "Lima"}}}])
    assert books.count("books", filter={"tags": "river", "pub.city": "Lima"}) == 1
    assert books.collection_exists("books") and not books.collection_exists("nope")


def test_bad_filters_name_the_field(books: Client) -> None:
    with pytest.raises(InvalidArgument, match="filter.year: range bounds"):
        books.count("books", filter={"year": {"gte": 2000, "lt": "x"}})
    with pytest.raises(InvalidArgument, match=r"filter\['bad key'\]"):
        books.count("books", filter={"bad key": 1})
    assert math.isfinite(books.count("books"))


def test_a_real_path(tmp_path: Path) -> None:
    # Keys with dots in a stored document are paths: {"a.b": 1} stored flat is not {"a": {"b": 1}}.
    with Catalog(tmp_path) as catalog:
        col = catalog.create("c", model="none", dimension=2)
        col.upsert([Document("flat", "", metadata={"a.b": 1}, vector=(1.0, 0.0)),
                    Document("nested", "", metadata={"a": {"b": 1}}, vector=(0.0, 1.0))])
        assert [d.id for d in col.scroll("", 10, Filter({"a.b": Condition("eq", 1)}))] == ["nested"]


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
@pytest.mark.parametrize("limit", [20_000, 0])  # 0: the index answers first, a short answer is redone exactly
def test_filtered_search_on_approximate_indexes_is_exact(tmp_path: Path, kind: str, limit: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from neardex.indexer.query.filters import parse_filter
    from neardex.indexer.records import IndexSpec
    from neardex.indexer.stores import local as collection_module

    monkeypatch.setattr(collection_module, "EXACT_FILTER_LIMIT", limit)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec.parse(kind, {"m": 8} if kind == "hnsw" else {"nlist": 8, "m": 4, "nbits": 4, "nprobe": 1})
    with Catalog(tmp_path) as catalog:
        col = catalog.create("c", model="none", dimension=16, index=spec)
        col.upsert([Document(f"d{i}", "", metadata={"bucket": i % 100}, vector=tuple(vectors[i])) for i in range(1500)])
        col.wait_for_rebuild()
        assert col.store.index.trained_kind == kind
        for buckets in ([7], [1, 2, 3]):
            allowed = [i for i in range(1500) if i % 100 in buckets]
            for query in rng.normal(size=(5, 16)).astype(np.float32):
                query /= np.linalg.norm(query)
                expected = sorted(allowed, key=lambda i: -float(vectors[i] @ query))[:10]
                hits = col.search(vector=query, k=10, flt=parse_filter({"bucket": buckets})).hits
                assert [h.id for h in hits] == [f"d{i}" for i in expected]
