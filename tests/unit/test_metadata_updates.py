"""Metadata changed without embedding, on both stores: UpdateMetadata by ids and by filter, and a
re-upsert whose documents changed only their metadata. Each makes no model call (counted on the
collection's road to its model) and rewrites no chunk or vector (the stored chunks, their vectors,
the local store's change log and FAISS ids are the same after), filters see the change at once
(the local store's metadata index included), and it survives a reopen. Rows written before the
content hash was split keep working."""

from __future__ import annotations

import collections
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval.engine import Collection, MetadataUpdate
from tests.support.counting import CountingCalls

DOCS = [
    Document("cat", "The cat sat on the warm mat by the fire.", "Cats", {"lang": "en", "year": 2001}),
    Document("py", "Python is a programming language with dynamic typing.", "", {"lang": "en", "year": 2010}),
    Document("paris", "Paris is the capital and largest city of France.", "Paris", {"lang": "fr", "year": 2020}),
    Document("nile", "The Nile flows north through Egypt into the Mediterranean Sea.", "",
             {"lang": "en", "year": 1999, "about": {"kind": "river"}}),
]


class Opened:
    """A catalog whose model calls are counted, reopened on demand."""

    def __init__(self, root: Path, store: str) -> None:
        self.root, self.store = root, store
        self.counts: collections.Counter[str] = collections.Counter()
        self.catalog = Catalog(root / "data", model_calls=CountingCalls.factory(self.counts))

    def create(self, name: str = "docs", **kwargs: Any) -> Collection:
        if self.store == "milvus":
            kwargs["store"] = str(self.root / "milvus.db")
        return self.catalog.create(name, **kwargs)

    def reopen(self, name: str = "docs") -> Collection:
        self.catalog.close()
        self.catalog = Catalog(self.root / "data", model_calls=CountingCalls.factory(self.counts))
        return self.catalog.get(name)


@pytest.fixture(params=["local", pytest.param("milvus", marks=pytest.mark.slow)])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    if request.param == "milvus":
        pytest.importorskip("pymilvus")
    found = Opened(tmp_path, request.param)
    try:
        yield found
    finally:
        found.catalog.close()


def stored_chunks(col: Collection) -> dict[int, tuple[str, bytes]]:
    """Every stored chunk's id, document and vector bytes."""
    ids = [d.id for d in col.scroll("", 1000, text=False)]
    return {c.chunk_id: (c.doc_id, c.vector.tobytes()) for c in col.store.fetch(documents=ids, vectors=True)
            if c.vector is not None}


def index_state(col: Collection) -> Any:
    """What the local store's vector side holds: FAISS ids and the change log's length."""
    store = col.store
    if not hasattr(store, "index_ids"):
        return None
    (changes,) = store._db.execute("SELECT COUNT(*) FROM changes").fetchone()
    return store.index_ids(), changes


def ids_of(col: Collection, flt: dict[str, Any]) -> set[str]:
    return {d.id for d in col.scroll("", 1000, parse_filter(flt), text=False)}


def test_update_by_ids_embeds_nothing_rewrites_no_vector_and_is_seen_at_once(opened: Opened) -> None:
    col = opened.create()
    col.index_metadata(["lang"])  # the local store answers this key from its metadata index
    col.upsert(DOCS)
    calls, chunks, index = opened.counts["calls"], stored_chunks(col), index_state(col)
    update = MetadataUpdate.check({"lang": "de", "review.by": "ana"}, ["year"])
    assert col.update_metadata(["cat", "nope", "cat"], update=update) == (1, ["nope"])
    assert col.get(["cat"])[0][0].metadata == {"lang": "de", "review": {"by": "ana"}}
    assert opened.counts["calls"] == calls
    assert stored_chunks(col) == chunks and index_state(col) == index
    # Every read that filters sees it at once: the metadata index, scans, counts, searches.
    assert ids_of(col, {"lang": "de"}) == {"cat"} and "cat" not in ids_of(col, {"lang": "en"})
    assert col.count(parse_filter({"review.by": "ana"})) == 1
    assert not ids_of(col, {"year": {"exists": True}}) & {"cat"}
    hits = col.search("a cat by the fire", k=3, mode="dense", flt=parse_filter({"lang": "de"})).hits
    assert [h.id for h in hits] == ["cat"] and hits[0].metadata["lang"] == "de"
    assert opened.counts["calls"] == calls + 1  # the search's query, nothing else
    # The lexical index is untouched and still answers, under the new metadata.
    found = col.search("cat mat fire", k=3, mode="lexical", flt=parse_filter({"review.by": "ana"})).hits
    assert [h.id for h in found] == ["cat"]
    # Durable: a reopened catalog holds it.
    col = opened.reopen()
    assert col.get(["cat"])[0][0].metadata == {"lang": "de", "review": {"by": "ana"}}
    assert ids_of(col, {"lang": "de"}) == {"cat"}


