"""Snapshots and checks of Milvus collections (milvus-lite, in process).

One snapshot format for both stores: a Milvus collection's snapshot is the local collection its
rows make, so it restores into Milvus (where it was taken) or into the data folder, and a local
collection's snapshot restores into Milvus; every way, the documents and the search results are
the original's, and no model is called (the vectors are copied). `neardex check` finds what a
write stopped midway, or a hand, leaves in a Milvus collection, and `--repair` removes what needs
no model.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
import pytest

from neardex.client import cli
from neardex.indexer.catalog import Catalog, snapshots
from neardex.indexer.documents import Document
from neardex.indexer.errors import FailedPrecondition
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.stores.milvus import _milvus_name, client_for
from neardex.indexer.stores.milvus import check as milvus_check
from tests.support.counting import CountingCalls

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.slow

LATER = time.time() + 86_400
DOCS = [
    Document("cat", "The cat sat on the warm mat by the fire.", "Cats", {"lang": "en", "tags": ["pet"]}),
    Document("paris", "Paris is the capital and largest city of France. It lies on the Seine.", "Paris",
             {"lang": "fr", "year": 2020}, expires_at=LATER),
    Document("nile", "The Nile flows north through Egypt into the Mediterranean Sea.", "", {"geo": {"c": "Africa"}}),
    # Several chunks: paged and restored in order.
    Document("long", " ".join(f"Sentence {i} tells of rivers, cities and the animals near them." for i in range(60)),
             "Long", {"n": 1}),
]
QUERIES = ["capital of France", "a river in Africa", "pets by the fire", "animals near cities"]


def everything(col: Collection) -> list[Document]:
    return col.scroll("", 100)


def results(col: Collection, mode: str) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 4)) for h in col.search(q, k=4, mode=mode).hits] for q in QUERIES]


def chunks(col: Collection) -> list[tuple[str, int, int, int, str]]:
    found = col.store.fetch(documents=[d.id for d in DOCS], vectors=True, rows=True)
    return [(c.doc_id, c.row.index, c.row.start, c.row.end, c.row.text) for c in found]


def vectors(col: Collection) -> np.ndarray:
    return np.stack([c.vector for c in col.store.fetch(documents=[d.id for d in DOCS], vectors=True)])


def test_a_milvus_snapshot_restores_into_milvus_and_into_the_data_folder_without_a_model_call(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    counts: collections.Counter[str] = collections.Counter()
    with Catalog(tmp_path / "data", milvus=[uri], model_calls=CountingCalls.factory(counts)) as catalog:
        original = catalog.create("docs", store=uri)
        original.upsert(DOCS)
        assert len(chunks(original)) > len(DOCS)
        expected = {mode: results(original, mode) for mode in ("dense", "lexical", "hybrid")}
        counts.clear()

        info = snapshots.create(original, catalog.root)
        back = catalog.restore(info.path, "back")  # where it was taken: Milvus
        here = catalog.restore(info.path, "here", store="local")
        assert counts["calls"] == 0

        assert back.manifest.store == uri and here.manifest.store == "local"
        for col in (back, here):
            assert everything(col) == everything(original)
            assert chunks(col) == chunks(original)
            np.testing.assert_array_equal(vectors(col), vectors(original))
            assert col.manifest.dimension == original.manifest.dimension
            assert col.manifest.languages == original.manifest.languages
        assert {mode: results(back, mode) for mode in expected} == expected
        # Dense scores are the same inner products (lexical ones are each store's own BM25).
        assert results(here, "dense") == expected["dense"]
        # The stored hashes came along: the same documents again change nothing, embed nothing.
        counts.clear()
        for col in (back, here):
            assert (col.upsert(DOCS).unchanged, counts["calls"]) == (len(DOCS), 0)

        # And back: the data folder's snapshot of it into Milvus.
        counts.clear()
        again = catalog.restore(snapshots.create(here, catalog.root).path, "again", store=uri)
        assert counts["calls"] == 0
        assert again.manifest.store == uri
        assert everything(again) == everything(original)
        assert {mode: results(again, mode) for mode in expected} == expected

        with pytest.raises(FailedPrecondition, match="delete the one of that name first"):
            catalog.restore(info.path, "back", replace=True)
        assert everything(back) == everything(original)


def test_a_snapshot_taken_while_documents_are_rewritten_holds_one_version_of_each(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "data", milvus=[uri]) as catalog:
        col = catalog.create("own", model="none", dimension=2, store=uri)
        col.upsert([Document(f"d{i:03d}", f"first {i}", vector=(1.0, float(i))) for i in range(300)])
        store = col.store
        real = store.hashes
        rewritten: list[str] = []

        def hashes_then_rewrite(ids: list[str]) -> dict[str, str]:
            # A rewrite lands between a page's chunk read and its second hash read, once.
            if not rewritten and "d150" in ids:
                rewritten.append("d150")
                col.upsert([Document("d150", "second version", vector=(0.0, 1.0))])
            return real(ids)

        store.hashes = hashes_then_rewrite  # type: ignore[method-assign]
        try:
            info = snapshots.create(col, catalog.root)
        finally:
            del store.hashes
        assert rewritten == ["d150"]
        restored = catalog.restore(info.path, "restored", store="local")
        assert restored.count() == 300
        (doc,), _ = restored.get(["d150"])
        (chunk,) = restored.store.fetch(documents=["d150"], vectors=True, rows=True)
        assert doc.text == "second version" and chunk.row.text == doc.text
        np.testing.assert_array_equal(chunk.vector, np.array([0.0, 1.0], dtype=np.float32))


def test_check_finds_an_orphan_chunk_inserted_through_pymilvus_and_repair_removes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = str(tmp_path / "milvus.db")
    data = tmp_path / "data"
    with Catalog(data, milvus=[uri]) as catalog:
        col = catalog.create("docs", model="none", dimension=2, store=uri)
        col.upsert([Document(f"d{i}", f"text {i}", "T", {"n": i}, vector=(1.0, float(i))) for i in range(5)])
        manifest = col.manifest
    assert cli.main(["check", str(data)]) == 0
    assert "ok: docs: 5 documents, 5 chunks, 5 vectors" in capsys.readouterr().out

    client = client_for(uri)
    chunks_name = _milvus_name("docs", "chunks")
    (row,) = client.query(chunks_name, filter='doc_id == "d3"', output_fields=["*"])
    copy = {k: v for k, v in row.items() if k not in ("pk", "sparse")}
    client.insert(chunks_name, [{**copy, "doc_id": "gone"},  # its document never was
                                {**copy, "text": "an older version"},  # a write stopped midway
                                copy])  # the same chunk twice
    (other,) = client.query(chunks_name, filter='doc_id == "d2"', output_fields=["pk"])
    client.upsert(chunks_name, [{"pk": other["pk"], "meta": {"n": 99}}], partial_update=True)
    client.delete(_milvus_name("docs", "chunks"), filter='doc_id == "d4"')  # needs the model back

    report = milvus_check.check(manifest)
    assert not report.ok
    problems = "\n".join(report.problems)
    for finding in ("1 chunks whose document is gone", "1 chunks of another version of their document",
                    "1 chunks stored twice", "1 chunks whose metadata or expiry differs",
                    "1 documents without chunks (upsert them again): d4"):
        assert finding in problems

    assert cli.main(["check", str(data), "--repair"]) == 1
    out = capsys.readouterr().out
    assert "repaired: store: deleted 1 chunks whose document is gone" in out
    assert "repaired: store: rewrote the metadata of" in out
    report = milvus_check.check(manifest)
    assert report.problems == ["store: 1 documents without chunks (upsert them again): d4"]
    assert (report.documents, report.chunks) == (5, 4)
    assert client.query(chunks_name, filter='doc_id == "gone"', output_fields=["pk"]) == []
    with Catalog(data, milvus=[uri]) as catalog:
        assert catalog.get("docs").get(["d2"])[0][0].metadata == {"n": 2}
        (hit,) = catalog.get("docs").search(vector=[1.0, 2.0], k=1, mode="dense", flt=parse_filter({"n": 2})).hits
        assert (hit.id, hit.metadata) == ("d2", {"n": 2})


def test_check_writes_back_a_missing_catalog_row_from_the_data_folder(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    with Catalog(tmp_path / "data", milvus=[uri]) as catalog:
        col = catalog.create("docs", model="none", dimension=2, store=uri)
        col.upsert([Document("a", "text", vector=(1.0, 0.0))])
        manifest = col.manifest
    client_for(uri).delete("neardex_catalog", filter='name == "docs"')
    folder = tmp_path / "data" / "docs"
    report = milvus_check.check(manifest, folder)
    assert any("holds no row for 'docs'" in p for p in report.problems)
    repaired = milvus_check.check(manifest, folder, repair=True)
    assert repaired.ok and repaired.repaired and repaired.documents == 1
