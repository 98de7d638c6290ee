"""Filtered search: where searching exactly among a filter's chunks beats the index, whether the
index alone returns k hits, and what a metadata index saves.

Collections of --n random clustered 384-dimension vectors (own vectors, so no model time), with
metadata {"bucket": i % 1000}. For filters allowing 0.1% to 20% of the chunks it times, over
--queries random queries:
- the FAISS index searched with the filter as an id selector (flat, HNSW, IVF-PQ): latency, how
  many of the k hits it found, and recall@k against exact search among the allowed chunks;
- exact search among the allowed chunks from their stored vectors;
- resolving the filter to chunk ids, with and without `bucket` as an indexed metadata key, and
  Count of the same filter.

    .venv/bin/python bench/filtered_search.py [--n 100000] [--queries 20] [--k 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import cpu_flags, median, print_table, write_result

SELECTIVITY = (0.001, 0.005, 0.02, 0.05, 0.2)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(200, dim)).astype(np.float32)
    v = centers[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ms(fn: Any, *args: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.query.filters import parse_filter
    from neardex.indexer.records import IndexSpec

    vectors = clustered(args.n, 384, 1)
    queries = clustered(args.queries, 384, 2)
    rows: list[list[Any]] = []
    index_rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp)) as catalog:
        collections = {}
        for name, spec, indexed in (("flat", "flat", []), ("flat+index", "flat", ["bucket"]),
                                    ("hnsw", "hnsw", []), ("ivfpq", "ivfpq", [])):
            t = time.perf_counter()
            col = catalog.create(name.replace("+", "_"), model="none", dimension=384,
                                 index=IndexSpec.parse(spec), indexed_keys=indexed)
            for start in range(0, args.n, 5000):
                col.upsert([Document(f"d{i}", "", metadata={"bucket": i % 1000}, vector=tuple(vectors[i]))
                            for i in range(start, min(start + 5000, args.n))])
            col.wait_for_rebuild()
            collections[name] = col
            print(f"built {name}: {col.store.index.trained_kind}, {col.stats().vectors} vectors,"
                  f" {time.perf_counter() - t:.0f} s", flush=True)
        for share in SELECTIVITY:
            flt = parse_filter({"bucket": {"lt": int(1000 * share)}})
            plain, indexed = collections["flat"], collections["flat+index"]
            resolve_plain = median([ms(plain.store.restrict, flt)[0] for _ in range(5)])
            resolve_indexed = median([ms(indexed.store.restrict, flt)[0] for _ in range(5)])
            count_plain = median([ms(plain.count, flt)[0] for _ in range(5)])
            count_indexed = median([ms(indexed.count, flt)[0] for _ in range(5)])
            allowed = plain.store.restrict(flt)
            index_rows.append([f"{share:.1%}", len(allowed), resolve_plain, resolve_indexed, count_plain, count_indexed])
            for name in ("flat", "hnsw", "ivfpq"):
                col = collections[name]
                allowed = col.store.restrict(flt)
                exact_ms, index_ms, found, recall = [], [], [], []
                for q in queries:
                    t_exact, exact_rows = ms(col.store._exact_among, q[None, :], args.k, allowed)
                    t_index, (scores, ids) = ms(col.store.index.search, q[None, :], args.k, allowed)
                    exact = exact_rows[0]
                    got = [int(i) for i in ids[0] if i >= 0]
                    truth = {i for i, _ in exact}
                    exact_ms.append(t_exact)
                    index_ms.append(t_index)
                    found.append(len(got))
                    recall.append(len(truth & set(got)) / max(len(truth), 1))
                rows.append([name, f"{share:.1%}", len(allowed), median(index_ms), float(np.mean(found)),
                             float(np.mean(recall)), median(exact_ms)])
    print(f"CPU flags: {cpu_flags()}; {args.n} vectors, k={args.k}, medians over {args.queries} queries")
    print_table(["index", "filter allows", "chunks", "index+selector ms", "hits found", "recall@k",
                 "exact among allowed ms"], rows)
    print()
    print_table(["filter allows", "chunks", "resolve ms (scan)", "resolve ms (indexed key)", "Count ms (scan)",
                 "Count ms (indexed key)"], index_rows)
    write_result("filtered-search", {"cpu_flags": cpu_flags(), "n": args.n, "search": rows, "metadata_index": index_rows})


if __name__ == "__main__":
    main()
