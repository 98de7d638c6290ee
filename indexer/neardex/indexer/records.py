"""The records a collection is described by and answers with: its manifest, write results, search
candidates and hits. Every store and the retrieval engine above them speak these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import FailedPrecondition, InvalidArgument
from .vector_index import IndexSpec

FORMAT_VERSION = 1
MODES = ("dense", "lexical", "hybrid")
# The model of a collection that stores the vectors its documents bring, and embeds nothing.
NO_MODEL = "none"
# Where a collection's documents, chunks and vectors live: this data folder (SQLite + FAISS), or
# a Milvus instance ("milvus://host:port", or a file path for milvus-lite in process).
LOCAL_STORE = "local"


@dataclass(frozen=True)
class Manifest:
    name: str
    model: str
    model_path: str
    dimension: int
    chunk_tokens: int
    overlap_tokens: int
    index: IndexSpec
    encoder: str
    default_mode: str = "dense"
    normalize: bool = True
    format_version: int = FORMAT_VERSION
    # Metadata keys answered from the meta_values table instead of a scan.
    indexed_keys: tuple[str, ...] = ()
    store: str = LOCAL_STORE

    def to_json(self) -> str:
        data = {**self.__dict__, "index": self.index.to_dict(), "indexed_keys": list(self.indexed_keys)}
        return json.dumps(data, indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Manifest:
        try:
            data = json.loads(text)
            version = data.get("format_version")
        except (ValueError, AttributeError) as exc:
            raise FailedPrecondition(f"manifest: not a neardex manifest ({exc})") from None
        if version != FORMAT_VERSION:
            raise FailedPrecondition(
                f"manifest: format version {version} is not supported"
                f" (this neardex reads version {FORMAT_VERSION})"
            )
        try:
            data["index"] = IndexSpec.parse(data["index"]["kind"], data["index"]["params"])
            data["indexed_keys"] = tuple(data.get("indexed_keys", ()))
            data.setdefault("store", LOCAL_STORE)
            return Manifest(**data)
        except (KeyError, TypeError, ValueError, InvalidArgument) as exc:
            raise FailedPrecondition(f"manifest: damaged ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class UpsertResult:
    upserted: int = 0
    unchanged: int = 0
    chunks: int = 0
    ids: list[str] = field(default_factory=list)
    tokens: int = 0


@dataclass(frozen=True)
class Candidate:
    """A document as one retriever (or the fusion) ranks it, with its best chunk."""

    doc_id: str
    chunk_id: int
    score: float


@dataclass(frozen=True)
class RetrieverScore:
    retriever: str
    score: float
    rank: int


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str
    title: str
    metadata: dict[str, Any]
    chunk_index: int
    chunk_start: int
    chunk_end: int
    retrievers: list[RetrieverScore] = field(default_factory=list)


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    mode: str


@dataclass(frozen=True)
class Stats:
    documents: int
    chunks: int
    vectors: int
    bytes: int
