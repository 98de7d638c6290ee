"""One suite over both stores: every promise of the collection API holds whether a collection
lives in the data folder (SQLite + FAISS) or in Milvus (milvus-lite here, in process).

Each test runs once per store; what only one store does (its limits, its own tools) follows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import AlreadyExists, InvalidArgument, NotFound
from neardex.indexer.ingest.pipeline import index_documents
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.records import IndexSpec
from neardex.indexer.retrieval.answers import Answerer
from neardex.indexer.stores.local import LocalStore
from neardex.indexer.stores.local.check import check
from neardex.indexer.stores.milvus import CATALOG, MilvusStore, client_for
from tests.support.stores import Stores, ids

pytest.importorskip("pymilvus")

DOCS = [
    Document("cat", "The cat sat on the warm mat by the fire.", "Cats", {"lang": "en", "year": 2001, "tags": ["pet"]}),
    Document("py", "Python is a programming language with dynamic typing.", "", {"lang": "en", "year": 2010}),
    Document("paris", "Paris is the capital and largest city of France. It lies on the Seine.", "Paris",
             {"lang": "fr", "year": 2020, "tags": ["city", "capital"]}),
    Document("nile", "The Nile flows north through Egypt into the Mediterranean Sea.", "",
             {"lang": "en", "year": 1999, "tags": "river", "geo": {"continent": "Africa"}}),
]
def test_upsert_search_get_delete(stores: Stores) -> None:
    col = stores.create()
    result = col.upsert(DOCS)
    assert (result.upserted, result.unchanged, result.chunks) == (4, 0, 4)
    hits = col.search("which city is the capital of France", k=2).hits
    assert hits[0].id == "paris" and hits[0].text == DOCS[2].text and hits[0].title == "Paris"
    assert hits[0].metadata == DOCS[2].metadata and (hits[0].chunk_start, hits[0].chunk_end) == (0, len(DOCS[2].text))
    found, missing = col.get(["nile", "nope"])
    assert [d.id for d in found] == ["nile"] and found[0].metadata == DOCS[3].metadata and missing == ["nope"]
    assert col.delete(["paris", "nope"]) == 1
    assert "paris" not in ids(col.search("capital of France", k=4))
    stats = col.stats()
    assert (stats.documents, stats.chunks, stats.vectors) == (3, 3, 3)


def test_unchanged_documents_are_skipped_and_changed_ones_replaced(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS)
    again = col.upsert(DOCS)
    assert (again.upserted, again.unchanged, again.chunks) == (0, 4, 0)
    changed = Document("cat", "Dogs guard the house at night and bark at strangers.", "Dogs", {"lang": "en"})
    result = col.upsert([changed, DOCS[1]])
    assert (result.upserted, result.unchanged) == (1, 1)
    assert col.stats().chunks == 4  # the old chunk of "cat" replaced, not added to
    assert col.search("a dog barking at night", k=1).hits[0].id == "cat"
    assert "cat" not in ids(col.search("warm mat by the fire", k=4, mode="lexical"))
    assert col.get(["cat"])[0][0].title == "Dogs"


def test_long_documents_are_chunked_and_grouped_by_document(stores: Stores) -> None:
    col = stores.create(chunk_tokens=32, overlap_tokens=4)
    long_text = " ".join(f"Fact {i}: the lighthouse number {i} stands on a rocky coast." for i in range(40))
    col.upsert([Document("long", long_text), *DOCS])
    assert col.stats().chunks > 10
    for mode in ("dense", "lexical", "hybrid"):
        hits = col.search("lighthouse on a rocky coast", k=3, mode=mode).hits
        assert [h.id for h in hits].count("long") == 1
        top = hits[0]
        assert top.id == "long" and long_text[top.chunk_start:top.chunk_end] == top.text


def test_every_mode_finds_its_answer(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS)
    assert ids(col.search("capital of France", k=1, mode="dense")) == ["paris"]
    assert ids(col.search("Mediterranean", k=4, mode="lexical")) == ["nile"]  # one document has the word
    assert ids(col.search("programming languages", k=1, mode="hybrid")) == ["py"]
    assert col.search("zzzz qqqq", k=4, mode="lexical").hits == []
    hybrid = col.search("which river flows through Egypt", k=4).hits
    assert hybrid[0].id == "nile" and all(0.0 <= h.score <= 1.0 for h in hybrid)
    assert {r.retriever for r in hybrid[0].retrievers} == {"dense", "lexical"}


def test_filters_in_every_read(stores: Stores) -> None:
    col = stores.create(indexed_keys=["year"])
    col.upsert(DOCS)
    cases = [
        ({"lang": "fr"}, {"paris"}),
        ({"tags": "capital"}, {"paris"}),
        ({"tags": {"contains_any": ["pet", "river"]}}, {"cat", "nile"}),
        ({"year": {"gte": 2001, "lt": 2020}}, {"cat", "py"}),
        ({"geo.continent": "Africa"}, {"nile"}),
        ({"tags": {"exists": False}}, {"py"}),
        ({"$or": [{"year": 1999}, {"lang": "fr"}]}, {"nile", "paris"}),
        ({"$not": {"lang": "en"}}, {"paris"}),
        ({"lang": "de"}, set()),
    ]
    for flt, expected in cases:
        parsed = parse_filter(flt)
        assert col.count(parsed) == len(expected), flt
        assert {d.id for d in col.scroll("", 10, parsed)} == expected, flt
        for mode in ("dense", "hybrid"):
            assert set(ids(col.search("anything at all", k=10, flt=parsed, mode=mode))) == expected, (flt, mode)
        assert set(ids(col.search("the", k=10, flt=parsed, mode="lexical"))) <= expected
    assert col.delete(flt=parse_filter({"lang": "en", "year": {"lt": 2005}})) == 2
    assert col.all_ids() == {"py", "paris"}


def test_scroll_pages_in_id_order_with_or_without_text(stores: Stores) -> None:
    col = stores.create()
    col.upsert([Document(f"d{i:02d}", f"Document number {i} about topic {i % 3}.", metadata={"i": i}) for i in range(25)])
    seen, after = [], ""
    while page := col.scroll(after, 10, text=False):
        assert all(d.text == "" for d in page)
        seen += [d.id for d in page]
        after = page[-1].id
    assert seen == [f"d{i:02d}" for i in range(25)]
    assert col.scroll("d20", 2)[0].text == "Document number 21 about topic 0."


def test_min_score_and_vector_queries(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS)
    vector = col.embedder.encode(["Paris is the capital and largest city of France. It lies on the Seine."])[0]
    assert ids(col.search(vector=vector, k=4, min_score=0.9, mode="dense")) == ["paris"]
    with pytest.raises(InvalidArgument, match="vector: has dimension 3"):
        col.search(vector=np.ones(3), k=1)


def test_ask_marks_the_answering_sentence(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS)
    answers = Answerer(col).ask("Which river does Paris lie on?", k=2).answers
    top = answers[0]
    assert top.passage.id == "paris" and top.sentence == "It lies on the Seine."
    assert top.passage.text[top.sentence_start:top.sentence_end] == top.sentence


def test_similar_documents_from_stored_vectors(stores: Stores) -> None:
    col = stores.create()
    extra = [Document("lyon", "Lyon is a large city in France on the Rhone."),
             Document("kitten", "A kitten slept on the warm rug near the fireplace.")]
    col.upsert([*DOCS, *extra])
    like_cat = ids(col.similar(["cat"], k=2))
    assert like_cat[0] == "kitten" and "cat" not in like_cat
    assert ids(col.similar(["paris"], k=1)) == ["lyon"]
    assert "lyon" not in ids(col.similar(["paris"], negative=["lyon"], k=2))
    with pytest.raises(NotFound, match="nope"):
        col.similar(["nope"])


def test_collections_of_own_vectors(stores: Stores) -> None:
    col = stores.create("vec", model="none", dimension=4)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 4))
    col.upsert([Document(f"v{i}", "", metadata={"odd": i % 2}, vector=tuple(v)) for i, v in enumerate(vectors)])
    query = vectors[7] + 0.01
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = [f"v{i}" for i in np.argsort(-(unit @ (query / np.linalg.norm(query))))[:5]]
    assert ids(col.search(vector=query, k=5)) == expected
    odd = ids(col.search(vector=query, k=5, flt=parse_filter({"odd": 1})))
    assert all(int(i[1:]) % 2 == 1 for i in odd) and len(odd) == 5


def test_bad_documents_change_nothing(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS[:2])
    with pytest.raises(InvalidArgument, match=r"documents\[1\].text"):
        col.upsert([DOCS[2], Document("x", "   ")])
    with pytest.raises(InvalidArgument, match=r"documents\[1\].id: duplicate id"):
        col.upsert([DOCS[2], DOCS[2]])
    assert col.stats().documents == 2 and col.get(["paris"])[1] == ["paris"]


def test_incremental_reindex_by_hash_and_delete_missing(stores: Stores) -> None:
    col = stores.create()
    summary = index_documents(col, DOCS)
    assert (summary.documents, summary.upserted, summary.chunks) == (4, 4, 4)
    summary = index_documents(col, DOCS[:2], delete_missing=True)
    assert (summary.unchanged, summary.deleted) == (2, 2)
    assert col.all_ids() == {"cat", "py"}


def test_indexed_keys_added_later_keep_results(stores: Stores) -> None:
    col = stores.create()
    col.upsert(DOCS)
    before = col.count(parse_filter({"year": {"gt": 2000}}))
    col.index_metadata(["year"])
    assert col.manifest.indexed_keys == ("year",)
    assert col.count(parse_filter({"year": {"gt": 2000}})) == before == 3


def test_another_catalog_finds_the_collection_and_its_data(stores: Stores) -> None:
    stores.create().upsert(DOCS)
    other = stores.reopen()
    assert "docs" in other.names() and other.exists("docs")
    col = other.get("docs")
    assert col.manifest.store == (stores.uri or "local")
    assert ids(col.search("capital of France", k=1)) == ["paris"] and col.stats().documents == 4
    col.upsert([Document("rome", "Rome is the capital of Italy.")])
    assert stores.reopen().get("docs").count() == 5


def test_deleting_a_collection_removes_its_data(stores: Stores) -> None:
    stores.create().upsert(DOCS)
    stores.catalog.delete("docs")
    assert "docs" not in stores.catalog.names()
    with pytest.raises(NotFound):
        stores.catalog.get("docs")
    col = stores.create()  # the name is free again, and empty
    assert col.count() == 0


def test_aliases_point_at_collections_of_either_store(stores: Stores) -> None:
    stores.create().upsert(DOCS)
    stores.catalog.set_alias("current", "docs")
    assert ids(stores.catalog.get("current").search("capital of France", k=1)) == ["paris"]


# -- what only the Milvus store does ---------------------------------------------------------------


@pytest.fixture
def milvus(tmp_path: Path) -> Iterator[Stores]:
    made = Stores("milvus-lite", tmp_path)
    yield made
    made.close()


@pytest.mark.slow
def test_milvus_refuses_what_it_cannot_keep(milvus: Stores) -> None:
    with pytest.raises(InvalidArgument, match="index: milvus-lite builds no IVF_PQ"):
        milvus.create("h", index=IndexSpec.parse("ivfpq"))
    col = milvus.create()
    col.upsert(DOCS)
    with pytest.raises(InvalidArgument, match=r"documents\[1\].text: .* bytes; the Milvus store keeps at most 65535"):
        col.upsert([Document("ok", "fine"), Document("big", "word " * 14000)])
    assert col.count() == 4 and col.get(["ok"])[1] == ["ok"]
    # The data folder's check leaves it to the Milvus one (tests/unit/test_milvus_snapshots.py).
    report = check(milvus.catalog.root / "docs")
    assert report.ok and "not checked: its data lives in" in report.summary()


def test_a_collection_dropped_by_another_server_is_not_found(milvus: Stores) -> None:
    milvus.create().upsert(DOCS)
    other = milvus.reopen()
    col = other.get("docs")
    milvus.catalog.delete("docs")
    with pytest.raises(NotFound, match="dropped meanwhile"):
        col.search("capital", k=1)


def test_a_store_that_is_neither_local_nor_milvus_is_refused(tmp_path: Path) -> None:
    with Catalog(tmp_path) as catalog, pytest.raises(InvalidArgument, match="store: 'redis://x'"):
        catalog.create("docs", store="redis://x")


@pytest.mark.parametrize("kind", ["local", "milvus-lite"])
def test_create_opens_its_store_once(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    for cls in (LocalStore, MilvusStore):
        def counted(self: object, *args: object, _init: object = cls.__init__, _name: str = cls.__name__) -> None:
            opened.append(_name)
            _init(self, *args)  # type: ignore[operator]
        monkeypatch.setattr(cls, "__init__", counted)
    with Catalog(tmp_path / "data") as catalog:
        col = catalog.create("docs", store="" if kind == "local" else str(tmp_path / "milvus.db"))
        col.upsert(DOCS[:1])
        assert opened == ["LocalStore" if kind == "local" else "MilvusStore"]
        assert catalog.get("docs").count() == 1 and len(opened) == 1  # the open one is served


def test_a_catalog_looks_up_one_name_in_milvus(milvus: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        milvus.create(name)
    client = client_for(milvus.uri)
    asked: list[tuple[str, str]] = []
    query = client.query

    def recorded(collection: str, **kwargs: object) -> object:
        asked.append((collection, str(kwargs.get("filter", ""))))
        return query(collection, **kwargs)

    monkeypatch.setattr(client, "query", recorded, raising=False)
    other = milvus.reopen()  # a catalog that serves the instance, without the folders made here
    assert other.exists("b") and not other.exists("nope")
    assert other.get("b").manifest.name == "b"
    assert [f for c, f in asked if c == CATALOG] == ['name == "b"', 'name == "nope"', 'name == "b"']


def test_a_name_held_here_and_in_milvus_means_the_one_here(tmp_path: Path) -> None:
    """A folder made while its server did not serve a Milvus instance may share a name with a
    collection there: the catalog serves the one here, lists the name once, and makes no third."""
    db = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "elsewhere") as elsewhere:
        elsewhere.create("shared", store=db).upsert([Document("m", "kept in Milvus")])
        elsewhere.create("remote", store=db)
        with Catalog(tmp_path / "data") as here:  # not serving the instance
            here.create("shared").upsert([Document("l", "kept in the folder")])
            with pytest.raises(AlreadyExists, match="'remote' already exists"):
                here.create("remote", store=db)  # the instance it would be made in holds it
        with Catalog(tmp_path / "data", milvus=[db]) as here:
            assert here.names() == ["remote", "shared"]
            shared = here.get("shared")
            assert shared.manifest.store == "local" and shared.get(["l", "m"])[1] == ["m"]
            for name, store in (("shared", db), ("shared", ""), ("remote", ""), ("remote", db)):
                with pytest.raises(AlreadyExists, match=f"{name!r} already exists"):
                    here.create(name, store=store)
            with pytest.raises(AlreadyExists, match="already exists in Milvus"):
                here.restore(tmp_path / "unused.tar", "remote")
            here.delete("shared")  # the one here: the one in Milvus is reached by the name again
            assert here.get("shared").manifest.store == db and here.get("shared").get(["m"])[1] == []


def test_what_a_search_sees_while_milvus_rewrites_a_document(milvus: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Milvus store's consistency level for one document being rewritten (Milvus has no
    transaction over rows): its new chunks are inserted, its document row upserted, its old chunks
    deleted, and a reader on another thread between those steps finds the document by either
    version's words and metadata (each hit is one chunk of one version, whole), never by neither,
    and never twice; Get reads the document row, which changes version at once."""
    col = milvus.create()
    col.upsert([Document("d", "Copper kettles are repaired by hammering the dents out.", "Old", {"v": 1}),
                Document("other", "Sourdough bread rises because wild yeast ferments the dough.")])
    client = client_for(milvus.uri)
    seen: dict[str, dict[str, object]] = {}

    def read() -> dict[str, object]:
        out: dict[str, object] = {"get": col.get(["d"])[0][0].title}
        for label, words in (("old words", "copper kettles hammering dents"),
                             ("new words", "lighthouse keepers trim lamps")):
            hits = col.search(words, k=10, mode="lexical").hits
            assert len(ids_of := [h.id for h in hits]) == len(set(ids_of))  # one hit a document
            out[label] = next(((h.title, h.metadata["v"]) for h in hits if h.id == "d"), None)
        for v in (1, 2):
            out[f"v == {v}"] = "d" in ids(col.search("kettles lighthouse", k=10, flt=parse_filter({"v": v})))
        return out

    def reader_at(point: str) -> None:
        thread = threading.Thread(target=lambda: seen.__setitem__(point, read()))
        thread.start()
        thread.join()

    for method, point in (("upsert", "new chunks inserted"), ("delete", "document row upserted")):
        def paused(*args: object, _call: object = getattr(client, method), _point: str = point,
                   **kwargs: object) -> object:
            if args and args[0] in (col.store.docs if _point == "new chunks inserted" else col.store.chunks,):
                reader_at(_point)
            return _call(*args, **kwargs)  # type: ignore[operator]
        monkeypatch.setattr(client, method, paused, raising=False)
    col.upsert([Document("d", "Lighthouse keepers trim lamps every evening.", "New", {"v": 2})])
    monkeypatch.undo()
    reader_at("old chunks deleted")
    assert seen == {
        "new chunks inserted": {"get": "Old", "old words": ("Old", 1), "new words": ("New", 2),
                                "v == 1": True, "v == 2": True},
        "document row upserted": {"get": "New", "old words": ("Old", 1), "new words": ("New", 2),
                                  "v == 1": True, "v == 2": True},
        "old chunks deleted": {"get": "New", "old words": None, "new words": ("New", 2),
                               "v == 1": False, "v == 2": True},
    }
