"""Latency of Similarity over gRPC: 1 x 1 and 64 x 64 texts (and Tokenize, SearchSimilar for
reference), medians and p99 over repeated calls to one `neardex serve`.

    .venv/bin/python bench/similarity_latency.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT, cpu_flags, load_corpus, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402


def timed(repeat: int, call: Callable[[], object]) -> list[float]:
    for _ in range(3):
        call()  # warm-up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    from neardex.client import Client

    passages = [d.text[:300] for d in load_corpus(limit=200)]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_serve(Path(tmp), port)
        try:
            with Client(f"127.0.0.1:{port}", timeout=120) as client:
                client.create_collection("bench")
                client.upsert("bench", [{"id": f"p{i}", "text": t} for i, t in enumerate(passages)])
                rows = {
                    "Similarity 1 x 1": timed(args.repeat, lambda: client.similarity(passages[:1], passages[1:2])),
                    "Similarity 64 x 64": timed(args.repeat, lambda: client.similarity(passages[:64], passages[64:128])),
                    "Tokenize (one passage)": timed(args.repeat, lambda: client.tokenize(passages[0], collection="bench")),
                    "SearchSimilar k=10": timed(args.repeat, lambda: client.similar("bench", ["p0"], k=10)),
                }
        finally:
            stop_process(proc)
    print(f"CPU flags: {cpu_flags()}; {args.repeat} calls each, passages of up to 300 characters")
    print_table(["call", "p50 ms", "p99 ms"], [[k, median(v), percentile(v, 99)] for k, v in rows.items()])
    write_result("similarity-latency", {"cpu_flags": cpu_flags(), "ms": rows})


if __name__ == "__main__":
    main()