def test_update_by_filter_and_replace(opened: Opened) -> None:
    col = opened.create()
    col.upsert(DOCS)
    chunks = stored_chunks(col)
    updated, missing = col.update_metadata(flt=parse_filter({"lang": "en"}),
                                           update=MetadataUpdate.check({"reviewed": True}))
    assert (updated, missing) == (3, [])
    assert ids_of(col, {"reviewed": True}) == {"cat", "py", "nile"}
    # Unset a nested key, and a path that is not there (no change).
    col.update_metadata(["nile"], update=MetadataUpdate.check(None, ["about.kind", "no.such"]))
    assert col.get(["nile"])[0][0].metadata == {"lang": "en", "year": 1999, "about": {}, "reviewed": True}
    col.update_metadata(["paris"], update=MetadataUpdate.check({"only": 1}, replace=True))
    assert col.get(["paris"])[0][0].metadata == {"only": 1}
    assert ids_of(col, {"lang": "fr"}) == set()
    # A filter that matches nothing updates nothing.
    assert col.update_metadata(flt=parse_filter({"lang": "xx"}), update=MetadataUpdate.check({"a": 1})) == (0, [])
    assert stored_chunks(col) == chunks


def test_reupsert_with_changed_metadata_rewrites_metadata_only(opened: Opened) -> None:
    col = opened.create()
    col.index_metadata(["tag"])
    first = col.upsert(DOCS)
    assert (first.upserted, first.metadata_updated) == (4, 0)
    calls, chunks, index = opened.counts["calls"], stored_chunks(col), index_state(col)
    tagged = [Document(d.id, d.text, d.title, {**d.metadata, "tag": "new"}) if d.id in ("cat", "py") else d
              for d in DOCS]
    result = col.upsert(tagged)
    assert (result.upserted, result.metadata_updated, result.unchanged, result.chunks) == (0, 2, 2, 0)
    assert opened.counts["calls"] == calls
    assert stored_chunks(col) == chunks and index_state(col) == index
    assert ids_of(col, {"tag": "new"}) == {"cat", "py"}
    again = col.upsert(tagged)
    assert (again.upserted, again.metadata_updated, again.unchanged) == (0, 0, 4)
    # A text change is embedded again, a title change too; the metadata-only one beside them is not.
    changed = [Document("cat", "Dogs bark at night.", "Dogs", {"tag": "new"}),
               Document("py", tagged[1].text, tagged[1].title, {"tag": "old"})]
    result = col.upsert(changed)
    assert (result.upserted, result.metadata_updated) == (1, 1)
    assert opened.counts["calls"] == calls + 1 and opened.counts["texts"] == 5
    col = opened.reopen()
    assert (col.upsert(changed).unchanged, ids_of(col, {"tag": "old"})) == (2, {"py"})


def test_an_update_then_a_reupsert_of_the_same_document_is_unchanged(opened: Opened) -> None:
    col = opened.create()
    col.upsert(DOCS)
    col.update_metadata(["cat"], update=MetadataUpdate.check({"lang": "de"}))
    calls = opened.counts["calls"]
    same = Document("cat", DOCS[0].text, DOCS[0].title, {"lang": "de", "year": 2001})
    assert (col.upsert([same]).unchanged, opened.counts["calls"]) == (1, calls)
    back = col.upsert([DOCS[0]])
    assert (back.metadata_updated, opened.counts["calls"]) == (1, calls)


def test_a_collection_without_a_model_updates_metadata_alone(opened: Opened) -> None:
    col = opened.create("own", model="none", dimension=3)
    docs = [Document("a", "first", metadata={"k": 1}, vector=(1.0, 0.0, 0.0)),
            Document("b", "second", metadata={"k": 2}, vector=(0.0, 1.0, 0.0))]
    col.upsert(docs)
    chunks = stored_chunks(col)
    result = col.upsert([Document("a", "first", metadata={"k": 3}, vector=(1.0, 0.0, 0.0)), docs[1]])
    assert (result.upserted, result.metadata_updated, result.unchanged) == (0, 1, 1)
    moved = col.upsert([Document("b", "second", metadata={"k": 2}, vector=(0.0, 0.0, 1.0))])
    assert (moved.upserted, moved.metadata_updated) == (1, 0)  # its own vector is content
    assert {k: v for k, v in stored_chunks(col).items() if v[0] == "a"} == \
           {k: v for k, v in chunks.items() if v[0] == "a"}
    assert ids_of(col, {"k": 3}) == {"a"}


@pytest.mark.parametrize(("set_", "unset", "replace", "field"), [
    ({"lang": "de"}, ["lang"], False, "unset[0]"),
    ({"a.b": 1}, ["x", "a"], False, "unset[1]"),
    ({"a": {"b": 1}}, ["a.b"], False, "unset[0]"),
    ({"score": float("nan")}, [], False, "set.score"),
    ({"a": {"b": [1, float("inf")]}}, [], False, "set.a.b[1]"),
    ({"bad key": 1}, [], False, "set['bad key']"),
    ({}, ["a..b"], False, "unset[0]"),
    ({}, [], False, "set"),
    ({"a": 1}, ["b"], True, "unset"),
])
def test_bad_updates_name_their_field(tmp_path: Path, set_: dict[str, Any], unset: list[str], replace: bool,
                                     field: str) -> None:
    with Catalog(tmp_path / "data") as catalog:
        col = catalog.create("docs")
        col.upsert(DOCS[:1])
        with pytest.raises(InvalidArgument) as err:
            col.update_metadata(["cat"], update=MetadataUpdate.check(set_, unset, replace))
        assert str(err.value).startswith(f"{field}:"), err.value
        assert col.get(["cat"])[0][0].metadata == DOCS[0].metadata


