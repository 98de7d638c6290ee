"""Index kinds at scale: build time, bytes per vector, open time, QPS at 1 and 2 threads and
recall@10 against exact search, per kind and per search effort (ef_search; nprobe and refine).

Data: real all-MiniLM-L6-v2 embeddings of the msmarco-dl19-5k passages, spread into --n vectors
along the real embedding manifold: each vector mixes a real passage embedding with one of its 16
nearest real neighbours (random weight) plus a little Gaussian noise, then is normalized. Queries
come from the same generator with another seed. The set is synthetic but keeps the real
embeddings' local geometry; the script prints its nearest-neighbour cosines beside the real
corpus's so the resemblance can be judged.

    .venv/bin/python bench/index_types.py [--n 1000000] [--queries 1000] [--kinds flat hnsw ivfpq]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import Timer, cpu_flags, load_corpus, load_queries, print_table, write_result

# Per kind, the settings each row measures: per-query effort (ef_search, nprobe) and, for
# IVF-PQ, the collection's refine (candidates re-ranked exactly = refine x k).
SETTINGS: dict[str, list[dict[str, int]]] = {
    "flat": [{}],
    "hnsw": [{"ef_search": e} for e in (16, 32, 64, 128, 256)],
    "ivfpq": [{"nprobe": p, "refine": r} for p, r in ((8, 4), (32, 4), (32, 16), (64, 16), (64, 32))],
}
NEIGHBOURS = 16


def make_vectors(base: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sims = base @ base.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1)[:, :NEIGHBOURS]
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        first = rng.integers(0, len(base), stop - start)
        second = near[first, rng.integers(0, NEIGHBOURS, stop - start)]
        weight = rng.random((stop - start, 1), dtype=np.float32)
        chunk = weight * base[first] + (1 - weight) * base[second]
        chunk += noise * rng.standard_normal(chunk.shape, dtype=np.float32) / np.sqrt(base.shape[1])
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def neighbour_cosines(data: np.ndarray, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Mean cosine of each query's 1st and k-th nearest neighbour in data."""
    top = np.sort(queries @ data.T, axis=1)[:, ::-1]
    return float(top[:, 0].mean()), float(top[:, k - 1].mean())


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top 10 that the index found."""
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def qps(search, queries: np.ndarray, threads: int) -> float:
    """Queries per second, one query per call, from `threads` concurrent callers (the server's
    shape: parallelism comes from concurrent requests, not from inside one search)."""
    import faiss

    faiss.omp_set_num_threads(1)
    batches = np.array_split(queries, threads * 8)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda q: [search(q[i : i + 1]) for i in range(len(q))], batches))
    elapsed = time.perf_counter() - started
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return len(queries) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--flat-queries", type=int, default=200, help="exact search is slow: fewer")
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--noise", type=float, default=0.3)
    args = parser.parse_args()

    import faiss

    from neardex.indexer.embedding.loading import load_embedder
    from neardex.indexer.records import IndexSpec
    from neardex.indexer.stores.local.vector_index import VectorIndex, companions

    docs = load_corpus()
    embedder = load_embedder()
    base = embedder.encode([f"{d.title} {d.text}" if d.title else d.text for d in docs])
    real_queries = embedder.encode(load_queries())
    vectors = make_vectors(base, args.n, args.noise, seed=1)
    queries = make_vectors(base, args.queries, args.noise, seed=2)
    ids = np.arange(1, args.n + 1, dtype=np.int64)

    def fetch(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return wanted, vectors[wanted - 1]  # the collection reads these from its store

    with Timer() as exact_time:
        exact = faiss.IndexFlatIP(vectors.shape[1])
        exact.add(vectors)
        truth = ids[exact.search(queries, 10)[1]]
    del exact
    real_nn = neighbour_cosines(base, real_queries)
    synth_nn = neighbour_cosines(vectors, queries[:200])
    print(f"exact truth for {args.queries} queries in {exact_time.seconds:.1f} s")
    print(f"nearest-neighbour cosine (1st, 10th): real queries over the 5,000 real passages"
          f" {real_nn[0]:.3f}, {real_nn[1]:.3f}; synthetic queries over the {args.n:,} synthetic"
          f" vectors {synth_nn[0]:.3f}, {synth_nn[1]:.3f}", flush=True)

    rows, report = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            spec = IndexSpec.parse(kind)
            with Timer() as build:
                index = VectorIndex.build(spec, vectors.shape[1], ids, vectors)
            path = Path(tmp) / f"{kind}.faiss"
            index.save(path)
            single = Path(tmp) / f"{kind}-single.faiss"
            if kind == "hnsw":  # the layout before: graph, vectors and ids in one file
                faiss.write_index(index.index, str(single))
            del index
            gc.collect()
            for f in (path, *companions(path)):  # open from disk, as after a restart
                if f.exists():
                    drop_from_page_cache(f)
            with Timer() as opened:
                index = VectorIndex.load(path, spec, vectors.shape[1], mmap=True)
            mapped = index.mapped_from is not None
            with Timer() as reopened:  # the file now in the page cache
                VectorIndex.load(path, spec, vectors.shape[1], mmap=True)
            size = sum(f.stat().st_size for f in (path, *companions(path)) if f.exists()) / args.n
            for setting in SETTINGS[kind]:
                kw = {k: v for k, v in setting.items() if k != "refine"}
                if "refine" in setting:  # a collection parameter: open the index with it
                    index = VectorIndex.load(path, IndexSpec.parse(kind, {"refine": setting["refine"]}),
                                             vectors.shape[1], mmap=True)
                index.fetch_vectors = fetch
                sample = queries[: args.flat_queries] if kind == "flat" else queries
                found = index.search(queries, 10, **kw)[1] if kind != "flat" else truth
                recall = recall_at_10(found, truth)
                search = functools.partial(index.search, k=10, **kw)
                q1, q2 = qps(search, sample, 1), qps(search, sample, 2)
                label = " ".join([kind, *(f"{k}={v}" for k, v in setting.items())])
                report[label] = {"kind": kind, "params": {**spec.params, **setting}, "build_s": build.seconds,
                                 "bytes_per_vector": size, "open_s": opened.seconds, "open_warm_s": reopened.seconds, "mapped": mapped,
                                 "qps_1": q1, "qps_2": q2, "recall@10": recall}
                rows.append([label, build.seconds, size, opened.seconds, reopened.seconds, q1, q2, recall])
                print(rows[-1], flush=True)
            del index, search
            gc.collect()
            if single.exists():
                drop_from_page_cache(single)
                with Timer() as opened:
                    index = VectorIndex.load(single, spec, vectors.shape[1], mmap=True)
                found = index.search(queries, 10)[1]
                recall = recall_at_10(found, truth)
                search = functools.partial(index.search, k=10)
                q1, q2 = qps(search, queries, 1), qps(search, queries, 2)
                label = f"{kind} one file (before) ef_search={spec.params['ef_search']}"
                report[label] = {"kind": kind, "open_s": opened.seconds, "qps_1": q1, "qps_2": q2, "recall@10": recall,
                                 "bytes_per_vector": single.stat().st_size / args.n}
                rows.append([label, 0.0, single.stat().st_size / args.n, opened.seconds, 0.0, q1, q2, recall])
                print(rows[-1], flush=True)
                del index, search
                gc.collect()
    print(f"CPU flags: {cpu_flags()}")
    print_table(["kind", "build s", "bytes/vector", "open s cold", "open s warm", "QPS 1 thread",
                 "QPS 2 threads", "recall@10"], rows)
    flat = report.get("flat")
    if flat:
        for label, r in report.items():
            print(f"{label}: {r['qps_1'] / flat['qps_1']:.1f}x flat QPS at 1 thread,"
                  f" {r['qps_2'] / flat['qps_2']:.1f}x at 2")
    write_result(f"index-types-{args.n}", {"n": args.n, "noise": args.noise, "report": report,
                                           "nn_cosine_real": real_nn, "nn_cosine_synthetic": synth_nn})


if __name__ == "__main__":
    main()
