"""Where a request may send the server: a collection-scoped admin naming another host, a file
outside the data folder or any folder as a model is refused before anything named is touched,
and allowed where the server's settings allow it (--allow-store, --milvus, --model-dir)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from neardex.client import Client, PermissionDenied
from neardex.indexer import errors
from neardex.indexer.embedding.embedder import resolve_model
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.reach import Reach
from neardex.server.settings import Settings
from tests.support.processes import MilvusLite

OWN = {"model": "none", "dimension": 2}


def start(tmp_path: Path, **settings: object) -> tuple[object, int, str]:
    """A keyed server and the key of an admin limited to collections `a-*`."""
    keys = tmp_path / "keys.json"
    key = auth.create_key(keys, "team-a", "admin", "a-*")
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          api_keys_file=keys, **settings))
    return server, port, key


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that records whether anything connects to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def connected(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0.5)[0])


@pytest.fixture
def bundled_elsewhere(tmp_path: Path) -> Path:
    """A loadable model in a folder no setting names (the bundled model, linked there)."""
    link = tmp_path / "elsewhere" / "model"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(resolve_model(None)[1], target_is_directory=True)
    return link


def test_a_scoped_admin_cannot_point_the_server_at_a_host_a_file_or_a_model_folder(
        tmp_path: Path, listener: socket.socket, bundled_elsewhere: Path) -> None:
    server, port, key = start(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    try:
        with Client(f"127.0.0.1:{port}", api_key=key, timeout=30) as client:
            with pytest.raises(PermissionDenied, match=r"PERMISSION_DENIED: store: 'milvus://127\.0\.0\.1:"):
                client.create_collection("a-x", store=f"milvus://127.0.0.1:{listener.getsockname()[1]}", **OWN)
            assert not connected(listener)  # refused without a connection attempt
            for outside in (elsewhere / "new.db", tmp_path / "data" / ".." / "new.db"):
                with pytest.raises(PermissionDenied, match=r"PERMISSION_DENIED: store: "):
                    client.create_collection("a-y", store=str(outside), **OWN)
            assert sorted(p.name for p in elsewhere.iterdir()) == ["model"]
            assert not (tmp_path / "new.db").exists()
            with pytest.raises(PermissionDenied, match=r"PERMISSION_DENIED: model: "):
                client.create_collection("a-z", model=str(bundled_elsewhere))
            assert client.collections() == []
            # What stays open by default: the data folder, for the embedded store and milvus-lite files.
            client.create_collection("a-local", **OWN)
            client.create_collection("a-lite", store=str(tmp_path / "data" / "a.db"), **OWN)
            assert {c.name for c in client.collections()} == {"a-local", "a-lite"}
            # An existing collection is still found by a create with exist_ok, whatever it names.
            again = client.create_collection("a-local", store=str(elsewhere / "new.db"), exist_ok=True, **OWN)
            assert again.store == "local" and not (elsewhere / "new.db").exists()
    finally:
        server.stop(grace=1)  # type: ignore[attr-defined]


def test_what_the_settings_allow_a_request_may_name(
        tmp_path: Path, milvus_lite: MilvusLite, bundled_elsewhere: Path) -> None:
    elsewhere, milvus = tmp_path / "elsewhere", milvus_lite.uri
    server, port, key = start(tmp_path, milvus=[milvus], allow_store=[str(elsewhere)], model_dir=elsewhere)
    try:
        with Client(f"127.0.0.1:{port}", api_key=key, timeout=60) as client:
            assert client.create_collection("a-x", store=milvus, **OWN).store == milvus
            client.create_collection("a-y", store=str(elsewhere / "new.db"), **OWN)
            assert (elsewhere / "new.db").exists()
            client.create_collection("a-z", model="model")  # relative to --model-dir
            assert {c.name for c in client.collections()} == {"a-x", "a-y", "a-z"}
            with pytest.raises(PermissionDenied, match=r"PERMISSION_DENIED: model: "):
                client.create_collection("a-v", model="../elsewhere/../../model")
            with pytest.raises(PermissionDenied, match=r"PERMISSION_DENIED: store: "):
                client.create_collection("a-u", store=str(elsewhere / "deeper" / "new.db"), **OWN)
    finally:
        server.stop(grace=1)  # type: ignore[attr-defined]


def test_spellings_of_one_place_are_judged_alike(tmp_path: Path) -> None:
    data, models = tmp_path / "data", tmp_path / "models"
    reach = Reach(data, milvus=["milvus://Milvus:19530"], allow_store=["milvus://db.internal:19530",
                                                                      str(tmp_path / "lite" / "x.db")],
                  model_dir=models)
    assert reach.store("milvus://milvus:19530/") == "milvus://Milvus:19530"  # the operator's spelling
    assert reach.store("milvus://db.internal:19530") == "milvus://db.internal:19530"
    assert reach.store(str(tmp_path / "lite" / ".." / "lite" / "x.db")) == str(tmp_path / "lite" / "x.db")
    assert reach.store(str(data / "sub" / ".." / "y.db")) == str(data / "y.db")
    assert reach.store("") == "" and reach.store("local") == "local"
    assert reach.store("elsewhere") == "elsewhere"  # names no store: the catalog refuses it as invalid
    for refused in ("milvus://milvus:19531", "milvus://user@evil:19530", "milvus://milvus", "milvus://[::1",
                    str(data / "a-x" / "y.db"), str(tmp_path / "lite" / "y.db"), "y.db"):
        with pytest.raises(errors.PermissionDenied):
            reach.store(refused)
    assert reach.model("") == "" and reach.model("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert reach.model("none") == "none"
    assert reach.model("e5") == str(models / "e5") and reach.model(str(models / "a" / "b")) == str(models / "a" / "b")
    for refused in ("../e5", str(models), str(models) + "-other/e5", "/etc", str(models / ".." / "e5")):
        with pytest.raises(errors.PermissionDenied):
            reach.model(refused)
    with pytest.raises(errors.PermissionDenied, match="bundled one by name, or no other"):
        Reach(data).model(str(models / "e5"))

