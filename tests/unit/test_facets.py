"""Facets on both stores: the values of a metadata key with their document counts equal a plain
Python count over the documents matching the filter, whether the key is indexed or not, in the
documented order and within the limit; and bad keys and limits are refused naming the field."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from neardex.indexer import deadline
from neardex.indexer.documents import Document
from neardex.indexer.errors import DeadlineExceeded, InvalidArgument
from neardex.indexer.query.facets import DEFAULT_LIMIT, MAX_LIMIT
from neardex.indexer.query.filters import Filter, parse_filter
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.stores import milvus
from tests.support.filter_model import matches, random_metadata, value_at
from tests.support.stores import Stores

# Strings, numbers (whole and not, 1 beside 1.0), booleans beside 1 and "1", lists with repeats,
# nulls, nested objects and lists, nested keys, and documents without the key.
METADATA: list[dict[str, Any]] = [
    {"lang": "en", "year": 2001, "tags": ["pet", "home", "pet"], "flag": True, "geo": {"city": "Oslo", "zip": 150}},
    {"lang": "en", "year": 2001.0, "tags": "pet", "flag": 1, "geo": {"city": "Bergen"}},
    {"lang": "fr", "year": 2020, "tags": ["city", "capital", True, 1, "1", None, {"x": 1}, ["pet"]], "flag": "1"},
    {"lang": "de", "year": 1999.5, "tags": [], "flag": False, "geo": {"city": {"name": "Oslo"}}},
    {"lang": None, "tags": ["home"], "flag": True, "geo": "Oslo"},
    {"year": 2020, "tags": ["pet", "city"], "geo": {"city": ["Oslo", "Bergen", "Oslo"]}},
    {"lang": "en", "flag": [True, False, True], "geo": {"city": "Oslo", "zip": 150.0}},
    {"lang": "fr", "tags": "home"},
]
KEYS = ["lang", "year", "tags", "flag", "geo", "geo.city", "geo.zip", "absent"]
FILTERS = [None, {"lang": "en"}, {"year": {"gte": 2001}}, {"$not": {"tags": "pet"}}, {"lang": "none-such"}]


def docs(metadata: list[dict[str, Any]]) -> list[Document]:
    # No model: facets read metadata only, and a collection of own vectors writes at once.
    return [Document(f"d{i:03}", "", "", m, vector=[1.0, float(i % 7)]) for i, m in enumerate(metadata)]


def python_facet(metadata: list[dict[str, Any]], key: str, flt: Filter | None) -> tuple[list[tuple[Any, int]], int]:
    """The facet read off the documents in plain Python: (value, count) pairs in the documented
    order, and the number of documents matching the filter."""
    chosen = [m for m in metadata if flt is None or matches(m, flt)]
    counts: dict[tuple[int, Any], int] = {}
    for m in chosen:
        value = value_at(m, key)
        items = value if isinstance(value, list) else [value]
        tags = set()
        for item in items:
            if isinstance(item, bool):
                tags.add((int(item), None))  # false 0, true 1
            elif isinstance(item, int | float):
                tags.add((2, item))
            elif isinstance(item, str):
                tags.add((3, item))
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], 0 if kv[0][1] is None else kv[0][1]))
    return [(bool(kind) if kind < 2 else value, n) for (kind, value), n in ranked], len(chosen)


def shown(col: Collection, key: str, flt: Filter | None, limit: int = MAX_LIMIT) -> tuple[list[tuple[Any, int]], int]:
    result = col.facet(key, flt, limit)
    assert result.exact
    return [(v.value, v.count) for v in result.values], result.documents


def same_values(a: list[tuple[Any, int]], b: list[tuple[Any, int]]) -> bool:
    """Equal, booleans told from numbers (True == 1 in Python)."""
    return len(a) == len(b) and all((type(x) is bool) == (type(y) is bool) and x == y and m == n
                                    for (x, m), (y, n) in zip(a, b))


def test_counts_are_a_count_over_the_documents_indexed_or_not(stores: Stores) -> None:
    col = stores.create("facets", model="none", dimension=2)
    col.upsert(docs(METADATA))
    filters = [parse_filter(spec) if spec else None for spec in FILTERS]
    cases = list(itertools.product(KEYS, range(len(filters))))
    scanned = {(key, f): shown(col, key, filters[f]) for key, f in cases}
    for (key, f), got in scanned.items():
        expected = python_facet(METADATA, key, filters[f])
        assert got[1] == expected[1], (key, FILTERS[f])
        assert same_values(got[0], expected[0]), (key, FILTERS[f], got, expected)
    # Spot checks of the rules themselves, beside the Python reading.
    # "pet" twice in one list counts once, and not at all inside a nested list; ties in value order.
    assert same_values(scanned[("tags", 0)][0][:2], [("home", 3), ("pet", 3)])
    assert same_values(scanned[("year", 0)][0][:2], [(2001, 2), (2020, 2)])  # 2001 and 2001.0 are one
    assert same_values(scanned[("flag", 0)][0], [(True, 3), (False, 2), (1, 1), ("1", 1)])
    # An object holds no value of its own; a string where others hold objects does.
    assert scanned[("geo", 0)][0] == [("Oslo", 1)] and scanned[("absent", 0)] == ([], len(METADATA))
    assert scanned[("lang", 4)] == ([], 0)
    # Indexed, the keys are counted from the metadata index: the same answers.
    col.index_metadata(KEYS)
    for (key, f), got in scanned.items():
        indexed = shown(col, key, filters[f])
        assert indexed[1] == got[1] and same_values(indexed[0], got[0]), (key, FILTERS[f])


def test_a_random_corpus_counts_the_same(stores: Stores) -> None:
    metadata = random_metadata(150, seed=11)
    col = stores.create("random", model="none", dimension=2)
    col.upsert(docs(metadata))
    flt = parse_filter({"b": {"exists": True}})
    for key in ("a", "b", "n", "n.x", "n.y"):
        for spec in (None, flt):
            assert same_values(shown(col, key, spec)[0], python_facet(metadata, key, spec)[0]), key
    col.index_metadata(["a", "n.x"])
    for key in ("a", "n.x"):
        assert same_values(shown(col, key, flt)[0], python_facet(metadata, key, flt)[0]), key


def test_limit_keeps_the_first_values(stores: Stores) -> None:
    metadata = [{"n": i % 23, "s": f"v{i % 17:02}"} for i in range(200)]
    col = stores.create("limits", model="none", dimension=2)
    col.upsert(docs(metadata))
    whole = shown(col, "n", None)[0]
    assert len(whole) == 23 and [v for v, _ in whole[:4]] == [0, 1, 2, 3]  # 9 each, then value order
    assert shown(col, "n", None, 5)[0] == whole[:5]
    assert shown(col, "n", None, 0)[0] == whole[:DEFAULT_LIMIT]  # 0: the default
    col.index_metadata(["s"])
    assert shown(col, "s", None, 3)[0] == [("v00", 12), ("v01", 12), ("v02", 12)]


def test_bad_keys_and_limits_are_refused_naming_the_field(stores: Stores) -> None:
    col = stores.create("bad", model="none", dimension=2)
    col.upsert(docs(METADATA[:2]))
    for key in ("", "a..b", "a b", ".a", "x" * 200):
        with pytest.raises(InvalidArgument, match=r"^key: "):
            col.facet(key)
    for limit in (-1, MAX_LIMIT + 1):
        with pytest.raises(InvalidArgument, match=rf"^limit: must be between 0 .* and {MAX_LIMIT}, got {limit}$"):
            col.facet("lang", limit=limit)


def test_a_passed_deadline_stops_a_facet(stores: Stores) -> None:
    col = stores.create("late", model="none", dimension=2)
    col.upsert(docs(METADATA))
    with deadline.bound(deadline.Deadline(expires=0.0)), pytest.raises(DeadlineExceeded, match="facet"):
        col.facet("lang")


@pytest.mark.slow
def test_the_milvus_store_says_when_it_counted_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pymilvus")
    made = Stores("milvus-lite", tmp_path)
    try:
        col = made.create("part", model="none", dimension=2)
        col.upsert(docs([{"k": "a"}] * 5))
        monkeypatch.setattr(milvus, "FACET_SCAN", 3)
        result = col.facet("k")
        assert (result.exact, result.documents, [(v.value, v.count) for v in result.values]) == (False, 5, [("a", 3)])
    finally:
        made.close()
