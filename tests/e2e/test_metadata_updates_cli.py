"""Metadata without re-embedding as a user meets it: `neardex index` run again over a corpus whose
metadata alone changed reports it apart from what it embedded, and `neardex update-metadata`
against a running server, whose acknowledged updates survive a kill -9."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.support.processes import free_port, run_cli, start_serve, stop_process

DOCS = [
    {"id": "a", "text": "The cat sat on the warm mat by the fire.", "metadata": {"lang": "en", "year": 2001}},
    {"id": "b", "text": "Paris is the capital and largest city of France.", "metadata": {"lang": "fr", "year": 2020}},
    {"id": "c", "text": "The Nile flows north through Egypt.", "metadata": {"lang": "en", "year": 1999}},
]


def write(path: Path, docs: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def test_reindex_with_changed_metadata_then_update_through_the_server_and_kill_9(tmp_path: Path) -> None:
    corpus, data = tmp_path / "docs.jsonl", tmp_path / "data"
    write(corpus, DOCS)
    first = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet").stdout
    assert "3 written (embedded: 3, metadata updated: 0), 0 unchanged" in first
    write(corpus, [DOCS[0], {**DOCS[1], "metadata": {"lang": "fr", "year": 2021}}, DOCS[2]])
    again = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet").stdout
    assert "1 written (embedded: 0, metadata updated: 1), 2 unchanged" in again and ", 0 chunks," in again

    port = free_port()
    server = f"127.0.0.1:{port}"
    proc = start_serve(data, port)
    try:
        out = run_cli("update-metadata", "docs", "--ids", "a,zz", "--set", "tag=new", "--set", "score=0.5",
                      "--unset", "year", "--server", server).stdout
        assert out.strip() == "updated 1 documents; missing: zz"
        out = run_cli("update-metadata", "docs", "--filter", '{"lang": "en"}', "--set", "seen=true",
                      "--server", server, "--json").stdout
        assert json.loads(out) == {"updated": 2, "missing": []}
        bad = run_cli("update-metadata", "docs", "--ids", "a", "--set", "k=1", "--unset", "k", "--server", server,
                      check=False)
        assert bad.returncode != 0 and "unset[0]" in bad.stderr
        neither = run_cli("update-metadata", "docs", "--set", "k=1", "--server", server, check=False)
        assert neither.returncode != 0 and "--ids, --filter" in neither.stderr
        # Acknowledged means durable: the server is killed without a chance to close anything.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc = start_serve(data, port)
        got = json.loads(run_cli("get", "docs", "a", "c", "--server", server).stdout)
        assert [d["metadata"] for d in got["documents"]] == [
            {"lang": "en", "tag": "new", "score": 0.5, "seen": True},
            {"lang": "en", "year": 1999, "seen": True}]
        count = run_cli("count", "docs", "--filter", "seen=true", "--server", server).stdout
        assert count.strip() == "2"
    finally:
        stop_process(proc)
    check = run_cli("check", str(data), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
