"""Search latency: Search over gRPC at 1 client vs in-process embed + FAISS of the same queries.

Indexes msmarco-dl19-5k once (or --limit passages), serves it with `neardex serve` in its own
process, then times every query several times each way.

    .venv/bin/python bench/search_latency.py [--limit 5000] [--repeat 5] [--mode dense]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT / "tests"))
from conftest import free_port, start_serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mode", default="dense")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    from neardex.client import Client
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.pipeline import index_documents

    queries = load_queries()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with Catalog(data) as catalog:
            collection = catalog.create("bench")
            index_documents(collection, load_corpus(limit=args.limit))
            encode = collection.embedder.encode
            for q in queries[:5]:
                collection.search(text=q, k=args.k, mode=args.mode)
            local = []
            for _ in range(args.repeat):
                for q in queries:
                    t = time.perf_counter()
                    vec = encode([q])
                    collection.dense_search(vec, args.k * 3)
                    local.append((time.perf_counter() - t) * 1000)
        port = free_port()
        proc = start_serve(data, port)
        try:
            with Client(f"127.0.0.1:{port}", timeout=30) as client:
                for q in queries[:5]:
                    client.search("bench", q, k=args.k, mode=args.mode)
                remote = []
                for _ in range(args.repeat):
                    for q in queries:
                        t = time.perf_counter()
                        client.search("bench", q, k=args.k, mode=args.mode)
                        remote.append((time.perf_counter() - t) * 1000)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rows = [
        ["in-process embed + FAISS", median(local), percentile(local, 99), 1.0],
        [f"Search over gRPC ({args.mode})", median(remote), percentile(remote, 99), median(remote) / median(local)],
    ]
    print_table(["path", "p50 ms", "p99 ms", "p50 vs in-process"], rows)
    write_result("search-latency", {"local_ms": local, "remote_ms": remote,
                                    "p50_ratio": median(remote) / median(local)})


if __name__ == "__main__":
    main()
