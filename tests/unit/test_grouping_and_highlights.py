"""Grouped search (`group_by`, `group_size`) and matching chunks per hit (`chunks_per_document`) on
both stores, in every mode: groups are the ungrouped ranking grouped by the key's values, pages
count groups, chunks slice their document's text and come best first, and bad values are refused
naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval import grouping
from neardex.indexer.retrieval.engine import MAX_CHUNKS_PER_DOCUMENT, Collection
from tests.support.stores import Stores

LONG = ("The Apollo program ran from 1961 to 1972 and was run by NASA. "
        "Apollo 11 landed on the Moon in July 1969, and Neil Armstrong walked on the lunar surface. "
        "The Saturn V rocket launched every crewed lunar mission of the program. "
        "Bread is baked from flour, water, salt and yeast in many kitchens. "
        "Buzz Aldrin followed Armstrong onto the Moon and set up experiments on the surface. "
        "Sourdough rises because wild yeast ferments the dough over many hours.")
DOCS = [
    Document("a1", "Apollo 11 landed on the Moon in July 1969; Neil Armstrong walked on the lunar surface.",
             metadata={"source": "nasa.gov", "site": {"host": "nasa"}}),
    Document("a2", "Neil Armstrong and Buzz Aldrin walked on the Moon during the Apollo 11 mission.",
             metadata={"source": "nasa.gov", "site": {"host": "nasa"}}),
    Document("a3", "The Apollo 11 lunar module Eagle landed in the Sea of Tranquility.",
             metadata={"source": "nasa.gov", "site": {"host": "nasa"}}),
    Document("b1", "Apollo 11 was the first crewed Moon landing, watched by millions on television.",
             metadata={"source": "wiki.org", "site": {"host": "wiki"}}),
    Document("b2", LONG, metadata={"source": "wiki.org", "site": {"host": "wiki"}}),
    Document("c1", "Lunar rovers drove astronauts across the Moon's surface on later Apollo missions.",
             metadata={"source": ["space.com", "wiki.org"]}),
    Document("d1", "The Soviet Luna 9 probe made the first soft landing on the Moon in 1966.",
             metadata={"source": "esa.int"}),
    Document("n1", "Apollo 11 astronauts planted a flag on the Moon after landing.", metadata={"year": 1969}),
    Document("n2", "Moon landing conspiracy theories about Apollo 11 are false.", metadata={"source": None}),
    Document("x1", "Sourdough bread rises because wild yeast ferments the dough.", metadata={"source": "bake.com"}),
    Document("x2", "The Nile flows north into the Mediterranean Sea.", metadata={"source": 7}),
    Document("x3", "Rivers carry water to the sea.", metadata={"source": 7.0}),
]
QUERY = "Apollo 11 Moon landing Neil Armstrong lunar surface"
TEXT = {d.id: d.text for d in DOCS}


@pytest.fixture
def col(stores: Stores) -> Collection:
    collection = stores.create("docs", chunk_tokens=32, overlap_tokens=0)
    collection.upsert(DOCS)
    return collection


def expected_groups(col: Collection, mode: str, size: int, path: str = "source") -> list[tuple[Any, list[str]]]:
    """The ungrouped ranking of the documents that have the key, grouped here."""
    ranked = col.search(QUERY, k=50, mode=mode, flt=parse_filter({path: {"exists": True}})).hits
    groups: dict[tuple[str, Any], tuple[Any, list[str]]] = {}
    for hit in ranked:
        value = hit.metadata
        for segment in path.split("."):
            value = value[segment]
        for v in value if isinstance(value, list) else [value]:
            key = ("bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "text", v)
            members = groups.setdefault(key, (v, []))[1]
            if len(members) < size:
                members.append(hit.id)
    return list(groups.values())


def got_groups(result: Any) -> list[tuple[Any, list[str]]]:
    return [(g.value, [h.id for h in g.hits]) for g in result.groups]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_groups_are_the_ungrouped_ranking_grouped(col: Collection, mode: str) -> None:
    whole = expected_groups(col, mode, 2)
    assert len(whole) >= 4
    result = col.search(QUERY, k=3, mode=mode, group_by="metadata.source", group_size=2)
    assert got_groups(result) == whole[:3]
    # The hits are the groups' hits, group after group, each naming its group.
    assert [(h.id, h.group) for h in result.hits] == [(i, v) for v, members in whole[:3] for i in members]
    for group in result.groups:
        assert 1 <= len(group.hits) <= 2 and all(h.group == group.value for h in group.hits)
    # A list value puts its document in a group per element; no value (or null) in none.
    everything = col.search(QUERY, k=20, mode=mode, group_by="metadata.source", group_size=5)
    members = {g.value: {h.id for h in g.hits} for g in everything.groups}
    assert "c1" in members["space.com"] and "c1" in members["wiki.org"]
    assert not {"n1", "n2"} & {h.id for h in everything.hits}
    # 7 and 7.0 are one value, as filters tell them apart.
    assert sum(1 for g in everything.groups if g.value == 7) <= 1
    # The default group size is 1: one document per value, the best.
    ones = col.search(QUERY, k=4, mode=mode, group_by="metadata.source")
    assert got_groups(ones) == [(v, m[:1]) for v, m in expected_groups(col, mode, 1)[:4]]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_offset_pages_over_groups_and_nested_keys_group(col: Collection, mode: str) -> None:
    kwargs: dict[str, Any] = {"mode": mode, "group_by": "metadata.source", "group_size": 2}
    whole = got_groups(col.search(QUERY, k=4, **kwargs))
    pages = [g for offset in (0, 2) for g in got_groups(col.search(QUERY, k=2, offset=offset, **kwargs))]
    assert pages == whole and len(whole) == 4
    assert col.search(QUERY, k=2, offset=100, **kwargs).groups == []
    # min_score holds before grouping: groups of the hits at or above it.
    scores = sorted(h.score for h in col.search(QUERY, k=12, mode=mode).hits)
    floor = scores[len(scores) // 2]
    high = col.search(QUERY, k=10, min_score=floor, **kwargs)
    assert high.hits and all(h.score >= floor for h in high.hits)
    nested = col.search(QUERY, k=5, mode=mode, group_by="metadata.site.host", group_size=3)
    assert got_groups(nested) == expected_groups(col, mode, 3, "site.host")
    assert {g.value for g in nested.groups} == {"nasa", "wiki"}


def test_a_key_no_document_has_gives_no_groups(col: Collection) -> None:
    result = col.search(QUERY, k=3, group_by="metadata.publisher")
    assert (result.groups, result.hits) == ([], [])
    ungrouped = col.search(QUERY, k=3)
    assert ungrouped.groups is None and all(h.group is None for h in ungrouped.hits)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_chunks_per_document_slice_the_text_best_first(col: Collection, mode: str) -> None:
    plain = col.search(QUERY, k=8, mode=mode)
    assert all(h.chunks == [] for h in plain.hits)  # not asked for
    hits = col.search(QUERY, k=8, mode=mode, chunks_per_document=3).hits
    assert [(h.id, h.score, h.text) for h in hits] == [(h.id, h.score, h.text) for h in plain.hits]
    assert "b2" in {h.id for h in hits}
    for hit in hits:
        assert 1 <= len(hit.chunks) <= 3
        assert [c.score for c in hit.chunks] == sorted((c.score for c in hit.chunks), reverse=True)
        for chunk in hit.chunks:
            assert TEXT[hit.id][chunk.start : chunk.end] == chunk.text
        assert len({c.index for c in hit.chunks}) == len(hit.chunks)
        # The best chunk scores the hit's score; outside hybrid search it is the hit's own chunk
        # (hybrid's is the fusion's pick, its score its document's best cosine).
        best = hit.chunks[0]
        assert abs(best.score - hit.score) < 1e-5
        if mode != "hybrid":
            assert (best.text, best.start, best.end, best.index) == (hit.text, hit.chunk_start, hit.chunk_end,
                                                                      hit.chunk_index)
    long = next(h for h in hits if h.id == "b2")
    assert len(long.chunks) >= 2  # the long document matched in more than one passage
    one = col.search(QUERY, k=8, mode=mode, chunks_per_document=1).hits
    assert all(len(h.chunks) == 1 for h in one)
    grouped = col.search(QUERY, k=2, mode=mode, group_by="metadata.source", group_size=2, chunks_per_document=2)
    assert all(1 <= len(h.chunks) <= 2 for g in grouped.groups for h in g.hits)


def test_bad_grouping_and_chunks_are_refused_naming_the_field(col: Collection) -> None:
    for bad in ("source", "metadata.", "metadata.a..b", "metadata.a b", "text"):
        with pytest.raises(InvalidArgument, match=r"^group_by: "):
            col.search(QUERY, k=3, group_by=bad)
    for bad_size in (-1, grouping.MAX_GROUP_SIZE + 1):
        with pytest.raises(InvalidArgument, match=r"^group_size: must be between 1 and"):
            col.search(QUERY, k=3, group_by="metadata.source", group_size=bad_size)
    with pytest.raises(InvalidArgument, match=r"^group_size: needs group_by"):
        col.search(QUERY, k=3, group_size=2)
    with pytest.raises(InvalidArgument, match=r"^diversity: not with group_by"):
        col.search(QUERY, k=3, group_by="metadata.source", diversity=0.5)
    for bad_chunks in (-1, MAX_CHUNKS_PER_DOCUMENT + 1):
        with pytest.raises(InvalidArgument, match=r"^chunks_per_document: must be between 0 and 16"):
            col.search(QUERY, k=3, chunks_per_document=bad_chunks)
    with pytest.raises(InvalidArgument, match=r"^requests\[1\]\.group_by: "):
        col.request(QUERY, k=3, field="requests[1].query", group_by="source")


def test_grouping_alone() -> None:
    assert grouping.values({"a": {"b": ["x", None, {"o": 1}, 2, True]}}, "a.b") == ["x", 2, True]
    assert grouping.values({"a": None}, "a") == [] and grouping.values({"a": 1}, "a.b") == []
    assert grouping.values({"a": {"o": 1}}, "a") == []
    ranked = [("d1", {"k": 1}), ("d2", {"k": 1.0}), ("d3", {"k": True}), ("d4", {}), ("d5", {"k": ["z", True]})]
    groups = grouping.group(ranked, lambda item: item[1], "k", 1)
    assert [(g.value, [m[0] for m in g.members]) for g in groups] == [(1, ["d1"]), (True, ["d3"]), ("z", ["d5"])]
    assert grouping.filled(groups, 3, 1) and not grouping.filled(groups, 4, 1)
    pairs = grouping.group(ranked, lambda item: item[1], "k", 2)
    assert [[m[0] for m in g.members] for g in pairs] == [["d1", "d2"], ["d3", "d5"], ["d5"]]
    assert grouping.filled(pairs, 2, 2) and not grouping.filled(pairs, 3, 2)
