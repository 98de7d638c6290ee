"""Fuzzing the readers with fixed seeds: random, truncated, mis-encoded and malformed files. A
reader either yields whole documents or reports the file (and line) with its reason; nothing else
escapes. (Every RPC fuzzed against a real server, and `neardex index` over a folder of junk:
tests/e2e/test_fuzz_rpcs.py.)"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.ingest.readers import ReadError, read_documents

READER_SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))
EXTENSIONS = [".txt", ".md", ".html", ".jsonl", ".csv", ".tsv"]


def read_all(path: Path) -> list[Document] | ReadError | InvalidArgument:
    """Every document of a file with skip_errors; each skipped record must name the file."""
    skipped: list[ReadError] = []
    try:
        docs = list(read_documents(path, skip_errors=True, on_skip=skipped.append))
    except (ReadError, InvalidArgument) as fatal:  # a header fault or an unknown format: said once
        assert str(path.name) in str(fatal) or "format" in str(fatal), fatal
        return fatal
    for err in skipped:
        assert err.path == str(path) and err.reason
    for doc in docs:
        assert isinstance(doc, Document) and doc.id.strip() and doc.text.strip()
    return docs


@seed(1)
@READER_SETTINGS
@given(content=st.binary(max_size=4000), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, content: bytes, extension: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"corpus{extension}"
    path.write_bytes(content)
    read_all(path)


def _valid(extension: str, rng: random.Random) -> bytes:
    texts = [f"Document {i} about {rng.choice(['rivers', 'moons', 'bread'])}." for i in range(5)]
    if extension == ".jsonl":
        return "".join(json.dumps({"id": f"d{i}", "text": t, "year": 2000 + i}) + "\n" for i, t in enumerate(texts)).encode()
    if extension in (".csv", ".tsv"):
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if extension == ".tsv" else ",")
        writer.writerow(["id", "text", "year"])
        writer.writerows([f"d{i}", t, 2000 + i] for i, t in enumerate(texts))
        return out.getvalue().encode()
    if extension == ".html":
        return ("<html><head><title>T</title></head><body>" + "".join(f"<p>{t}</p>" for t in texts)
                + "</body></html>").encode()
    return "\n".join(texts).encode()


@seed(2)
@READER_SETTINGS
@given(extension=st.sampled_from(EXTENSIONS), cut=st.floats(0, 1), encoding=st.sampled_from(
    ["utf-8", "latin-1", "utf-16-le", "utf-16", "cp1252"]), junk=st.binary(max_size=20), rng_seed=st.integers())
def test_truncated_and_mis_encoded_files(tmp_path_factory: pytest.TempPathFactory, extension: str, cut: float,
                                         encoding: str, junk: bytes, rng_seed: int) -> None:
    valid = _valid(extension, random.Random(rng_seed)).decode().replace("about", "über")
    data = valid.encode(encoding)
    data = data[: int(len(data) * cut)] + junk
    path = tmp_path_factory.mktemp("cut") / f"corpus{extension}"
    path.write_bytes(data)
    read_all(path)


def test_awkward_files_each_give_a_reason(tmp_path: Path) -> None:
    (tmp_path / "huge.jsonl").write_text(json.dumps({"id": "h", "text": "word " * 1_000_000}) + "\n")
    assert [d.id for d in read_all(tmp_path / "huge.jsonl")] == ["h"]  # type: ignore[union-attr]
    (tmp_path / "ragged.csv").write_text("id,text\n1,fine\n2,too,many\n3\n4,also fine\n")
    skipped: list[ReadError] = []
    docs = list(read_documents(tmp_path / "ragged.csv", skip_errors=True, on_skip=skipped.append))
    assert [d.id for d in docs] == ["1", "4"]
    assert [(e.line, e.reason) for e in skipped] == [(3, "expected 2 fields, got 3"), (4, "expected 2 fields, got 1")]
    (tmp_path / "open.html").write_text("<html><body><div><p>Never closed <b>bold " + "<div>" * 5000)
    [doc] = read_all(tmp_path / "open.html")  # type: ignore[misc]
    assert "Never closed bold" in doc.text
