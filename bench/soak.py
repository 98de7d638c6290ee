"""Concurrency soak: 8 searching threads and 2 writing threads against one `neardex serve`.

The collection holds msmarco passages plus 200 documents the writers keep rewriting; each version
of a writer document carries its version in every sentence and a checksum of its text in its
metadata. Readers search with msmarco questions and with the writer documents' words, and check
every writer document they see: the hit's chunk is of the version its metadata names, and (for
one hit in ten, fetched whole with Get) the text matches the checksum. Any error, or any mixed
version, is counted.

First the readers alone (the baseline), then readers and writers together, each for --seconds;
p50 and p99 search latency of both, in one run. With --rss, the server's resident memory is
sampled all along (the 10-minute form: --seconds 600 --rss).

    .venv/bin/python bench/soak.py [--seconds 60] [--docs 2000] [--rss]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, load_corpus, load_queries, median, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, start_serve, stop_process  # noqa: E402

READERS, WRITERS, WRITER_DOCS = 8, 2, 200


def writer_doc(doc_id: str, version: int) -> dict[str, Any]:
    text = " ".join(f"Lighthouse report {doc_id} [v{version}] line {k}: the keeper logged tides and weather."
                    for k in range(6))
    return {"id": doc_id, "text": text,
            "metadata": {"v": version, "sum": hashlib.sha256(text.encode()).hexdigest()}}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Soak:
    def __init__(self, target: str, queries: list[str]) -> None:
        from neardex.client import Client

        self.target = target
        self.queries = queries
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.mixed: list[str] = []
        self.searches = self.writes = self.verified = 0
        self.client = Client(target, timeout=60)

    def reader(self, n: int) -> None:
        rng = random.Random(n)
        while not self.stop.is_set():
            query = rng.choice(self.queries) if rng.random() < 0.6 else "lighthouse keeper tides weather report"
            t = time.perf_counter()
            try:
                hits = self.client.search("soak", query, k=10)
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                with self.lock:
                    self.errors.append(f"search: {exc}")
                continue
            elapsed = (time.perf_counter() - t) * 1000
            with self.lock:
                self.latencies.append(elapsed)
                self.searches += 1
            for hit in hits:
                if hit.id.startswith("w-"):
                    self.verify(hit, rng)

    def verify(self, hit: Any, rng: random.Random) -> None:
        version = int(hit.metadata["v"])
        if f"[v{version}]" not in hit.text or any(f"[v{v}]" in hit.text for v in range(version + 1, version + 3)):
            with self.lock:
                self.mixed.append(f"{hit.id}: chunk of another version than v{version}")
        if rng.random() < 0.1:
            try:
                got = self.client.get("soak", [hit.id]).documents
            except Exception as exc:  # noqa: BLE001
                with self.lock:
                    self.errors.append(f"get: {exc}")
                return
            for doc in got:
                if hashlib.sha256(doc.text.encode()).hexdigest() != doc.metadata["sum"]:
                    with self.lock:
                        self.mixed.append(f"{doc.id}: text and checksum of different versions")
            with self.lock:
                self.verified += 1

    def writer(self, n: int) -> None:
        rng = random.Random(100 + n)
        versions = {f"w-{i}": 0 for i in range(n, WRITER_DOCS, WRITERS)}
        while not self.stop.is_set():
            ids = rng.sample(sorted(versions), 4)
            for doc_id in ids:
                versions[doc_id] += 1
            try:
                self.client.upsert("soak", [writer_doc(i, versions[i]) for i in ids])
                with self.lock:
                    self.writes += 1
            except Exception as exc:  # noqa: BLE001
                with self.lock:
                    self.errors.append(f"upsert: {exc}")

    def run(self, seconds: float, writers: int) -> dict[str, Any]:
        self.stop.clear()
        self.latencies, self.searches, self.writes = [], 0, 0
        threads = [threading.Thread(target=self.reader, args=(i,)) for i in range(READERS)]
        threads += [threading.Thread(target=self.writer, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        self.stop.set()
        for thread in threads:
            thread.join()
        return {"searches": self.searches, "writes": self.writes, "p50": median(self.latencies),
                "p99": percentile(self.latencies, 99), "qps": self.searches / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rss", action="store_true", help="sample the server's RSS during the writers' phase")
    args = parser.parse_args()

    from neardex.client import Client
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with Catalog(data) as catalog:
            index_documents(catalog.create("soak"), load_corpus(limit=args.docs))
        port = free_port()
        proc = start_serve(data, port)
        rss: list[tuple[float, float]] = []
        try:
            target = f"127.0.0.1:{port}"
            with Client(target, timeout=120) as client:
                client.upsert("soak", [writer_doc(f"w-{i}", 0) for i in range(WRITER_DOCS)])
            soak = Soak(target, load_queries())
            soak.run(5, 0)  # warm-up
            alone = soak.run(args.seconds, 0)
            sampling = threading.Event()

            def sample() -> None:
                started = time.monotonic()
                while not sampling.wait(10 if args.seconds > 120 else 1):
                    rss.append((time.monotonic() - started, rss_mib(proc.pid)))

            sampler = threading.Thread(target=sample)
            rss.append((0.0, rss_mib(proc.pid)))
            sampler.start()
            loaded = soak.run(args.seconds, WRITERS)
            sampling.set()
            sampler.join()
            rss.append((args.seconds, rss_mib(proc.pid)))
            soak.client.close()
        finally:
            stop_process(proc)
    rows = [["readers alone", alone["searches"], 0, alone["qps"], alone["p50"], alone["p99"]],
            ["readers + 2 writers", loaded["searches"], loaded["writes"], loaded["qps"], loaded["p50"], loaded["p99"]]]
    print_table(["phase", "searches", "upserts", "QPS", "p50 ms", "p99 ms"], rows)
    print(f"errors: {len(soak.errors)}; mixed versions seen: {len(soak.mixed)}; writer documents fetched and"
          f" checked whole: {soak.verified}")
    for line in (soak.errors + soak.mixed)[:10]:
        print("  " + line)
    growth = (rss[-1][1] / rss[0][1] - 1) * 100
    if args.rss:
        print(f"server RSS: {rss[0][1]:.0f} MiB at the start of the writers' phase, {rss[-1][1]:.0f} MiB at its"
              f" end ({growth:+.1f}%), peak {max(r for _, r in rss):.0f} MiB")
    write_result("soak", {"alone": alone, "with_writers": loaded, "errors": soak.errors, "mixed": soak.mixed,
                          "verified": soak.verified, "rss_mib": rss})


if __name__ == "__main__":
    main()
