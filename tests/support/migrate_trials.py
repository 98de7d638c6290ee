"""Migration trials: `neardex migrate` killed with SIGKILL at random moments, then run again.

Each trial copies a seeded data folder (a collection of its own vectors, `own`, 2,400 documents
with metadata, some expiring far ahead, an alias `a` on it) and gives it a fresh Milvus instance
on a real port (`milvus-lite server`). It runs `neardex migrate own --to milvus://...` as a child
process and kills it at a random moment, `kills` times (each run after the first goes on with
the migration under way, or finds it done), then runs it to the end, and checks:

- `neardex check` is clean on the data folder and on the instance;
- `own` (and the alias `a`) stand for `own-milvus`, which holds exactly the seeded documents
  (ids, texts, titles, metadata, expiry, stored hashes) with one chunk each (nothing lost, nothing
  doubled) and the same vectors;
- the source is kept as `own-before-migrate`, whole; no migration record is left.

The kill moments are drawn from an uninterrupted run's timeline (measured once, at the start): one
in four anywhere in it (the start-up, the record and the target being made), the others between
the start of the copy and the end, so they fall in the copy, the catch-up and the switch alike (a
run going on with a migration is given a shorter range: it has less to copy). A run that ends
before its kill moment starts the trial again from a fresh copy, its moments drawn within the
length that run took (four times at most), when it was the first run; a later run that ends
first has completed the migration, and the trial is checked with the kills that landed.

    .venv/bin/python -m tests.support.migrate_trials --trials 20 [--kills 3] [--seed 1] [--json FILE]

`tests/e2e/test_migrate_trials.py` runs a short fixed-seed form in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.paths import NEARDEX
from tests.support.processes import MilvusLite, run_cli

DOCUMENTS = 2400
DIMENSION = 16
LATER = 4_102_444_800.0  # 2100-01-01


def seed_folder(data: Path) -> None:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document

    rng = np.random.default_rng(3)
    with Catalog(data) as catalog:
        col = catalog.create("own", model="none", dimension=DIMENSION, indexed_keys=["group"])
        docs = [Document(f"doc-{i:05d}", f"text of document {i}", f"title {i % 7}",
                         {"group": i % 13, "tags": [f"t{i % 5}"], "n": float(i) / 3},
                         expires_at=LATER if i % 10 == 0 else None,
                         vector=tuple(float(x) for x in rng.normal(size=DIMENSION)))
                for i in range(DOCUMENTS)]
        for start in range(0, len(docs), 500):
            col.upsert(docs[start:start + 500])
        catalog.set_alias("a", "own")


def snapshot_of(col: Any) -> dict[str, Any]:
    """What must survive a migration: each document as stored, its hash, its chunks' vectors."""
    docs = col.scroll("", DOCUMENTS * 2)
    ids = [d.id for d in docs]
    hashes = col.store.hashes(ids)
    chunks: dict[str, list[np.ndarray]] = {}
    for c in col.store.fetch(documents=ids, vectors=True):
        chunks.setdefault(c.doc_id, []).append(c.vector)
    return {d.id: (d.title, d.text, json.dumps(d.metadata, sort_keys=True), d.expires_at, hashes.get(d.id),
                   len(chunks.get(d.id, [])), np.round(np.asarray(chunks.get(d.id, [np.zeros(0)])[0]), 5).tobytes())
            for d in docs}


@dataclass
class Trial:
    number: int
    kills_at: list[float] = field(default_factory=list)
    # What each killed run had printed last (where it was when killed).
    killed_after: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Runs that ended before their kill moment: a first one starts the trial again from a fresh
    # copy (its moments drawn within the length seen); a later one ends the kills.
    ended_before_kill: int = 0
    seconds: float = 0.0


def migrate_args(data: Path, uri: str) -> list[str]:
    return ["migrate", "own", "--to", uri, "--data-dir", str(data)]


