"""Incremental indexing: re-index msmarco-dl19-5k after 1% of its documents changed, vs indexing
it from scratch. Unchanged documents must be neither re-embedded nor rewritten.

    .venv/bin/python bench/incremental.py [--changed 0.01] [--limit N] [--encoder torch]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
from pathlib import Path

from common import Timer, load_corpus, print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--encoder", default="torch")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    docs = load_corpus(limit=args.limit)
    rng = random.Random(0)
    changed_ids = set(rng.sample([d.id for d in docs], max(1, int(len(docs) * args.changed))))
    edited = [dataclasses.replace(d, text=d.text + " (revised)") if d.id in changed_ids else d for d in docs]
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp)) as catalog:
        collection = catalog.create("bench", encoder=args.encoder)
        with Timer() as full:
            first = index_documents(collection, docs)
        before = collection.store.chunk_ids()
        with Timer() as again:
            second = index_documents(collection, edited)
        rewritten = len(before - collection.store.chunk_ids())
    rows = [["from scratch", len(docs), first.upserted, full.seconds, 1.0],
            [f"{args.changed:.0%} changed", len(docs), second.upserted, again.seconds, full.seconds / again.seconds]]
    print_table(["run", "documents read", "documents written", "seconds", "speed-up"], rows)
    print(f"chunks rewritten on the second run: {rewritten} (changed documents: {len(changed_ids)})")
    write_result(f"incremental-{args.encoder}", {"full_seconds": full.seconds, "incremental_seconds": again.seconds,
                                                "speedup": full.seconds / again.seconds, "changed": len(changed_ids),
                                                "written": second.upserted, "chunks_rewritten": rewritten})


if __name__ == "__main__":
    main()
