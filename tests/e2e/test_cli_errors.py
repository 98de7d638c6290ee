"""Bad input at the command line, tried as a new user would: each gives one clear error line, no
traceback, a non-zero exit where it failed, and leaves nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.processes import free_port, run_cli, start_serve, stop_process


def fails_cleanly(*args: str, message: str) -> str:
    result = run_cli(*args, check=False)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(("flt", "message"), [
    ("year>=abc", "--filter: 'year>=abc': >= needs a number after it, got 'abc'"),
    ("year<", "--filter: 'year<': < needs a number after it, got ''"),
    ("year>nan", "needs a number"),
    (">=3", "has no key"),
    ("year", "is not KEY=VALUE"),
])
def test_bad_filters(flt: str, message: str) -> None:
    # Refused before any connection is made: no server needed.
    fails_cleanly("search", "docs", "moon", "--filter", flt, "--server", "127.0.0.1:1", message=message)


def test_serve_on_a_taken_port_says_which(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = fails_cleanly("serve", "--data-dir", str(tmp_path / "a"), "--port", str(port), "--metrics-port", "0",
                            message=f"port: cannot listen on 127.0.0.1:{port}")
        assert err.count("\n") == 1
        err = fails_cleanly("serve", "--data-dir", str(tmp_path / "b"), "--port", str(free_port()),
                            "--metrics-port", str(port), message=f"metrics_port: cannot listen on 127.0.0.1:{port}")
        assert "--metrics-port" in err


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some text.")
    fails_cleanly("index", str(tmp_path / "a.txt"), "--collection", "docs", "--data-dir", str(tmp_path / "data"),
                  "--batch-size", "0", message="--batch-size: must be at least 1, got 0")
    assert not (tmp_path / "data").exists()


def test_no_documents_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "photo.png").write_bytes(b"\x89PNG")
    data = tmp_path / "data"
    fails_cleanly("index", str(empty), "--collection", "docs", "--data-dir", str(data),
                  message="no documents to index (0 skipped, 1 files ignored (.png 1)); nothing was written")
    assert not data.exists()
    (tmp_path / "none.jsonl").write_text("\n\n")
    fails_cleanly("index", str(tmp_path / "none.jsonl"), "--collection", "docs", "--data-dir", str(data),
                  message="no documents to index")
    assert not data.exists()


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "text": \n', "docs.jsonl:1: invalid JSON"),
    ('{"id": "a", "body": "no text field"}\n', "docs.jsonl:1: missing text"),
])
def test_a_run_failing_before_its_first_write_leaves_nothing(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "docs.jsonl").write_text(content)
    data = tmp_path / "data"
    fails_cleanly("index", str(tmp_path / "docs.jsonl"), "--collection", "docs", "--data-dir", str(data),
                  message=message)
    assert not data.exists()


def test_a_bad_name_leaves_nothing_and_an_existing_folder_keeps_its_collections(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some text about rivers.")
    data = tmp_path / "data"
    fails_cleanly("index", str(tmp_path / "a.txt"), "--collection", "bad/name", "--data-dir", str(data),
                  message="--collection: collection name 'bad/name'")
    assert not data.exists()
    run_cli("index", str(tmp_path / "a.txt"), "--collection", "docs", "--data-dir", str(data), "--quiet")
    fails_cleanly("index", str(tmp_path / "a.txt"), "--collection", "other", "--data-dir", str(data),
                  "--chunk-tokens", "100000", message="chunk_tokens")
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == ["docs"]


def test_binary_files_are_skipped_with_a_reason_and_ignored_files_counted(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The Nile flows north into the Mediterranean.")
    (corpus / "program.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "slides.pdf").write_bytes(b"%PDF-1.4")
    data = tmp_path / "data"
    err = fails_cleanly("index", str(corpus), "--collection", "docs", "--data-dir", str(data),
                        message="program.txt: binary content (NUL bytes), not text")
    result = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet", "--skip-errors")
    assert "indexed 1 documents" in result.stdout and "1 skipped, 1 files ignored (.pdf 1)" in result.stdout
    assert "skipped:" in result.stderr and "binary content" in result.stderr
    del err


def test_one_text_file_is_a_corpus_of_one(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("# Notes\nThe Nile flows north.\n")
    result = run_cli("index", str(tmp_path / "notes.md"), "--collection", "docs", "--data-dir",
                     str(tmp_path / "data"), "--quiet")
    assert "indexed 1 documents" in result.stdout


def test_version_and_help_give_defaults_and_variables() -> None:
    assert run_cli("--version").stdout.startswith("neardex ")
    serve = run_cli("serve", "--help").stdout
    for option, variable in (("--port", "NEARDEX_PORT"), ("--metrics-port", "NEARDEX_METRICS_PORT"),
                             ("--data-dir", "NEARDEX_DATA_DIR"), ("--api-keys", "NEARDEX_API_KEYS_FILE"),
                             ("--max-concurrent-rpcs", "NEARDEX_MAX_CONCURRENT_RPCS")):
        assert option in serve and variable in serve
    assert "(default: 50052;" in " ".join(serve.split())
    index = " ".join(run_cli("index", "--help").stdout.split())
    assert "(default: 256)" in index and "(default: flat)" in index and "NEARDEX_DATA_DIR" in index


def test_progress_shows_a_total_and_the_search_still_works(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(f'{{"id": "d{i}", "text": "Passage {i} about rivers."}}\n' for i in range(30)))
    result = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(tmp_path / "data"),
                     "--batch-size", "10")
    assert "/30 " in result.stderr and "100%" in result.stderr


def test_index_through_a_server_leaves_no_empty_collection(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path / "data", port)
    try:
        (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": \n')
        fails_cleanly("index", str(tmp_path / "docs.jsonl"), "--collection", "docs", "--server", f"127.0.0.1:{port}",
                      message="docs.jsonl:1: invalid JSON")
        from neardex.client import Client

        with Client(f"127.0.0.1:{port}") as client:
            assert client.collections() == []
    finally:
        stop_process(proc)
