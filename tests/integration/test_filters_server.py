"""The filter language through the real server: every condition and combinator works the same in
Count, Scroll, Delete and every search mode; whole numbers stay whole from client to store and
back; a bad filter is refused naming its field. (The store against a plain Python reading of
filters is tests/unit/test_filters.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from neardex.client import Client, InvalidArgument

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
