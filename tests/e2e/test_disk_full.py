"""A full disk during a write: the write gets RESOURCE_EXHAUSTED saying so and stores nothing,
the collection stays readable, and writes work again once there is space. The server's file-size
limit (RLIMIT_FSIZE, changed from outside with prlimit) stands in for the full disk: the kernel
refuses the growth of any file past it, as a full file system refuses any growth."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from neardex.client import Client, ResourceExhausted, RetryPolicy
from tests.support.processes import free_port, run_cli, start_serve, stop_process


def text(i: int, version: int = 0) -> str:
    return " ".join(f"Report {i} version {version} sentence {j} about tides, estuaries and river mouths."
                    for j in range(40))


def test_a_full_disk_refuses_the_write_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = start_serve(data, port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120, retry=RetryPolicy(max_attempts=1)) as client:
            client.create_collection("docs")
            client.upsert("docs", [{"id": f"d{i}", "text": text(i)} for i in range(20)])
            before = client.get("docs", [f"d{i}" for i in range(20)])
            largest = max(p.stat().st_size for p in (data / "docs").iterdir() if p.is_file())
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (largest + 16 * 1024, resource.RLIM_INFINITY))
            with pytest.raises(ResourceExhausted, match="store: the disk refused the write"):
                client.upsert("docs", [{"id": f"n{i}", "text": text(100 + i)} for i in range(30)], batch_size=30)
            # Nothing of the refused batch, everything from before, and searches still answer.
            assert client.get("docs", ["n0", "n29"]).missing == ["n0", "n29"]
            assert client.get("docs", [f"d{i}" for i in range(20)]) == before
            assert client.info("docs").documents == 20
            assert client.search("docs", "report 7 tides", k=3).hits
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            assert client.upsert("docs", [{"id": f"n{i}", "text": text(100 + i)} for i in range(30)],
                                 batch_size=30).upserted == 30
            assert client.info("docs").documents == 50
        assert proc.poll() is None
    finally:
        stop_process(proc)
    result = run_cli("check", str(data))
    assert result.stdout.startswith("ok: docs: 50 documents")
