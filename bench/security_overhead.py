"""What API keys and TLS add to a search: p50 and p99 per configuration, in one run.

Five `neardex serve` processes run side by side over copies of one indexed folder (500 msmarco
passages): plaintext without keys, keys, TLS, keys + TLS, keys + mutual TLS. Queries go to each in
turn (round-robin, so machine noise hits every configuration alike), over one long-lived channel
per server, as a service calling neardex would. Two kinds of search: a vector query (no model
call, so the added cost is most visible) and a text query in the default hybrid mode.

    .venv/bin/python bench/security_overhead.py [--repeat 20] [--docs 500]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, cpu_flags, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import trustme

    from neardex.client import Client
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.server import auth

    queries = load_queries()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Catalog(tmp / "base") as catalog:
            index_documents(catalog.create("bench"), load_corpus(limit=args.docs))
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
        server_cert = ca.issue_cert("127.0.0.1")
        server_cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
        server_cert.private_key_pem.write_to_path(str(tmp / "server.key"))
        client_cert = ca.issue_cert("bench-client")
        client_cert.cert_chain_pems[0].write_to_path(str(tmp / "client.pem"))
        client_cert.private_key_pem.write_to_path(str(tmp / "client.key"))
        key = auth.create_key(tmp / "keys.json", "bench", "read")
        tls_flags = ["--tls-cert", str(tmp / "server.pem"), "--tls-key", str(tmp / "server.key")]
        keys_flags = ["--api-keys", str(tmp / "keys.json")]
        configs: dict[str, tuple[list[str], dict[str, Any]]] = {
            "plaintext, no keys": ([], {}),
            "keys": (keys_flags, {"api_key": key}),
            "TLS": (tls_flags, {"ca_cert": tmp / "ca.pem"}),
            "keys + TLS": (keys_flags + tls_flags, {"api_key": key, "ca_cert": tmp / "ca.pem"}),
            "keys + mTLS": (keys_flags + tls_flags + ["--tls-client-ca", str(tmp / "ca.pem")],
                            {"api_key": key, "ca_cert": tmp / "ca.pem", "client_cert": tmp / "client.pem",
                             "client_key": tmp / "client.key"}),
        }
        procs, clients = [], {}
        try:
            for i, (name, (flags, options)) in enumerate(configs.items()):
                shutil.copytree(tmp / "base", tmp / f"data{i}")
                port = free_port()
                procs.append(start_serve(tmp / f"data{i}", port, 0, *flags))
                clients[name] = Client(f"127.0.0.1:{port}", timeout=60, **options)
            vector = clients["plaintext, no keys"].embed([queries[0]])[0]
            ms: dict[str, dict[str, list[float]]] = {"vector": {n: [] for n in configs},
                                                    "text hybrid": {n: [] for n in configs}}
            for client in clients.values():  # warm-up: connections, TLS handshakes, first model calls
                for q in queries[:5]:
                    client.search("bench", q, k=10)
                    client.search("bench", vector, k=10)
            for _ in range(args.repeat):
                for q in queries:
                    for name, client in clients.items():
                        t = time.perf_counter()
                        client.search("bench", vector, k=10)
                        ms["vector"][name].append((time.perf_counter() - t) * 1000)
                        t = time.perf_counter()
                        client.search("bench", q, k=10)
                        ms["text hybrid"][name].append((time.perf_counter() - t) * 1000)
        finally:
            for client in clients.values():
                client.close()
            for proc in procs:
                stop_process(proc)
    print(f"CPU flags: {cpu_flags()}; {args.docs} documents; {args.repeat} x {len(queries)} queries per cell")
    rows = []
    for kind, by_config in ms.items():
        base = median(by_config["plaintext, no keys"])
        for name, values in by_config.items():
            rows.append([kind, name, median(values), percentile(values, 99), median(values) - base])
    print_table(["query", "server", "p50 ms", "p99 ms", "p50 added ms"], rows)
    write_result("security-overhead", {"cpu_flags": cpu_flags(), "ms": ms})


if __name__ == "__main__":
    main()
