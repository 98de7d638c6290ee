"""`neardex check` over real collections: clean ones pass with one line; each kind of damage to
the store or its derived indexes is named on its own line; --repair rebuilds what is derived; a
collection that opens fixes what the cheap check finds."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.stores.local import index_cache
from tests.support.processes import free_port, run_cli, start_serve, stop_process

DOCS = [
    Document("apollo", "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong stepped out first.",
             "Apollo 11", {"topic": "space"}),
    Document("nile", "The Nile is about 6,650 km long and flows north into the Mediterranean.", "", {"year": 2000}),
    Document("bread", "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough."),
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    with Catalog(tmp_path / "data") as catalog:
        catalog.create("docs", chunk_tokens=12, overlap_tokens=0).upsert(DOCS)
        catalog.create("other").upsert(DOCS[:1])
    yield tmp_path / "data"


def store(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "docs" / "docs.sqlite", isolation_level=None)


def drop_from_snapshot(data_dir: Path, doc_id: str) -> int:
    """Write a snapshot whose index lacks one document's chunks (as a lost change would leave
    it); returns how many chunks that is."""
    with Catalog(data_dir) as catalog:
        docs = catalog.get("docs")
        ids = [r[0] for r in store(data_dir).execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        docs.store.index.remove(np.array(ids, dtype=np.int64))
        index_cache.write(docs.folder, docs.store.index, docs.store._db, index_cache.last_change(docs.store._db, docs.folder))
    return len(ids)


def check(data_dir: Path, *extra: str) -> tuple[int, list[str]]:
    result = run_cli("check", str(data_dir), *extra, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def test_clean_collections_pass_with_one_line_each(data_dir: Path) -> None:
    code, lines = check(data_dir)
    assert code == 0
    assert len(lines) == 2 and all(line.startswith("ok: ") for line in lines)
    [docs] = [line for line in lines if "docs:" in line]
    db = store(data_dir)
    (chunks,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
    assert chunks > 3  # small chunks: several per document
    assert f"3 documents, {chunks} chunks, {chunks} vectors, {chunks} lexical rows" in docs
    [report] = [json.loads(line) for line in check(data_dir, "--collection", "docs", "--json")[1]]
    assert report["ok"] and report["chunks"] == chunks and report["problems"] == []


def test_lexical_rows_lost_are_found_and_rebuilt(data_dir: Path) -> None:
    db = store(data_dir)
    db.execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = 'nile')")
    code, lines = check(data_dir)
    assert code == 1
    assert any(line.startswith("docs: lexical:") and "chunks missing" in line for line in lines)
    assert any(line.startswith("ok: other:") for line in lines)  # the other collection is fine
    code, lines = check(data_dir, "--repair")
    assert code == 0 and any("repaired: lexical: rebuilt" in line for line in lines)
    assert check(data_dir)[0] == 0


def test_vector_index_out_of_step_is_found_and_rebuilt(data_dir: Path) -> None:
    nile = drop_from_snapshot(data_dir, "nile")
    code, lines = check(data_dir, "--collection", "docs")
    assert code == 1 and [line for line in lines if line.startswith(f"docs: index: {nile} chunks missing: ")]
    code, lines = check(data_dir, "--collection", "docs", "--repair")
    assert code == 0 and any("repaired: index: rebuilt" in line for line in lines)
    with Catalog(data_dir) as catalog:
        assert catalog.get("docs").search(text="which river flows north", k=1, mode="dense").hits[0].id == "nile"


def test_store_damage_is_named_and_only_the_derived_part_repaired(data_dir: Path) -> None:
    db = store(data_dir)
    db.execute("INSERT INTO documents (id, title, text, metadata, hash, updated)"
               " VALUES ('lonely', '', 'no chunks', '{}', 'x', 0)")
    db.execute("INSERT INTO chunks (doc_id, idx, start, end, tokens, vector) VALUES ('ghost', 0, 0, 1, 1, ?)",
               (b"\0" * 4 * 384,))
    db.execute("UPDATE chunks SET vector = ? WHERE id = (SELECT MIN(id) FROM chunks WHERE doc_id = 'bread')",
               (b"\0" * 8,))
    code, lines = check(data_dir, "--collection", "docs")
    assert code == 1
    text = "\n".join(lines)
    assert "documents without chunks (upsert them again): lonely" in text
    assert "1 chunks whose document is gone" in text
    assert "1 chunks whose vector is not of dimension 384" in text
    assert len(lines) >= 3
    code, lines = check(data_dir, "--collection", "docs", "--repair")
    assert code == 1  # a document without chunks and a broken vector need the model: still reported
    assert "docs: repaired: store: dropped 1 chunks whose document is gone" in lines
    left = [line for line in lines if "repaired:" not in line]
    assert any("lonely" in line for line in left) and any("not of dimension 384" in line for line in left)
    assert not any("whose document is gone" in line for line in left)


def test_a_metadata_index_out_of_step_is_found_and_rebuilt(data_dir: Path) -> None:
    with Catalog(data_dir) as catalog:
        catalog.get("docs").index_metadata(["topic", "year"])
    store(data_dir).execute("DELETE FROM meta_values WHERE doc_id = 'apollo'")
    code, lines = check(data_dir, "--collection", "docs")
    assert code == 1 and lines == ["docs: metadata index: 1 rows missing, 0 rows for values no document holds"]
    code, lines = check(data_dir, "--collection", "docs", "--repair")
    assert code == 0 and "docs: repaired: metadata index: rebuilt (2 rows)" in lines


def test_a_broken_snapshot_is_reported_and_rebuilt(data_dir: Path) -> None:
    with Catalog(data_dir) as catalog:
        catalog.get("docs").checkpoint(force=True)
    [snapshot] = (data_dir / "docs").glob("index-*.faiss")
    snapshot.write_bytes(b"not a faiss index")
    code, lines = check(data_dir, "--collection", "docs")
    assert code == 1 and any("docs: index: cannot be loaded" in line for line in lines)
    code, lines = check(data_dir, "--collection", "docs", "--repair")
    assert code == 0 and any("repaired: index: rebuilt" in line for line in lines)


def test_opening_a_collection_fixes_what_the_cheap_check_finds(data_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    drop_from_snapshot(data_dir, "apollo")
    store(data_dir).execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = 'bread')")
    with caplog.at_level(logging.WARNING, logger="neardex.indexer"), Catalog(data_dir) as catalog:
        docs = catalog.get("docs")
        assert docs.search(text="sourdough yeast", k=1, mode="lexical").hits[0].id == "bread"
        assert docs.search(text="moon landing", k=1, mode="dense").hits[0].id == "apollo"
    assert "lexical index held" in caplog.text and "vector index missed" in caplog.text
    assert check(data_dir)[0] == 0


def test_check_refuses_a_folder_in_use_and_bad_arguments(data_dir: Path) -> None:
    port = free_port()
    proc = start_serve(data_dir, port)
    try:
        result = run_cli("check", str(data_dir), check=False)
        assert result.returncode == 2 and "in use" in result.stderr and "Traceback" not in result.stderr
    finally:
        stop_process(proc)
    result = run_cli("check", str(data_dir / "missing"), check=False)
    assert result.returncode == 2 and "not a folder" in result.stderr
    result = run_cli("check", str(data_dir), "--collection", "nope", check=False)
    assert result.returncode == 2 and "'nope' does not exist" in result.stderr
