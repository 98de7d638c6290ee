"""Crash trials: `neardex serve` killed with SIGKILL at a random moment of a mixed workload.

Each trial copies a seeded data folder (a flat collection, an HNSW collection one delete burst away
from its tombstone rebuild, an IVF-PQ collection a few documents short of training), starts a real
server and runs, from several client threads at once: streamed upserts of new and changed
documents, deletes, collection create / fill / drop, the delete burst and the additions, and
metadata updates (UpdateMetadata of a few IVF seed documents at a time). It kills
the server at a random moment, or at a logged event (the HNSW rebuild or IVF-PQ training starting,
an index snapshot being written), then checks:

- `neardex check` is clean on the killed folder (store, lexical rows and vector index agree);
- after a restart, every acknowledged write is there with exactly its content, every acknowledged
  delete is gone, and a write in flight at the kill is wholly there or wholly absent (its text, its
  metadata checksum and its version agree);
- every acknowledged metadata update is there, and one in flight at the kill is there or not;
- every stored document's chunks are the ones its current text makes (positions and count), and
  for a sample their vectors are the model's vectors of those chunks: no chunk of an old version
  survives beside a new one;
- search in every mode finds a sample of the acknowledged documents.

    .venv/bin/python -m tests.support.crash_trials --trials 50 [--seed 1] [--json FILE]

`tests/e2e/test_crash_trials.py` runs a short fixed-seed form in `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import free_port, run_cli, start_serve, stop_process

KINDS = ("random", "hnsw-rebuild", "ivf-training", "snapshot")
TRIGGERS = {
    "hnsw-rebuild": "collection hnsw: rebuilding the hnsw index",
    "ivf-training": "collection ivf: rebuilding the ivfpq index",
    "snapshot": "writing an index snapshot",
}
HNSW_SEED = 1500
IVF_SEED = 600  # IVF-PQ with nlist 8 and 4-bit codes trains at 624 vectors
DELETED = "deleted"
WORDS = ("amber basalt cedar delta ember fjord garnet harbor indigo juniper kelp lagoon meadow nectar"
         " onyx prairie quartz reef sierra tundra umber valley willow xylem yarrow zephyr").split()


def document(doc_id: str, version: int) -> dict[str, Any]:
    rng = random.Random(f"{doc_id}/{version}")
    keyword = "kw" + hashlib.sha1(f"{doc_id}/{version}".encode()).hexdigest()[:10]
    sentences = [f"Entry {k} of {doc_id} at v{version} tells of {' '.join(rng.choices(WORDS, k=6))}."
                 for k in range(rng.randint(1, 5))]
    text = f"{doc_id} version {version} keyword {keyword}. " + " ".join(sentences)
    return {"id": doc_id, "text": text,
            "metadata": {"v": version, "sum": hashlib.sha256(text.encode()).hexdigest()[:16], "kw": keyword}}


@dataclass
class Ledger:
    """What the server acknowledged, and what was in flight, per (collection, document)."""

    acked: dict[tuple[str, str], int | str] = field(default_factory=dict)
    pending: dict[tuple[str, str], int | str] = field(default_factory=dict)
    collections: dict[str, bool] = field(default_factory=dict)  # acknowledged: exists or not
    collections_pending: dict[str, bool] = field(default_factory=dict)
    # Metadata updates: the tag acknowledged per document, and the one in flight.
    tags: dict[tuple[str, str], int] = field(default_factory=dict)
    tags_pending: dict[tuple[str, str], int] = field(default_factory=dict)
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, collection: str, doc_id: str, state: int | str) -> None:
        with self.lock:
            self.pending[(collection, doc_id)] = state

    def ack(self, collection: str, doc_id: str) -> None:
        with self.lock:
            self.acked[(collection, doc_id)] = self.pending.pop((collection, doc_id))
            self.writes += 1


@dataclass
class TrialResult:
    trial: int
    kind: str
    killed_at_event: bool
    seconds_before_kill: float
    acknowledged_writes: int
    documents_checked: int
    lost: int
    half_applied: int
    check_clean: bool
    search_found: int
    search_sample: int
    problems: list[str] = field(default_factory=list)
    metadata_updates: int = 0  # documents whose metadata update was acknowledged


# -- the seeded folder ----------------------------------------------------------------------


def build_seed(folder: Path) -> Ledger:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.records import IndexSpec

    ledger = Ledger()
    with Catalog(folder) as catalog:
        catalog.create("main", chunk_tokens=24, overlap_tokens=4)
        for name, spec, count in (("hnsw", IndexSpec.parse("hnsw", {"m": 16, "ef_construction": 40}), HNSW_SEED),
                                  ("ivf", IndexSpec.parse("ivfpq", {"nlist": 8, "m": 8, "nbits": 4}), IVF_SEED)):
            collection = catalog.create(name, index=spec, chunk_tokens=254)
            docs = [document(f"s{i}", 0) for i in range(count)]
            for start in range(0, count, 256):
                collection.upsert([Document(d["id"], d["text"], "", d["metadata"]) for d in docs[start:start + 256]])
            for d in docs:
                ledger.acked[(name, d["id"])] = 0
        for name in ("main", "hnsw", "ivf"):
            ledger.collections[name] = True
    return ledger


# -- the workload ---------------------------------------------------------------------------


class Workload:
    def __init__(self, target: str, ledger: Ledger, rng: random.Random) -> None:
        from neardex.client import Client, RetryPolicy

        self.ledger = ledger
        self.rng = rng
        self.stop = threading.Event()
        # No retries: an attempt the server never answered must stay unacknowledged.
        self.client = Client(target, timeout=60, retry=RetryPolicy(max_attempts=1))
        self.threads = [threading.Thread(target=self._guard, args=(fn, i), daemon=True)
                        for i, fn in enumerate([self.writer, self.writer, self.admin, self.hnsw_deleter,
                                                self.ivf_adder, self.tagger])]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)
        self.client.close()

    def _guard(self, fn: Any, n: int) -> None:
        try:
            fn(n, random.Random(self.rng.random()))
        except Exception:  # noqa: BLE001 - the server was killed: what failed was not acknowledged
            pass

    def writer(self, n: int, rng: random.Random) -> None:
        versions: dict[str, int] = {}
        counter = 0
        while not self.stop.is_set():
            if versions and rng.random() < 0.25:
                ids = rng.sample(sorted(versions), min(len(versions), rng.randint(1, 4)))
                for doc_id in ids:
                    self.ledger.sent("main", doc_id, DELETED)
                self.client.delete("main", ids)
                for doc_id in ids:
                    self.ledger.ack("main", doc_id)
                    del versions[doc_id]
                continue
            batch: list[dict[str, Any]] = []
            for _ in range(rng.randint(4, 12)):
                if versions and rng.random() < 0.4:
                    doc_id = rng.choice(sorted(set(versions) - {d["id"] for d in batch}) or [None])
                    if doc_id is None:
                        continue
                else:
                    doc_id, counter = f"w{n}-{counter}", counter + 1
                versions[doc_id] = versions.get(doc_id, -1) + 1
                batch.append(document(doc_id, versions[doc_id]))
            self._stream("main", batch, rng.randint(2, 5))

    def _stream(self, collection: str, batch: list[dict[str, Any]], batch_size: int) -> None:
        def feed() -> Iterator[dict[str, Any]]:
            for doc in batch:
                self.ledger.sent(collection, doc["id"], doc["metadata"]["v"])
                yield doc

        for ack in self.client.upsert_stream(collection, feed(), batch_size=batch_size):
            for doc_id in ack.ids:
                self.ledger.ack(collection, doc_id)

    def admin(self, n: int, rng: random.Random) -> None:
        counter = 0
        while not self.stop.is_set():
            name, counter = f"tmp{counter}", counter + 1
            self._collection_op(name, True, lambda name=name: self.client.create_collection(name))
            doc = document("only", 0)
            self.ledger.sent(name, "only", 0)
            self.client.upsert(name, [doc])
            self.ledger.ack(name, "only")
            self._collection_op(name, False, lambda name=name: self.client.delete_collection(name))

    def _collection_op(self, name: str, exists: bool, call: Any) -> None:
        with self.ledger.lock:
            self.ledger.collections_pending[name] = exists
        call()
        with self.ledger.lock:
            self.ledger.collections[name] = self.ledger.collections_pending.pop(name)
            self.ledger.writes += 1
            if not exists:  # its documents went with it
                for key in [k for k in self.ledger.acked if k[0] == name]:
                    del self.ledger.acked[key]

    def hnsw_deleter(self, n: int, rng: random.Random) -> None:
        # 30% of the seed: past the 20% of tombstones that starts a rebuild.
        ids = [f"s{i}" for i in rng.sample(range(HNSW_SEED), int(0.3 * HNSW_SEED))]
        for start in range(0, len(ids), 60):
            if self.stop.is_set():
                return
            part = ids[start:start + 60]
            for doc_id in part:
                self.ledger.sent("hnsw", doc_id, DELETED)
            self.client.delete("hnsw", part)
            for doc_id in part:
                self.ledger.ack("hnsw", doc_id)

    def ivf_adder(self, n: int, rng: random.Random) -> None:
        for start in range(0, 80, 8):
            if self.stop.is_set():
                return
            self._stream("ivf", [document(f"a{i}", 0) for i in range(start, start + 8)], 8)

    def tagger(self, n: int, rng: random.Random) -> None:
        """UpdateMetadata of a few IVF seed documents at a time (nothing else writes them), each
        call a new tag."""
        counter = 0
        while not self.stop.is_set():
            counter += 1
            keys = [("ivf", f"s{i}") for i in rng.sample(range(IVF_SEED), 5)]
            with self.ledger.lock:
                self.ledger.tags_pending.update((key, counter) for key in keys)
            self.client.update_metadata("ivf", [doc_id for _, doc_id in keys], set={"tag": counter})
            with self.ledger.lock:
                for key in keys:
                    self.ledger.tags[key] = self.ledger.tags_pending.pop(key)
                self.ledger.writes += 1


# -- a trial ----------------------------------------------------------------------------------


def wait_for(proc: subprocess.Popen[bytes], text: str | None, timeout: float, stop: threading.Event) -> bool:
    """True once the server printed `text` (never when text is None), False after timeout."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and not stop.is_set():
        lines = proc.output  # type: ignore[attr-defined]
        if text is not None and any(text in line for line in lines[seen:]):
            return True
        seen = max(len(lines) - 1, 0)
        time.sleep(0.002)
    return False


