"""A Milvus collection's index kind: the requests its spec maps to (checked as data, for every kind,
including IVF_PQ, which milvus-lite accepts and then never builds), and, on milvus-lite, that the
kinds it builds are built with the spec's parameters, still find the right hits once the segments
carry their indexes, and receive each query's ef_search / nprobe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.records import IndexSpec
from neardex.indexer.stores.milvus.indexes import NLIST, milvus_index
from tests.support.stores import Stores, wait_for_milvus_lite_indexes

DIMENSION = 48


def test_each_kind_maps_to_its_milvus_index_and_search_request() -> None:
    hnsw = milvus_index(IndexSpec.parse("hnsw", {"m": 16, "ef_construction": 40, "ef_search": 50}), 384)
    assert hnsw.kind == "hnsw"
    assert hnsw.index_params == {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 40}}
    assert hnsw.search_params(10) == {"metric_type": "IP", "params": {"ef": 50}}
    assert hnsw.search_params(10, ef_search=200) == {"metric_type": "IP", "params": {"ef": 200}}
    assert hnsw.search_params(80)["params"] == {"ef": 80}  # Milvus refuses ef below k

    pq = milvus_index(IndexSpec.parse("ivfpq", {"nlist": 256, "nprobe": 16}), 384)
    assert pq.kind == "ivfpq"
    assert pq.index_params == {"index_type": "IVF_PQ", "metric_type": "IP",
                               "params": {"nlist": 256, "m": 48, "nbits": 8}}
    assert pq.search_params(10) == {"metric_type": "IP", "params": {"nprobe": 16}}
    assert pq.search_params(10, nprobe=1000)["params"] == {"nprobe": 256}  # at most nlist
    assert milvus_index(IndexSpec.parse("ivfpq"), 384).index_params["params"]["nlist"] == NLIST

    # PQ's m must divide the dimension; where it does not, 8-bit scalar quantization instead.
    sq8 = milvus_index(IndexSpec.parse("ivfpq", {"m": 48, "nlist": 64}), 100)
    assert sq8.kind == "ivfsq8"
    assert sq8.index_params == {"index_type": "IVF_SQ8", "metric_type": "IP", "params": {"nlist": 64}}
    assert sq8.search_params(10, nprobe=8)["params"] == {"nprobe": 8}

    auto = milvus_index(IndexSpec.parse("auto", {"memory_mb": 10}), 384)
    assert (auto.kind, auto.index_params["index_type"], auto.search_params(10)) == (
        "hnsw", "HNSW", {"metric_type": "IP", "params": {"ef": 128}})

    flat = milvus_index(IndexSpec.parse("flat"), 384)
    assert flat.index_params == {"index_type": "FLAT", "metric_type": "IP", "params": {}}
    assert flat.search_params(10, ef_search=99, nprobe=9) == {"metric_type": "IP"}


@pytest.mark.parametrize(("kind", "params", "named"), [
    ("hnsw", {"m": 1}, "m 1"), ("hnsw", {"ef_search": 0}, "ef_search 0"), ("ivfpq", {"nlist": 70_000}, "nlist"),
    ("ivfpq", {"nbits": 30}, "nbits 30"), ("ivfpq", {"nprobe": 0}, "nprobe 0")])
def test_values_milvus_would_refuse_are_refused_naming_the_parameter(kind: str, params: dict[str, int],
                                                                     named: str) -> None:
    with pytest.raises(InvalidArgument, match=f"index.params: {named}"):
        milvus_index(IndexSpec.parse(kind, params), 384)


# -- on milvus-lite ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    pytest.importorskip("pymilvus")
    made = Stores("milvus-lite", tmp_path_factory.mktemp("milvus"))
    yield made
    made.close()


def vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIMENSION)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "params", "index_type", "reported"), [
    ("hnsw", {"m": 8, "ef_construction": 40, "ef_search": 24}, "HNSW", "hnsw"),
    ("auto", {}, "HNSW", "hnsw"),
    # m 5 does not divide 48: IVF_SQ8, which milvus-lite builds.
    ("ivfpq", {"m": 5, "nlist": 16, "nprobe": 4}, "IVF_SQ8", "ivfsq8"),
])
def test_milvus_lite_builds_the_kind_and_searches_with_each_querys_effort(
        milvus: Stores, monkeypatch: pytest.MonkeyPatch, kind: str, params: dict[str, int], index_type: str,
        reported: str) -> None:
    spec = IndexSpec.parse(kind, params)
    col = milvus.create(f"ann_{kind}", model="none", dimension=DIMENSION, index=spec)
    store: Any = col.store
    expected = milvus_index(spec, DIMENSION)
    described = store.client.describe_index(store.chunks, "dense")
    # The spec's parameters reached Milvus (milvus-lite would otherwise build with its defaults).
    assert (described["index_type"], described.get("params")) == (index_type, expected.index_params["params"])
    assert col.index_kind == reported and milvus.reopen().get(col.manifest.name).index_kind == reported

    data = vectors(1500, seed=1)
    col.upsert([Document(f"d{i}", "", vector=tuple(map(float, v))) for i, v in enumerate(data)])
    store.client.flush(store.chunks)
    wait_for_milvus_lite_indexes(milvus.uri, store.chunks, timeout=120.0, poll=0.5)
    store.client.release_collection(store.chunks)
    store.client.load_collection(store.chunks)

    sent: list[tuple[int, dict[str, Any]]] = []
    search = store.client.search

    def recorded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("anns_field") == "dense":
            sent.append((kwargs["limit"], kwargs["search_params"]))
        return search(*args, **kwargs)

    monkeypatch.setattr(store.client, "search", recorded)
    # A stored vector is its own nearest neighbour at any effort; the exact top 10 of others is
    # mostly found with a generous one.
    for i in (3, 700, 1499):
        assert [h.id for h in col.search(vector=tuple(map(float, data[i])), k=1).hits] == [f"d{i}"]
    assert sent[-1][1] == expected.search_params(sent[-1][0])
    queries = vectors(20, seed=2)

    def recall(ef_search: int, nprobe: int) -> float:
        found = []
        for q in queries:
            truth = {f"d{j}" for j in np.argsort(-(data @ q))[:10]}
            hits = col.search(vector=tuple(map(float, q)), k=10, ef_search=ef_search, nprobe=nprobe).hits
            found.append(len({h.id for h in hits} & truth) / 10)
        return float(np.mean(found))

    generous = recall(400, 16)
    assert sent[-1][1] == expected.search_params(sent[-1][0], ef_search=400, nprobe=16)
    assert sent[-1][1]["params"] == ({"ef": 400} if index_type == "HNSW" else {"nprobe": 16})
    assert generous >= 0.9
    # The least effort loses neighbours: the index answers, not an exhaustive scan.
    assert recall(1, 1) < generous
    # ef never below the hits asked for (the engine may widen a search past k).
    assert all(p["params"] == ({"ef": limit} if index_type == "HNSW" else {"nprobe": 1}) for limit, p in sent[-20:])
    # The sampled recall's exact answer reads every vector, whatever the index.
    q = queries[0][None, :]
    exact = store.exact_ids(q, 10)
    assert {f"d{j}" for j in np.argsort(-(data @ queries[0]))[:10]} == {c.doc_id for c in store.fetch(list(exact))}


@pytest.mark.slow
def test_milvus_lite_refuses_ivf_pq_naming_index(milvus: Stores) -> None:
    """milvus-lite accepts IVF_PQ, then fails each background build and searches exactly: refused
    at create, with nothing left behind; the request a Milvus server gets is checked above."""
    with pytest.raises(InvalidArgument, match="index: milvus-lite builds no IVF_PQ"):
        milvus.create("pq", model="none", dimension=DIMENSION, index=IndexSpec.parse("ivfpq", {"m": 8}))
    made = milvus.create("pq", model="none", dimension=DIMENSION, index=IndexSpec.parse("flat"))
    assert made.index_kind == "flat"
