"""The collection store in process: writes, skips, replacement, deletes, filters, reopen, locks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from neardex.indexer.ingest.pipeline import index_documents
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.stores import local as collection_module

DOCS = [
    Document("cat", "The cat sat on the warm mat by the fire.", "Cats", {"lang": "en", "year": 2001}),
    Document("py", "Python is a programming language with dynamic typing.", "", {"lang": "en", "year": 2010}),
    Document("paris", "Paris is the capital and largest city of France.", "Paris", {"lang": "fr", "year": 2020}),
    Document("nile", "The Nile flows north through Egypt into the Mediterranean Sea.", "", {"lang": "en", "year": 1999, "tags": "river"}),
]


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog(tmp_path / "data") as cat:
        yield cat


def test_upsert_search_get_delete(catalog: Catalog) -> None:
    col = catalog.create("docs")
    result = col.upsert(DOCS)
    assert (result.upserted, result.unchanged, result.chunks) == (4, 0, 4)
    hits = col.search("which city is the capital of France", k=2).hits
    assert hits[0].id == "paris"
    assert hits[0].text == DOCS[2].text and hits[0].metadata == {"lang": "fr", "year": 2020}
    found, missing = col.get(["nile", "nope"])
    assert [d.id for d in found] == ["nile"] and missing == ["nope"]
    assert col.delete(["paris", "nope"]) == 1
    assert "paris" not in [h.id for h in col.search("capital of France", k=4).hits]
    assert col.stats().documents == 3 and col.store.chunk_ids() == col.store.index_ids()


def test_unchanged_documents_are_skipped_and_changed_ones_replaced(catalog: Catalog) -> None:
    col = catalog.create("docs")
    col.upsert(DOCS)
    before = col.store.chunk_ids()
    again = col.upsert(DOCS)
    assert (again.upserted, again.unchanged, again.chunks) == (0, 4, 0)
    assert col.store.chunk_ids() == before  # nothing rewritten
    changed = Document("cat", "Dogs guard the house at night and bark at strangers.", "Dogs", {"lang": "en"})
    result = col.upsert([changed, DOCS[1]])
    assert (result.upserted, result.unchanged) == (1, 1)
    assert col.stats().chunks == 4  # old chunk of "cat" replaced, not added to
    assert col.search("a dog barking at night", k=1).hits[0].id == "cat"
    assert col.get(["cat"])[0][0].title == "Dogs"
    assert col.store.chunk_ids() == col.store.index_ids()


def test_long_documents_are_chunked_and_hits_grouped_by_document(catalog: Catalog) -> None:
    col = catalog.create("docs", chunk_tokens=32, overlap_tokens=4)
    long_text = " ".join(f"Fact {i}: the lighthouse number {i} stands on a rocky coast." for i in range(40))
    col.upsert([Document("long", long_text), *DOCS])
    assert col.stats().chunks > 10
    hits = col.search("lighthouse on a rocky coast", k=3).hits
    assert [h.id for h in hits].count("long") == 1
    top = hits[0]
    assert top.id == "long" and long_text[top.chunk_start : top.chunk_end] == top.text


def test_metadata_filters(catalog: Catalog) -> None:
    col = catalog.create("docs")
    col.upsert(DOCS)

    def ids(flt: dict) -> set[str]:
        return {h.id for h in col.search("anything at all", k=10, flt=parse_filter(flt)).hits}

    assert ids({"lang": "fr"}) == {"paris"}
    assert ids({"lang": ["fr", "xx"]}) == {"paris"}
    assert ids({"year": {"gte": 2001, "lt": 2020}}) == {"cat", "py"}
    assert ids({"lang": "en", "year": {"lte": 2000}}) == {"nile"}
    assert ids({"lang": "de"}) == set()
    with pytest.raises(InvalidArgument, match="filter.year"):
        parse_filter({"year": {"between": 3}})
    with pytest.raises(InvalidArgument, match="filter"):
        parse_filter({'bad"key': 1})


def test_min_score_and_vector_queries(catalog: Catalog) -> None:
    col = catalog.create("docs")
    col.upsert(DOCS)
    vector = col.embedder.encode(["Paris is the capital and largest city of France."])[0]
    hits = col.search(vector=vector, k=4, min_score=0.9).hits
    assert [h.id for h in hits] == ["paris"]
    with pytest.raises(InvalidArgument, match="vector: has dimension 3"):
        col.search(vector=np.ones(3), k=1)
    with pytest.raises(InvalidArgument, match="vector: contains NaN"):
        col.search(vector=np.full(384, np.nan), k=1)
    with pytest.raises(InvalidArgument, match="query: .* exceeds the model's window"):
        col.search("word " * 400, k=1)


def test_bad_documents_change_nothing(catalog: Catalog) -> None:
    col = catalog.create("docs")
    col.upsert(DOCS[:2])
    with pytest.raises(InvalidArgument, match=r"documents\[1\].text"):
        col.upsert([DOCS[2], Document("x", "   ")])
    with pytest.raises(InvalidArgument, match=r"documents\[1\].id: duplicate id"):
        col.upsert([DOCS[2], DOCS[2]])
    with pytest.raises(InvalidArgument, match=r"documents\[0\].id"):
        col.upsert([Document("", "text")])
    assert col.stats().documents == 2 and col.get(["paris"])[1] == ["paris"]


def test_reopen_replays_the_change_log_and_checkpoints(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    cat = Catalog(data)
    col = cat.create("docs")
    col.upsert(DOCS)
    col.delete(["py"])
    # Simulate a crash: drop the process state without the closing snapshot.
    col.store._db.close()
    cat._lock_file.close()
    assert not list((data / "docs").glob("index-*.faiss"))
    with Catalog(data) as cat2:
        col2 = cat2.get("docs")
        assert col2.store.chunk_ids() == col2.store.index_ids() and len(col2.store.index_ids()) == 3
        assert col2.search("capital of France", k=1).hits[0].id == "paris"
        monkeypatch.setattr(collection_module, "CHECKPOINT_CHANGES", 1)
        col2.upsert([Document("new", "A brand new document about volcanoes.")])
        snapshots = list((data / "docs").glob("index-*.faiss"))
    assert len(snapshots) == 1
    with Catalog(data) as cat3:
        col3 = cat3.get("docs")
        assert col3.store._db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0
        assert col3.store.chunk_ids() == col3.store.index_ids() and len(col3.store.index_ids()) == 4


def test_catalog_names_create_delete(catalog: Catalog) -> None:
    catalog.create("a-1")
    catalog.create("b_2")
    assert catalog.names() == ["a-1", "b_2"]
    with pytest.raises(AlreadyExists, match="'a-1' already exists"):
        catalog.create("a-1")
    for bad in ("a/b", "..", "", "x" * 65, "sp ace", "ü"):
        with pytest.raises(InvalidArgument, match="name"):
            catalog.create(bad)
    catalog.delete("a-1")
    assert catalog.names() == ["b_2"]
    with pytest.raises(NotFound):
        catalog.get("a-1")


def test_a_data_dir_has_one_writer(tmp_path: Path) -> None:
    with Catalog(tmp_path / "data"):
        with pytest.raises(FailedPrecondition, match="--server"):
            Catalog(tmp_path / "data")
    Catalog(tmp_path / "data").close()  # released on close


def test_opening_with_another_model_is_refused(tmp_path: Path) -> None:
    from neardex.indexer.embedding.embedder import resolve_model

    other = tmp_path / "other-model"
    import shutil

    shutil.copytree(resolve_model(None)[1], other)
    with Catalog(tmp_path / "data") as cat:
        cat.create("docs")
        with pytest.raises(FailedPrecondition, match="built with all-MiniLM-L6-v2"):
            cat.get_or_create("docs", model=str(other))


def test_pipeline_delete_missing(catalog: Catalog) -> None:
    col = catalog.create("docs")
    summary = index_documents(col, DOCS)
    assert (summary.documents, summary.upserted, summary.chunks) == (4, 4, 4) and summary.tokens > 20
    summary = index_documents(col, DOCS[:2], delete_missing=True)
    assert (summary.unchanged, summary.deleted) == (2, 2)
    assert col.all_ids() == {"cat", "py"}
