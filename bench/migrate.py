"""A collection moved local -> Milvus (milvus-lite) -> local without re-embedding: wall time each
way, model calls (must be 0), and `neardex eval`'s dense nDCG@10 before and after each move (must
be the same).

msmarco-dl19-5k (5,000 passages) is indexed once with `neardex index --index flat` (exact search
in both stores, so the rankings can be compared; `--work DIR` keeps the indexed folder for the
next run); the Milvus is a `milvus-lite server` on a real port, which the `neardex eval`
processes reach too (a milvus-lite file is held by one process); each migration runs in process through
`Catalog.migrate` with the model's calls counted (tests/support/counting.py); `neardex eval
--collection ms` scores the collection the name `ms` stands for after each move.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/migrate.py [--beir ../shared/data/msmarco-dl19-5k] [--work DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MSMARCO, ROOT, cpu_flags, write_result

sys.path.insert(0, str(ROOT))
from tests.support.counting import CountingCalls  # noqa: E402
from tests.support.paths import NEARDEX  # noqa: E402
from tests.support.processes import MilvusLite  # noqa: E402


def dense_ndcg(beir: Path, data: Path) -> float:
    done = subprocess.run([str(NEARDEX), "eval", str(beir), "--collection", "ms", "--data-dir", str(data),
                           "--mode", "dense", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"neardex eval exited {done.returncode}: {done.stderr}")
    out = done.stdout
    report = json.loads(out.strip().splitlines()[-1])
    return float(report["ndcg@10"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, default=MSMARCO)
    parser.add_argument("--work", type=Path, default=None, help="keep the indexed data folder here for the next run")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog

    with tempfile.TemporaryDirectory(prefix="migrate-bench-") as tmp:
        indexed = (args.work or Path(tmp)) / "indexed"
        index_s = 0.0
        if not (indexed / "ms").is_dir():
            started = time.perf_counter()
            subprocess.run([str(NEARDEX), "index", str(args.beir), "--collection", "ms", "--data-dir",
                            str(indexed), "--index", "flat"], capture_output=True, text=True, check=True)
            index_s = time.perf_counter() - started
        data = Path(tmp) / "data"
        shutil.copytree(indexed, data, ignore=shutil.ignore_patterns(".neardex.lock"))
        milvus = MilvusLite(Path(tmp) / "milvus")
        uri = milvus.uri
        ndcg = {"local": dense_ndcg(args.beir, data)}
        moves = []
        for to, label in ((uri, "milvus-lite"), ("local", "local again")):
            counts: collections.Counter[str] = collections.Counter()
            with Catalog(data, model_calls=CountingCalls.factory(counts)) as catalog:
                source = catalog.manifest_of("ms")
                assert source is not None
                started = time.perf_counter()
                done = catalog.migrate(source.name, to, "ms-back" if to == "local" else "")
                seconds = time.perf_counter() - started
                documents, chunks = done.collection.stats().documents, done.collection.stats().chunks
            ndcg[label] = dense_ndcg(args.beir, data)
            moves.append({"from": source.store, "to": to, "seconds": round(seconds, 2), "model_calls": counts["calls"],
                          "documents": documents, "chunks": chunks, "rounds": done.rounds})
        milvus.stop()
    print(f"CPU flags: {cpu_flags()}; {args.beir.name}" + (f", indexed in {index_s:.1f} s (flat)" if index_s else ""))
    for move in moves:
        print(f"{move['from']} -> {move['to']}: {move['seconds']:.2f} s, {move['documents']} documents,"
              f" {move['chunks']} chunks, {move['rounds']} rounds, model calls {move['model_calls']}")
    print("dense nDCG@10: " + ", ".join(f"{k} {v:.4f}" for k, v in ndcg.items())
          + f"; identical: {len(set(ndcg.values())) == 1}")
    write_result("migrate", {"cpu_flags": cpu_flags(), "index_s": index_s, "moves": moves, "dense_ndcg10": ndcg})


if __name__ == "__main__":
    main()
