"""Concurrent Search load over gRPC: the same server with query micro-batching on and off.

Indexes --docs passages of msmarco-dl19-5k once, then for each setting starts `neardex serve`
on that folder and sweeps the number of concurrent clients (each a thread with its own channel,
sending the 50 real queries round-robin) for --seconds each, printing QPS, p50 and p99.

    .venv/bin/python bench/load.py [--docs 2000] [--seconds 10] [--concurrency 1 4 16 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402


def sweep(port: int, queries: list[str], levels: list[int], seconds: float, mode: str) -> list[dict[str, float]]:
    from neardex.client import Client

    rows = []
    for clients in levels:
        latencies: list[list[float]] = [[] for _ in range(clients)]
        stop = time.monotonic() + seconds
        start_gate = threading.Barrier(clients)

        def worker(slot: int, clients: int = clients, stop: float = stop,
                   start_gate: threading.Barrier = start_gate,
                   latencies: list[list[float]] = latencies) -> None:
            with Client(f"127.0.0.1:{port}", timeout=60) as client:
                client.search("bench", queries[slot % len(queries)], k=10, mode=mode)  # connect
                start_gate.wait()
                i = slot
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    client.search("bench", queries[i % len(queries)], k=10, mode=mode)
                    latencies[slot].append((time.perf_counter() - t) * 1000)
                    i += clients

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        flat = [x for lat in latencies for x in lat]
        rows.append({"clients": clients, "qps": len(flat) / min(elapsed, seconds + 1e-9),
                     "p50_ms": median(flat), "p99_ms": percentile(flat, 99)})
        print(f"  {clients:>3} clients: {rows[-1]['qps']:.1f} QPS, p50 {rows[-1]['p50_ms']:.1f} ms,"
              f" p99 {rows[-1]['p99_ms']:.1f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--mode", default="dense")
    parser.add_argument("--rounds", type=int, default=1, help="alternate on/off this many times")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    queries = load_queries()
    results: dict[str, list[list[dict[str, float]]]] = {"batching on": [], "batching off": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with Catalog(data) as catalog:
            index_documents(catalog.create("bench"), load_corpus(limit=args.docs))
        for _ in range(args.rounds):
            for label, size in (("batching off", "1"), ("batching on", "64")):
                print(label, flush=True)
                port = free_port()
                proc = start_serve(data, port, 0, "--batch-max-size", size)
                try:
                    results[label].append(sweep(port, queries, args.concurrency, args.seconds, args.mode))
                finally:
                    stop_process(proc)
    table = []
    for i, clients in enumerate(args.concurrency):
        on = [r[i] for r in results["batching on"]]
        off = [r[i] for r in results["batching off"]]
        qps_on, qps_off = median([r["qps"] for r in on]), median([r["qps"] for r in off])
        p50_on, p50_off = median([r["p50_ms"] for r in on]), median([r["p50_ms"] for r in off])
        table.append([clients, qps_off, qps_on, qps_on / qps_off, p50_off, p50_on, p50_on / p50_off,
                      median([r["p99_ms"] for r in off]), median([r["p99_ms"] for r in on])])
    print_table(["clients", "QPS off", "QPS on", "QPS ratio", "p50 off", "p50 on", "p50 ratio",
                 "p99 off", "p99 on"], table)
    write_result("load", {"docs": args.docs, "seconds": args.seconds, "results": results})


if __name__ == "__main__":
    main()
