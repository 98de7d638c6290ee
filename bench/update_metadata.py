"""Metadata writes without embedding against the writes that embed, in one run.

Indexes the first --limit passages of msmarco-dl19-5k into a collection of the chosen store, then,
--runs times, changes one tag of every document three ways, in batches of --batch documents:

- `update_metadata`: UpdateMetadata by ids (set one key), no model call;
- `upsert, tag changed`: the same documents upserted again with one changed tag: the content hash
  matches, so only the metadata is rewritten (no model call);
- `upsert, text changed`: the documents upserted with a changed text, which embeds every chunk
  again: what any metadata change cost before the content hash was split from the metadata.

Each way is timed through `Collection` in process (what a server's handler runs, without the
network), and its model calls are counted on the collection's road to the model. Prints the
median documents per second of the runs, the model calls of each way, and the CPU flags.

    .venv/bin/python bench/update_metadata.py [--store local|milvus] [--limit 1000] [--runs 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, cpu_flags, load_corpus, median, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.counting import CountingCalls  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["local", "milvus"], default="local")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.ingest.pipeline import batched
    from neardex.indexer.retrieval.engine import MetadataUpdate

    docs = [Document(d.id, d.text, d.title, {**d.metadata, "tag": "start"}) for d in load_corpus(limit=args.limit)]
    counts: collections.Counter[str] = collections.Counter()
    timings: dict[str, list[float]] = collections.defaultdict(list)
    calls: dict[str, list[int]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "data",
                                                       model_calls=CountingCalls.factory(counts)) as catalog:
        store = str(Path(tmp) / "bench.db") if args.store == "milvus" else None
        collection = catalog.create("bench", store=store) if store else catalog.create("bench")
        started = time.perf_counter()
        for batch in batched(docs, args.batch):
            collection.upsert(batch)
        print(f"indexed {len(docs)} passages in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        def timed(way: str, write: Any) -> None:
            before = counts["calls"]
            t = time.perf_counter()
            for batch in batched(docs, args.batch):
                write(batch)
            timings[way].append(len(docs) / (time.perf_counter() - t))
            calls[way].append(counts["calls"] - before)

        current = {d.id: d for d in docs}  # what the collection holds now

        for run in range(args.runs):
            update = MetadataUpdate.check({"tag": f"updated-{run}"})
            timed("update_metadata", lambda b, u=update: collection.update_metadata([d.id for d in b], update=u))

            def upsert_tagged(batch: list[Any], tag: str = f"upserted-{run}") -> None:
                changed = [Document(d.id, current[d.id].text, d.title, {**d.metadata, "tag": tag}) for d in batch]
                result = collection.upsert(changed)
                assert result.metadata_updated == len(batch) and result.upserted == 0, result.metadata_updated
                current.update((d.id, d) for d in changed)

            timed("upsert, tag changed", upsert_tagged)

            def upsert_text(batch: list[Any], run: int = run) -> None:
                changed = [Document(d.id, f"{d.text} ({run})", d.title, current[d.id].metadata) for d in batch]
                result = collection.upsert(changed)
                assert result.upserted == len(batch), result.upserted
                current.update((d.id, d) for d in changed)

            timed("upsert, text changed (embeds)", upsert_text)
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{w} {v[-1]:.0f} docs/s" for w, v in timings.items()),
                  file=sys.stderr)

    print(f"CPU flags: {cpu_flags()}; {args.store} store, {len(docs)} msmarco passages, batches of {args.batch},"
          f" medians of {args.runs} runs")
    base = median(timings["upsert, text changed (embeds)"])
    rows = [[way, median(v), median(v) / base, max(calls[way])] for way, v in timings.items()]
    print_table(["write", "docs/s", "x re-embedding", "model calls"], rows)
    write_result(f"update_metadata_{args.store}", {
        "cpu_flags": cpu_flags(), "store": args.store, "documents": len(docs), "batch": args.batch,
        "runs": args.runs, "docs_per_s": {w: v for w, v in timings.items()},
        "model_calls": {w: v for w, v in calls.items()}})


if __name__ == "__main__":
    main()