def run_trial(number: int, kind: str, seed_dir: Path, seed_ledger: Ledger, work: Path, rng: random.Random,
              embedder: Any) -> TrialResult:
    data = work / f"trial{number}"
    shutil.copytree(seed_dir, data)
    ledger = Ledger(dict(seed_ledger.acked), {}, dict(seed_ledger.collections))
    port = free_port()
    proc = start_serve(data, port)
    workload = Workload(f"127.0.0.1:{port}", ledger, rng)
    started = time.monotonic()
    workload.start()
    hit = wait_for(proc, TRIGGERS.get(kind), 30 if kind != "random" else rng.uniform(0.5, 6.0), threading.Event())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    elapsed = time.monotonic() - started
    workload.finish()
    result = TrialResult(number, kind, hit, round(elapsed, 2), ledger.writes, 0, 0, 0, False, 0, 0,
                         metadata_updates=len(ledger.tags))

    checked = run_cli("check", str(data), check=False)
    result.check_clean = checked.returncode == 0
    if not result.check_clean:
        result.problems += [line for line in checked.stdout.splitlines() if not line.startswith("ok:")]
        result.problems += checked.stderr.splitlines()[-3:]
    verify_through_the_api(data, ledger, rng, result)
    verify_chunks(data, ledger, embedder, rng, result)
    shutil.rmtree(data, ignore_errors=True)
    return result


