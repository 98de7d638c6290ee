"""The vector index as a cache of the store: snapshots on disk plus the store's change log.

A snapshot `index-<seq>-<n>.faiss` holds every change up to log row <seq>; opening loads the
newest and replays the log after it. Writing a snapshot is a durable rename, so a crash leaves the
previous one in force, and the log is trimmed only after the new snapshot is on disk.

An HNSW snapshot's tombstones, vectors and ids live beside it (`<snapshot>.tomb.npy`, `.vectors`,
`.ids.npy`: vector_index.companions). The <n> makes every snapshot's name new even when no change
came since the last one: a companion left by a write that crashed can then never be read as part
of a later snapshot of the same seq.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

from ...layout import INDEX_FILES
from ...records import IndexSpec
from .vector_index import VectorIndex, companions

log = logging.getLogger("neardex.indexer")
# Snapshots at least this large open memory-mapped: a server starts without reading them whole.
MMAP_MIN_BYTES = 64 << 20


def _name_key(path: Path) -> tuple[int, int] | None:
    """(seq, n) of a snapshot or of a file beside it (tombstones, a half-written .tmp)."""
    parts = path.name.split(".")[0].split("-")
    try:
        return int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    except (IndexError, ValueError):
        return None


def snapshots(folder: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every snapshot in the folder, oldest first."""
    found = [(key, path) for path in folder.glob(f"{INDEX_FILES}*.faiss") if (key := _name_key(path)) is not None]
    return [(key[0], path) for key, path in sorted(found)]


def load(folder: Path, spec: IndexSpec, dimension: int, db: sqlite3.Connection) -> VectorIndex:
    """The index as of the store's last commit: the newest snapshot and the log after it."""
    found = snapshots(folder)
    if found:
        seq, path = found[-1]
        index = VectorIndex.load(path, spec, dimension, mmap=path.stat().st_size >= MMAP_MIN_BYTES)
    else:
        seq, index = 0, VectorIndex.empty(spec, dimension)
    replay(db, index, seq)
    return index


def replay(db: sqlite3.Connection, index: VectorIndex, after_seq: int) -> None:
    """Apply the logged changes after `after_seq` to the index."""
    rows = db.execute(
        "SELECT ch.seq, ch.op, ch.chunk_id, c.vector FROM changes ch"
        " LEFT JOIN chunks c ON c.id = ch.chunk_id WHERE ch.seq > ? ORDER BY ch.seq",
        (after_seq,),
    ).fetchall()
    # Apply in runs of the same op so the log replays in large FAISS calls.
    run_op: str | None = None
    run_ids: list[int] = []
    run_vecs: list[bytes] = []
    undone: set[int] = set()
    for _, op, chunk_id, blob in rows + [(None, None, None, None)]:
        if op != run_op and run_ids:
            ids = np.array(run_ids, dtype=np.int64)
            if run_op == "add":
                index.add(ids, np.frombuffer(b"".join(run_vecs), dtype=np.float32).reshape(len(run_ids), -1))
            else:
                index.remove(ids)
            run_ids, run_vecs = [], []
        run_op = op
        # An add whose chunk is gone was undone by a later del in the same log: skip both
        # (chunk ids are never reused, so that id is in no snapshot either).
        if op == "add" and blob is None:
            undone.add(chunk_id)
        elif op == "add":
            run_ids.append(chunk_id)
            run_vecs.append(blob)
        elif op == "del" and chunk_id not in undone:
            run_ids.append(chunk_id)


def write(folder: Path, index: VectorIndex, db: sqlite3.Connection, last: int) -> None:
    """Snapshot the index as holding every change up to `last`, then drop older snapshots and the
    log rows the new one holds. The caller keeps writes out meanwhile."""
    log.info("collection %s: writing an index snapshot (%d vectors, changes up to %d)", folder.name,
             index.live, last)
    # Every file of a snapshot counts, a crashed write's leftovers too: the new name is unused.
    newest = max((key for p in folder.glob(f"{INDEX_FILES}*") if (key := _name_key(p))), default=(0, 0))
    n = newest[1] + 1 if newest[0] == last else 0
    path = folder / f"{INDEX_FILES}{last:012d}-{n}.faiss"
    index.save(path)
    keep = {path.name, *(c.name for c in companions(path))}
    for old in folder.glob(f"{INDEX_FILES}*"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    db.execute("DELETE FROM changes WHERE seq <= ?", (last,))


def last_change(db: sqlite3.Connection, folder: Path) -> int:
    """The last change ever logged, trimmed rows included, and never before an existing
    snapshot: an index that holds every change is saved under this number."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return max([row[0] if row else 0, *(seq for seq, _ in snapshots(folder))])


def stored_vectors(db: sqlite3.Connection, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, vectors) of every stored chunk, by id."""
    rows = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
    return ids, vectors
