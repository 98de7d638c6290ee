"""Search latency on msmarco-dl19-5k: in-process vs over gRPC, dense vs hybrid.

Rows, each over every query --repeat times at one client, medians and p99:
- in-process embed + FAISS search (the floor: model call plus index lookup),
- in-process Collection.search in dense and in hybrid mode (hybrid's added cost), and hybrid with
  a later page (offset 20), with diversity 0.5 (MMR), grouped by a metadata key (group_by, 2
  documents per group), with 3 matching chunks per hit and with a rerank of depth 50,
- expiry: hybrid with 50 extra documents expiring in an hour (nothing has expired: the plain
  path), then dense and hybrid with those 50 expired and not purged yet (every read selects the
  live chunks, as a filter does); they are purged after,
- Search over gRPC to `neardex serve` in its own process, dense and hybrid, and hybrid with a
  rerank of depth 50.

The rerank rows use --rerank (a cross-encoder folder); without it, the tests' cross-encoder (the
bundled model's weights under an untrained one-label head, tests/support/models.py: the cost of a
6-layer MiniLM cross-encoder, not a reranker's quality), as the output says.

    .venv/bin/python bench/search_latency.py [--repeat 5] [--limit N] [--data-dir DIR --collection NAME]
        [--rerank FOLDER]

msmarco's passages have no metadata: each is given a `source` at index time, one of
GROUP_SOURCES synthetic sites (its id modulo), about 10 passages per site, the shape of a web
corpus grouped by URL. A collection reused from --data-dir without that key has no groups.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import ROOT, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.models import cross_encoder  # noqa: E402
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402

RERANK_DEPTH = 50
GROUP_SOURCES = 500


def with_sources(docs: list) -> list:
    """Each passage with a synthetic `source` site, for the group_by row."""
    return [replace(d, metadata={**d.metadata, "source": f"site-{int(d.id) % GROUP_SOURCES if d.id.isdigit() else d.id}"})
            for d in docs]


def timed(queries: list[str], repeat: int, call: Callable[[str], object]) -> list[float]:
    for q in queries[:5]:
        call(q)  # warm-up
    out = []
    for _ in range(repeat):
        for q in queries:
            t = time.perf_counter()
            call(q)
            out.append((time.perf_counter() - t) * 1000)
    return out


def expiry_rows(collection: Any, queries: list[str], args: argparse.Namespace) -> dict[str, list[float]]:
    """Search with 50 extra documents that expire later, then with the same 50 expired and not yet
    purged; the collection is as it was after (the purge deletes them)."""
    from neardex.indexer.documents import Document

    base = load_corpus(limit=50)
    out: dict[str, list[float]] = {}

    def extra(seconds: float) -> list[Document]:
        return [Document(f"expiring-{d.id}", d.text, d.title, d.metadata, expires_at=time.time() + seconds)
                for d in base]

    collection.upsert(extra(3600))
    out["in-process search hybrid, 50 expiring later"] = timed(
        queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid"))
    collection.upsert(extra(1.0))
    time.sleep(1.2)
    for mode in ("dense", "hybrid"):
        out[f"in-process search {mode}, 50 expired unpurged"] = timed(
            queries, args.repeat, lambda q, mode=mode: collection.search(text=q, k=args.k, mode=mode))
    collection.purge_expired()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse an indexed folder")
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--rerank", type=Path, default=None, metavar="FOLDER",
                        help="cross-encoder of the rerank rows (default: the tests' one, built here)")
    args = parser.parse_args()

    from neardex.client import Client
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.indexer.retrieval.request import Rerank

    queries = load_queries()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as models:
        data = args.data_dir or Path(tmp)
        if args.rerank is None:
            args.rerank = cross_encoder(Path(models) / "ce")
            print(f"rerank rows: no --rerank given; the tests' cross-encoder built in {args.rerank}"
                  " (MiniLM-L6 weights, untrained one-label head)")
        reranker = str(args.rerank.resolve())
        with Catalog(data) as catalog:
            if catalog.exists(args.collection):
                collection = catalog.get(args.collection)
            else:
                collection = catalog.create(args.collection)
                index_documents(collection, with_sources(load_corpus(limit=args.limit)))
            encode = collection.embedder.encode
            results["in-process embed + FAISS"] = timed(
                queries, args.repeat, lambda q: collection.store.dense(encode([q]), args.k * 3))
            for mode in ("dense", "hybrid"):
                results[f"in-process search {mode}"] = timed(
                    queries, args.repeat, lambda q, mode=mode: collection.search(text=q, k=args.k, mode=mode))
            # The search options that re-use the ranking: a later page, and MMR over the candidates.
            results["in-process search hybrid, offset 20"] = timed(
                queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid", offset=20))
            results["in-process search hybrid, diversity 0.5"] = timed(
                queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid", diversity=0.5))
            results[f"in-process search hybrid, rerank depth {RERANK_DEPTH}"] = timed(
                queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid",
                                                                  rerank=Rerank(reranker, RERANK_DEPTH)))
            results["in-process search hybrid, group_by source (2 per group)"] = timed(
                queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid",
                                                                  group_by="metadata.source", group_size=2))
            results["in-process search hybrid, 3 chunks per document"] = timed(
                queries, args.repeat, lambda q: collection.search(text=q, k=args.k, mode="hybrid",
                                                                  chunks_per_document=3))
            results.update(expiry_rows(collection, queries, args))
        port = free_port()
        proc = start_serve(data, port, 0, "--model-dir", str(Path(reranker).parent))
        try:
            with Client(f"127.0.0.1:{port}", timeout=30) as client:
                for mode in ("dense", "hybrid"):
                    results[f"gRPC Search {mode}"] = timed(
                        queries, args.repeat, lambda q, mode=mode: client.search(args.collection, q, k=args.k, mode=mode))
                rerank = {"model": reranker, "depth": RERANK_DEPTH}
                results[f"gRPC Search hybrid, rerank depth {RERANK_DEPTH}"] = timed(
                    queries, args.repeat, lambda q: client.search(args.collection, q, k=args.k, mode="hybrid",
                                                                  rerank=rerank))
        finally:
            stop_process(proc)
    floor = median(results["in-process embed + FAISS"])
    dense = median(results["in-process search dense"])
    rows = [[name, median(v), percentile(v, 99), median(v) / floor, median(v) / dense] for name, v in results.items()]
    print_table(["path", "p50 ms", "p99 ms", "p50 vs embed+FAISS", "p50 vs search dense"], rows)
    write_result("search-latency", {"ms": results})


if __name__ == "__main__":
    main()
