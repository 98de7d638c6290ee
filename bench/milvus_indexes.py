"""The Milvus store's index kinds on milvus-lite: recall@10 against exact search and per-query
latency (p50, p95), per kind and per search effort (ef_search, nprobe), plus the time to write the
vectors and to build the indexes.

Data: N random unit vectors (Gaussian, normalized) in 384 dimensions, and Q more as queries; the
truth is the exact top 10 by inner product, computed here with numpy. Random vectors are the hard
case for every approximate index (no clusters to exploit): real embeddings score higher at the
same settings (bench/index_types.py measures the local store's on a real-embedding manifold).

Each collection is made by the Milvus store itself (`Catalog.create(..., store=<milvus-lite file>)`),
so the index is built from the request `stores/milvus/indexes.py` maps the spec to, and each query
goes through `MilvusStore.dense` with its ef_search / nprobe. The vectors are inserted straight
into the collection's chunks as the rows the store writes for documents without text: the
store's upsert looks up each batch's ids first, a cost of writes, not of the index measured here. milvus-lite builds a segment's index
in the background after the segment is written and searches a segment exactly until then, so the
script flushes, waits for every segment's index file, then releases and reloads the collection
(the "build" column is the time from the flush to the reload's end). IVF_PQ is refused on milvus-lite: its row says so.

    .venv/bin/python bench/milvus_indexes.py [--vectors 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, cpu_flags, percentile, print_table, write_result

from neardex.indexer.catalog import Catalog
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.records import IndexSpec
from neardex.indexer.stores.milvus.expressions import filterable

sys.path.insert(0, str(ROOT))
from tests.support.stores import wait_for_milvus_lite_indexes  # noqa: E402

DIMENSION = 384
K = 10
# Per kind: the spec the collection is made with, and the per-query efforts measured on it.
KINDS: dict[str, tuple[IndexSpec, list[dict[str, int]]]] = {
    "flat": (IndexSpec.parse("flat"), [{}]),
    "hnsw": (IndexSpec.parse("hnsw"), [{"ef_search": e} for e in (16, 64, 128, 256)]),
    "ivfpq": (IndexSpec.parse("ivfpq"), [{"nprobe": p} for p in (8, 32, 128)]),
    # What ivfpq becomes where PQ's m does not divide the dimension (384 = 2^7 x 3).
    "ivfpq m=5 (IVF_SQ8)": (IndexSpec.parse("ivfpq", {"m": 5}), [{"nprobe": p} for p in (8, 32, 128)]),
}
BATCH = 2000


def chunk_row(i: int, vector: list[float]) -> dict[str, object]:
    """The chunk row the store writes for a document of no text and no metadata."""
    return {"doc_id": str(i), "idx": 0, "start": 0, "end": 0, "tokens": 0, "title": "", "text": "", "lex": " ",
            **filterable({}, "metadata"), "expires_at": 0.0, "dense": vector}


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIMENSION), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data, queries = unit(rng, args.vectors), unit(rng, args.queries)
    truth = [set(map(int, row)) for row in np.argsort(-(queries @ data.T), axis=1)[:, :K]]

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "data") as catalog:
        uri = str(Path(tmp) / "milvus.db")
        for n, name in enumerate(args.kinds):
            spec, efforts = KINDS[name]
            try:
                collection = catalog.create(f"c{n}", model="none", dimension=DIMENSION, store=uri, index=spec)
            except InvalidArgument as refused:
                print(f"{name}: refused: {refused}")
                rows.append([name, "refused", "", "", "", "", ""])
                results.append({"kind": name, "refused": str(refused)})
                continue
            store = collection.store
            started = time.perf_counter()
            for start in range(0, len(data), BATCH):
                store.client.insert(store.chunks, [chunk_row(i, v) for i, v in
                                                   enumerate(data[start:start + BATCH].tolist(), start)])
            written = time.perf_counter() - started
            started = time.perf_counter()
            store.client.flush(store.chunks)
            wait_for_milvus_lite_indexes(uri, store.chunks, timeout=900.0, poll=2.0)
            store.client.release_collection(store.chunks)
            store.client.load_collection(store.chunks)
            built = time.perf_counter() - started
            index = store.client.describe_index(store.chunks, "dense")
            for effort in efforts:
                latencies, recall = [], []
                for q, want in zip(queries, truth):
                    started = time.perf_counter()
                    found = store.dense(q[None, :], K, None, effort.get("ef_search", 0), effort.get("nprobe", 0))[0]
                    latencies.append((time.perf_counter() - started) * 1000)
                    recall.append(len({int(c.doc_id) for c in found} & want) / K)
                setting = ", ".join(f"{k} {v}" for k, v in effort.items()) or "-"
                rows.append([name, index["index_type"], setting, float(np.mean(recall)),
                             percentile(latencies, 50), percentile(latencies, 95), f"{written:.0f} / {built:.0f}"])
                results.append({"kind": name, "index": index, "effort": effort, "recall_at_10": float(np.mean(recall)),
                                "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                                "write_s": written, "build_s": built})
                print(rows[-1], flush=True)
            catalog.delete(f"c{n}")

    print(f"\n{args.vectors} random unit vectors, {DIMENSION} dimensions, {args.queries} queries, milvus-lite;"
          f" CPU flags: {cpu_flags()}")
    print_table(["kind", "Milvus index", "per query", "recall@10", "p50 ms", "p95 ms", "write / build s"], rows)
    write_result("milvus_indexes", {"vectors": args.vectors, "queries": args.queries, "dimension": DIMENSION,
                                    "cpu_flags": cpu_flags(), "results": results})


if __name__ == "__main__":
    main()
