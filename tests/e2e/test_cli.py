"""The neardex command as a user runs it: index, re-index, errors, the folder lock, --server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.paths import SAMPLES
from tests.support.processes import free_port, run_cli, start_serve, stop_process


def test_index_a_folder_then_reindex_skips_unchanged_and_deletes_missing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus)
    data = tmp_path / "data"
    out = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet").stdout
    count = len([p for p in corpus.rglob("*") if p.suffix in (".md", ".txt", ".html")])
    assert f"indexed {count} documents" in out and f"{count} written" in out
    assert "chunks" in out and "tokens" in out and "skipped" in out

    out = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet").stdout
    assert "0 written" in out and f"{count} unchanged" in out

    (corpus / "history" / "apollo-11.md").write_text("# Apollo 11\nChanged: the crew returned on 24 July 1969.\n")
    (corpus / "cooking" / "pasta.txt").unlink()
    out = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet",
                  "--delete-missing").stdout
    assert "1 written" in out and "1 deleted" in out


def test_malformed_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n{"id": "c", "text": "also fine"}\n')
    data = tmp_path / "data"
    bad = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet", check=False)
    assert bad.returncode != 0 and "docs.jsonl:2" in bad.stderr
    ok = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet", "--skip-errors")
    assert "indexed 2 documents" in ok.stdout and "1 skipped" in ok.stdout and "docs.jsonl:2" in ok.stderr


def test_csv_with_custom_fields(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.csv"
    corpus.write_text("doc,body,lang\n1,The Eiffel Tower is in Paris.,en\n2,Der Rhein fliesst durch Basel.,de\n")
    out = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(tmp_path / "data"), "--quiet",
                  "--id-field", "doc", "--text-field", "body").stdout
    assert "indexed 2 documents" in out


def test_serving_folder_refuses_a_second_writer_and_index_via_server_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = start_serve(data, port)
    try:
        refused = run_cli("index", str(SAMPLES), "--collection", "docs", "--data-dir", str(data), "--quiet", check=False)
        assert refused.returncode != 0 and "--server" in refused.stderr
        second = run_cli("serve", "--data-dir", str(data), "--port", str(free_port()), "--metrics-port", "0",
                         check=False, timeout=120)
        assert second.returncode != 0 and "in use" in second.stderr

        out = run_cli("index", str(SAMPLES), "--collection", "docs", "--server", f"127.0.0.1:{port}", "--quiet").stdout
        assert "indexed 40 documents" in out and "40 written" in out
        found = run_cli("search", "docs", "when did Apollo 11 land on the moon", "--k", "3",
                        "--server", f"127.0.0.1:{port}", "--json").stdout
        hits = json.loads(found)["hits"]
        assert hits[0]["id"] == "history/apollo-11.md"
        assert hits[0]["metadata"]["extension"] == ".md"
        filtered = run_cli("search", "docs", "moon landing", "--filter", "extension=.html",
                           "--server", f"127.0.0.1:{port}", "--json").stdout
        assert all(h["id"].endswith(".html") for h in json.loads(filtered)["hits"])
        grouped = json.loads(run_cli("search", "docs", "moon landing", "--k", "2", "--group-by", "metadata.extension",
                                     "--group-size", "2", "--chunks", "2", "--server", f"127.0.0.1:{port}",
                                     "--json").stdout)
        values = [g["value"] for g in grouped["groups"]]
        assert len(values) == 2 == len(set(values)) and all(1 <= len(g["hits"]) <= 2 for g in grouped["groups"])
        assert all(h["metadata"]["extension"] == h["group"] and 1 <= len(h["chunks"]) <= 2 for h in grouped["hits"])
        shown = run_cli("search", "docs", "moon landing", "--k", "2", "--group-by", "metadata.extension",
                        "--server", f"127.0.0.1:{port}").stdout
        assert shown.splitlines()[0] == json.dumps(values[0]).join("[]")
        refused = run_cli("search", "docs", "moon", "--group-size", "2", "--server", f"127.0.0.1:{port}", check=False)
        assert refused.returncode != 0 and "group_size: needs group_by" in refused.stderr
        text = run_cli("search", "docs", "how do vaccines work", "--server", f"127.0.0.1:{port}").stdout
        assert "vaccines-immune-system.md" in text.splitlines()[0]
        missing = run_cli("search", "nope", "x", "--server", f"127.0.0.1:{port}", check=False)
        assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr
    finally:
        stop_process(proc)


@pytest.mark.parametrize("fmt", ["jsonl", "beir"])
def test_index_jsonl_and_beir(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "beir"
    folder.mkdir()
    lines = [json.dumps({"_id": f"d{i}", "title": "", "text": f"Passage {i} about topic {i}."}) for i in range(5)]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    path = folder if fmt == "beir" else folder / "corpus.jsonl"
    out = run_cli("index", str(path), "--collection", "docs", "--data-dir", str(tmp_path / "data"), "--quiet",
                  "--format", fmt).stdout
    assert "indexed 5 documents" in out


def test_index_kind_and_parameters_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("index", str(SAMPLES), "--collection", "docs", "--data-dir", str(data), "--quiet",
            "--index", "hnsw:m=8,ef_search=48")
    manifest = json.loads((data / "docs" / "manifest.json").read_text())
    assert manifest["index"] == {"kind": "hnsw", "params": {"m": 8, "ef_construction": 64, "ef_search": 48}}
    bad = run_cli("index", str(SAMPLES), "--collection", "other", "--data-dir", str(data), "--quiet",
                  "--index", "hnsw:size=8", check=False)
    assert bad.returncode == 2 and "unknown parameter(s) ['size'] for hnsw" in bad.stderr
    assert not (data / "other").exists()