def allowed_states(ledger: Ledger, key: tuple[str, str]) -> set[int | str]:
    states: set[int | str] = {ledger.acked.get(key, DELETED)}
    if key in ledger.pending:
        states.add(ledger.pending[key])
    return states


def verify_through_the_api(data: Path, ledger: Ledger, rng: random.Random, result: TrialResult) -> None:
    from neardex.client import Client

    port = free_port()
    proc = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            existing = {c.name for c in client.collections()}
            for name, exists in ledger.collections.items():
                pending = ledger.collections_pending.get(name)
                if (name in existing) != exists and (name in existing) != pending:
                    result.lost += 1
                    result.problems.append(f"collection {name}: acknowledged {'created' if exists else 'dropped'}")
            keys = sorted(k for k in set(ledger.acked) | set(ledger.pending) if k[0] in existing)
            present: list[tuple[str, dict[str, Any]]] = []
            for name in sorted({k[0] for k in keys}):
                ids = [k[1] for k in keys if k[0] == name]
                for start in range(0, len(ids), 500):
                    got = client.get(name, ids[start:start + 500])
                    found = {d.id: d for d in got.documents}
                    for doc_id in ids[start:start + 500]:
                        result.documents_checked += 1
                        judge(name, doc_id, found.get(doc_id), allowed_states(ledger, (name, doc_id)), result,
                              present)
                        judge_tag(ledger, (name, doc_id), found.get(doc_id), result)
            sample = rng.sample(present, min(len(present), 6))
            for name, doc in sample:
                query_vector = client.embed([doc["text"]], collection=name)[0]
                for mode, query in (("lexical", doc["kw"]), ("dense", query_vector),
                                    ("hybrid", f"{doc['kw']} {doc['text'].split('. ')[0]}")):
                    result.search_sample += 1
                    hits = client.search(name, query, k=5, mode=mode)
                    if doc["id"] in [h.id for h in hits]:
                        result.search_found += 1
                    else:
                        result.problems.append(f"{name}/{doc['id']}: {mode} search did not find it")
    finally:
        stop_process(proc)


