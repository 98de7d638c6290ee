"""Store calls and latency of a hybrid search (feedback on) on the Milvus store, or the embedded one.

Indexes the first --limit passages of msmarco-dl19-5k into a collection of the chosen store
(milvus-lite in process for `milvus`), then runs every query --repeat times through
Collection.search in hybrid mode, the query vectors embedded beforehand so that the figure is
retrieval and store work alone. Prints the store calls one search makes (counted by a proxy
around the store) and the p50 and p99 latency. Only interfaces every version has are used, so the
same script measures an older checkout (PYTHONPATH pointing at it) for a before/after in one run.

    .venv/bin/python bench/store_calls.py [--store milvus|local] [--limit 2000] [--repeat 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, cpu_flags, load_corpus, load_queries, median, percentile, print_table

sys.path.insert(0, str(ROOT))
from tests.support.counting import counting  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["milvus", "local"], default="milvus")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse an indexed folder (and its .db)")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    queries = load_queries()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or Path(tmp)
        name = f"calls_{args.store}_{args.limit}"
        with Catalog(data / "data") as catalog:
            if catalog.exists(name):
                collection = catalog.get(name)
            else:
                store = str(data / f"{name}.db") if args.store == "milvus" else None
                collection = catalog.create(name, store=store) if store else catalog.create(name)
                index_documents(collection, load_corpus(limit=args.limit))
            vectors = collection.embedder.encode(queries)

            def search(i: int) -> Any:
                return collection.search(text=queries[i], vector=vectors[i], k=args.k, mode="hybrid")

            for i in range(min(5, len(queries))):
                search(i)  # warm-up
            with counting(collection) as proxy:
                for i in range(len(queries)):
                    search(i)
            calls = sum(proxy.calls.values()) / len(queries)
            ms = []
            for _ in range(args.repeat):
                for i in range(len(queries)):
                    t = time.perf_counter()
                    search(i)
                    ms.append((time.perf_counter() - t) * 1000)
    print(f"CPU flags: {cpu_flags()}; {args.store} store, {args.limit} passages, {len(queries)} queries"
          f" x {args.repeat}, hybrid k={args.k}, query vectors embedded beforehand")
    print(f"store calls per search: {calls:.2f} {dict(proxy.calls)}")
    print_table(["path", "p50 ms", "p99 ms"], [[f"{args.store} hybrid search", median(ms), percentile(ms, 99)]])


if __name__ == "__main__":
    main()
