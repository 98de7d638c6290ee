"""What hostile callers cost an honest one: a keyed Search's p50 and p99 over gRPC and HTTP with
nothing held, then with idle raw connections and keyless streams held open on both ports, in one
run (rounds alternate, so machine noise hits both alike). Also the HTTP stack against a reference
gateway: with `--reference-gateway REV`, the HTTP/JSON gateway of that git revision (the
standard library's http.server) is mounted beside the current one on the same servicer and gate,
and both answer the same searches in turn.

    .venv/bin/python bench/hostile.py [--docs 200] [--searches 50] [--rounds 3] [--idle 200] [--streams 64]
                                      [--reference-gateway 13b254d]

The CPU a 3 MB lexical query costs at a 1 s deadline is bench/deadline_cpu.py's; restarts under
writes are bench/restart_trials.py's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import ROOT, cpu_flags, load_corpus, load_queries, median, percentile, print_table, write_result

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def timed(calls: int, call: Callable[[int], None]) -> list[float]:
    seconds = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        seconds.append((time.perf_counter() - started) * 1000)
    return seconds


class Attack:
    """Idle raw connections on both ports, keyless reflection streams and keyless calls whose
    request never comes, all held until released."""

    def __init__(self, grpc_port: int, http_port: int, idle: int, streams: int) -> None:
        import grpc

        self.release = threading.Event()
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for port in (grpc_port, http_port)
                        for _ in range(idle)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        reflection = self.channel.stream_stream(REFLECTION)
        stalled = self.channel.stream_unary("/neardex.v1.Neardex/Count")
        self.calls = [reflection(self._silent()) for _ in range(streams)]
        self.calls += [stalled.future(self._silent()) for _ in range(streams)]

    def _silent(self) -> Iterator[bytes]:
        self.release.wait(600)
        yield from ()

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()
        for sock in self.sockets:
            sock.close()


def reference_gateway(rev: str, server: Any) -> tuple[Any, int]:
    """The HTTP/JSON gateway of revision `rev`, on the running server's servicer and gate."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:server/neardex/server/http.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "reference_http.py"
    path.write_text(source.replace("from .gate import", "from neardex.server.gate import"))
    spec = importlib.util.spec_from_file_location("reference_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    gateway = module.HttpGateway(server.servicer, server.gate, 64 * 1024 * 1024)
    http = module.serve_http(gateway, "127.0.0.1", 0, None)
    return http, http.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=200, help="idle raw connections per port")
    parser.add_argument("--streams", type=int, default=64, help="keyless streams and keyless stalled calls")
    parser.add_argument("--reference-gateway", default="", metavar="REV")
    args = parser.parse_args()

    import grpc

    from neardex.server import auth
    from neardex.server.app import create_server
    from neardex.server.settings import Settings
    from neardex.v1 import neardex_pb2 as pb
    from neardex.v1 import neardex_pb2_grpc

    folder = Path(tempfile.mkdtemp())
    keys_file = folder / "keys.json"
    admin = auth.create_key(keys_file, "admin", "admin")
    reader = auth.create_key(keys_file, "reader", "read")
    server, port = create_server(Settings(data_dir=folder / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=0, api_keys_file=keys_file))
    metadata = (("authorization", f"Bearer {reader}"),)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = neardex_pb2_grpc.NeardexStub(channel)
    stub.CreateCollection(pb.CreateCollectionRequest(name="docs"), metadata=(("authorization", f"Bearer {admin}"),),
                          timeout=600)
    docs = load_corpus(limit=args.docs)
    for start in range(0, len(docs), 50):
        stub.Upsert(pb.UpsertRequest(collection="docs", documents=[
            pb.Document(id=d.id, text=d.text, title=d.title) for d in docs[start:start + 50]]),
            metadata=(("authorization", f"Bearer {admin}"),), timeout=600)
    queries = load_queries()

    def grpc_search(i: int) -> None:
        stub.Search(pb.SearchRequest(collection="docs", text=queries[i % len(queries)], top_k=10),
                    metadata=metadata, timeout=30)

    def http_search(http_port: int) -> Callable[[int], None]:
        def search(i: int) -> None:
            body = json.dumps({"collection": "docs", "text": queries[i % len(queries)], "topK": 10}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/neardex.v1.Neardex/Search", data=body,
                                             method="POST", headers={"content-type": "application/json",
                                                                     "authorization": f"Bearer {reader}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        return search

    transports: dict[str, Callable[[int], None]] = {"grpc": grpc_search, "http": http_search(server.http_port)}
    reference = None
    if args.reference_gateway:
        reference, reference_port = reference_gateway(args.reference_gateway, server)
        transports[f"http ({args.reference_gateway} gateway)"] = http_search(reference_port)
    for call in transports.values():  # warm: the model, the channel, the connection paths
        timed(5, call)

    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for condition in ("nothing held", f"{args.idle} idle conns/port + {args.streams}+{args.streams} keyless"):
            attack = Attack(port, server.http_port, args.idle, args.streams) if condition != "nothing held" else None
            time.sleep(0.5 if attack else 0)
            try:
                for name, call in transports.items():
                    if attack is not None and "gateway)" in name:
                        continue  # the reference gateway serves one connection at a time
                    samples.setdefault((name, condition), []).extend(timed(args.searches, call))
            finally:
                if attack is not None:
                    attack.close()

    rows = [[name, condition, len(ms), median(ms), percentile(ms, 99)] for (name, condition), ms in samples.items()]
    print(f"CPU flags: {cpu_flags()}")
    print_table(["transport", "held", "searches", "p50 ms", "p99 ms"], rows)
    write_result("hostile", {"cpu_flags": cpu_flags(), "rows": [
        {"transport": r[0], "held": r[1], "searches": r[2], "p50_ms": r[3], "p99_ms": r[4]} for r in rows]})
    if reference is not None:
        reference.shutdown()
        reference.server_close()
    channel.close()
    server.stop(grace=1)


if __name__ == "__main__":
    sys.exit(main())
