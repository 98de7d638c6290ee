from __future__ import annotations

import csv
import json
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.ingest import readers
from neardex.indexer.ingest.readers import (
    FieldNames,
    Ignored,
    ReadError,
    count_documents,
    detect_format,
    read_beir,
    read_csv,
    read_dir,
    read_documents,
    read_jsonl,
)
from tests.support.paths import MSMARCO

BEIR_SAMPLE = MSMARCO


def write_jsonl(path: Path, *records: Any) -> Path:
    """Writes dicts as JSON and strings verbatim, so tests can plant malformed lines."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def read_error(documents: Iterator[Document]) -> ReadError:
    with pytest.raises(ReadError) as caught:
        list(documents)
    return caught.value


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_reads_id_text_title_and_metadata(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "corpus.jsonl",
        {"id": 7, "text": "seven", "title": "T", "lang": "en", "metadata": {"year": 2020}},
        {"_id": "b", "text": "bee", "metadata": "not a dict"},
    )
    assert list(read_jsonl(path)) == [
        Document("7", "seven", "T", {"year": 2020, "lang": "en"}),
        Document("b", "bee", "", {"metadata": "not a dict"}),
    ]


def test_jsonl_ignores_blank_lines_and_a_bom(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.jsonl", '\ufeff{"id": "1", "text": "a"}\n\n   \n{"id": 2, "text": "b"}'
    )
    assert [d.id for d in read_jsonl(path)] == ["1", "2"]


def test_jsonl_custom_field_names(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl", {"doc": "d1", "body": "words", "heading": "H", "text": "extra"}
    )
    fields = FieldNames(id=("doc",), text="body", title="heading")
    (doc,) = read_jsonl(path, fields)
    assert (doc.id, doc.text, doc.title, doc.metadata) == ("d1", "words", "H", {"text": "extra"})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"text": "no id"}', "missing id (id or _id)"),
        ('{"id": null, "text": "null id"}', "missing id (id or _id)"),
        ('{"id": [1], "text": "list id"}', "id must be a string or a number, got array"),
        ('{"id": " ", "text": "blank id"}', "empty id"),
        ('{"id": "1"}', "missing text (text)"),
        ('{"id": "1", "text": 5}', "text must be a string, got number"),
        ('{"id": "1", "text": " \\n "}', "empty text"),
        ('{"id": "1", "text": "t", "title": {}}', "title must be a string, got object"),
    ],
)
def test_jsonl_bad_record_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = write_jsonl(tmp_path / "corpus.jsonl", {"id": "ok", "text": "fine"}, line)
    error = read_error(read_jsonl(path))
    assert str(error) == f"{path}:2: {reason}"
    assert (error.path, error.line, error.reason) == (str(path), 2, reason)
    assert isinstance(error, InvalidArgument)


def test_jsonl_message_matches_documented_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "corpus.jsonl", *[{"id": i, "text": "t"} for i in range(16)], "oops")
    assert str(read_error(read_jsonl("corpus.jsonl"))) == (
        "corpus.jsonl:17: invalid JSON: Expecting value"
    )


def test_jsonl_invalid_utf8_costs_only_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", b'{"id": "1", "text": "\xff"}\n{"id": "2", "text": "ok"}\n')
    assert read_error(read_jsonl(path)).reason == "invalid UTF-8"
    assert [d.id for d in read_jsonl(path, skip_errors=True)] == ["2"]


def test_jsonl_skip_errors_skips_and_reports(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        {"id": 1, "text": "one"},
        "garbage",
        {"id": 2, "text": ""},
        {"id": 3, "text": "three"},
    )
    skipped: list[ReadError] = []
    docs = list(read_jsonl(path, skip_errors=True, on_skip=skipped.append))
    assert [d.id for d in docs] == ["1", "3"]
    assert [(e.line, e.reason) for e in skipped] == [
        (2, "invalid JSON: Expecting value"),
        (3, "empty text"),
    ]
    assert [d.id for d in read_jsonl(path, skip_errors=True)] == ["1", "3"]


def test_jsonl_is_lazy(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", {"id": 1, "text": "one"}, "garbage")
    documents = read_jsonl(path)
    assert next(documents).id == "1"  # the bad second line is not read yet
    with pytest.raises(ReadError):
        next(documents)


def test_jsonl_missing_file_fails_at_call(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="nope.jsonl does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidArgument, match="is not a file"):
        read_jsonl(tmp_path)


def test_read_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ReadError("c.jsonl", 3, "empty text")))
    assert (str(error), error.path, error.line, error.reason) == (
        "c.jsonl:3: empty text",
        "c.jsonl",
        3,
        "empty text",
    )
    assert str(ReadError("a/b.html", None, "empty text")) == "a/b.html: empty text"


# --- CSV / TSV -------------------------------------------------------------------------------


def test_csv_reads_rows_and_extra_columns_as_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", 'id,title,text,lang\n1,T,"a, quoted\ntext",en\n2,,b,\n')
    assert list(read_csv(path)) == [
        Document("1", "a, quoted\ntext", "T", {"lang": "en"}),
        Document("2", "b", "", {"lang": ""}),
    ]


def test_csv_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "\ufeffid,text\nx,hello\n")
    assert [d.id for d in read_csv(path)] == ["x"]


def test_tsv_uses_tabs(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", "_id\ttext\tsource\n1\thello, world\tweb\n")
    assert list(read_csv(path)) == [Document("1", "hello, world", "", {"source": "web"})]


def test_csv_explicit_delimiter_and_custom_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "c.txt", "key;body\nk1;words\n")
    (doc,) = read_csv(path, FieldNames(id=("key",), text="body"), delimiter=";")
    assert (doc.id, doc.text) == ("k1", "words")


def test_csv_reads_fields_past_the_default_size_limit(tmp_path: Path) -> None:
    long_text = "word " * 100_000  # 500 kB, above csv's default 128 KiB field limit
    path = write(tmp_path / "c.csv", f"id,text\n1,{long_text}\n")
    (doc,) = read_csv(path)
    assert doc.text == long_text


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("3,c,surplus", "expected 2 fields, got 3"),
        ("3", "expected 2 fields, got 1"),
        (",no id", "empty id"),
        ("3,", "empty text"),
    ],
)
def test_csv_bad_row_names_file_and_physical_line(tmp_path: Path, row: str, reason: str) -> None:
    # The quoted newline in record 2 makes physical lines differ from record numbers.
    path = write(tmp_path / "c.csv", f'id,text\n1,a\n2,"b\nb"\n{row}\n')
    error = read_error(read_csv(path))
    assert str(error) == f"{path}:5: {reason}"
    assert error.line == 5


def test_csv_invalid_utf8_costs_only_its_row(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", b"id,text\n1,caf\xe9\n2,ok\n")
    assert str(read_error(read_csv(path))) == f"{path}:2: invalid UTF-8"
    assert [d.id for d in read_csv(path, skip_errors=True)] == ["2"]


def test_csv_parser_error_is_a_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limit is process-wide state of the csv module; put back what the next test expects.
    original_limit = csv.field_size_limit()
    monkeypatch.setattr(readers, "_CSV_FIELD_SIZE_LIMIT", 5)
    path = write(tmp_path / "c.csv", "id,text\n1,far too long\n2,short\n")
    try:
        assert read_error(read_csv(path)).line == 2
        skipped: list[ReadError] = []
        assert [d.id for d in read_csv(path, skip_errors=True, on_skip=skipped.append)] == ["2"]
        assert skipped[0].reason.startswith("invalid CSV: field larger than field limit")
    finally:
        csv.field_size_limit(original_limit)


def test_csv_skip_errors_skips_and_reports(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "id,text\n1,a\n2\n3,\n4,d\n")
    skipped: list[ReadError] = []
    docs = list(read_csv(path, skip_errors=True, on_skip=skipped.append))
    assert [d.id for d in docs] == ["1", "4"]
    assert [(e.line, e.reason) for e in skipped] == [
        (3, "expected 2 fields, got 1"),
        (4, "empty text"),
    ]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("name,text", "header needs an id column (id or _id) and a 'text' column"),
        ("id,body", "header needs an id column (id or _id) and a 'text' column"),
        ("id,text,id", "header repeats a column name"),
    ],
)
def test_csv_bad_header_is_fatal_even_when_skipping(
    tmp_path: Path, header: str, reason: str
) -> None:
    path = write(tmp_path / "c.csv", f"{header}\n1,a,b\n")
    error = read_error(read_csv(path, skip_errors=True))
    assert str(error) == f"{path}:1: {reason}"


def test_csv_empty_file_has_no_documents(tmp_path: Path) -> None:
    assert list(read_csv(write(tmp_path / "c.csv", ""))) == []


# --- BEIR ------------------------------------------------------------------------------------


def test_beir_reads_corpus_jsonl(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "corpus.jsonl",
        {"_id": "d1", "title": "T", "text": "body", "metadata": {"url": "u"}},
    )
    assert list(read_beir(tmp_path)) == [Document("d1", "body", "T", {"url": "u"})]


def test_beir_requires_underscore_id(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", {"id": "d1", "text": "body"})
    assert read_error(read_beir(tmp_path)).reason == "missing id (_id)"


def test_beir_without_corpus_fails_at_call(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="corpus.jsonl does not exist"):
        read_beir(tmp_path)


def test_real_beir_sample_reads_5000_documents() -> None:
    if not BEIR_SAMPLE.is_dir():
        pytest.skip(f"{BEIR_SAMPLE} is not present")
    docs = list(read_beir(BEIR_SAMPLE))
    assert len(docs) == 5000
    assert all(d.id and d.text.strip() for d in docs)
    assert len({d.id for d in docs}) == 5000


# --- folders of text files -------------------------------------------------------------------


def test_dir_ids_are_relative_forward_slash_paths_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a.md", "ay")
    write(tmp_path / "sub" / "deeper" / "c.htm", "<p>sea</p>")
    write(tmp_path / "sub" / "d.markdown", "dee")
    write(tmp_path / "sub" / "E.HTML", "<p>ee</p>")
    write(tmp_path / "image.png", b"\x89PNG")
    write(tmp_path / "notes.json", "{}")
    write(tmp_path / ".hidden.txt", "secret")
    write(tmp_path / ".git" / "config.txt", "secret")
    write(tmp_path / "sub" / ".cache" / "x.md", "secret")
    ids = [d.id for d in read_dir(tmp_path)]
    assert ids == ["a.md", "b.txt", "sub/E.HTML", "sub/d.markdown", "sub/deeper/c.htm"]
    assert ids == [d.id for d in read_dir(tmp_path)]


def test_dir_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "docs" / "page.html", "<p>hi</p>")
    os.utime(path, (1_700_000_000.5, 1_700_000_000.5))
    (doc,) = read_dir(tmp_path)
    assert doc.metadata == {
        "path": "docs/page.html",
        "size": len("<p>hi</p>"),
        "mtime": 1_700_000_000.5,
        "extension": ".html",
    }
    assert isinstance(doc.metadata["mtime"], float)


def test_dir_html_title_visible_text_and_paragraphs(tmp_path: Path) -> None:
    write(
        tmp_path / "page.html",
        """<!doctype html><html><head><title>  The
        Title </title><style>p { color: red }</style><script>var x = 1;</script></head>
        <body><!-- a comment --><h1>Heading</h1>
        <p>First   paragraph
           spans <b>lines</b>.</p>
        <script>alert("hidden")</script><noscript>enable JS</noscript>
        <ul><li>one</li><li>two</li></ul>line<br>break
        </body></html>""",
    )
    (doc,) = read_dir(tmp_path)
    assert doc.title == "The Title"
    assert doc.text == "Heading\nFirst paragraph spans lines.\none\ntwo\nline\nbreak"


def test_dir_markdown_title_is_first_h1(tmp_path: Path) -> None:
    content = "```sh\n# not a title\n```\nIntro\n## Sub\n# Real Title #\n# Later\n"
    write(tmp_path / "a.md", content)
    write(tmp_path / "b.md", "## only a subheading\n#hashtag\ntext\n")
    a, b = read_dir(tmp_path)
    assert (a.title, a.text) == ("Real Title", content)
    assert b.title == ""


def test_dir_txt_has_whole_file_and_no_title(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "# looks like a heading\nbody\n")
    (doc,) = read_dir(tmp_path)
    assert (doc.title, doc.text) == ("", "# looks like a heading\nbody\n")


def test_dir_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", b"caf\xe9 au lait")
    (doc,) = read_dir(tmp_path)
    assert doc.text == "caf\ufffd au lait"


def test_dir_empty_text_is_an_error_or_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "fine")
    write(tmp_path / "empty.txt", "  \n")
    write(tmp_path / "sub" / "scripts.html", "<script>only()</script><p> </p>")
    error = read_error(read_dir(tmp_path))
    assert str(error) == f"{tmp_path / 'empty.txt'}: empty text"
    assert error.line is None
    skipped: list[ReadError] = []
    docs = list(read_dir(tmp_path, skip_errors=True, on_skip=skipped.append))
    assert [d.id for d in docs] == ["a.txt"]
    assert [Path(e.path).name for e in skipped] == ["empty.txt", "scripts.html"]


def test_dir_reads_one_file_as_a_folder_of_one(tmp_path: Path) -> None:
    (doc,) = read_documents(write(tmp_path / "notes.md", "# Notes\nThe Nile flows north.\n"))
    assert (doc.id, doc.title, doc.metadata["path"]) == ("notes.md", "Notes", "notes.md")
    ignored: list[ReadError] = []
    assert list(read_dir(write(tmp_path / "photo.png", b"\x89PNG"), on_skip=ignored.append)) == []
    assert [type(e) for e in ignored] == [Ignored]


def test_dir_skips_binary_files_with_a_reason(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "fine")
    write(tmp_path / "image.txt", bytes(range(256)) * 20)
    write(tmp_path / "noise.md", bytes(random.Random(1).randrange(128, 256) for _ in range(4000)))
    assert "image.txt: binary content (NUL bytes), not text" in str(read_error(read_dir(tmp_path)))
    skipped: list[ReadError] = []
    assert [d.id for d in read_dir(tmp_path, skip_errors=True, on_skip=skipped.append)] == ["a.txt"]
    assert [(Path(e.path).name, e.reason.split(" (")[0]) for e in skipped] == [
        ("image.txt", "binary content"), ("noise.md", "binary content")]


def test_dir_reads_utf16_with_a_byte_order_mark(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "Grüße aus Köln".encode("utf-16"))
    (doc,) = read_dir(tmp_path)
    assert doc.text == "Grüße aus Köln"


def test_dir_reports_ignored_extensions_without_failing(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "fine")
    write(tmp_path / "b.pdf", b"%PDF-1.4")
    write(tmp_path / "sub" / "c", "no extension")
    reported: list[ReadError] = []
    assert [d.id for d in read_dir(tmp_path, on_skip=reported.append)] == ["a.txt"]
    assert [(type(e), Path(e.path).name) for e in reported] == [(Ignored, "b.pdf"), (Ignored, "c")]
    assert count_documents(tmp_path) == 1


def test_dir_symlink_loops_and_dangling_links_are_per_file_errors(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "fine")
    (tmp_path / "loop").symlink_to(tmp_path)  # a folder link: not followed, so no loop
    (tmp_path / "x.txt").symlink_to(tmp_path / "y.txt")
    (tmp_path / "y.txt").symlink_to(tmp_path / "x.txt")
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing.md")
    skipped: list[ReadError] = []
    assert [d.id for d in read_dir(tmp_path, skip_errors=True, on_skip=skipped.append)] == ["a.txt"]
    assert sorted(Path(e.path).name for e in skipped) == ["gone.md", "x.txt", "y.txt"]
    assert all(e.reason.startswith("cannot read") for e in skipped)


@pytest.mark.parametrize(("name", "content", "count"), [
    ("c.jsonl", '{"id": 1, "text": "a"}\n\n{"id": 2, "text": "b"}\n', 2),
    ("c.csv", 'id,text\n1,"a, quoted\nline"\n2,b\n', 2),
])
def test_count_documents(tmp_path: Path, name: str, content: str, count: int) -> None:
    assert count_documents(write(tmp_path / name, content)) == count


# --- detect_format and read_documents --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("c.jsonl", "jsonl"),
        ("c.ndjson", "jsonl"),
        ("C.JSONL", "jsonl"),
        ("c.csv", "csv"),
        ("c.tsv", "csv"),
    ],
)
def test_detect_format_by_suffix(tmp_path: Path, name: str, expected: str) -> None:
    assert detect_format(tmp_path / name) == expected


def test_detect_format_of_folders(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "dir"
    write_jsonl(tmp_path / "corpus.jsonl", {"_id": "1", "text": "t"})
    assert detect_format(tmp_path) == "beir"


def test_detect_format_rejects_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "corpus.parquet"
    with pytest.raises(InvalidArgument, match=r"corpus\.parquet.*supported: \.jsonl"):
        detect_format(path)


def test_read_documents_dispatches_on_detected_format(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "c.jsonl", {"id": "j", "text": "t"})
    csv_file = write(tmp_path / "c.csv", "id,text\nc,t\n")
    tsv_file = write(tmp_path / "c.tsv", "id\ttext\nt,1\tt\n")
    beir = tmp_path / "beir"
    beir.mkdir()
    write_jsonl(beir / "corpus.jsonl", {"_id": "b", "text": "t"})
    folder = tmp_path / "folder"
    write(folder / "f.txt", "t")
    assert [d.id for d in read_documents(jsonl)] == ["j"]
    assert [d.id for d in read_documents(csv_file)] == ["c"]
    assert [d.id for d in read_documents(tsv_file)] == ["t,1"]
    assert [d.id for d in read_documents(beir)] == ["b"]
    assert [d.id for d in read_documents(folder)] == ["f.txt"]


def test_read_documents_explicit_format_and_options(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", '{"key": "k", "body": "b"}\nbad\n')
    skipped: list[ReadError] = []
    docs = read_documents(
        path,
        format="jsonl",
        fields=FieldNames(id=("key",), text="body"),
        skip_errors=True,
        on_skip=skipped.append,
    )
    assert [d.id for d in docs] == ["k"]
    assert [e.line for e in skipped] == [2]
    folder = tmp_path / "beir_as_dir"
    write(folder / "readme.md", "# Read me")
    write(folder / "corpus.jsonl", "not read as JSON when the format says dir")
    assert [d.id for d in read_documents(folder, format="dir")] == ["readme.md"]


def test_read_documents_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        read_documents(tmp_path, format="xml")
    assert str(caught.value) == (
        "format: unknown format 'xml'; expected one of auto, jsonl, csv, beir, dir"
    )


def test_read_documents_missing_path_fails_at_call(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(InvalidArgument, match="missing.jsonl"):
        read_documents(missing)
