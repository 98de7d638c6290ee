"""Indexing throughput: the neardex pipeline end to end vs plain SentenceTransformer.encode.

Both index the same passages (title + text) in the same process, alternating, several runs;
the pipeline includes chunking, hashing, embedding, SQLite commits and FAISS adds.

    .venv/bin/python bench/indexing.py [--runs 3] [--limit N] [--encoder auto]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import Timer, cpu_flags, load_corpus, median, print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--encoder", default="auto")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    docs = load_corpus(limit=args.limit)
    texts = [f"{d.title} {d.text}" if d.title else d.text for d in docs]
    from sentence_transformers import SentenceTransformer

    from neardex.indexer.embedding.embedder import resolve_model

    # Its own copy, as a user would load it: nothing neardex sets on its model reaches this one.
    stock = SentenceTransformer(str(resolve_model(None)[1]), device="cpu")
    stock.encode(texts[:64])  # warm-up
    plain, pipeline = [], []
    for run in range(args.runs):
        with Timer() as t:
            stock.encode(texts, normalize_embeddings=True)  # its defaults: batch 32, fp32
        plain.append(t.seconds)
        with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp)) as catalog:
            collection = catalog.create("bench", encoder=args.encoder)
            with Timer() as t:
                summary = index_documents(collection, docs)
            pipeline.append(t.seconds)
        print(f"run {run + 1}: plain encode {plain[-1]:.1f} s, pipeline {pipeline[-1]:.1f} s"
              f" ({summary.chunks} chunks)", flush=True)
    n = len(docs)
    rows = [
        ["SentenceTransformer.encode (fp32)", n / median(plain), median(plain), 1.0],
        [f"neardex index pipeline ({args.encoder})", n / median(pipeline), median(pipeline),
         median(pipeline) / median(plain)],
    ]
    print(f"CPU flags: {cpu_flags()}; {len(docs)} passages; medians over {args.runs} runs")
    print_table(["method", "passages/s", "median s", "time vs plain"], rows)
    write_result(f"indexing-{args.encoder}", {
        "documents": n, "runs": args.runs, "plain_seconds": plain, "pipeline_seconds": pipeline,
        "overhead": median(pipeline) / median(plain) - 1,
    })


if __name__ == "__main__":
    main()
