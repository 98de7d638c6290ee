"""Snapshots of the vector index: the newest wins, and a companion file (tombstones, HNSW vectors
and ids) left by a snapshot write that crashed never pairs with a later snapshot of the same
change number."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from neardex.indexer.records import IndexSpec
from neardex.indexer.stores.local import index_cache
from neardex.indexer.stores.local.vector_index import VectorIndex

SPEC = IndexSpec.parse("hnsw", {"m": 8})


def log_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, vector BLOB)")
    db.execute("CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT, chunk_id INTEGER)")
    return db


def vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n, 8)).astype(np.float32)
    return np.arange(1, n + 1, dtype=np.int64), v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_crashed_writes_tombstones_never_pair_with_a_later_snapshot(tmp_path: Path) -> None:
    db = log_db()
    ids, vecs = vectors(50)
    with_tombstones = VectorIndex.build(SPEC, 8, ids, vecs)
    with_tombstones.remove(ids[:10])
    index_cache.write(tmp_path, with_tombstones, db, 5)
    assert index_cache.load(tmp_path, SPEC, 8, db).tombstones == set(range(1, 11))
    # A write of the same change number crashed after its tombstones, before its index.
    np.save(tmp_path / "index-000000000005-1.faiss.tomb.npy", np.arange(11, 21, dtype=np.int64))
    rebuilt = VectorIndex.build(SPEC, 8, ids[10:], vecs[10:])  # a rebuild: no tombstones
    index_cache.write(tmp_path, rebuilt, db, 5)
    loaded = index_cache.load(tmp_path, SPEC, 8, db)
    assert loaded.tombstones == set() and loaded.live == 40
    # The snapshot and its HNSW companions (vectors and ids), and nothing older.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index-000000000005-2.faiss", "index-000000000005-2.faiss.ids.npy", "index-000000000005-2.faiss.vectors"]


def test_the_newest_snapshot_wins_and_older_names_still_load(tmp_path: Path) -> None:
    db = log_db()
    ids, vecs = vectors(20)
    VectorIndex.build(SPEC, 8, ids, vecs).save(tmp_path / "index-000000000003.faiss")  # the older naming
    assert index_cache.load(tmp_path, SPEC, 8, db).live == 20
    index_cache.write(tmp_path, VectorIndex.build(SPEC, 8, ids[:5], vecs[:5]), db, 7)
    assert [seq for seq, _ in index_cache.snapshots(tmp_path)] == [7]
    assert index_cache.load(tmp_path, SPEC, 8, db).live == 5