def judge(name: str, doc_id: str, doc: Any, allowed: set[int | str], result: TrialResult,
          present: list[tuple[str, dict[str, Any]]]) -> None:
    if doc is None:
        if DELETED not in allowed:
            result.lost += 1
            result.problems.append(f"{name}/{doc_id}: acknowledged version {sorted(map(str, allowed))} missing")
        return
    version = doc.metadata.get("v")
    version = int(version) if isinstance(version, int | float) else None
    expected = document(doc_id, version)["text"] if version is not None else None
    if doc.text != expected or doc.metadata.get("sum") != hashlib.sha256(doc.text.encode()).hexdigest()[:16]:
        result.half_applied += 1
        result.problems.append(f"{name}/{doc_id}: text and metadata of different versions")
    elif version not in allowed:
        result.lost += 1
        result.problems.append(f"{name}/{doc_id}: version {version}, acknowledged {sorted(map(str, allowed))}")
    else:
        present.append((name, {"id": doc_id, "text": doc.text, "kw": doc.metadata["kw"]}))


def judge_tag(ledger: Ledger, key: tuple[str, str], doc: Any, result: TrialResult) -> None:
    """The tag of a document metadata updates reached: the acknowledged one, or the one in flight."""
    if doc is None or (key not in ledger.tags and key not in ledger.tags_pending):
        return
    allowed = {ledger.tags.get(key)} | ({ledger.tags_pending[key]} if key in ledger.tags_pending else set())
    if doc.metadata.get("tag") not in allowed:
        result.lost += 1
        result.problems.append(f"{key[0]}/{key[1]}: tag {doc.metadata.get('tag')}, acknowledged"
                               f" {sorted(map(str, allowed))}")


def verify_chunks(data: Path, ledger: Ledger, embedder: Any, rng: random.Random, result: TrialResult) -> None:
    """Every stored document's chunks are exactly what its text makes; for a sample, their
    vectors are the model's vectors of those chunks."""
    import numpy as np

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document

    with Catalog(data) as catalog:
        for name in catalog.names():
            collection = catalog.get(name)
            db = collection.store._reader()
            docs = db.execute("SELECT id, text, title FROM documents").fetchall()
            for doc_id, text, title in (docs if name == "main" else rng.sample(docs, min(len(docs), 30))):
                rows = db.execute("SELECT idx, start, end, vector FROM chunks WHERE doc_id = ? ORDER BY idx",
                                  (doc_id,)).fetchall()
                chunks, texts = collection.prepare(Document(doc_id, text, title))
                if [(r[0], r[1], r[2]) for r in rows] != [(c.index, c.start, c.end) for c in chunks]:
                    result.half_applied += 1
                    result.problems.append(f"{name}/{doc_id}: stored chunks are not those of its text")
                    continue
                if rng.random() < 0.2:
                    stored = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                    fresh = embedder.encode(texts)
                    if float(np.min(np.sum(stored * fresh, axis=1))) < 0.999:
                        result.half_applied += 1
                        result.problems.append(f"{name}/{doc_id}: a chunk vector is not its text's")


def run_trials(trials: int, seed: int, work: Path, log: Any = print) -> list[TrialResult]:
    from neardex.indexer.embedding.loading import load_embedder

    rng = random.Random(seed)
    seed_dir = work / "seed"
    ledger = build_seed(seed_dir)
    embedder = load_embedder()
    results = []
    for number in range(trials):
        kind = KINDS[number % len(KINDS)]
        result = run_trial(number, kind, seed_dir, ledger, work, rng, embedder)
        results.append(result)
        log(f"trial {number:>2} {kind:<13} event={'yes' if result.killed_at_event else 'no ':<3}"
            f" after {result.seconds_before_kill:>5.1f} s: {result.acknowledged_writes:>5} writes acknowledged,"
            f" {result.documents_checked:>5} documents checked, lost {result.lost}, half-applied"
            f" {result.half_applied}, check {'clean' if result.check_clean else 'NOT clean'}, search"
            f" {result.search_found}/{result.search_sample}, metadata updates {result.metadata_updates}"
            + (f"\n    {result.problems[:5]}" if result.problems else ""))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write every trial's result here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="neardex-crash-") as tmp:
        results = run_trials(args.trials, args.seed, Path(tmp))
    print(f"{len(results)} trials: {sum(r.acknowledged_writes for r in results)} writes acknowledged,"
          f" lost {sum(r.lost for r in results)}, half-applied {sum(r.half_applied for r in results)},"
          f" check clean {sum(r.check_clean for r in results)}/{len(results)},"
          f" killed at the targeted event {sum(r.killed_at_event for r in results if r.kind != 'random')}"
          f"/{sum(r.kind != 'random' for r in results)},"
          f" search found {sum(r.search_found for r in results)}/{sum(r.search_sample for r in results)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
