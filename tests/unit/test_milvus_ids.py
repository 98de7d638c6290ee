"""Ids and metadata strings that an expression grammar has to quote (quotes, backslashes, line
breaks, NUL, astral-plane characters) are stored, read, paged, counted, filtered and deleted alike
by the embedded store and the Milvus store (a NUL in ids; in metadata, see FILTERED).

The Milvus store pages its reads by id, each page after the last id of the one before: that id
goes into the next page's expression, so the greatest id of a page (here the greatest of all, which
ends in a backslash) must be quoted like any other string (`doc_id > "…\\"` was an INTERNAL error).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval.engine import Collection

pytest.importorskip("pymilvus")

HOSTILE = ["葩x𡭯&\\«", 'dq"', "sq'", "back\\slash", 'esc\\"aped', "\\", '"', "\\\\", "nl\nline", "cr\rret",
           "tab\tbed", "nul\x00byte", "bell\x07", "del\x7f", "\\n", "\\u0041", "{x}", "%_like", "emoji😀",
           "𡭯", "\u2028sep", "\ufeffbom", "p\ue000rivate", "\U0010fffd\\"]
# Greatest last: every read's last page ends on it.
IDS = sorted(HOSTILE)
assert IDS[-1] == "\U0010fffd\\"
# Metadata values filtered on: the embedded store's SQLite (3.40) reads a JSON string only up to a
# NUL, so a value holding one is stored and read back whole but not told apart by a filter.
FILTERED = [doc_id for doc_id in HOSTILE if "\x00" not in doc_id]


@pytest.fixture(scope="module", params=["local", pytest.param("milvus-lite", marks=pytest.mark.slow)])
def collection(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    root: Path = tmp_path_factory.mktemp(request.param)
    store = "" if request.param == "local" else str(root / "milvus.db")
    with Catalog(root / "data") as catalog:
        yield catalog.create("docs", model="none", dimension=2, store=store)


def document(i: int, doc_id: str) -> Document:
    # Values compared, listed and ranged; a key of any characters is stored and read back (a filter
    # names keys of plain characters only).
    return Document(doc_id, f"text {i}", metadata={"tag": doc_id, "tags": [doc_id, "all"], "n": i, f"k{doc_id}": i},
                    vector=(1.0, float(i)))


def test_hostile_ids_and_values_through_every_read_and_delete(collection: Collection) -> None:
    docs = [document(i, doc_id) for i, doc_id in enumerate(HOSTILE)]
    collection.upsert(docs)

    found, missing = collection.get([*HOSTILE, "absent\\", 'absent"'])
    assert [d.id for d in found] == HOSTILE and missing == ["absent\\", 'absent"']
    assert [d.metadata for d in found] == [d.metadata for d in docs]
    assert collection.count() == len(HOSTILE)

    for limit in (1, 2, 5, 1000):
        pages, after = [], ""
        while page := collection.scroll(after, limit, text=False):
            pages += [d.id for d in page]
            after = page[-1].id
        assert pages == IDS, limit
    for i, doc_id in enumerate(IDS):
        assert [d.id for d in collection.scroll(doc_id, 1000, text=False)] == IDS[i + 1:], repr(doc_id)
        assert [d.id for d in collection.scroll(doc_id, 1000, parse_filter({"tags": "all"}))] == IDS[i + 1:]

    for doc_id in FILTERED:
        i = HOSTILE.index(doc_id)
        for flt in ({"tag": doc_id}, {"tags": doc_id}, {"tags": {"contains_all": [doc_id, "all"]}},
                    {"n": i}, {"tag": {"gte": doc_id, "lte": doc_id}}):
            assert collection.count(parse_filter(flt)) == 1, (flt, doc_id)
            hits = collection.search(vector=(1.0, float(i)), k=5, flt=parse_filter(flt)).hits
            assert [h.id for h in hits] == [doc_id], (flt, doc_id)
        ranged = parse_filter({"tag": {"gt": doc_id}, "tags": {"in": FILTERED}})
        assert collection.count(ranged) == sum(other > doc_id for other in FILTERED), repr(doc_id)
    assert collection.count(parse_filter({"tag": {"in": FILTERED}})) == len(FILTERED)
    assert collection.count(parse_filter({"tag": {"not_in": FILTERED[:5]}})) == len(HOSTILE) - 5

    assert collection.delete(HOSTILE[::2]) == len(HOSTILE[::2])
    assert collection.delete(flt=parse_filter({"tag": HOSTILE[1]})) == 1
    left = [doc_id for doc_id in IDS if doc_id not in (*HOSTILE[::2], HOSTILE[1])]
    found, missing = collection.get(HOSTILE)
    assert sorted(d.id for d in found) == left and sorted(missing) == sorted(set(HOSTILE) - set(left))
    assert collection.count() == len(left)
    assert [d.id for d in collection.scroll("", 1000)] == left
    pages, after = [], ""
    while page := collection.scroll(after, 2, text=False):
        pages += [d.id for d in page]
        after = page[-1].id
    assert pages == left
