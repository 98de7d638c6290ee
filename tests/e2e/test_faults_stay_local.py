"""One collection that cannot open breaks nothing else: ListCollections lists it with its state
and reason (to the keys that may see it) and everything else keeps working; it can be deleted;
milvus-lite collections reopen after a graceful restart and after kill -9; a snapshot that cannot
load leaves nothing behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from neardex.client import Client
from neardex.indexer.catalog import Catalog, snapshots
from neardex.indexer.documents import Document
from neardex.indexer.errors import FailedPrecondition
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.processes import MilvusLite, free_port, run_cli, start_serve, stop_process

OWN = {"model": "none", "dimension": 2}
DOCS = [Document("d1", "", vector=(1.0, 0.0)), Document("d2", "", vector=(0.6, 0.8))]


def test_a_collection_out_of_reach_is_listed_to_its_keys_only_and_can_be_deleted(
        tmp_path: Path, milvus_lite: MilvusLite) -> None:
    data = tmp_path / "data"
    with Catalog(data) as catalog:  # as `neardex index --store` makes them in a folder its user owns
        catalog.create("a-near", **OWN).upsert(DOCS)  # type: ignore[arg-type]
        catalog.create("b-far", store=milvus_lite.uri, **OWN)  # type: ignore[arg-type]
    milvus_lite.stop()
    keys = tmp_path / "keys.json"
    team_a = auth.create_key(keys, "team-a", "read", "a-*")
    team_b = auth.create_key(keys, "team-b", "admin", "b-*")
    everyone = auth.create_key(keys, "everyone", "read")
    server, port = create_server(Settings(data_dir=data, host="127.0.0.1", port=0, metrics_port=0,
                                          api_keys_file=keys))
    try:
        with Client(f"127.0.0.1:{port}", api_key=team_a, timeout=30) as a:
            listed = a.collections()
            assert [(c.name, c.state, c.documents) for c in listed] == [("a-near", "ready", 2)]
            assert milvus_lite.uri.split("//")[1] not in repr(listed)
            assert a.count("a-near") == 2
        with Client(f"127.0.0.1:{port}", api_key=everyone, timeout=30) as anyone:
            states = {c.name: (c.state, c.reason) for c in anyone.collections()}
            assert states["a-near"] == ("ready", "")
            assert states["b-far"][0] == "unavailable" and milvus_lite.uri in states["b-far"][1]
        with Client(f"127.0.0.1:{port}", api_key=team_b, timeout=30) as b:
            [far] = b.collections()
            assert (far.name, far.state) == ("b-far", "unavailable")
            b.delete_collection("b-far")
            assert b.collections() == []
        with Client(f"127.0.0.1:{port}", api_key=everyone, timeout=30) as anyone:
            assert [c.name for c in anyone.collections()] == ["a-near"]
    finally:
        server.stop(grace=1)  # type: ignore[attr-defined]
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == ["a-near"]


def test_a_milvus_lite_collection_reopens_after_a_graceful_restart_and_after_kill_9(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    proc = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.create_collection("lite", store=str(data / "lite.db"), **OWN)
            client.upsert("lite", [{"id": d.id, "vector": list(d.vector or ())} for d in DOCS])
        stop_process(proc)
        proc = start_serve(data, port)
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            assert client.count("lite") == 2
            assert [h.id for h in client.search("lite", [0.0, 1.0], k=2)] == ["d2", "d1"]
            client.upsert("lite", [{"id": "d3", "vector": [0.0, 1.0]}])
        proc.kill()
        proc.wait(timeout=30)
        proc = start_serve(data, port)
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            assert client.count("lite") == 3
            assert [(c.name, c.state) for c in client.collections()] == [("lite", "ready")]
            client.delete_collection("lite")
            assert client.collections() == []
    finally:
        stop_process(proc)


def damaged_copy(snapshot: Path, into: Path) -> Path:
    """The snapshot with its SQLite store overwritten by bytes that are no database."""
    with tarfile.open(snapshot) as source, tarfile.open(into, "w") as target:
        for member in source.getmembers():
            body = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == snapshots.DATABASE:
                body = b"not a database " * 64
            member.size = len(body)
            target.addfile(member, io.BytesIO(body))
    return into


def test_a_snapshot_that_cannot_load_leaves_nothing_behind(tmp_path: Path) -> None:
    with Catalog(tmp_path / "source") as catalog:
        collection = catalog.create("docs", **OWN)  # type: ignore[arg-type]
        collection.upsert(DOCS)
        damaged = damaged_copy(snapshots.create(collection, catalog.root).path, tmp_path / "damaged.snapshot")
    data = tmp_path / "data"
    with Catalog(data) as catalog:
        catalog.create("kept", **OWN).upsert(DOCS[:1])  # type: ignore[arg-type]
    result = run_cli("snapshot", "load", str(damaged), "--collection", "new", "--data-dir", str(data), check=False)
    assert sorted(p.name for p in data.iterdir()) == [".neardex.lock", "kept"]
    assert result.returncode != 0 and "damaged" in result.stderr, result.stderr
    with Catalog(data) as catalog:
        # In place of a collection, it leaves that collection as it was.
        with pytest.raises(FailedPrecondition, match="damaged"):
            catalog.restore(damaged, "kept", replace=True)
        assert catalog.names() == ["kept"] and catalog.get("kept").count() == 1
    assert sorted(p.name for p in data.iterdir()) == [".neardex.lock", "kept"]
