"""A Milvus collection's snapshot, its restores into Milvus and into a data folder, and its check.

--documents documents with their own unit vectors (a collection without a model, so nothing is
embedded) go into a milvus-lite collection; then, timed: the snapshot, its restore into Milvus
and into the local store, and `neardex check`'s Milvus check. The dense top-10 of 20 queries must
be the same in all three collections.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/milvus_snapshots.py [--documents 5000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cpu_flags, write_result

DIMENSION = 384


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=5000)
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog, snapshots
    from neardex.indexer.documents import Document
    from neardex.indexer.stores.milvus import check as milvus_check

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.documents, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="milvus-snapshots-") as tmp:
        root = Path(tmp)
        uri = str(root / "milvus.db")
        with Catalog(root / "data", milvus=[uri]) as catalog:
            collection = catalog.create("docs", model="none", dimension=DIMENSION, store=uri)
            for start in range(0, args.documents, 1000):
                collection.upsert([Document(f"d{i:06d}", f"passage {i} about topic {i % 97}", metadata={"n": i},
                                            vector=tuple(vectors[i]))
                                   for i in range(start, min(start + 1000, args.documents))])
            started = time.perf_counter()
            info = snapshots.create(collection, catalog.root)
            snapshot_s = time.perf_counter() - started
            started = time.perf_counter()
            in_milvus = catalog.restore(info.path, "back")
            milvus_s = time.perf_counter() - started
            started = time.perf_counter()
            in_folder = catalog.restore(info.path, "here", store="local")
            local_s = time.perf_counter() - started

            def top(c: object, i: int) -> list[str]:
                return [h.doc_id for h in c.store.dense(vectors[i:i + 1], 10)[0]]  # type: ignore[attr-defined]

            same = all(top(collection, i) == top(in_milvus, i) == top(in_folder, i) for i in range(20))
            manifest = collection.manifest
        started = time.perf_counter()
        report = milvus_check.check(manifest)
        check_s = time.perf_counter() - started
    print(f"CPU flags: {cpu_flags()}; {args.documents} documents of {DIMENSION} dimensions, milvus-lite")
    print(f"snapshot {snapshot_s:.2f} s ({info.bytes / 1e6:.1f} MB), restore into Milvus {milvus_s:.2f} s,"
          f" into the data folder {local_s:.2f} s, check {check_s:.2f} s ({'ok' if report.ok else 'problems'});"
          f" dense top-10 the same in all three: {same}")
    write_result("milvus-snapshots", {"cpu_flags": cpu_flags(), "documents": args.documents, "snapshot_s": snapshot_s,
                                      "restore_milvus_s": milvus_s, "restore_local_s": local_s, "check_s": check_s,
                                      "bytes": info.bytes, "same_top10": same})


if __name__ == "__main__":
    main()
