"""Restart trials: `neardex serve` stopped with SIGTERM at a random moment of a write stream, again
and again on one data folder; every stop must end within the grace period.

The folder holds a text collection (embedded by the bundled model) and a collection of the
caller's own vectors under HNSW, large enough that its background rebuild takes a while. Each
trial starts a real server on that folder, checks that every write acknowledged before any earlier
stop is there (a write in flight at a stop may be wholly there or wholly absent), then runs, from
several client threads at once: UpsertStreams and plain Upserts of new and changed documents,
deletes and re-adds that pile up HNSW tombstones until the index rebuilds, and searches. It sends
SIGTERM at a random moment, at the moment the server logs the HNSW rebuild starting, or as soon as
the port is open (the server may still be starting). A server that has not exited `--grace`
seconds later is sent SIGUSR1 (it prints every thread's stack) and then SIGKILL, and its stacks
are reported. After the last trial the folder is checked once more, and by `neardex check`.

    .venv/bin/python -m tests.support.restart_trials --trials 50 [--seed 1] [--grace 30] [--json FILE]

`tests/e2e/test_restart_trials.py` runs a short fixed-seed form in `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.crash_trials import DELETED, Ledger, allowed_states, document, judge, wait_for
from tests.support.processes import free_port, run_cli, start_serve

KINDS = ("random", "rebuild", "startup")
REBUILD_LINE = "collection vecs: rebuilding the hnsw index"
VECTORS = 12000  # the HNSW rebuild of this many takes long enough to be caught under way
DIM = 32
CHURN_SHARE = 0.075  # of the vectors deleted, then re-added, per step: a rebuild every few steps


def vector(doc_id: str, version: int) -> list[float]:
    rng = random.Random(f"vector {doc_id}/{version}")
    return [rng.gauss(0.0, 1.0) for _ in range(DIM)]


def vector_document(doc_id: str, version: int) -> dict[str, Any]:
    return {**document(doc_id, version), "vector": vector(doc_id, version)}


@dataclass
class RestartLedger(Ledger):
    versions: dict[tuple[str, str], int] = field(default_factory=dict)  # the last version sent

    def next_version(self, collection: str, doc_id: str) -> int:
        with self.lock:
            version = self.versions.get((collection, doc_id), -1) + 1
            self.versions[(collection, doc_id)] = version
            return version

    def ids(self, collection: str, prefix: str) -> dict[str, bool]:
        """The acknowledged ids of a collection with this prefix: present (True) or deleted."""
        with self.lock:
            return {k[1]: v != DELETED for k, v in self.acked.items() if k[0] == collection and k[1].startswith(prefix)}


@dataclass
class TrialResult:
    trial: int
    kind: str
    at_event: bool = False
    seconds_before_stop: float = 0.0
    seconds_to_exit: float = 0.0
    exit_code: int | None = None
    hung: bool = False
    acknowledged_writes: int = 0
    # What this trial's start found of the writes acknowledged before earlier stops.
    documents_checked: int = 0
    lost: int = 0
    half_applied: int = 0
    problems: list[str] = field(default_factory=list)
    stacks: str = ""


# -- the seeded folder ----------------------------------------------------------------------


def build_seed(folder: Path, vectors: int) -> RestartLedger:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.records import IndexSpec

    ledger = RestartLedger()
    with Catalog(folder) as catalog:
        catalog.create("text", chunk_tokens=24, overlap_tokens=4)
        vecs = catalog.create("vecs", model="none", dimension=DIM,
                              index=IndexSpec.parse("hnsw", {"m": 16, "ef_construction": 40}))
        for start in range(0, vectors, 1000):
            docs = [vector_document(f"v{i}", 0) for i in range(start, min(start + 1000, vectors))]
            vecs.upsert([Document(d["id"], d["text"], "", d["metadata"], tuple(d["vector"])) for d in docs])
            for d in docs:
                ledger.acked[("vecs", d["id"])] = 0
                ledger.versions[("vecs", d["id"])] = 0
    return ledger


# -- the workload ---------------------------------------------------------------------------


class Workload:
    def __init__(self, target: str, ledger: RestartLedger, rng: random.Random) -> None:
        from neardex.client import Client, RetryPolicy

        self.ledger = ledger
        self.stop = threading.Event()
        self.writes_at_start = ledger.writes
        # No retries: an attempt the server never answered must stay unacknowledged.
        self.client = Client(target, timeout=60, retry=RetryPolicy(max_attempts=1))
        seeds = [rng.random() for _ in range(4)]
        self.threads = [threading.Thread(target=self._guard, args=(fn, random.Random(s)), daemon=True)
                        for fn, s in zip((self.streamer, self.upserter, self.churner, self.reader), seeds)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> int:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)
        self.client.close()
        return self.ledger.writes - self.writes_at_start

    def _guard(self, fn: Any, rng: random.Random) -> None:
        try:
            fn(rng)
        except Exception:  # noqa: BLE001 - the server stopped: what failed was not acknowledged
            pass

    def _text_batch(self, prefix: str, rng: random.Random, size: int) -> list[dict[str, Any]]:
        """New documents and new versions of acknowledged ones (present or deleted)."""
        known = sorted(self.ledger.ids("text", prefix))
        chosen: set[str] = set()
        for _ in range(size):
            if known and rng.random() < 0.4:
                chosen.add(rng.choice(known))
            else:
                chosen.add(f"{prefix}{len(known) + len(chosen)}-{rng.randrange(10**9)}")
        return [document(doc_id, self.ledger.next_version("text", doc_id)) for doc_id in sorted(chosen)]

    def streamer(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            self._stream("text", self._text_batch("s", rng, rng.randint(4, 10)), rng.randint(2, 4))

    def upserter(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            batch = self._text_batch("u", rng, rng.randint(1, 3))
            for doc in batch:
                self.ledger.sent("text", doc["id"], doc["metadata"]["v"])
            self.client.upsert("text", batch)
            for doc in batch:
                self.ledger.ack("text", doc["id"])

    def churner(self, rng: random.Random) -> None:
        """Deletes and re-adds own-vector documents: tombstones pile up until HNSW rebuilds."""
        while not self.stop.is_set():
            ids = self.ledger.ids("vecs", "v")
            present = sorted(i for i, here in ids.items() if here)
            churn = int(CHURN_SHARE * len(ids))
            doomed = rng.sample(present, min(churn, len(present)))
            for doc_id in doomed:
                self.ledger.sent("vecs", doc_id, DELETED)
            self.client.delete("vecs", doomed)
            for doc_id in doomed:
                self.ledger.ack("vecs", doc_id)
            absent = sorted(i for i, here in ids.items() if not here)
            back = rng.sample(absent, min(churn, len(absent)))
            self._stream("vecs", [vector_document(i, self.ledger.next_version("vecs", i)) for i in back], 300)

    def reader(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            self.client.search("text", rng.choice(("amber", "basalt cedar", "harbor")), k=5, mode="lexical")
            self.client.search("vecs", vector("query", rng.randrange(1000)), k=10)

    def _stream(self, collection: str, batch: list[dict[str, Any]], batch_size: int) -> None:
        def feed() -> Iterator[dict[str, Any]]:
            for doc in batch:
                self.ledger.sent(collection, doc["id"], doc["metadata"]["v"])
                yield doc

        for ack in self.client.upsert_stream(collection, feed(), batch_size=batch_size):
            for doc_id in ack.ids:
                self.ledger.ack(collection, doc_id)


# -- a trial ----------------------------------------------------------------------------------


def stop_within(proc: subprocess.Popen[bytes], grace: float) -> tuple[float, bool, str]:
    """SIGTERM, then the seconds until exit; past `grace`, SIGUSR1 (the stacks) and SIGKILL."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
        return time.monotonic() - started, False, ""
    except subprocess.TimeoutExpired:
        seen = len(proc.output)  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3)
        stacks = "".join(proc.output[seen:])  # type: ignore[attr-defined]
        proc.kill()
        proc.wait(timeout=30)
        return time.monotonic() - started, True, stacks


