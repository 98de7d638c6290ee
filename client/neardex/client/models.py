"""Immutable values the clients accept and return.

They mirror the messages of ``neardex.v1`` with Python-side conventions: search modes are the
strings ``"dense"``, ``"lexical"`` and ``"hybrid"`` (``""`` means the collection's default), and
metadata is a plain JSON-like ``dict``. Metadata travels as ``google.protobuf.Struct``, whose only
number type is a double; whole numbers come back as ``int`` (``2020`` stays ``2020``; a float that
is whole, ``2.0``, also comes back as ``2``, as in JSON).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Alias",
    "Answer",
    "AskResult",
    "ChunkSpan",
    "CollectionInfo",
    "Document",
    "FacetResult",
    "FacetValue",
    "GetResult",
    "Group",
    "Hit",
    "MatchedChunk",
    "Migration",
    "RetrieverScore",
    "ScrollPage",
    "SearchResult",
    "Snapshot",
    "Term",
    "Token",
    "Tokenization",
    "UpdateMetadataResult",
    "UpsertResult",
]

_T = TypeVar("_T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _SequenceOf(Sequence[_T]):
    """Lets a result be used directly as the list it wraps (``hits[0].id``, ``len(hits)``)."""

    __slots__ = ()

    def _items(self) -> list[_T]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[_T]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        return self._items()[index]


class Document(_Frozen):
    """A document to store, or as stored. ``vector`` is sent only to a collection without a model
    (its own vector); Get and Scroll return ``vector`` (the normalized mean of the chunks'
    vectors, as SearchSimilar takes it) and ``chunk_vectors`` when asked with ``vectors=True``."""

    id: str = Field(min_length=1)
    text: str = ""
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] | None = None
    chunk_vectors: list[list[float]] = Field(default_factory=list)
    # When the document stops existing (a datetime; naive ones are UTC; must be in the future
    # when written). None: never, or the collection's ttl_seconds after the write; returned as
    # stored, in UTC.
    expires_at: datetime | None = None


class RetrieverScore(_Frozen):
    """How one retriever ("dense" or "lexical") ranked a hit before fusion, or how the
    cross-encoder ("rerank": its probability, 0 to 1, and the rank among the reranked) ranked it."""

    retriever: str
    score: float
    rank: int


class MatchedChunk(_Frozen):
    """One of a hit's best matching chunks: ``document text[start:end] == text``; its score is on
    the hit's scale."""

    text: str = ""
    chunk_index: int = 0
    start: int = 0
    end: int = 0
    score: float = 0.0


class Hit(_Frozen):
    """A matching document, represented by its best chunk (offsets index the document's text);
    with ``chunks_per_document``, its best matching chunks best first; in a grouped search, the
    value of its group."""

    id: str
    score: float
    text: str = ""
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunk_index: int = 0
    chunk_start: int = 0
    chunk_end: int = 0
    retrievers: list[RetrieverScore] = Field(default_factory=list)
    chunks: list[MatchedChunk] = Field(default_factory=list)
    group: Any = None


class Group(_Frozen):
    """One value of a grouped search's key and its hits, best first."""

    value: Any
    hits: list[Hit] = Field(default_factory=list)


# BaseModel.__iter__ yields (field, value) pairs; these results deliberately iterate their items.
class SearchResult(_SequenceOf[Hit], _Frozen):  # type: ignore[misc]
    hits: list[Hit] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    mode: str = ""
    # A grouped search's groups, best first (``hits`` holds their hits, group after group).
    groups: list[Group] = Field(default_factory=list)

    def _items(self) -> list[Hit]:
        return self.hits


class Answer(_Frozen):
    """A passage likely to answer a question; ``passage.text[sentence_start:sentence_end]`` is
    the answering sentence."""

    passage: Hit
    sentence: str
    sentence_start: int
    sentence_end: int
    confidence: float


class AskResult(_SequenceOf[Answer], _Frozen):  # type: ignore[misc]
    answers: list[Answer] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)

    def _items(self) -> list[Answer]:
        return self.answers


class Rerank(_Frozen):
    """A rerank stage: a cross-encoder (a folder or Hugging Face id) reading the best ``depth``
    candidates (0: the server's default, 50)."""

    model: str
    depth: int = 0


class CollectionInfo(_Frozen):
    name: str
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    dimension: int = 0
    model: str = ""
    index_kind: str = ""
    bytes: int = 0
    chunk_tokens: int = 0
    overlap_tokens: int = 0
    default_mode: str = ""
    encoder: str = ""
    index_params: dict[str, int] = Field(default_factory=dict)
    indexed_keys: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    store: str = "local"  # "local" (the server's data folder) or the Milvus instance holding it
    # "ready", or "unavailable": the server cannot open it now (`reason` says why); it can
    # still be deleted.
    state: str = "ready"
    reason: str = ""
    # The lexical analyzer's language, the one its index answers with now (they differ while a
    # rebuild is under way), and under "auto" documents by the ISO code of their language (counted up
    # to a factor of two).
    language: str = ""
    lexical_language: str = ""
    languages: dict[str, int] = Field(default_factory=dict)
    # With the model, the collection's contract: which weights (a Hugging Face snapshot's commit,
    # a folder's fingerprint, "bundled"; empty from servers that do not record it) and the text
    # put before each query and each document text.
    model_revision: str = ""
    query_prompt: str = ""
    document_prompt: str = ""
    # The default rerank stage of its searches and questions; None: none.
    rerank: Rerank | None = None
    # Documents written without expires_at expire this many seconds after their write (0: never).
    ttl_seconds: int = 0


