"""Index kinds at scale: build time, bytes per vector, open time, QPS at 1 and 2 threads and
recall@10 against exact search, per kind.

Data: real all-MiniLM-L6-v2 embeddings of the msmarco-dl19-5k passages, each repeated with
Gaussian perturbations (cosine about 0.8 to its source) until --n vectors: a clustered set shaped
like real embeddings. Queries are fresh perturbations of the real query embeddings' neighbours.

    .venv/bin/python bench/index_types.py [--n 1000000] [--queries 1000] [--kinds flat hnsw ivfpq]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import Timer, load_corpus, print_table, write_result


def make_vectors(base: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        picks = base[rng.integers(0, len(base), stop - start)]
        chunk = picks + noise * rng.standard_normal(picks.shape, dtype=np.float32) / np.sqrt(base.shape[1])
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def qps(index, queries: np.ndarray, threads: int, k: int = 10) -> float:
    import faiss

    faiss.omp_set_num_threads(1)  # parallelism comes from concurrent queries, as in the server
    batches = np.array_split(queries, threads * 8)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda q: [index.search(q[i : i + 1], k) for i in range(len(q))], batches))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--noise", type=float, default=0.75)
    args = parser.parse_args()

    from neardex.indexer.embedder import load_embedder
    from neardex.indexer.vector_index import IndexSpec, VectorIndex

    docs = load_corpus()
    base = load_embedder().encode([f"{d.title} {d.text}" if d.title else d.text for d in docs])
    vectors = make_vectors(base, args.n, args.noise, seed=1)
    queries = make_vectors(base, args.queries, args.noise, seed=2)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    truth = None
    rows, report = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            spec = IndexSpec.parse(kind)
            with Timer() as build:
                index = VectorIndex.build(spec, vectors.shape[1], ids, vectors)
            index.fetch_vectors = lambda wanted: (wanted, vectors[wanted - 1])
            path = Path(tmp) / f"{kind}.faiss"
            index.save(path)
            del index
            with Timer() as opened:
                index = VectorIndex.load(path, spec, vectors.shape[1], mmap=True)
            index.fetch_vectors = lambda wanted: (wanted, vectors[wanted - 1])
            found = index.search(queries, 10)[1]
            if kind == "flat":
                truth = found
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])) if truth is not None else float("nan")
            q1, q2 = qps(index, queries, 1), qps(index, queries, 2)
            size = path.stat().st_size / args.n
            report[kind] = {"build_s": build.seconds, "bytes_per_vector": size, "open_s": opened.seconds,
                            "qps_1": q1, "qps_2": q2, "recall@10": recall, "params": spec.params}
            rows.append([kind, build.seconds, size, opened.seconds, q1, q2, recall])
            print(rows[-1], flush=True)
            del index
    flat_qps = report.get("flat", {}).get("qps_1")
    print_table(["kind", "build s", "bytes/vector", "open s", "QPS 1 thread", "QPS 2 threads", "recall@10"], rows)
    if flat_qps:
        for kind, r in report.items():
            print(f"{kind}: {r['qps_1'] / flat_qps:.1f}x flat QPS at 1 thread")
    write_result(f"index-types-{args.n}", {"n": args.n, "report": report})


if __name__ == "__main__":
    main()