def verify(port: int, ledger: RestartLedger, result: TrialResult) -> int:
    """Every acknowledged write is there; each write in flight at the stop is wholly there or
    wholly absent, and is settled as found. Returns the documents checked."""
    from neardex.client import Client

    checked = 0
    with Client(f"127.0.0.1:{port}", timeout=120) as client:
        with ledger.lock:
            keys = sorted(set(ledger.acked) | set(ledger.pending))
        for name in sorted({k[0] for k in keys}):
            ids = [k[1] for k in keys if k[0] == name]
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                found = {d.id: d for d in client.get(name, part).documents}
                for doc_id in part:
                    checked += 1
                    key = (name, doc_id)
                    doc = found.get(doc_id)
                    judge(name, doc_id, doc, allowed_states(ledger, key), result, [])
                    ledger.acked[key] = DELETED if doc is None else int(doc.metadata["v"])
                    ledger.pending.pop(key, None)
    return checked


def run_trial(number: int, kind: str, data: Path, ledger: RestartLedger, rng: random.Random,
              grace: float) -> TrialResult:
    port = free_port()
    proc = start_serve(data, port)
    started = time.monotonic()
    result = TrialResult(number, kind)
    workload = None
    if kind != "startup":  # a startup trial stops the server as soon as its port is open
        result.documents_checked = verify(port, ledger, result)
        workload = Workload(f"127.0.0.1:{port}", ledger, rng)
        workload.start()
        result.at_event = wait_for(proc, REBUILD_LINE if kind == "rebuild" else None,
                                   30 if kind == "rebuild" else rng.uniform(0.5, 5.0), threading.Event())
    result.seconds_before_stop = round(time.monotonic() - started, 2)
    seconds, result.hung, result.stacks = stop_within(proc, grace)
    result.seconds_to_exit, result.exit_code = round(seconds, 2), proc.returncode
    result.acknowledged_writes = workload.finish() if workload is not None else 0
    if result.hung:
        result.problems.append(f"no exit within {grace:g} s of SIGTERM")
    elif proc.returncode != 0:
        result.problems.append(f"exit code {proc.returncode} after SIGTERM")
    return result


