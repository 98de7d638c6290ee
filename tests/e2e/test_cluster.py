"""Stateless servers over one shared store: two `neardex serve` processes, each with a data
folder of its own, in front of one Milvus (a `milvus-lite server` on a real port). A write
acknowledged by either server is seen by the next read through the other (the store reads with
Milvus' Strong consistency), a client given both addresses spreads its calls over both, and a
collection dropped through one is gone through the other."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from neardex.client import Client, NotFound
from tests.support.processes import MilvusLite, free_port, start_serve, stop_process

pytest.importorskip("pymilvus")

DOCS = [
    {"id": "paris", "text": "Paris is the capital and largest city of France.", "metadata": {"country": "fr"}},
    {"id": "nile", "text": "The Nile flows north through Egypt into the Mediterranean Sea.", "metadata": {"country": "eg"}},
    {"id": "py", "text": "Python is a programming language with dynamic typing.", "metadata": {}},
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple[int, int]]]]:
    root = tmp_path_factory.mktemp("cluster")
    milvus = MilvusLite(root / "milvus")
    uri = milvus.uri
    servers: list[subprocess.Popen[bytes]] = []
    try:
        ports = [(free_port(), free_port()) for _ in range(2)]
        for i, (port, metrics) in enumerate(ports):
            servers.append(start_serve(root / f"server-{i}", port, metrics, "--milvus", uri))
        yield uri, ports
    finally:
        for proc in servers:
            stop_process(proc)
        milvus.stop()


def search_calls(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(m) for m in re.findall(r'neardex_rpc_requests_total\{[^}]*method="Search"[^}]*\} (\S+)', text))


def test_a_write_through_one_server_is_read_through_the_other(cluster: tuple[str, list[tuple[int, int]]]) -> None:
    uri, ports = cluster
    with Client(f"127.0.0.1:{ports[0][0]}") as first, Client(f"127.0.0.1:{ports[1][0]}") as second:
        info = first.create_collection("shared", store=uri)
        assert info.store == uri
        assert "shared" in [c.name for c in second.collections()]
        first.upsert("shared", DOCS)
        assert second.count("shared") == 3
        assert second.search("shared", "capital of France", k=1)[0].id == "paris"
        second.upsert("shared", [{"id": "rome", "text": "Rome is the capital of Italy.", "metadata": {"country": "it"}}])
        assert first.count("shared", filter={"country": "it"}) == 1
        assert [h.id for h in first.search("shared", "Italian capital city", k=1, mode="dense")] == ["rome"]
        assert second.delete("shared", ids=["py"]) == 1
        assert first.get("shared", ["py"]).missing == ["py"]
        answer = first.ask("shared", "Where does the Nile flow?", k=1)[0]
        assert answer.passage.id == "nile" and "Nile" in answer.sentence


def test_a_client_given_both_servers_uses_both(cluster: tuple[str, list[tuple[int, int]]]) -> None:
    uri, ports = cluster
    with Client([f"127.0.0.1:{port}" for port, _ in ports]) as client:
        client.create_collection("spread", store=uri, exist_ok=True)
        client.upsert("spread", DOCS)
        before = [search_calls(metrics) for _, metrics in ports]
        for _ in range(20):
            assert client.search("spread", "programming language", k=1)[0].id == "py"
        served = [search_calls(metrics) - b for (_, metrics), b in zip(ports, before)]
    assert sum(served) == 20 and min(served) >= 5, served


def test_a_collection_dropped_through_one_is_gone_through_the_other(cluster: tuple[str, list[tuple[int, int]]]) -> None:
    uri, ports = cluster
    with Client(f"127.0.0.1:{ports[0][0]}") as first, Client(f"127.0.0.1:{ports[1][0]}") as second:
        first.create_collection("brief", store=uri)
        first.upsert("brief", DOCS)
        assert second.count("brief") == 3
        first.delete_collection("brief")
        with pytest.raises(NotFound):
            second.count("brief")
        assert "brief" not in [c.name for c in second.collections()]
