"""Every index kind: search, upsert, delete and reopen, plus the ANN specifics (tombstones and
rebuilds for HNSW, training for IVF-PQ, per-query effort)."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from neardex.indexer import records
from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.records import IndexSpec
from neardex.indexer.stores.local.vector_index import VectorIndex, companions

TOPICS = ["volcanoes erupt lava", "violins play music", "rivers flow to the sea", "bakers bake bread",
          "planets orbit stars", "engines burn fuel", "bees make honey", "snow falls in winter"]


def _docs(n: int, offset: int = 0) -> list[Document]:
    return [Document(f"d{i}", f"Note {i}: {TOPICS[i % len(TOPICS)]}, item {i}.", "", {"i": i})
            for i in range(offset, offset + n)]


@pytest.mark.parametrize("kind", ["flat", "hnsw", pytest.param("ivfpq", marks=pytest.mark.slow),
                                  pytest.param("auto", marks=pytest.mark.slow)])
def test_search_upsert_delete_reopen(tmp_path: Path, kind: str, monkeypatch) -> None:
    # Small enough that IVF-PQ trains inside the test: 16 lists and 4-bit codes need 624 points.
    # The other kinds need no training, so fewer documents (each one is a model call) do.
    params = {"ivfpq": {"nlist": 16, "m": 16, "nbits": 4}, "hnsw": {"m": 16}}.get(kind, {})
    n = 700 if kind in ("ivfpq", "auto") else 160
    data = tmp_path / "data"
    with Catalog(data) as cat:
        col = cat.create("docs", index=IndexSpec.parse(kind, params), default_mode="dense")
        col.upsert(_docs(n))
        col.wait_for_rebuild()
        if kind == "ivfpq":
            assert col.store.index.trained_kind == "ivfpq"
        hit = col.search("bees and honey", k=1).hits[0]
        assert "bees make honey" in hit.text
        col.delete([f"d{i}" for i in range(0, n, 2)])
        col.upsert([Document("d1", "A completely new note about glaciers carving valleys.")])
        assert col.search("glaciers carving valleys", k=1).hits[0].id == "d1"
        ids = {h.id for h in col.search("bees make honey", k=50).hits}
        assert ids and all(int(i[1:]) % 2 == 1 for i in ids), "a deleted document came back"
        assert col.store.chunk_ids() == col.store.index_ids() and col.stats().vectors == n // 2
    with Catalog(data) as cat:
        col = cat.get("docs")
        assert col.store.chunk_ids() == col.store.index_ids() and col.stats().vectors == n // 2
        assert col.search("glaciers carving valleys", k=1).hits[0].id == "d1"


def test_hnsw_tombstones_trigger_a_rebuild(tmp_path: Path) -> None:
    with Catalog(tmp_path / "data") as cat:
        col = cat.create("docs", index=IndexSpec.parse("hnsw", {"m": 8}), default_mode="dense")
        col.upsert(_docs(100))
        col.delete([f"d{i}" for i in range(10)])
        assert len(col.store.index.tombstones) == 10
        col.delete([f"d{i}" for i in range(10, 30)])  # past 20%: the graph is rebuilt clean
        col.wait_for_rebuild()
        assert col.store.index.tombstones == set() and col.store.index.index.ntotal == 70
        assert col.store.chunk_ids() == col.store.index_ids()


def test_per_query_effort_and_exact_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10, 2010, dtype=np.int64)
    exact = VectorIndex.build(IndexSpec.parse("flat"), 32, ids, vectors)
    hnsw = VectorIndex.build(IndexSpec.parse("hnsw", {"m": 8, "ef_search": 16}), 32, ids, vectors)
    ivf = VectorIndex.build(IndexSpec.parse("ivfpq", {"nlist": 32, "m": 16, "nbits": 4, "nprobe": 1, "refine": 10}),
                            32, ids, vectors)
    ivf.fetch_vectors = lambda wanted: (wanted, vectors[wanted - 10])
    queries = vectors[:50] + 0.3 * rng.standard_normal((50, 32)).astype(np.float32)
    truth = exact.search(queries, 10)[1]

    def recall(index: VectorIndex, **kw: int) -> float:
        found = index.search(queries, 10, **kw)[1]
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))

    assert recall(hnsw, ef_search=256) >= recall(hnsw, ef_search=10)
    assert recall(ivf, nprobe=32) > recall(ivf, nprobe=1)
    assert recall(hnsw, ef_search=256) > 0.9
    assert (hnsw.exact_search(queries, 10) == truth).all()
    assert recall(ivf, nprobe=32) > 0.9  # exact re-ranking of the PQ candidates
    with pytest.raises(NotImplementedError):
        ivf.exact_search(queries, 10)


def test_auto_resolves_by_size_and_memory() -> None:
    assert IndexSpec.parse("auto").resolve(1_000, 384).kind == "flat"
    assert IndexSpec.parse("auto", {"memory_mb": 8192}).resolve(1_000_000, 384).kind == "hnsw"
    assert IndexSpec.parse("auto", {"memory_mb": 1024}).resolve(1_000_000, 384).kind == "ivfpq"


def test_bad_index_specs() -> None:
    with pytest.raises(InvalidArgument, match="index.kind"):
        IndexSpec.parse("lsh")
    with pytest.raises(InvalidArgument, match="index.params"):
        IndexSpec.parse("hnsw", {"nlist": 4})
    with pytest.raises(InvalidArgument, match="index.params"):
        IndexSpec.parse("ivfpq", {"m": -1})
    assert records.KINDS == ("flat", "hnsw", "ivfpq", "auto")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_a_mapped_snapshot_searches_in_place_and_reads_itself_whole_to_change(
        tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 3001, dtype=np.int64)
    spec = IndexSpec.parse(kind, {"ivfpq": {"nlist": 16, "m": 8, "nbits": 4}}.get(kind, {}))
    built = VectorIndex.build(spec, 32, ids, vectors)
    assert built.trained_kind == kind
    path = tmp_path / "index.faiss"
    built.save(path)

    by_id = np.zeros((5001, 32), dtype=np.float32)  # the store: stored vectors by id
    by_id[ids] = vectors
    by_id[5000] = -vectors[0]

    def fetch(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return wanted, by_id[wanted]

    built.fetch_vectors = fetch
    mapped = VectorIndex.load(path, spec, 32, mmap=True)
    mapped.fetch_vectors = fetch
    assert mapped.mapped_from == path
    np.testing.assert_array_equal(mapped.search(vectors[:20], 5)[1], built.search(vectors[:20], 5)[1])
    assert sorted(mapped.ids()) == list(ids)

    mapped.remove(ids[:100])
    mapped.add(np.array([5000], dtype=np.int64), by_id[5000:])
    assert mapped.mapped_from is None  # read whole by the first change
    assert mapped.live == 2901
    found = mapped.search(vectors[:100], 3)[1]
    assert not set(found.ravel()) & set(ids[:100].tolist())
    mapped.save(tmp_path / "next.faiss")
    again = VectorIndex.load(tmp_path / "next.faiss", spec, 32, mmap=True)
    assert again.live == 2901 and 5000 in set(again.ids().tolist())


def test_searches_and_writes_go_on_during_a_background_rebuild(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    release, building = threading.Event(), threading.Event()
    real_build = VectorIndex.build

    def held_build(*args: object) -> VectorIndex:
        building.set()
        assert release.wait(timeout=60)
        return real_build(*args)  # type: ignore[arg-type]

    data = tmp_path / "data"
    with Catalog(data) as cat:
        col = cat.create("docs", index=IndexSpec.parse("hnsw", {"m": 8}), default_mode="dense")
        col.upsert(_docs(100))
        monkeypatch.setattr(VectorIndex, "build", staticmethod(held_build))
        col.delete([f"d{i}" for i in range(30)])  # past 20% tombstones: a rebuild starts
        assert building.wait(timeout=30)
        # The rebuild is under way and holds no lock: reads and writes carry on.
        assert {h.id for h in col.search("bees make honey", k=20).hits}.isdisjoint(
            {f"d{i}" for i in range(30)})
        col.upsert([Document("glacier", "Glaciers carve deep valleys into mountains.")])
        col.delete(["d50"])
        assert col.search("glaciers carving valleys", k=1).hits[0].id == "glacier"
        release.set()
        col.wait_for_rebuild(timeout=60)
        # The fresh index caught up with the writes made while it was built.
        # The thirty tombstones are gone; the delete made meanwhile is the only one left.
        assert col.store.index.live == 70 and len(col.store.index.tombstones) == 1
        assert col.store.chunk_ids() == col.store.index_ids()
        assert col.search("glaciers carving valleys", k=1).hits[0].id == "glacier"
        assert "d50" not in {h.id for h in col.search("rivers flow to the sea", k=70).hits}
    monkeypatch.undo()
    with Catalog(data) as cat:
        col = cat.get("docs")
        assert len(col.store.index.tombstones) == 1  # the rebuilt index was snapshotted
        assert col.store.chunk_ids() == col.store.index_ids() and col.stats().vectors == 70


def _held_rebuild(cat: Catalog, monkeypatch: pytest.MonkeyPatch) -> tuple[object, threading.Event]:
    """An own-vector HNSW collection whose tombstones just started a rebuild, held until the
    returned event is set."""
    real_build = VectorIndex.build
    building, release = threading.Event(), threading.Event()

    def held_build(*args: object) -> VectorIndex:
        building.set()
        assert release.wait(timeout=60)
        return real_build(*args)  # type: ignore[arg-type]

    vectors = np.random.default_rng(5).standard_normal((100, 8))
    col = cat.create("vecs", model="none", dimension=8, index=IndexSpec.parse("hnsw", {"m": 8}))
    col.upsert([Document(f"d{i}", "", "", {}, tuple(vectors[i].tolist())) for i in range(100)])
    monkeypatch.setattr(VectorIndex, "build", staticmethod(held_build))
    col.delete([f"d{i}" for i in range(30)])
    assert building.wait(timeout=30)
    return col, release


def _close_within(cat: Catalog, seconds: float, rebuild_wait: float | None = None) -> bool:
    closing = threading.Thread(target=cat.close, args=() if rebuild_wait is None else (rebuild_wait,), daemon=True)
    closing.start()
    closing.join(seconds)
    return not closing.is_alive()


def test_a_close_during_a_rebuild_waits_for_it_and_snapshots_the_rebuilt_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalog(tmp_path / "data")
    _, release = _held_rebuild(cat, monkeypatch)
    threading.Timer(0.5, release.set).start()
    # The close held checkpoints off while it waited for the rebuild, whose own closing
    # checkpoint waited for them: neither ever ended.
    assert _close_within(cat, 30)
    monkeypatch.undo()
    with Catalog(tmp_path / "data") as cat:
        col = cat.get("vecs")
        assert not col.store.index.tombstones and col.stats().vectors == 70
        assert col.store.chunk_ids() == col.store.index_ids()


def test_a_close_with_a_rebuild_wait_abandons_a_longer_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalog(tmp_path / "data")
    _, release = _held_rebuild(cat, monkeypatch)
    assert _close_within(cat, 5, rebuild_wait=0.2)  # the rebuild is still held
    release.set()
    monkeypatch.undo()
    with Catalog(tmp_path / "data") as cat:
        col = cat.get("vecs")  # the old index, snapshotted with its tombstones: rebuilt again
        assert col.stats().vectors == 70 and col.store.chunk_ids() == col.store.index_ids()
        col.wait_for_rebuild(timeout=60)
        assert not col.store.index.tombstones and col.store.chunk_ids() == col.store.index_ids()


def test_ivfpq_trains_once_big_enough_and_again_when_it_outgrows_its_lists() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((6200, 16)).astype(np.float32)
    spec = IndexSpec.parse("ivfpq", {"m": 4, "nbits": 4})
    index = VectorIndex.build(spec, 16, np.arange(1000), vectors[:1000])
    assert index.trained_kind == "flat" and not index.needs_rebuild()  # too few to train
    index.add(np.arange(1000, 3000), vectors[1000:3000])
    assert index.needs_rebuild()
    index = VectorIndex.build(spec, 16, np.arange(3000), vectors[:3000])
    assert index.trained_kind == "ivfpq" and not index.needs_rebuild()
    lists = index.index.nlist
    index.add(np.arange(3000, 6200), vectors[3000:])  # more than twice the size it trained at
    assert index.needs_rebuild()
    assert VectorIndex.build(spec, 16, np.arange(6200), vectors).index.nlist >= 2 * lists


@pytest.mark.slow  # IVF-PQ's codebooks train on 10,000 vectors
def test_auto_picks_by_size_and_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "AUTO_FLAT_LIMIT", 500)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    auto = IndexSpec.parse("auto")
    small = VectorIndex.build(auto, 16, np.arange(400), vectors[:400])
    assert small.trained_kind == "flat" and not small.needs_rebuild()
    small.add(np.arange(400, 600), vectors[400:600])
    assert small.needs_rebuild()  # grown past exact search
    grown = VectorIndex.build(auto, 16, np.arange(600), vectors[:600])
    assert grown.trained_kind == "hnsw" and grown.spec == auto and not grown.needs_rebuild()
    grown.save(tmp_path / "auto.faiss")
    assert VectorIndex.load(tmp_path / "auto.faiss", auto, 16).trained_kind == "hnsw"
    # Past the memory budget HNSW no longer fits: compressed IVF-PQ (its 256-centroid codebooks
    # train on 10,000 vectors).
    tight = IndexSpec.parse("auto", {"memory_mb": 0})
    many = rng.standard_normal((10_000, 48)).astype(np.float32)
    assert VectorIndex.build(tight, 48, np.arange(10_000), many).trained_kind == "ivfpq"
    with pytest.raises(InvalidArgument, match="memory_mb"):
        IndexSpec.parse("auto", {"memory": 1})


@pytest.mark.slow
def test_an_auto_collection_moves_to_hnsw_as_it_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "AUTO_FLAT_LIMIT", 200)
    with Catalog(tmp_path / "data") as cat:
        col = cat.create("docs", index=IndexSpec.parse("auto"), default_mode="dense")
        col.upsert(_docs(150))
        col.wait_for_rebuild()
        assert col.store.index.trained_kind == "flat"
        col.upsert(_docs(150, offset=150))
        col.wait_for_rebuild()
        assert col.store.index.trained_kind == "hnsw"
        assert col.store.chunk_ids() == col.store.index_ids()
        assert "bees make honey" in col.search("bees and honey", k=1).hits[0].text
    with Catalog(tmp_path / "data") as cat:
        assert cat.get("docs").store.index.trained_kind == "hnsw"


def test_an_hnsw_snapshot_keeps_its_vectors_beside_the_graph(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10, 2010, dtype=np.int64)
    spec = IndexSpec.parse("hnsw", {"m": 8})
    built = VectorIndex.build(spec, 64, ids, vectors)
    path = tmp_path / "index-000000000001-0.faiss"
    built.save(path)
    vectors_file, ids_file = companions(path)[1:]
    # The graph file holds no vectors: a cold open reads it and the ids, and maps the rest.
    assert path.stat().st_size < vectors_file.stat().st_size / 2
    assert np.array_equal(np.load(ids_file), ids)
    expected = built.search(vectors[:50], 10)
    for mmap in (True, False):
        opened = VectorIndex.load(path, spec, 64, mmap=mmap)
        assert opened.trained_kind == "hnsw" and (opened.mapped_from is not None) == mmap
        for got, want in zip(opened.search(vectors[:50], 10), expected):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(opened.exact_search(vectors[:5], 3), built.exact_search(vectors[:5], 3))

    # A snapshot written as one file (before the split) still opens.
    single = tmp_path / "index-000000000002-0.faiss"
    faiss.write_index(built.index, str(single))
    np.testing.assert_array_equal(VectorIndex.load(single, spec, 64, mmap=True).search(vectors[:50], 10)[1],
                                  expected[1])

    # Files that do not belong together are refused by name, not searched.
    other = tmp_path / "index-000000000003-0.faiss"
    VectorIndex.build(spec, 64, ids[:1000], vectors[:1000]).save(other)
    companions(path)[1].replace(companions(other)[1])
    with pytest.raises(InvalidArgument, match="index-000000000003-0.faiss has 1000 graph nodes, 2000 vectors"):
        VectorIndex.load(other, spec, 64, mmap=True)
