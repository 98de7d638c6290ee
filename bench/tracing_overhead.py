"""What traces add to a search: Search p50 over gRPC with tracing off and on, in one run.

`neardex serve` processes run side by side over copies of one indexed folder (500 msmarco
passages): this tree with traces off, this tree with traces on (the real OTLP gRPC exporter,
batching spans to a collector in this process, tests.support.traces.Receiver), and, with
`--baseline DIR`, a checkout without the tracing code (its proto/, client/, indexer/ and server/ put
first on the server's PYTHONPATH), so "off" is measured against code that has no tracing at all.
Each query goes to every server, in an order shuffled per query (so machine noise and whatever
the previous call left behind hit each server alike), over one long-lived channel per server. Two kinds of search: a query vector (no model call, so what is
added is most visible) and a text query in hybrid mode. Each run gives a p50 per server; the table
shows the median of the runs' p50s.

    .venv/bin/python bench/tracing_overhead.py [--runs 5] [--docs 500] [--baseline ../main]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, cpu_flags, load_corpus, load_queries, median, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.paths import NEARDEX  # noqa: E402
from tests.support.processes import free_port, stop_process, wait_for_port  # noqa: E402
from tests.support.traces import Receiver  # noqa: E402


def serve(tree: Path, data: Path, port: int, *flags: str) -> subprocess.Popen[bytes]:
    """`neardex serve` running the code of `tree` (a checkout), traces off unless flags say."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "NEARDEX_OTLP_ENDPOINT"}
    env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in ("proto", "client", "indexer", "server"))
    proc = subprocess.Popen([str(NEARDEX), "serve", "--data-dir", str(data), "--host", "127.0.0.1",
                             "--port", str(port), "--metrics-port", "0", *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5, help="runs, each every query once per server")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout without the tracing code, served as the baseline")
    args = parser.parse_args()

    from neardex.client import Client
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    queries = load_queries()
    receiver = Receiver()
    servers: dict[str, tuple[Path, list[str]]] = {}
    if args.baseline is not None:
        servers["baseline (no tracing code)"] = (args.baseline.resolve(), [])
    servers["traces off"] = (ROOT, [])
    servers["traces on (OTLP)"] = (ROOT, ["--otlp-endpoint", receiver.endpoint])
    procs, clients = [], {}
    p50s: dict[str, dict[str, list[float]]] = {"vector": {n: [] for n in servers},
                                               "text hybrid": {n: [] for n in servers}}
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            with Catalog(tmp / "base") as catalog:
                index_documents(catalog.create("bench"), load_corpus(limit=args.docs))
            for i, (name, (tree, flags)) in enumerate(servers.items()):
                shutil.copytree(tmp / "base", tmp / f"data{i}")
                port = free_port()
                procs.append(serve(tree, tmp / f"data{i}", port, *flags))
                clients[name] = Client(f"127.0.0.1:{port}", timeout=60)
            vector = next(iter(clients.values())).embed([queries[0]])[0]
            for client in clients.values():  # warm-up: connections, first model calls
                for q in queries[:5]:
                    client.search("bench", q, k=10, mode="hybrid")
                    client.search("bench", vector, k=10)
            order = list(clients.items())
            shuffle = random.Random(0).shuffle
            for _ in range(args.runs):
                ms: dict[str, dict[str, list[float]]] = {k: {n: [] for n in servers} for k in p50s}
                for q in queries:
                    shuffle(order)
                    for name, client in order:
                        t = time.perf_counter()
                        client.search("bench", vector, k=10)
                        ms["vector"][name].append((time.perf_counter() - t) * 1000)
                        t = time.perf_counter()
                        client.search("bench", q, k=10, mode="hybrid")
                        ms["text hybrid"][name].append((time.perf_counter() - t) * 1000)
                for kind, by_server in ms.items():
                    for name, values in by_server.items():
                        p50s[kind][name].append(median(values))
    finally:
        for client in clients.values():
            client.close()
        for proc in procs:
            stop_process(proc)
        receiver.stop()
    exported = len(receiver.spans)
    print(f"CPU flags: {cpu_flags()}; {args.docs} documents; {args.runs} runs x {len(queries)} queries per cell;"
          f" {exported} spans reached the collector")
    rows: list[list[Any]] = []
    for kind, by_server in p50s.items():
        base = median(by_server[next(iter(servers))])
        for name, values in by_server.items():
            rows.append([kind, name, median(values), median(values) - base,
                         " ".join(f"{v:.2f}" for v in values)])
    print_table(["query", "server", "p50 ms (median of runs)", f"added vs {next(iter(servers))}", "each run"],
                rows)
    write_result("tracing-overhead", {"cpu_flags": cpu_flags(), "p50_ms": p50s, "spans_exported": exported})


if __name__ == "__main__":
    main()
