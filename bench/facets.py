"""Facet latency on the embedded store: a key counted from the metadata index against the same key
counted from each document's JSON, with and without a filter.

Writes --documents documents without a model (own vectors, so the figure is the facet alone), each
with one of 200 strings (`tag`), three of 50 strings (`tags`) and a year, then times
Collection.facet --repeat times per case: before the keys are indexed, after, and with the
filter's key indexed too. Prints the median per case.

    .venv/bin/python bench/facets.py [--documents 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import cpu_flags, median, print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.query.filters import parse_filter

    rng = random.Random(1)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "data") as catalog:
        col = catalog.create("facets", model="none", dimension=2)
        docs = [Document(f"d{i:07}", "", "", {"tag": f"t{rng.randrange(200)}",
                                              "tags": [f"x{rng.randrange(50)}" for _ in range(3)],
                                              "year": rng.randrange(1990, 2025), "note": "y" * 200},
                         vector=[1.0, float(i % 5)]) for i in range(args.documents)]
        for start in range(0, len(docs), 5000):
            col.upsert(docs[start:start + 5000])
        recent = parse_filter({"year": {"gte": 2015}})

        def timed(case: str, filters: tuple[object, ...] = (None, recent)) -> None:
            for key in ("tag", "tags"):
                for flt in filters:
                    ms = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        col.facet(key, flt, 10)  # type: ignore[arg-type]
                        ms.append((time.perf_counter() - started) * 1000)
                    rows.append([key, case, "year >= 2015" if flt else "", median(ms)])

        timed("from the JSON")
        col.index_metadata(["tag", "tags"])
        timed("indexed")
        col.index_metadata(["year"])
        timed("indexed, filter key too", (recent,))
    print(f"{args.documents} documents; CPU: {cpu_flags()}")
    print_table(["key", "counted", "filter", "p50 ms"], rows)
    write_result("facets", {"documents": args.documents, "cpu": cpu_flags(),
                            "rows": [dict(zip(["key", "counted", "filter", "p50_ms"], r)) for r in rows]})


if __name__ == "__main__":
    main()
