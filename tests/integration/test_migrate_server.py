"""MigrateCollection on a real server over gRPC, into a Milvus instance on a real port (milvus-lite
in its own process) and back, while a client keeps writing the collection by its name: every
acknowledged write is in the collection the name stands for afterwards, nothing else is, and the
old copy is kept. Bad requests are refused with their status codes, naming the field; a snapshot
restores into Milvus over RPC (RestoreSnapshot's store), within what the server may use."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from neardex.client import AlreadyExists, Client, Document, InvalidArgument, NotFound, PermissionDenied
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.processes import MilvusLite

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.slow

BASE = 1500


@pytest.fixture
def served(tmp_path: Path, milvus_lite: MilvusLite) -> Iterator[tuple[Client, str]]:
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          allow_store=[milvus_lite.uri]))
    with Client(f"127.0.0.1:{port}", timeout=120) as client:
        yield client, milvus_lite.uri
    server.stop(grace=1)


def vector(doc_id: str, version: int) -> list[float]:
    rng = random.Random(f"{doc_id}/{version}")
    return [rng.uniform(-1, 1) for _ in range(4)]


class Writer(threading.Thread):
    """Rewrites, adds and deletes documents of `name` one call at a time until stopped, keeping
    what each acknowledged call left: the expected final state of the documents it touches."""

    def __init__(self, client: Client, name: str) -> None:
        super().__init__(daemon=True)
        self.client, self.name = client, name
        self.expected: dict[str, int | None] = {}  # id -> version, None: deleted
        self.stop = threading.Event()
        self.calls = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        try:
            while not self.stop.is_set():
                doc_id = f"w{rng.randrange(60):03d}" if rng.random() < 0.8 else f"d{rng.randrange(BASE):05d}"
                if rng.random() < 0.2:
                    self.client.delete(self.name, ids=[doc_id])
                    self.expected[doc_id] = None
                else:
                    version = self.calls + 1
                    self.client.upsert(self.name, [Document(id=doc_id, text=f"{doc_id} version {version}",
                                                            metadata={"v": version}, vector=vector(doc_id, version))])
                    self.expected[doc_id] = version
                self.calls += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def scrolled(client: Client, name: str) -> dict[str, tuple[str, object]]:
    out: dict[str, tuple[str, object]] = {}
    cursor = ""
    while True:
        page = client.scroll(name, limit=500, cursor=cursor)
        out.update({d.id: (d.text, d.metadata.get("v")) for d in page.documents})
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


def test_writes_during_a_migration_over_rpc_are_caught_up_both_ways(served: tuple[Client, str]) -> None:
    client, uri = served
    client.create_collection("docs", model="none", dimension=4)
    client.upsert("docs", [Document(id=f"d{i:05d}", text=f"d{i:05d} version 0", metadata={"v": 0},
                                    vector=vector(f"d{i:05d}", 0)) for i in range(BASE)])
    client.create_alias("live", "docs")
    before: dict[str, tuple[str, object]] = {}
    for to, target, kept in ((uri, "docs-milvus", "docs-before-migrate"), ("local", "docs-home", "docs-milvus-old")):
        source = client.info("docs").name
        writer = Writer(client, "live")
        writer.start()
        try:
            done = client.migrate_collection(source, to, target=target if to == "local" else None,
                                             keep_as=kept if to == "local" else None, timeout=600)
        finally:
            writer.stop.set()
            writer.join()
        assert writer.error is None, writer.error
        assert writer.calls > 0
        assert (done.collection.name, done.kept_as) == (target, kept)
        assert done.collection.store == ("local" if to == "local" else uri)
        assert client.info("docs").name == target and client.info("live").name == target
        now = scrolled(client, "docs")
        expected = {f"d{i:05d}": (f"d{i:05d} version 0", 0) for i in range(BASE)} if to == uri else dict(before)
        for doc_id, version in writer.expected.items():
            if version is None:
                expected.pop(doc_id, None)
            else:
                expected[doc_id] = (f"{doc_id} version {version}", version)
        assert now == expected
        before = now
        # The old copy is kept, under its new name, with what it held at the switch (the writes
        # acknowledged after it went to the new one only).
        old = scrolled(client, kept)
        assert len(old) > BASE - 100 and set(old) <= set(now) | set(writer.expected)
        assert {a.name for a in client.aliases() if a.collection == target} >= {"docs", "live"}


def test_bad_migrations_and_restores_are_refused_naming_the_field(served: tuple[Client, str], tmp_path: Path) -> None:
    client, uri = served
    client.create_collection("docs", model="none", dimension=4)
    client.create_collection("docs-milvus", model="none", dimension=4)
    client.upsert("docs", [Document(id="a", text="a", vector=vector("a", 0))])
    with pytest.raises(NotFound, match="collection: 'nope'"):
        client.migrate_collection("nope", uri)
    with pytest.raises(AlreadyExists, match="target: collection 'docs-milvus'"):
        client.migrate_collection("docs", uri)
    with pytest.raises(PermissionDenied, match="PERMISSION_DENIED: to: 'milvus://10.1.2.3:19530' is not a store"):
        client.migrate_collection("docs", "milvus://10.1.2.3:19530")
    with pytest.raises(InvalidArgument, match="INVALID_ARGUMENT: to: name the store"):
        client.migrate_collection("docs")
    snapshot = client.create_snapshot("docs")
    with pytest.raises(PermissionDenied, match="PERMISSION_DENIED: store: '/elsewhere/m.db' is not a store"):
        client.restore_snapshot("docs", snapshot.name, target="again", store="/elsewhere/m.db")
    restored = client.restore_snapshot("docs", snapshot.name, target="again", store=uri)
    assert restored.store == uri and restored.documents == 1
