"""Search latency while documents are indexed through the same server, against idle, same run.

A server holds --base msmarco passages; one client searches them (hybrid, one query at a time)
first with the server idle, then while `neardex index --server` streams --stream further
passages into the same collection. Each --document-batch value (texts of an upsert per model
call, NEARDEX_DOCUMENT_BATCH_SIZE) gets its own fresh server; rows are medians over --runs.

    .venv/bin/python bench/indexing_load.py [--document-batch 1,4,8,64] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_flags, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.paths import NEARDEX  # noqa: E402
from tests.support.processes import free_port, run_cli, start_serve, stop_process  # noqa: E402


def search_loop(client: object, queries: list[str], until: float | None, count: int) -> list[float]:
    """Latencies (ms) of one-at-a-time searches: count of them, or as many as fit before until."""
    out: list[float] = []
    i = 0
    while (until is None and len(out) < count) or (until is not None and time.monotonic() < until):
        started = time.perf_counter()
        client.search("bench", queries[i % len(queries)], k=10)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - started) * 1000)
        i += 1
    return out


def one_run(data: Path, stream_file: Path, queries: list[str], document_batch: int) -> dict[str, object]:
    from neardex.client import Client

    port = free_port()
    os.environ["NEARDEX_DOCUMENT_BATCH_SIZE"] = str(document_batch)
    server = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            search_loop(client, queries, None, 20)  # warm-up
            idle = search_loop(client, queries, None, 200)
            started = time.monotonic()
            indexer = subprocess.Popen(
                [str(NEARDEX), "index", str(stream_file), "--collection", "bench", "--server",
                 f"127.0.0.1:{port}", "--batch-size", "256", "--quiet"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(2.0)  # the first batch is being embedded
            loaded: list[float] = []
            while indexer.poll() is None:
                loaded += search_loop(client, queries, time.monotonic() + 1.0, 0)
            seconds = time.monotonic() - started
            out, err = indexer.communicate()
            if indexer.returncode != 0:
                raise RuntimeError(f"neardex index failed: {out}\n{err}")
    finally:
        stop_process(server)
    return {"idle_ms": idle, "loaded_ms": loaded, "index_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=1000, help="passages indexed before the runs")
    parser.add_argument("--stream", type=int, default=1024, help="passages indexed during each run")
    parser.add_argument("--document-batch", default="1,4,8,64")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    corpus = load_corpus()
    queries = load_queries()
    sizes = [int(x) for x in args.document_batch.split(",")]
    raw: dict[str, list[dict[str, object]]] = {str(b): [] for b in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.jsonl"
        stream = Path(tmp) / "stream.jsonl"
        for path, docs in ((base, corpus[: args.base]), (stream, corpus[args.base : args.base + args.stream])):
            with path.open("w") as fh:
                for d in docs:
                    fh.write(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n")
        for run in range(args.runs):
            for size in sizes:  # interleaved, so drift in the machine's load hits every size alike
                data = Path(tmp) / f"data-{run}-{size}"
                run_cli("index", str(base), "--collection", "bench", "--data-dir", str(data), "--quiet")
                result = one_run(data, stream, queries, size)
                raw[str(size)].append(result)
                print(f"run {run} document batch {size}: idle p99 {percentile(result['idle_ms'], 99):.1f} ms,"
                      f" loaded p99 {percentile(result['loaded_ms'], 99):.1f} ms", flush=True)
    rows = []
    for size in sizes:
        runs = raw[str(size)]
        idle50 = median([median(r["idle_ms"]) for r in runs])
        idle99 = median([percentile(r["idle_ms"], 99) for r in runs])
        load50 = median([median(r["loaded_ms"]) for r in runs])
        load99 = median([percentile(r["loaded_ms"], 99) for r in runs])
        rate = median([args.stream / r["index_seconds"] for r in runs])
        rows.append([size, idle50, idle99, load50, load99, load99 / idle99, rate])
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs; medians over {args.runs} runs")
    print_table(["document batch", "idle p50 ms", "idle p99 ms", "loaded p50 ms", "loaded p99 ms",
                 "loaded/idle p99", "indexed docs/s"], rows)
    write_result("indexing-load", {"cpu_flags": cpu_flags(), "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
