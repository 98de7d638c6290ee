"""Aliases and snapshots over a real server: an alias serves every call a collection name does and
switches atomically under a stream of searches (zero-downtime re-indexing); a snapshot taken
during a stream of writes restores to a state that existed, `neardex check`-clean, on this server
or into another data folder."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from neardex.client import AlreadyExists, Client, InvalidArgument, NotFound
from tests.support.processes import free_port, run_cli, start_serve, stop_process


def doc(doc_id: str, version: int) -> dict:
    text = f"Tide table {doc_id} revision {version}: high water at dawn, low water at noon."
    return {"id": doc_id, "text": text, "metadata": {"v": version, "sum": hashlib.sha256(text.encode()).hexdigest()}}


def test_an_alias_serves_every_call_and_switches_atomically(client: Client) -> None:
    client.create_collection("docs-v1")
    client.upsert("docs-v1", [{"id": "a", "text": "Old edition: the Nile flows north."}])
    assert client.create_alias("docs", "docs-v1").collection == "docs-v1"
    assert client.info("docs").name == "docs-v1" and client.info("docs-v1").aliases == ["docs"]
    client.upsert("docs", [{"id": "b", "text": "Old edition: the Amazon carries the most water."}])
    assert client.count("docs") == 2 and client.search("docs", "Nile", k=1)[0].id == "a"
    assert client.collection_exists("docs")

    client.create_collection("docs-v2")
    client.upsert("docs-v2", [{"id": "a2", "text": "New edition: the Nile is 6,650 km long and flows north."}])
    seen: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(client.search("docs", "the Nile", k=1)[0].id)
            except Exception as exc:  # noqa: BLE001 - counted: there must be none
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while len(seen) < 20:
            time.sleep(0.005)  # a spinning loop would hold the GIL from the server under test
        client.create_alias("docs", "docs-v2", replace=True)
        count = len(seen)
        while len(seen) < count + 20:
            time.sleep(0.005)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    switch = seen.index("a2")
    assert set(seen[:switch]) == {"a"} and set(seen[switch:]) == {"a2"}  # one switch, no mix
    assert [(a.name, a.collection) for a in client.aliases()] == [("docs", "docs-v2")]
    client.delete_collection("docs-v1")  # nothing points to it now


def test_alias_refusals_and_deleting_a_collection_takes_its_aliases(client: Client) -> None:
    client.create_collection("c1")
    client.create_alias("x", "c1")
    with pytest.raises(AlreadyExists, match="alias 'x' exists"):
        client.create_alias("x", "c1")
    with pytest.raises(AlreadyExists, match="is a collection"):
        client.create_alias("c1", "c1")
    with pytest.raises(NotFound, match="collection: 'nope'"):
        client.create_alias("y", "nope")
    with pytest.raises(AlreadyExists, match="is an alias"):
        client.create_collection("x")
    with pytest.raises(InvalidArgument, match="is an alias"):
        client.create_alias("z", "x")
    client.delete_collection("c1")
    assert client.aliases() == [] and not client.collection_exists("x")
    with pytest.raises(NotFound):
        client.delete_alias("x")


def test_a_snapshot_taken_during_writes_restores_a_state_that_existed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = start_serve(data, port)
    states: list[dict[str, int]] = []  # the state after each batch, as sent
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            client.create_collection("tides", index="hnsw")
            state = {f"t{i}": 0 for i in range(40)}
            client.upsert("tides", [doc(d, 0) for d in state])
            states.append(dict(state))
            stop = threading.Event()

            def writer() -> None:
                n = 0
                while not stop.is_set():
                    batch = [f"t{(n * 7 + j) % 40}" for j in range(5)]
                    for d in batch:
                        state[d] += 1
                    states.append(dict(state))
                    client.upsert("tides", [doc(d, state[d]) for d in batch])
                    n += 1

            thread = threading.Thread(target=writer)
            thread.start()
            try:
                while len(states) < 5:
                    time.sleep(0.005)
                snapshot = client.create_snapshot("tides")
            finally:
                stop.set()
                thread.join()
            assert snapshot.bytes > 0 and [s.name for s in client.snapshots("tides")] == [snapshot.name]
            restored = client.restore_snapshot("tides", snapshot.name, target="tides-restored")
            assert restored.name == "tides-restored" and restored.documents == 40
            docs = client.get("tides-restored", list(state)).documents
            found = {d.id: d.metadata["v"] for d in docs}
            assert found in states, "the restored collection is not a state the collection was in"
            for d in docs:
                assert hashlib.sha256(d.text.encode()).hexdigest() == d.metadata["sum"]
            assert client.search("tides-restored", "tide table t7 high water", k=1, mode="lexical")[0].id == "t7"
            with pytest.raises(AlreadyExists, match="replace"):
                client.restore_snapshot("tides", snapshot.name)
            client.restore_snapshot("tides", snapshot.name, replace=True)  # back in time, in place
            assert {d.id: d.metadata["v"] for d in client.get("tides", list(state)).documents} == found
            client.delete_snapshot("tides", snapshot.name)
            assert client.snapshots("tides") == []
            with pytest.raises(NotFound, match="snapshot"):
                client.delete_snapshot("tides", snapshot.name)
        file = data / ".snapshots" / "tides" / snapshot.name
        assert not file.exists()
    finally:
        stop_process(proc)
    assert run_cli("check", str(data)).returncode == 0


def test_a_snapshot_file_loads_into_another_data_folder(tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    port = free_port()
    proc = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            client.create_collection("src")
            client.upsert("src", [doc(f"d{i}", 1) for i in range(10)])
        out = run_cli("snapshot", "create", "src", "--server", f"127.0.0.1:{port}").stdout
        name = out.split()[0]
        listing = run_cli("snapshot", "list", "src", "--server", f"127.0.0.1:{port}").stdout
        assert name in listing
    finally:
        stop_process(proc)
    file = data / ".snapshots" / "src" / name
    run_cli("snapshot", "load", str(file), "--collection", "copy", "--data-dir", str(other))
    assert run_cli("check", str(other)).stdout.startswith("ok: copy: 10 documents")
    refused = run_cli("snapshot", "load", str(file), "--collection", "copy", "--data-dir", str(other), check=False)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(b"not a tar")
    refused = run_cli("snapshot", "load", str(bad), "--collection", "x", "--data-dir", str(other), check=False)
    assert refused.returncode == 2 and "not a snapshot file" in refused.stderr
    port = free_port()
    proc = start_serve(other, port)
    try:
        with Client(f"127.0.0.1:{port}") as client:
            assert client.search("copy", "tide table d3", k=1, mode="lexical")[0].id == "d3"
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_a_milvus_collections_snapshot_restores_on_the_server_checks_clean_and_loads_into_a_data_folder(
        tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    store = str(data / "milvus.db")  # a milvus-lite file in the data folder: a store requests may name
    port = free_port()
    proc = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            client.create_collection("src", store=store)
            client.upsert("src", [doc(f"d{i}", 1) for i in range(10)])
            before = [(h.id, h.score) for h in client.search("src", "tide table d3 dawn", k=5)]
        name = run_cli("snapshot", "create", "src", "--server", f"127.0.0.1:{port}").stdout.split()[0]
        run_cli("snapshot", "restore", "src", name, "--as", "copy", "--server", f"127.0.0.1:{port}")
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            assert [(h.id, h.score) for h in client.search("copy", "tide table d3 dawn", k=5)] == before
            assert [d.metadata["v"] for d in client.get("copy", ["d3"]).documents] == [1]
    finally:
        stop_process(proc)
    checked = run_cli("check", str(data)).stdout
    assert "ok: copy: 10 documents, 10 chunks" in checked and "ok: src: 10 documents" in checked
    file = data / ".snapshots" / "src" / name
    run_cli("snapshot", "load", str(file), "--collection", "here", "--data-dir", str(other), "--store", "local")
    assert run_cli("check", str(other)).stdout.startswith("ok: here: 10 documents, 10 chunks, 10 vectors")
