"""Migration of a collection between the data folder and Milvus (milvus-lite, in process).

The sample collection goes local -> Milvus -> local without a model call: the same documents,
chunks, vectors and dense top-10, its aliases moved with its name, the old copy kept under its
new name, `check` clean on both sides. Writes made between rounds are caught up by the hash
comparison, a migration stopped midway goes on, a switch stopped midway completes at the next
open, and bad requests are refused naming the field.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog, migration
from neardex.indexer.documents import Document
from neardex.indexer.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from neardex.indexer.ingest.readers import read_documents
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.stores.local.check import check as local_check
from neardex.indexer.stores.milvus import check as milvus_check
from tests.support.counting import CountingCalls
from tests.support.paths import SAMPLES

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.slow

QUERIES = ["how does photosynthesis work", "the heart pumps blood", "volcanoes and plate tectonics",
           "baking bread at home", "history of the printing press", "black holes and gravity"]


def sample() -> list[Document]:
    return list(read_documents(SAMPLES))


def dense_top10(col: Collection) -> list[list[str]]:
    return [[h.id for h in col.search(q, k=10, mode="dense").hits] for q in QUERIES]


def contents(col: Collection) -> list[tuple[str, str, str, object, object]]:
    return [(d.id, d.title, d.text, d.metadata, d.expires_at) for d in col.scroll("", 10_000)]


def chunk_vectors(col: Collection) -> dict[tuple[str, int], np.ndarray]:
    ids = [d.id for d in col.scroll("", 10_000, text=False)]
    return {(c.doc_id, c.row.index): c.vector for c in col.store.fetch(documents=ids, vectors=True, rows=True)}


def checked(catalog: Catalog, name: str) -> bool:
    manifest = catalog.manifest_of(name)
    assert manifest is not None
    if manifest.store == "local":
        return local_check(catalog.root / manifest.name).ok
    folder = catalog.root / manifest.name
    return milvus_check.check(manifest, folder if folder.is_dir() else None).ok


def test_local_to_milvus_and_back_copies_everything_without_a_model_call(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    counts: collections.Counter[str] = collections.Counter()
    with Catalog(tmp_path / "data", model_calls=CountingCalls.factory(counts)) as catalog:
        docs = catalog.create("docs", ttl_seconds=0)
        docs.upsert(sample())
        catalog.set_alias("live", "docs")
        before, rows, vectors = dense_top10(docs), contents(docs), chunk_vectors(docs)
        manifest = docs.manifest
        counts.clear()

        moved = catalog.migrate("docs", uri)
        assert counts["calls"] == 0
        assert (moved.collection.manifest.name, moved.kept_as) == ("docs-milvus", "docs-before-migrate")
        there = catalog.get("docs")
        assert there.manifest.store == uri and there.manifest.name == "docs-milvus"
        assert catalog.get("live").manifest.name == "docs-milvus"
        assert {a.name: a.collection for a in catalog.aliases.list()} == {"docs": "docs-milvus", "live": "docs-milvus"}
        for field in ("model", "model_revision", "query_prompt", "document_prompt", "encoder", "dimension", "index",
                      "language", "languages", "chunk_tokens", "overlap_tokens", "ttl_seconds"):
            assert getattr(there.manifest, field) == getattr(manifest, field), field
        assert contents(there) == rows
        got = chunk_vectors(there)
        assert got.keys() == vectors.keys()
        for key, vector in vectors.items():
            np.testing.assert_array_equal(got[key], vector)
        assert dense_top10(there) == before
        kept = catalog.get("docs-before-migrate")
        assert kept.manifest.store == "local" and contents(kept) == rows
        assert checked(catalog, "docs-milvus") and checked(catalog, "docs-before-migrate")
        assert migration.records(catalog.root) == []

        counts.clear()
        home = catalog.migrate("docs-milvus", "local", target="docs-home", keep_as="docs-milvus-old")
        assert counts["calls"] == 0
        # The name followed: docs -> docs-milvus was an alias, now docs-milvus names docs-home too.
        assert catalog.get("docs").manifest.name == "docs-home"
        assert catalog.get("live").manifest.name == "docs-home"
        assert home.collection.manifest.store == "local"
        assert contents(home.collection) == rows and dense_top10(home.collection) == before
        assert catalog.get("docs-milvus-old").manifest.store == uri
        assert checked(catalog, "docs-home") and checked(catalog, "docs-milvus-old")
        # The hashes came along: the same documents again change nothing.
        counts.clear()
        assert home.collection.upsert(sample()).unchanged == len(rows)
        assert counts["calls"] == 0

    with Catalog(tmp_path / "data", milvus=[uri]) as again:
        assert again.get("docs").manifest.name == "docs-home"
        assert {"docs-home", "docs-milvus-old", "docs-before-migrate"} <= set(again.names())


def test_writes_between_rounds_are_caught_up_and_a_moved_collection_refuses_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration, "SMALL_ROUND", 0)  # rounds until one finds nothing, then the paused one
    uri = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "data") as catalog:
        col = catalog.create("own", model="none", dimension=3)
        col.upsert([Document(f"d{i:03d}", f"text {i}", metadata={"i": i}, vector=(1.0, float(i), 0.5))
                    for i in range(120)])
        real = migration.catch_up
        rounds: list[int] = []

        def catch_up_while_written(source, target):  # type: ignore[no-untyped-def]
            done = real(source, target)
            rounds.append(done.size)
            if len(rounds) == 1:  # between the bulk copy and the next round: every kind of write
                col.upsert([Document("d000", "changed text", vector=(0.0, 1.0, 0.0)),
                            Document("new", "a new one", vector=(0.0, 0.0, 1.0))])
                col.update_metadata(["d001"], update=migration_update())
                col.delete(["d002"])
            return done

        migration.catch_up = catch_up_while_written  # type: ignore[assignment]
        try:
            catalog.migrate("own", uri)
        finally:
            migration.catch_up = real  # type: ignore[assignment]
        assert rounds == [120, 4, 0, 0]
        there = catalog.get("own")
        assert there.manifest.store == uri
        got = {d.id: d for d in there.scroll("", 1000)}
        assert len(got) == 120 and "d002" not in got
        assert got["d000"].text == "changed text" and got["new"].text == "a new one"
        assert got["d001"].metadata == {"i": 1, "tag": "x"}
        assert contents(there) == contents(catalog.get("own-before-migrate"))
        with pytest.raises(Unavailable, match="has moved to 'own-milvus'"):
            col.upsert([Document("late", "too late", vector=(1.0, 0.0, 0.0))])


def migration_update():  # type: ignore[no-untyped-def]
    from neardex.indexer.retrieval.metadata_updates import MetadataUpdate

    return MetadataUpdate.check({"tag": "x"})


def test_a_stopped_copy_goes_on_and_a_stopped_switch_completes_at_the_next_open(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    data = tmp_path / "data"
    with Catalog(data) as catalog:
        col = catalog.create("own", model="none", dimension=2)
        col.upsert([Document(f"d{i:04d}", f"text {i}", vector=(1.0, float(i))) for i in range(700)])
        catalog.set_alias("a", "own")
        real = migration.catch_up

        def stopped(source, target):  # type: ignore[no-untyped-def]
            pages = source.pages

            def one_page(ids=None):  # type: ignore[no-untyped-def]
                for n, page in enumerate(pages(ids)):
                    if n == 1:  # after the first page of 500
                        raise KeyboardInterrupt
                    yield page
            source.pages = one_page
            try:
                return real(source, target)
            finally:
                del source.pages

        migration.catch_up = stopped  # type: ignore[assignment]
        try:
            with pytest.raises(KeyboardInterrupt):
                catalog.migrate("own", uri)
        finally:
            migration.catch_up = real  # type: ignore[assignment]
        record = migration.read(data, "own")
        assert record is not None and record.phase == migration.COPYING
        assert catalog.get("a").manifest.name == "own"  # the source serves until the switch
        with pytest.raises(FailedPrecondition, match="to: a migration of 'own'"):
            catalog.migrate("own", "local")
        done = catalog.migrate("own")
        assert done.copied == 200  # the page copied before the stop is skipped
        assert catalog.get("a").manifest.name == "own-milvus"
        assert contents(catalog.get("own")) == contents(catalog.get("own-before-migrate"))

        # Back, stopped at the switch: the record says switching, nothing renamed yet.
        back = migration.Record("own-milvus", "local", "own-local", "own-milvus-old", uri)
        migration.write(data, back)
        made = catalog._migration_target(back, catalog.get("own-milvus").manifest)
        migration.catch_up(catalog.get("own-milvus").store, made.store)
        migration.write(data, migration.Record(**{**back.__dict__, "phase": migration.SWITCHING}))
    with Catalog(data, milvus=[uri]) as reopened:
        assert migration.records(data) == []
        assert reopened.get("own").manifest.name == "own-local"
        assert reopened.get("a").manifest.name == "own-local"
        assert reopened.get("own-milvus").manifest.name == "own-local"  # an alias now
        assert reopened.get("own-milvus-old").manifest.store == uri
        assert len(reopened.get("own").scroll("", 1000)) == 700


def test_bad_migrations_are_refused_naming_the_field(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "data") as catalog:
        catalog.create("own", model="none", dimension=2)
        catalog.create("taken", model="none", dimension=2)
        catalog.set_alias("al", "own")
        with pytest.raises(NotFound, match="collection: 'nope'"):
            catalog.migrate("nope", uri)
        with pytest.raises(AlreadyExists, match="target: collection 'taken'"):
            catalog.migrate("own", uri, target="taken")
        with pytest.raises(AlreadyExists, match="keep_as: 'al' is an alias"):
            catalog.migrate("own", uri, keep_as="al")
        with pytest.raises(InvalidArgument, match="to: collection 'own' lives in local already"):
            catalog.migrate("own", "local")
        with pytest.raises(InvalidArgument, match="to: 'elsewhere'"):
            catalog.migrate("own", "elsewhere")
        with pytest.raises(InvalidArgument, match="name: 'al' is an alias"):
            catalog.migrate("al", uri)
        with pytest.raises(InvalidArgument, match="target: collection name '-x'"):
            catalog.migrate("own", uri, target="-x")
        assert migration.records(catalog.root) == []
        with pytest.raises(NotFound, match="no migration"):
            catalog.abort_migration("own")


def test_abort_drops_a_stopped_copy_and_leaves_the_source_as_it_was(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "data", milvus=[uri]) as catalog:
        col = catalog.create("own", model="none", dimension=2)
        col.upsert([Document(f"d{i:04d}", f"text {i}", vector=(1.0, float(i))) for i in range(600)])
        real = migration.catch_up

        def stopped(source, target):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

        migration.catch_up = stopped  # type: ignore[assignment]
        try:
            with pytest.raises(KeyboardInterrupt):
                catalog.migrate("own", uri)
        finally:
            migration.catch_up = real  # type: ignore[assignment]
        assert catalog.exists("own-milvus")
        assert catalog.abort_migration("own") == "own-milvus"
        assert not catalog.exists("own-milvus") and migration.records(catalog.root) == []
        assert catalog.get("own").manifest.store == "local" and catalog.get("own").count() == 600
        col.upsert([Document("late", "written after the abort", vector=(0.0, 1.0))])  # writes go on
        assert catalog.migrate("own", uri).collection.count() == 601
