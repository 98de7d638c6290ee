"""Turn corpora on disk (JSONL, CSV/TSV, BEIR folders, trees of text files) into Document streams.

Every reader is lazy: it holds at most one record in memory, so corpora larger than RAM index fine.
Arguments are checked when a reader is called; records are checked as they are read, and a bad one
raises ReadError naming its file and line, or is skipped when skip_errors is set. Files a folder
reader leaves out on purpose (other extensions) are reported as Ignored, never raised: they are
not errors, but the caller counts them so nobody wonders where a file went.

A record's `expires_at` (JSONL or CSV) is the document's expiry, not metadata: unix seconds, or
an RFC 3339 / ISO 8601 time (one without an offset is UTC). Whether it is still ahead is checked
when the document is written, not here.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString

from ..documents import Document
from ..errors import InvalidArgument

StrPath = str | os.PathLike[str]

FORMATS = ("auto", "jsonl", "csv", "beir", "dir")
DIR_EXTENSIONS = (".txt", ".md", ".markdown", ".html", ".htm")

# csv keeps the limit in a C long, 32 bits on Windows, where sys.maxsize would overflow.
_CSV_FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)
_SURROGATES = re.compile("[\ud800-\udfff]")
_MD_FENCE = re.compile(r" {0,3}(```|~~~)")
_MD_H1 = re.compile(r" {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_HTML_HIDDEN = ["script", "style", "noscript", "head", "template"]
# fmt: off
_HTML_BLOCKS = [
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td",
    "th", "tr", "ul",
]
# fmt: on


class ReadError(InvalidArgument):
    """A record of a corpus cannot become a Document; the message starts with "file:line: "."""

    def __init__(self, path: StrPath, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[ReadError], tuple[str, int | None, str]]:
        # The default reduce re-calls __init__ with the message alone, which breaks pickling and
        # with it raising from multiprocessing workers.
        return type(self), (self.path, self.line, self.reason)


class Ignored(ReadError):
    """A file a folder reader leaves out on purpose (its extension); reported, never raised."""


OnSkip = Callable[[ReadError], None]
# Share of undecodable or control characters past which a file is binary, not text.
BINARY_SHARE = 0.1
# How much of a file the binary test reads.
_SNIFF = 64 * 1024


@dataclass(frozen=True)  # frozen: one instance is shared as every reader's default argument
class FieldNames:
    """Which keys of a record hold id, text and title; every other key becomes metadata."""

    id: tuple[str, ...] = ("id", "_id")
    text: str = "text"
    title: str = "title"


_BEIR_FIELDS = FieldNames(id=("_id",))


def read_documents(
    path: StrPath,
    format: str = "auto",
    fields: FieldNames = FieldNames(),
    skip_errors: bool = False,
    on_skip: OnSkip | None = None,
) -> Iterator[Document]:
    """Read a corpus in the given format, or the one detect_format finds.

    fields applies to jsonl and csv; BEIR and folders have fixed layouts.
    """
    if format not in FORMATS:
        raise InvalidArgument(
            f"format: unknown format {format!r}; expected one of {', '.join(FORMATS)}"
        )
    path = Path(path)
    if not path.exists():
        raise InvalidArgument(f"path: {path} does not exist")
    if format == "auto":
        format = detect_format(path)
    if format == "jsonl":
        return read_jsonl(path, fields, skip_errors, on_skip)
    if format == "csv":
        return read_csv(path, fields, skip_errors, on_skip)
    if format == "beir":
        return read_beir(path, skip_errors, on_skip)
    return read_dir(path, skip_errors, on_skip)


def detect_format(path: StrPath) -> str:
    path = Path(path)
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "dir"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in DIR_EXTENSIONS:
        return "dir"  # one file of a kind a folder may hold: a folder of one
    raise InvalidArgument(
        f"path: cannot tell the format of {path}; supported: .jsonl, .ndjson, .csv, .tsv, "
        "a BEIR folder (with corpus.jsonl), a folder of .txt, .md, .markdown, .html, .htm files,"
        " or one such file"
    )


def count_documents(path: StrPath, format: str = "auto") -> int | None:
    """How many records the input holds, counted cheaply (lines, rows or files) for a progress
    total; None when that is not cheap to know. Malformed records are counted too."""
    path = Path(path)
    try:
        format = detect_format(path) if format == "auto" else format
        if format == "beir":
            path, format = path / "corpus.jsonl", "jsonl"
        if format == "jsonl":
            with path.open("rb") as file:
                return sum(1 for line in file if line.strip())
        if format == "csv":
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            csv.field_size_limit(_CSV_FIELD_SIZE_LIMIT)
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
                return max(sum(1 for _ in csv.reader(file, delimiter=delimiter)) - 1, 0)
        if format == "dir":
            return sum(1 for item in _dir_files(path) if not isinstance(item, Ignored))
    except (OSError, InvalidArgument, csv.Error):
        return None
    return None


def read_jsonl(
    path: StrPath,
    fields: FieldNames = FieldNames(),
    skip_errors: bool = False,
    on_skip: OnSkip | None = None,
) -> Iterator[Document]:
    """One JSON object per line; blank lines are ignored."""
    return _emit(_jsonl_items(_existing(path, directory=False), fields), skip_errors, on_skip)


def read_csv(
    path: StrPath,
    fields: FieldNames = FieldNames(),
    skip_errors: bool = False,
    on_skip: OnSkip | None = None,
    delimiter: str | None = None,
) -> Iterator[Document]:
    """A header row, then one record per row; delimiter defaults to tab for .tsv, else comma."""
    path = _existing(path, directory=False)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return _emit(_csv_items(path, fields, delimiter), skip_errors, on_skip)


def read_beir(
    folder: StrPath, skip_errors: bool = False, on_skip: OnSkip | None = None
) -> Iterator[Document]:
    """The corpus of a BEIR data set: folder/corpus.jsonl, ids under "_id"."""
    corpus = _existing(folder, directory=True) / "corpus.jsonl"
    return read_jsonl(corpus, _BEIR_FIELDS, skip_errors, on_skip)


def read_dir(
    root: StrPath, skip_errors: bool = False, on_skip: OnSkip | None = None
) -> Iterator[Document]:
    """Every .txt, .md, .markdown, .html and .htm file under root, one Document per file; root
    may also be one such file.

    Ids are paths relative to root with forward slashes (a lone file's id is its name), so they
    are the same on every OS and stable across re-indexing; hidden files and folders are left out,
    and symbolic links to folders are not followed (no loops). Binary files are errors, not text.
    """
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        raise InvalidArgument(f"path: {root} does not exist")
    return _emit(_dir_items(root), skip_errors, on_skip)


def _existing(path: StrPath, *, directory: bool) -> Path:
    path = Path(path)
    if not path.exists():
        raise InvalidArgument(f"path: {path} does not exist")
    if path.is_dir() != directory:
        raise InvalidArgument(f"path: {path} is not a {'directory' if directory else 'file'}")
    return path


def _emit(
    items: Iterable[Document | ReadError], skip_errors: bool, on_skip: OnSkip | None
) -> Iterator[Document]:
    for item in items:
        if isinstance(item, Document):
            yield item
        elif not skip_errors and not isinstance(item, Ignored):
            raise item
        elif on_skip is not None:
            on_skip(item)


def _jsonl_items(path: Path, fields: FieldNames) -> Iterator[Document | ReadError]:
    # Bytes, decoded line by line, so a stray invalid byte costs one record, not the whole file.
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield ReadError(path, number, "invalid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield ReadError(path, number, f"invalid JSON: {error.msg}")
                continue
            if not isinstance(record, dict):
                yield ReadError(path, number, f"expected a JSON object, got {_json_type(record)}")
                continue
            try:
                yield _document(record, fields)
            except (TypeError, ValueError) as error:
                yield ReadError(path, number, str(error))


def _csv_items(path: Path, fields: FieldNames, delimiter: str) -> Iterator[Document | ReadError]:
    csv.field_size_limit(_CSV_FIELD_SIZE_LIMIT)  # the default 128 KiB is shorter than many texts
    # surrogateescape keeps undecodable bytes, so the row holding them is reported, not the file.
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        header = reader.fieldnames
        if header is None:
            return
        # Header faults are fatal even with skip_errors: every row would be skipped.
        if not any(name in header for name in fields.id) or fields.text not in header:
            ids = " or ".join(fields.id)
            reason = f"header needs an id column ({ids}) and a {fields.text!r} column"
            raise ReadError(path, reader.line_num, reason)
        if len(set(header)) != len(header):
            raise ReadError(path, reader.line_num, "header repeats a column name")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                # DictReader only copies line_num after a successful row; its inner reader knows.
                yield ReadError(path, reader.reader.line_num, f"invalid CSV: {error}")
                continue
            try:
                yield _csv_document(row, len(header), fields)
            except (TypeError, ValueError) as error:
                yield ReadError(path, reader.line_num, str(error))


def _csv_document(row: dict[Any, Any], width: int, fields: FieldNames) -> Document:
    # DictReader files surplus cells under the key None and fills missing ones with None.
    got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
    if got != width:
        raise ValueError(f"expected {width} fields, got {got}")
    if any(_SURROGATES.search(value) for value in row.values()):
        raise ValueError("invalid UTF-8")
    return _document(row, fields)


def _document(record: Mapping[str, Any], fields: FieldNames) -> Document:
    id_key = next((key for key in fields.id if record.get(key) is not None), None)
    if id_key is None:
        raise ValueError(f"missing id ({' or '.join(fields.id)})")
    raw_id = record[id_key]
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float)):
        raise TypeError(f"id must be a string or a number, got {_json_type(raw_id)}")
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise ValueError("empty id")
    text = record.get(fields.text)
    if text is None:
        raise ValueError(f"missing text ({fields.text})")
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {_json_type(text)}")
    if not text.strip():
        raise ValueError("empty text")
    title = record.get(fields.title)
    if title is None:
        title = ""
    elif not isinstance(title, str):
        raise TypeError(f"title must be a string, got {_json_type(title)}")
    # A nested "metadata" object (BEIR has one) is flattened, so filters see one level of keys.
    nested = record.get("metadata")
    metadata: dict[str, Any] = dict(nested) if isinstance(nested, dict) else {}
    own = {id_key, fields.text, fields.title, EXPIRES_AT}
    metadata.update(
        (key, value)
        for key, value in record.items()
        if key not in own and not (key == "metadata" and isinstance(value, dict))
    )
    return Document(id=doc_id, text=text, title=title, metadata=metadata,
                    expires_at=parse_expiry(record.get(EXPIRES_AT)))


# The record field that holds a document's expiry.
EXPIRES_AT = "expires_at"


def parse_expiry(value: Any) -> float | None:
    """A record's expires_at as unix seconds: a number, or an ISO 8601 / RFC 3339 time (UTC when
    it has no offset); None or "" for none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("expires_at must be unix seconds or an RFC 3339 time, got boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"expires_at: {value!r} is neither unix seconds nor an RFC 3339 time") from None
            seconds = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise TypeError(f"expires_at must be unix seconds or an RFC 3339 time, got {_json_type(value)}")
    if not math.isfinite(seconds):
        raise ValueError("expires_at: not a finite time")
    return seconds


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _dir_files(root: Path) -> Iterator[tuple[Path, str, str] | Ignored]:
    """(path, id, extension) of every file a folder reader reads, Ignored for the others."""
    if not root.is_dir():
        extension = root.suffix.lower()
        if extension in DIR_EXTENSIONS:
            yield root, root.name, extension
        else:
            yield Ignored(root, None, f"not a {', '.join(DIR_EXTENSIONS)} file")
        return
    for folder, subfolders, files in os.walk(root):
        # Sorting in place steers os.walk, so the order is the same on every file system.
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            extension = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                continue
            path = Path(folder, name)
            if extension not in DIR_EXTENSIONS:
                yield Ignored(path, None, f"extension {extension or '(none)'} is not read")
                continue
            yield path, path.relative_to(root).as_posix(), extension


def _dir_items(root: Path) -> Iterator[Document | ReadError]:
    for item in _dir_files(root):
        if isinstance(item, Ignored):
            yield item
            continue
        path, relative, extension = item
        try:
            yield _file_document(path, relative, extension)
        except OSError as error:
            yield ReadError(path, None, f"cannot read: {error.strerror or error}")
        except ValueError as error:
            yield ReadError(path, None, str(error))


def decode_text(raw: bytes) -> str:
    """The text of a file: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8 (a
    few bad bytes become U+FFFD). Raises ValueError for binary content: NUL bytes, or more than
    BINARY_SHARE undecodable or control characters."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace")
    if b"\x00" in raw[:_SNIFF]:
        raise ValueError("binary content (NUL bytes), not text")
    text = raw.decode("utf-8-sig", errors="replace")
    sample = text[:_SNIFF]
    bad = sum(1 for c in sample if c == "\ufffd" or (unicodedata.category(c) == "Cc" and c not in "\t\n\r\f\v"))
    if sample and bad > BINARY_SHARE * len(sample):
        raise ValueError(f"binary content ({bad / len(sample):.0%} undecodable or control characters), not text")
    return text


def _file_document(path: Path, relative: str, extension: str) -> Document:
    stat = path.stat()
    content = decode_text(path.read_bytes())
    if extension in (".html", ".htm"):
        title, text = _html_title_and_text(content)
    elif extension in (".md", ".markdown"):
        title, text = _markdown_title(content), content
    else:
        title, text = "", content
    if not text.strip():
        raise ValueError("empty text")
    metadata = {
        "path": relative,
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "extension": extension,
    }
    return Document(id=relative, text=text, title=title, metadata=metadata)


def _markdown_title(text: str) -> str:
    in_code = False  # a "# comment" in a fenced shell snippet is not a heading
    for line in text.splitlines():
        if _MD_FENCE.match(line):
            in_code = not in_code
        elif not in_code and (heading := _MD_H1.match(line)):
            return heading.group(1).strip()
    return ""


class _Break(NavigableString):
    """Marks where a block element starts or ends, i.e. where the rendered page breaks the line."""


def _html_title_and_text(markup: str) -> tuple[str, str]:
    soup = BeautifulSoup(markup, "lxml")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup.find_all(_HTML_HIDDEN):
        tag.decompose()
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before(_Break(""))
        tag.insert_after(_Break(""))
    # Source line breaks are just spaces to a browser; only block boundaries become newlines.
    # Walking descendants, not recursing, copes with pages nested past the recursion limit.
    lines: list[str] = []
    pending: list[str] = []
    for node in soup.descendants:
        if isinstance(node, _Break):
            lines.append(" ".join("".join(pending).split()))
            pending.clear()
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            pending.append(node)  # comments, doctypes and CDATA are PreformattedStrings
    lines.append(" ".join("".join(pending).split()))
    return title, "\n".join(line for line in lines if line)
