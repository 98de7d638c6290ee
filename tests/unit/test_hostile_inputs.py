"""Documented inputs at their limits on both stores, in process: never INTERNAL, never a store's
refusal. (Values JSON cannot spell, and large filters, through a real server:
tests/integration/test_hostile_inputs_server.py.)

- Filters of every documented size compile and answer right: a list of MAX_VALUES values, `any`
  and `all` over thousands of conditions, MAX_DEPTH levels of nesting with wide levels, up to
  MAX_CONDITIONS conditions; past each limit, INVALID_ARGUMENT naming the field.
- Control characters in ids, metadata keys and values and filter strings are stored, found,
  filtered and deleted alike by the embedded store and the Milvus store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.query.filters import MAX_CONDITIONS, MAX_DEPTH, MAX_VALUES, Filter, parse_filter
from neardex.indexer.retrieval.engine import Collection
from tests.support.filter_model import matches

pytest.importorskip("pymilvus")

CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"


def metadata_of(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {"year": 1990 + i % 40, "tag": f"t{i % 50}", "tags": [f"t{(i * 7) % 50}", f"t{(i * 3) % 50}", "all"],
            "score": rng.choice([0.5, 1, 2.25]), "pub": {"city": rng.choice(["Cairo", "Lima", "Oslo"])}}


DOCS = [Document(f"d{i:03d}", f"document {i}", metadata=metadata_of(i), vector=(1.0, float(i))) for i in range(60)]


@pytest.fixture(scope="module", params=["local", pytest.param("milvus-lite", marks=pytest.mark.slow)])
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