def run_killed(data: Path, uri: str, after: float) -> tuple[bool, str, float]:
    """`neardex migrate` killed `after` seconds in (or ended sooner): whether it was killed, the
    last line it printed, and how long it ran."""
    began = time.monotonic()
    proc = subprocess.Popen([str(NEARDEX), *migrate_args(data, uri)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    killed = False
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    out = (proc.stdout.read() if proc.stdout else "").strip().splitlines()
    return killed, out[-1] if out else "(nothing printed)", time.monotonic() - began


def check(data: Path, uri: str, expected: dict[str, Any], problems: list[str]) -> None:
    from neardex.indexer.catalog import Catalog, migration

    result = run_cli("check", str(data), "--milvus", uri, check=False)
    if result.returncode != 0:
        problems.append(f"neardex check: {result.stdout.strip()} {result.stderr.strip()}"[:2000])
    with Catalog(data, milvus=[uri]) as catalog:
        if migration.records(data):
            problems.append(f"records left: {migration.records(data)}")
        for name in ("own", "a"):
            manifest = catalog.manifest_of(name)
            if manifest is None or manifest.name != "own-milvus" or manifest.store != uri:
                problems.append(f"{name} stands for {manifest and (manifest.name, manifest.store)}")
        for name in ("own-milvus", "own-before-migrate"):
            got = snapshot_of(catalog.get(name))
            if got != expected:
                missing = sorted(set(expected) - set(got))[:5]
                extra = sorted(set(got) - set(expected))[:5]
                differ = sorted(i for i in set(got) & set(expected) if got[i] != expected[i])[:5]
                problems.append(f"{name}: {len(got)} documents; missing {missing}, extra {extra}, differing {differ}")


def trial(number: int, seed_data: Path, work: Path, kills: int, timeline: tuple[float, float], rng: random.Random,
          expected: dict[str, Any]) -> Trial:
    record = Trial(number)
    started = time.monotonic()
    copy_starts, end = timeline
    share = copy_starts / end  # of a run, the part before its copy starts (imports, opening)
    while True:
        data, folder = work / f"trial-{number}", work / f"milvus-{number}"
        shutil.copytree(seed_data, data)
        milvus = MilvusLite(folder)
        try:
            record.kills_at, record.killed_after = [], []
            again = False
            for attempt in range(kills):
                # A run going on with a migration has less left to copy than the first.
                until = end if attempt == 0 else end * (share + 0.6 * (1 - share))
                after = rng.uniform(0.0 if rng.random() < 0.25 else share * end, until)
                killed, last, took = run_killed(data, milvus.uri, after)
                if not killed:
                    record.ended_before_kill += 1
                    # A whole first run faster than the measured one: again from a fresh copy, with
                    # its length; a run that finished a migration killed before: checked as it is.
                    again = attempt == 0 and record.ended_before_kill <= 4
                    end = min(end, took) if attempt == 0 else end
                    break
                record.kills_at.append(round(after, 2))
                record.killed_after.append(last)
            if not again:
                result = run_cli(*migrate_args(data, milvus.uri), check=False)
                if result.returncode != 0:
                    record.problems.append(f"the last run exited {result.returncode}: {result.stdout}"
                                           f" {result.stderr}"[:2000])
                check(data, milvus.uri, expected, record.problems)
                break
        finally:
            milvus.stop()
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
    record.seconds = round(time.monotonic() - started, 1)
    return record


def run(trials: int, kills: int, seed: int, work: Path) -> dict[str, Any]:
    from neardex.indexer.catalog import Catalog

    rng = random.Random(seed)
    seed_data = work / "seed"
    seed_folder(seed_data)
    with Catalog(seed_data) as catalog:
        expected = snapshot_of(catalog.get("own"))
    # An uninterrupted run's length, in a copy: the range the kill moments are drawn from.
    calibration = work / "calibration"
    shutil.copytree(seed_data, calibration)
    milvus = MilvusLite(work / "milvus-calibration")
    try:
        began = time.monotonic()
        proc = subprocess.Popen([str(NEARDEX), *migrate_args(calibration, milvus.uri)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        copy_starts = 0.0
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("copying") and not copy_starts:
                copy_starts = time.monotonic() - began
        if proc.wait() != 0:
            raise RuntimeError("the uninterrupted migration failed")
        full_run = time.monotonic() - began
    finally:
        milvus.stop()
        shutil.rmtree(calibration, ignore_errors=True)
    results = [trial(n, seed_data, work, kills, (copy_starts, full_run), rng, expected) for n in range(trials)]
    return {"trials": trials, "kills_per_trial": kills, "seed": seed, "full_run_s": round(full_run, 2),
            "copy_starts_s": round(copy_starts, 2),
            "failed": sum(1 for r in results if r.problems), "results": [asdict(r) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="neardex-migrate-trials-") as tmp:
        summary = run(args.trials, args.kills, args.seed, Path(tmp))
    for r in summary["results"]:
        status = "ok" if not r["problems"] else "FAILED: " + "; ".join(r["problems"])
        print(f"trial {r['number']}: killed at {r['kills_at']} s ({' | '.join(r['killed_after'])}),"
              f" {r['ended_before_kill']} runs ended first: {status}")
    landed = sum(len(r["kills_at"]) for r in summary["results"])
    print(f"{summary['trials'] - summary['failed']}/{summary['trials']} trials clean; {landed} kills landed of"
          f" {summary['kills_per_trial']} a trial; an uninterrupted run {summary['full_run_s']} s (its copy from"
          f" {summary['copy_starts_s']} s)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    raise SystemExit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