def final_check(data: Path, ledger: RestartLedger, grace: float) -> list[str]:
    """What one more start finds of the last trial's writes, and what `neardex check` finds."""
    port = free_port()
    proc = start_serve(data, port)
    found = TrialResult(-1, "final")
    try:
        verify(port, ledger, found)
    finally:
        _, hung, stacks = stop_within(proc, grace)
    problems = found.problems + ([f"final stop: no exit within {grace:g} s of SIGTERM\n{stacks}"] if hung else [])
    checked = run_cli("check", str(data), check=False)
    if checked.returncode != 0:
        problems += [line for line in checked.stdout.splitlines() if not line.startswith("ok:")]
        problems += checked.stderr.splitlines()[-3:]
    return problems


def run_trials(trials: int, seed: int, work: Path, grace: float = 30.0, vectors: int = VECTORS,
               kinds: tuple[str, ...] = KINDS, log: Any = print) -> tuple[list[TrialResult], list[str]]:
    """The trials' results, and what the last check found wrong (nothing, when all is well)."""
    rng = random.Random(seed)
    data = work / "data"
    ledger = build_seed(data, vectors)
    results: list[TrialResult] = []
    for number in range(trials):
        results.append(run_trial(number, kinds[number % len(kinds)], data, ledger, rng, grace))
        report(results[-1], log)
    return results, final_check(data, ledger, grace)


def report(r: TrialResult, log: Any) -> None:
    log(f"trial {r.trial:>2} {r.kind:<8} event={'yes' if r.at_event else 'no ':<3} SIGTERM after"
        f" {r.seconds_before_stop:>5.1f} s, exit after {r.seconds_to_exit:>5.1f} s (code {r.exit_code}),"
        f" {r.acknowledged_writes:>5} writes acknowledged; at its start {r.documents_checked:>5} documents"
        f" checked, lost {r.lost}, half-applied {r.half_applied}"
        + (f"\n    {r.problems[:5]}" if r.problems else "")
        + (f"\n{r.stacks}" if r.stacks else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grace", type=float, default=30.0, help="seconds a stop may take")
    parser.add_argument("--vectors", type=int, default=VECTORS, help="own vectors in the HNSW collection")
    parser.add_argument("--json", type=Path, default=None, help="write every trial's result here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="neardex-restart-") as tmp:
        results, problems = run_trials(args.trials, args.seed, Path(tmp), args.grace, args.vectors)
    exits = sorted(r.seconds_to_exit for r in results if not r.hung)
    print(f"{len(results)} restarts: hung {sum(r.hung for r in results)}, other exit codes"
          f" {sum(not r.hung and r.exit_code != 0 for r in results)}, slowest exit"
          f" {exits[-1] if exits else 0:.1f} s; {sum(r.acknowledged_writes for r in results)} writes"
          f" acknowledged, lost {sum(r.lost for r in results)}, half-applied {sum(r.half_applied for r in results)},"
          f" rebuild caught {sum(r.at_event for r in results)}/{sum(r.kind == 'rebuild' for r in results)};"
          f" last check: {'clean' if not problems else problems}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
