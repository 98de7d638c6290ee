"""Server CPU a hostile lexical query costs when its caller gives up at a 1 s deadline.

A `neardex serve` process holds a few hundred msmarco passages. One client sends a 3 MB lexical
Search (400,000 words) with a 1 s deadline, over a plain stub (the client library would retry a
read that missed its deadline), and the server process's CPU seconds (utime + stime from
/proc/PID/stat) are read before the call and again once they stop rising: whatever the server
still does for the call after answering counts too. Two queries:

- "distinct": 400,000 different made-up words, the attack as reported;
- "repeated": 400,000 words drawn from 1,000 words of the indexed passages, so the query passes
  the term limit and runs to the deadline (or to its end).

Median of --runs runs each; the goal is under 1.5 s of server CPU for "distinct".

    .venv/bin/python bench/deadline_cpu.py [--docs 300] [--runs 3] [--words 400000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import string
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_flags, load_corpus, median, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402

DEADLINE_S = 1.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def settled_cpu(pid: int, quiet: float = 0.02, interval: float = 0.5) -> float:
    """The process's CPU seconds once they stop rising (two quiet intervals in a row)."""
    last, calm = cpu_seconds(pid), 0
    while calm < 2:
        time.sleep(interval)
        now = cpu_seconds(pid)
        calm = calm + 1 if now - last < quiet else 0
        last = now
    return last


def distinct_words(n: int, rng: random.Random) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(n))


def repeated_words(n: int, vocabulary: list[str], rng: random.Random) -> str:
    return " ".join(rng.choices(vocabulary, k=n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--words", type=int, default=400_000)
    args = parser.parse_args()

    import grpc

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.v1 import neardex_pb2 as pb
    from neardex.v1 import neardex_pb2_grpc

    rng = random.Random(17)
    docs = load_corpus(limit=args.docs)
    vocabulary = sorted({w.lower() for d in docs for w in re.findall(r"[^\W\d_]{4,}", d.text)})
    queries = {"distinct": distinct_words(args.words, rng),
               "repeated": repeated_words(args.words, rng.sample(vocabulary, min(1000, len(vocabulary))), rng)}
    spent: dict[str, list[float]] = {name: [] for name in queries}
    codes: dict[str, list[str]] = {name: [] for name in queries}
    answered: dict[str, list[float]] = {name: [] for name in queries}
    with tempfile.TemporaryDirectory() as tmp_name:
        data = Path(tmp_name) / "data"
        with Catalog(data) as catalog:
            index_documents(catalog.create("bench"), docs)
        port = free_port()
        proc = start_serve(data, port, 0)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
        stub = neardex_pb2_grpc.NeardexStub(channel)
        try:
            stub.Search(pb.SearchRequest(collection="bench", text="warm up", top_k=10,
                                         mode=pb.SEARCH_MODE_LEXICAL), timeout=60)
            for _ in range(args.runs):
                for name, text in queries.items():
                    before = settled_cpu(proc.pid)
                    started = time.perf_counter()
                    try:
                        stub.Search(pb.SearchRequest(collection="bench", text=text, top_k=10,
                                                     mode=pb.SEARCH_MODE_LEXICAL), timeout=DEADLINE_S)
                        codes[name].append("OK")
                    except grpc.RpcError as exc:
                        codes[name].append(exc.code().name)
                    answered[name].append(time.perf_counter() - started)
                    spent[name].append(settled_cpu(proc.pid) - before)
        finally:
            channel.close()
            stop_process(proc)
    size = {name: len(text.encode()) for name, text in queries.items()}
    print(f"CPU flags: {cpu_flags()}; {args.docs} passages; {args.words} words a query; deadline {DEADLINE_S} s;"
          f" median of {args.runs} runs")
    print_table(["query", "bytes", "status", "answered s", "server CPU s (median)", "runs"],
                [[name, size[name], "/".join(sorted(set(codes[name]))), median(answered[name]),
                  median(spent[name]), " ".join(f"{s:.2f}" for s in spent[name])] for name in queries])
    write_result("deadline-cpu", {"cpu_flags": cpu_flags(), "docs": args.docs, "words": args.words,
                                  "deadline_s": DEADLINE_S, "bytes": size, "codes": codes,
                                  "answered_s": answered, "server_cpu_s": spent})


if __name__ == "__main__":
    main()