def test_bad_selections_are_refused(opened: Opened) -> None:
    col = opened.create()
    col.upsert(DOCS[:1])
    update = MetadataUpdate.check({"a": 1})
    with pytest.raises(InvalidArgument, match="^filter: update by ids or by a filter, not both"):
        col.update_metadata(["cat"], parse_filter({"lang": "en"}), update)
    with pytest.raises(InvalidArgument, match="^filter: an empty filter"):
        col.update_metadata(flt=parse_filter({}), update=update)
    with pytest.raises(InvalidArgument, match=r"^ids\[1\]"):
        col.update_metadata(["cat", " "], update=update)
    assert col.update_metadata([], update=update) == (0, [])


def test_rows_written_before_the_hash_split_keep_working(tmp_path: Path) -> None:
    """A data folder written by an older neardex holds one hash of title, text and metadata per
    document: unchanged documents stay unchanged, a metadata change is found by reading the stored
    text and rewrites the metadata alone, a text change is embedded, and an UpdateMetadata on such
    a row is still recognised on the next upsert."""
    counts: collections.Counter[str] = collections.Counter()
    with Catalog(tmp_path / "data", model_calls=CountingCalls.factory(counts)) as catalog:
        col = catalog.create("docs")
        col.upsert(DOCS)
    db = sqlite3.connect(tmp_path / "data" / "docs" / "docs.sqlite")
    with db:
        for doc in DOCS:
            db.execute("UPDATE documents SET hash = ? WHERE id = ?", (doc.legacy_hash(), doc.id))
    db.close()
    with Catalog(tmp_path / "data", model_calls=CountingCalls.factory(counts)) as catalog:
        col = catalog.get("docs")
        calls = counts["calls"]
        assert col.upsert(DOCS).unchanged == 4
        retagged = Document("py", DOCS[1].text, DOCS[1].title, {"lang": "en", "year": 2011})
        retext = Document("paris", "Paris lies on the Seine.", "Paris", DOCS[2].metadata)
        result = col.upsert([retagged, retext])
        assert (result.upserted, result.metadata_updated) == (1, 1)
        assert counts["calls"] == calls + 1 and counts["texts"] == 5
        col.update_metadata(["cat"], update=MetadataUpdate.check({"lang": "la"}))
        stored = json.loads(json.dumps(col.get(["cat"])[0][0].metadata))
        calls = counts["calls"]
        same = Document("cat", DOCS[0].text, DOCS[0].title, stored)
        assert col.upsert([same]).unchanged == 1
        assert col.upsert([DOCS[0]]).metadata_updated == 1 and counts["calls"] == calls
        assert col.upsert([DOCS[0], retagged, DOCS[3]]).unchanged == 3


def test_vectors_found_are_the_same_after_an_update(opened: Opened) -> None:
    """Dense scores do not move when metadata changes: the same vectors answer."""
    col = opened.create()
    col.upsert(DOCS)
    before = [(h.id, h.score) for h in col.search("rivers of Egypt", k=4, mode="dense").hits]
    col.update_metadata(flt=parse_filter({"year": {"gte": 2000}}), update=MetadataUpdate.check({"recent": True}))
    after = [(h.id, h.score) for h in col.search("rivers of Egypt", k=4, mode="dense").hits]
    assert [i for i, _ in before] == [i for i, _ in after]
    assert np.allclose([s for _, s in before], [s for _, s in after])


class DeletesFirst:
    """A store that loses a document (a delete from another caller) just before a metadata write."""

    def __init__(self, store: Any, doomed: str) -> None:
        self._store, self._doomed = store, doomed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def update_metadata(self, ids: Any, flt: Any, edit: Any) -> list[str]:
        self._store.delete([self._doomed], None)
        return self._store.update_metadata(ids, flt, edit)


def test_a_document_deleted_before_its_metadata_write_is_written_whole(tmp_path: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    with Catalog(tmp_path / "data", model_calls=CountingCalls.factory(counts)) as catalog:
        col = catalog.create("docs")
        col.upsert(DOCS)
        calls = counts["calls"]
        tagged = [Document(d.id, d.text, d.title, {"tag": "new"}) for d in DOCS[:2]]
        real = col.store
        col.store = DeletesFirst(real, "cat")  # type: ignore[assignment]
        try:
            result = col.upsert(tagged)
        finally:
            col.store = real
        assert (result.upserted, result.metadata_updated, result.unchanged) == (1, 1, 0)
        assert counts["calls"] == calls + 1 and counts["texts"] == 5  # "cat" embedded again, alone
        assert {d.id: d.metadata for d in col.get(["cat", "py"])[0]} == {"cat": {"tag": "new"}, "py": {"tag": "new"}}
        assert col.store.chunk_ids() == col.store.index_ids()