class UpsertResult(_Frozen):
    """Acknowledgement of written documents; results of several batches add up with ``+``."""

    upserted: int = 0
    unchanged: int = 0
    chunks: int = 0
    ids: list[str] = Field(default_factory=list)
    tokens: int = 0
    # Documents whose text was stored unchanged and whose metadata alone was rewritten (nothing
    # embedded); counted apart from ``upserted`` and ``unchanged``.
    metadata_updated: int = 0

    def __add__(self, other: UpsertResult) -> UpsertResult:
        if not isinstance(other, UpsertResult):
            return NotImplemented
        return UpsertResult(
            upserted=self.upserted + other.upserted,
            unchanged=self.unchanged + other.unchanged,
            chunks=self.chunks + other.chunks,
            ids=[*self.ids, *other.ids],
            tokens=self.tokens + other.tokens,
            metadata_updated=self.metadata_updated + other.metadata_updated,
        )


class UpdateMetadataResult(_Frozen):
    """What an ``update_metadata`` changed: documents rewritten, and the ids asked for that the
    collection does not hold."""

    updated: int = 0
    missing: list[str] = Field(default_factory=list)


class GetResult(_Frozen):
    documents: list[Document] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


class ScrollPage(_SequenceOf[Document], _Frozen):  # type: ignore[misc]
    """One page of documents in id order; pass ``next_cursor`` to get the next (None: the last)."""

    documents: list[Document] = Field(default_factory=list)
    next_cursor: str | None = None

    def _items(self) -> list[Document]:
        return self.documents


class FacetValue(_Frozen):
    """One value of a metadata key (a string, a number or a boolean) and how many of the matching
    documents hold it."""

    value: str | int | float | bool
    count: int


class FacetResult(_SequenceOf[FacetValue], _Frozen):  # type: ignore[misc]
    """The most frequent values of a metadata key, highest count first (equal counts in the order
    false, true, numbers, strings); ``documents`` is how many documents matched the filter, and
    ``exact`` is False when a store counted part of them (the Milvus store reads at most 100,000)."""

    values: list[FacetValue] = Field(default_factory=list)
    documents: int = 0
    exact: bool = True

    def _items(self) -> list[FacetValue]:
        return self.values


class Token(_Frozen):
    """One subword piece of the model's tokenizer, with its character offsets in the text."""

    token: str
    id: int
    start: int
    end: int


class Term(_Frozen):
    """A word as lexical search sees it: as written (``text[start:end]``), the term the index
    holds for it, and whether it is a stop word (indexed, left out of queries)."""

    text: str
    start: int
    end: int
    term: str
    stop: bool = False


class ChunkSpan(_Frozen):
    """Where a collection's chunker cuts a text: ``text[start:end]``, ``tokens`` model tokens."""

    index: int
    start: int
    end: int
    tokens: int


class Tokenization(_Frozen):
    """How the model sees a text: its tokens (without special tokens), whether it fits one model
    call (``count <= window``), and the chunks a collection would cut it into."""

    tokens: list[Token] = Field(default_factory=list)
    count: int = 0
    window: int = 0
    fits: bool = True
    chunks: list[ChunkSpan] = Field(default_factory=list)
    model: str = ""
    # The same text as lexical search sees it: the analyzer's terms, the analyzer language, and
    # the ISO code the text was analysed in ("" for folding only).
    terms: list[Term] = Field(default_factory=list)
    analyzer: str = ""
    language: str = ""

    def readable(self) -> str:
        """The tokens as the model's vocabulary writes them: ``un ##believ ##able``."""
        return " ".join(t.token for t in self.tokens)

    def readable_terms(self) -> str:
        """The terms as the index holds them, stop words in brackets: ``[the] hous [of] card``."""
        return " ".join(f"[{t.term}]" if t.stop else t.term for t in self.terms)


class Alias(_Frozen):
    """Another name for a collection, usable wherever a collection is named."""

    name: str
    collection: str


class Migration(_Frozen):
    """A completed migration to another store: the new collection (which the name now stands
    for), the name the source is kept under, and what the call copied and deleted, in how many
    rounds."""

    collection: CollectionInfo
    kept_as: str
    copied: int = 0
    deleted: int = 0
    rounds: int = 0


class Snapshot(_Frozen):
    """A snapshot file of a collection on the server (``created`` is UTC, ISO 8601)."""

    collection: str
    name: str
    bytes: int = 0
    created: str = ""
