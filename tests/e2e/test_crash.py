"""kill -9 durability: what the server acknowledged survives a crash, and index and store agree.

collection.py promises that a write is acknowledged only once its SQLite transaction is fsynced,
and that the FAISS index (a cache, snapshotted rarely) is rebuilt on open by replaying the change
log. These tests kill a real `neardex serve` with SIGKILL, so no shutdown code runs and no
snapshot is taken, then restart it on the same folder and check what came back.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from neardex.client import Client, NeardexError
from neardex.indexer.catalog import Catalog
from tests.support.processes import free_port, start_serve, stop_process

COLLECTION = "crash_docs"
BATCH = 8
TOTAL = 400
KILL_AFTER_BATCHES = 15
TIMEOUT = 120

_SUBJECTS = ["astronomer", "baker", "carpenter", "diver", "engineer", "falconer", "gardener",
             "harpist", "illustrator", "juggler", "knitter", "librarian", "mechanic", "navigator",
             "oboist", "potter", "quilter", "ranger", "sculptor", "tailor"]
_ACTIONS = ["repaired a clock", "painted a lighthouse", "studied volcanoes", "baked rye bread",
            "charted a river", "tuned a piano", "planted tulips", "trained a parrot",
            "built a canoe", "wrote a sonnet"]
_PLACES = ["in Lisbon", "near Oslo", "beside Lake Titicaca", "under the Andes", "in Kyoto",
           "outside Nairobi", "on Tasmania", "near Reykjavik", "in Marrakesh", "by the Yukon"]


def _text(i: int) -> str:
    # Distinct word combinations give every document a distinct embedding, so an exact-text
    # query has one clear best match.
    subject = _SUBJECTS[i % len(_SUBJECTS)]
    action = _ACTIONS[(i // len(_SUBJECTS)) % len(_ACTIONS)]
    place = _PLACES[(i * 7) % len(_PLACES)]
    return f"Record {i}: the {subject} {action} {place} during season {i // 20 + 1}."


def _doc_id(i: int) -> str:
    return f"d{i:04d}"


def _documents(count: int) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield {"id": _doc_id(i), "text": _text(i)}


def _serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start_serve(data_dir, port)
    return proc, f"127.0.0.1:{port}"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _stop_and_check_store(server: subprocess.Popen[bytes], data_dir: Path, chunks: int) -> None:
    """Stop the restarted server cleanly, then open the folder in this process (it takes the
    folder's lock, so no server may hold it) and compare the chunk ids of the document store with
    the ids the FAISS index answers for."""
    stop_process(server)
    assert server.returncode == 0, f"restarted server exited {server.returncode} on SIGTERM"
    with Catalog(data_dir) as catalog:
        collection = catalog.get(COLLECTION)
        chunk_ids = collection.store.chunk_ids()
        index_ids = collection.store.index_ids()
    assert chunk_ids == index_ids, (
        f"store-only chunks {sorted(chunk_ids - index_ids)[:20]},"
        f" index-only ids {sorted(index_ids - chunk_ids)[:20]}")
    assert len(chunk_ids) == chunks


def test_kill_9_during_upsert_stream_keeps_every_acknowledged_batch(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server: subprocess.Popen[bytes] | None = None
    acknowledged: list[str] = []
    batches = 0
    try:
        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            client.create_collection(COLLECTION)
            stream = client.upsert_stream(COLLECTION, _documents(TOTAL), batch_size=BATCH, timeout=TIMEOUT)
            with pytest.raises((NeardexError, grpc.RpcError)):
                for ack in stream:
                    assert len(ack.ids) == BATCH
                    acknowledged.extend(ack.ids)
                    batches += 1
                    if batches == KILL_AFTER_BATCHES:
                        # The stream is still open with batches queued behind this one.
                        _kill(server)
        assert batches == KILL_AFTER_BATCHES, "the stream went on after the server was killed"
        assert len(acknowledged) == KILL_AFTER_BATCHES * BATCH < TOTAL

        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            found = client.get(COLLECTION, acknowledged)
            assert found.missing == [], f"acknowledged but lost: {found.missing}"
            texts = {d.id: d.text for d in found.documents}
            assert texts == {_doc_id(i): _text(i) for i in range(len(acknowledged))}

            for i in (0, len(acknowledged) // 2, len(acknowledged) - 1):
                hits = client.search(COLLECTION, _text(i), k=3).hits
                assert hits and hits[0].id == _doc_id(i), (i, [(h.id, h.score) for h in hits])

            info = client.info(COLLECTION)
            # Batches after the last acknowledgement may have committed before the kill; each is
            # one transaction, so the store holds whole batches, in the order they were sent.
            assert len(acknowledged) <= info.documents <= TOTAL
            assert info.documents % BATCH == 0, info
            stored = client.get(COLLECTION, [_doc_id(i) for i in range(TOTAL)])
            assert sorted(d.id for d in stored.documents) == [_doc_id(i) for i in range(info.documents)]
            assert info.vectors == info.chunks, info
            assert info.chunks >= info.documents, info
        server = _stop_and_check_store(server, data_dir, info.chunks)
    finally:
        if server is not None:
            _kill(server)


def test_kill_9_after_deletes_and_updates_keeps_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    count = 64
    deleted = [_doc_id(i) for i in range(0, count, 3)]
    updated = {_doc_id(i): f"Amended record {i}: the {_SUBJECTS[i % 20]} now restores old maps"
               f" of {_PLACES[i % 10].split()[-1]} for museum number {i}."
               for i in range(1, count, 9) if _doc_id(i) not in deleted}
    kept = [_doc_id(i) for i in range(count) if _doc_id(i) not in deleted]
    server: subprocess.Popen[bytes] | None = None
    try:
        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            client.create_collection(COLLECTION)
            assert len(client.upsert(COLLECTION, _documents(count), batch_size=BATCH).ids) == count
            # Several Delete calls, so the change log interleaves adds and removals.
            removed = 0
            for start in range(0, len(deleted), 5):
                removed += client.delete(COLLECTION, deleted[start:start + 5])
            assert removed == len(deleted)
            # Re-upserting changed text replaces a document's chunks: a del and an add per chunk.
            ack = client.upsert(COLLECTION, [{"id": k, "text": v} for k, v in updated.items()])
            assert ack.upserted == len(updated)
            before = client.info(COLLECTION)
            assert before.documents == len(kept)
        _kill(server)

        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            gone = client.get(COLLECTION, deleted)
            assert gone.documents == [] and gone.missing == deleted

            present = client.get(COLLECTION, kept)
            assert present.missing == []
            expected = {i: updated.get(i, _text(int(i[1:]))) for i in kept}
            assert {d.id: d.text for d in present.documents} == expected

            deleted_set = set(deleted)
            for doc_id in deleted:
                hits = client.search(COLLECTION, _text(int(doc_id[1:])), k=10).hits
                assert not deleted_set & {h.id for h in hits}, (doc_id, [h.id for h in hits])
            for doc_id, text in updated.items():
                hits = client.search(COLLECTION, text, k=3).hits
                assert hits and hits[0].id == doc_id, (doc_id, [(h.id, h.score) for h in hits])
                # The chunk of the replaced text must be gone: no hit quotes it.
                old = _text(int(doc_id[1:]))
                assert all(h.text != old for h in client.search(COLLECTION, old, k=10).hits)

            info = client.info(COLLECTION)
            assert info.documents == len(kept), info
            assert info.chunks == before.chunks and info.vectors == info.chunks, (before, info)
        server = _stop_and_check_store(server, data_dir, info.chunks)
    finally:
        if server is not None:
            _kill(server)


def test_kill_9_keeps_expiries_and_expired_documents_stay_gone(tmp_path: Path) -> None:
    """Expiries are stored with the acknowledged write: after a kill -9 and a restart, a document
    whose expiry has passed is gone (whether the restart's purge or a read's clock got there
    first), the others keep theirs, and store, index and check agree."""
    import time
    from datetime import datetime, timedelta, timezone

    from neardex.indexer.stores.local import check

    data_dir = tmp_path / "data"
    server: subprocess.Popen[bytes] | None = None
    try:
        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            client.create_collection(COLLECTION, ttl_seconds=3600)
            soon = datetime.now(timezone.utc) + timedelta(seconds=3)
            later = datetime.now(timezone.utc) + timedelta(days=1)
            docs = list(_documents(24))
            expiring = [{**d, "expires_at": soon} for d in docs[:8]]
            lasting = [{**d, "expires_at": later} for d in docs[8:16]]
            ack = client.upsert(COLLECTION, [*expiring, *lasting, *docs[16:]], batch_size=BATCH)
            assert len(ack.ids) == 24
        _kill(server)
        time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.2)

        server, target = _serve(data_dir)
        with Client(target, timeout=TIMEOUT) as client:
            found = client.get(COLLECTION, [d["id"] for d in docs])
            assert found.missing == [d["id"] for d in expiring]
            by_id = {d.id: d.expires_at for d in found.documents}
            assert all(abs(by_id[d["id"]] - later) < timedelta(milliseconds=1) for d in lasting)
            # The collection's ttl came back with it: counted from the (acknowledged) write.
            assert all(by_id[d["id"]] > later - timedelta(hours=23, minutes=1) for d in docs[16:])
            assert client.count(COLLECTION) == 16
            hits = client.search(COLLECTION, _text(0), k=24).hits
            assert not {h.id for h in hits} & {d["id"] for d in expiring}
            info = client.info(COLLECTION)
            assert (info.documents, info.ttl_seconds) == (16, 3600)
        server = _stop_and_check_store(server, data_dir, 16)
        report = check.check(data_dir / COLLECTION)
        assert report.ok and report.documents == 16, report
    finally:
        if server is not None:
            _kill(server)
