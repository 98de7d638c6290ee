"""The records a collection is described by and answers with: its manifest, write results, search
candidates and hits. Every store and the retrieval engine above them speak these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import FailedPrecondition, InvalidArgument

FORMAT_VERSION = 1
MODES = ("dense", "lexical", "hybrid")
# The model of a collection that stores the vectors its documents bring, and embeds nothing.
NO_MODEL = "none"
# Where a collection's documents, chunks and vectors live: this data folder (SQLite + FAISS), or
# a Milvus instance ("milvus://host:port", or a file path for milvus-lite in process).
LOCAL_STORE = "local"


# -- index kinds: what a manifest asks of a store's vector index ----------------------------

KINDS = ("flat", "hnsw", "ivfpq", "auto")

DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "flat": {},
    # ef_construction 64, not FAISS's usual 200: a million vectors build in minutes, not an hour,
    # on two cores, and ef_search makes up the recall (bench/index_types.py).
    "hnsw": {"m": 32, "ef_construction": 64, "ef_search": 128},
    # 48 sub-quantizers x 8 bits = 48 bytes of code per vector (plus 8 for its id); the
    # candidates (refine x k) are re-ranked exactly with the stored vectors. At 1M vectors refine 4
    # reached recall@10 0.70, 16 reached 0.955 (bench/index_types.py).
    "ivfpq": {"nlist": 0, "m": 48, "nbits": 8, "nprobe": 32, "refine": 16},
    # auto: flat while small, then HNSW while its graph and vectors fit this many MiB, else IVF-PQ.
    "auto": {"memory_mb": 4096},
}

# Below this many vectors exact search is fast enough that approximation only loses recall.
AUTO_FLAT_LIMIT = 50_000

@dataclass(frozen=True)
class IndexSpec:
    kind: str = "flat"
    params: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def parse(kind: str | None, params: dict[str, int] | None = None) -> IndexSpec:
        kind = (kind or "flat").lower()
        if kind not in KINDS:
            raise InvalidArgument(f"index.kind: unknown index kind {kind!r}; expected one of {KINDS}")
        given = dict(params or {})
        unknown = set(given) - set(DEFAULT_PARAMS[kind])
        if unknown:
            raise InvalidArgument(
                f"index.params: unknown parameter(s) {sorted(unknown)} for {kind};"
                f" expected {sorted(DEFAULT_PARAMS[kind])}"
            )
        if any(v < 0 for v in given.values()):
            raise InvalidArgument("index.params: parameters must not be negative")
        return IndexSpec(kind, {**DEFAULT_PARAMS[kind], **given})

    def resolve(self, vectors: int, dimension: int) -> IndexSpec:
        """The concrete kind 'auto' stands for at this size: exact search while it is fast, HNSW
        while it fits the memory budget, IVF-PQ (about 62 bytes a vector) beyond."""
        if self.kind != "auto":
            return self
        if vectors < AUTO_FLAT_LIMIT:
            return IndexSpec.parse("flat")
        hnsw_bytes = vectors * (dimension * 4 + DEFAULT_PARAMS["hnsw"]["m"] * 2 * 4 + 16)
        return IndexSpec.parse("hnsw" if hnsw_bytes <= self.params["memory_mb"] << 20 else "ivfpq")

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "params": dict(self.params)}


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
    # The lexical analyzer's language (query/languages.py); collections made before it was chosen
    # indexed English. Under "auto", `languages` counts its documents by the ISO code of the
    # language each was found in (recorded when a language is new or its count has doubled).
    language: str = "english"
    languages: dict[str, int] = field(default_factory=dict)
    # The rest of the model's contract (embedding/sources.py): which weights (a hub snapshot's
    # commit, a folder's fingerprint, "bundled") and the text put before each query and each
    # document text. Manifests written before them read as empty: no prompts, revision unknown.
    model_revision: str = ""
    query_prompt: str = ""
    document_prompt: str = ""
    # The default rerank stage of its searches (retrieval/rerank.py): a cross-encoder's folder or
    # Hugging Face id, and the candidates it reads (0: the default depth). "": none.
    rerank_model: str = ""
    rerank_depth: int = 0
    # Documents written without an expiry expire this many seconds after their write (0: never);
    # manifests written before it read as 0.
    ttl_seconds: int = 0

    def to_json(self) -> str:
        data = {**self.__dict__, "index": self.index.to_dict(), "indexed_keys": list(self.indexed_keys),
                "languages": dict(self.languages)}
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
            found = data.get("languages") or {}
            data["languages"] = {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}
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
    # Documents whose text was stored unchanged and whose metadata alone was rewritten.
    metadata_updated: int = 0


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
class MatchedChunk:
    """One of a hit's best matching chunks: its text, its place in the document (text[start:end])
    and its score on the hit's scale."""

    text: str
    index: int
    start: int
    end: int
    score: float


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
    # Its best matching chunks, best first, when a search asks for chunks_per_document.
    chunks: list[MatchedChunk] = field(default_factory=list)
    # The value of the group_by key it is grouped under (None: the search was not grouped).
    group: Any = None


@dataclass(frozen=True)
class Group:
    """The hits of one value of a search's group_by key, best first."""

    value: Any
    hits: list[Hit]


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    mode: str
    # A grouped search's groups, best group first (its hits are `hits`, group after group).
    groups: list[Group] | None = None


@dataclass(frozen=True)
class Stats:
    documents: int
    chunks: int
    vectors: int
    bytes: int
