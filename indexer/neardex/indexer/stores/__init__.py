"""Where a collection's documents, chunks and vectors live, behind one interface.

The retrieval engine (retrieval/engine.py: chunking and embedding writes, grouping chunks into
documents, fusion, feedback, similarity) is written once against `Store`. `LocalStore` keeps a
collection in its data folder (SQLite + FAISS) and is the default; `MilvusStore` keeps it in a
Milvus instance (milvus-lite for tests), so that any number of stateless servers can serve it.
A store works in chunk ids of its own; the engine never looks inside them.

The retrieval half of the interface is shaped by round trips, each a network call on the Milvus
store: retrieved chunks come back with their documents' ids (`Candidate`), one `retrieve` runs a
search's dense and lexical retrievals (with the filter resolved and the lexical score scale, when
asked), and one `fetch` reads whatever a search needs of given chunks or of every chunk of given
documents (vectors, the rows a hit shows). A hybrid search with feedback makes 4 store calls:
retrieve, fetch (feedback vectors), dense (the moved query), fetch (cosines and rows).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import stages
from ..documents import Chunk, Document
from ..query.analysis import Analyzer, Query
from ..query.facets import Facets
from ..query.filters import Filter
from ..query.languages import AUTO
from ..records import Candidate, Manifest, Stats

# How a metadata update changes one stored document: (its id, its metadata, its stored hash, its
# expiry) -> (its new metadata, its new stored hash, its new expiry). The engine decides; the store
# reads, calls it and writes the result inside one write, so no other write comes between the read
# and the rewrite.
MetadataEdit = Callable[[str, dict[str, Any], str, float | None], tuple[dict[str, Any], str, float | None]]


@dataclass(frozen=True)
class ChunkRow:
    """What a hit shows of one stored chunk and its document."""

    doc_id: str
    index: int
    start: int
    end: int
    title: str
    text: str  # the chunk's own text, document.text[start:end]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredChunk:
    """What `fetch` reads of one chunk: always its id and its document's, the rest when asked."""

    chunk_id: int
    doc_id: str
    vector: np.ndarray | None = None
    row: ChunkRow | None = None


@dataclass(frozen=True)
class Retrieved:
    """One `retrieve`: each retriever's chunks best first (empty when it was not asked)."""

    dense: list[Candidate]
    lexical: list[Candidate]
    # The most the query's words can score, when asked (1.0 otherwise): lexical scores divided by
    # it mean the same for every query.
    lexical_scale: float
    # The filter in the form dense() takes, resolved once for the dense retrievals that follow
    # (None: no filter).
    allowed: Any


class LanguageCounts:
    """Documents per language found under `auto`: queries are detected among these languages, each
    weighted by its share (a short English query in a collection of English passages, a few of them
    taken for Latin, is English). Counted here, recorded in the manifest when a language is new or
    its count has doubled since it was recorded: a few manifest writes in a collection's life, and
    a prior that is never off by more than a factor of two. Deletes are not counted down."""

    def __init__(self, manifest: Manifest) -> None:
        self._counts = Counter(manifest.languages)
        self._lock = threading.Lock()

    def add(self, manifest: Manifest, found: Mapping[str, int]) -> Manifest | None:
        """The manifest to record after documents in `found` languages are written, or None when
        the one recorded stays close enough."""
        if manifest.language != AUTO or not found:
            return None
        with self._lock:
            self._counts.update(found)
            recorded = manifest.languages
            if not any(self._counts[code] >= 2 * recorded.get(code, 0) for code in found):
                return None
            return replace(manifest, languages=dict(sorted(self._counts.items())))


# The store's round trips (each one on the Milvus store): what a trace shows of a request's store
# work, as `store.NAME` calls (stages.watch_calls on each store class).
CALLS = ("hashes", "all_hashes", "write", "delete", "update_metadata", "get", "scroll", "count", "facet", "retrieve", "dense",
         "lexical", "lexical_scores", "fetch", "exact_ids")
watched = stages.watch_calls("store", CALLS)


class Store(Protocol):
    manifest: Manifest
    # Whether its documents can expire: False only in Milvus collections made before expiry.
    can_expire: bool
    # The analyzer its lexical index holds the terms of: queries are analysed with it.
    analyzer: Analyzer

    # -- the lexical analyzer -----------------------------------------------------------------
    def set_language(self, language: str) -> None:
        """Analyse with another language (a checked name): the lexical index is rebuilt, or the
        change refused with FailedPrecondition where the store cannot."""

    def save_manifest(self, manifest: Manifest) -> None: ...

    # -- writes (the engine chunked and embedded them) ---------------------------------------
    def hashes(self, ids: Sequence[str]) -> dict[str, str]: ...

    def write(self, changed: list[tuple[Document, str]], prepared: list[tuple[list[Chunk], list[str]]],
              vectors: np.ndarray) -> None:
        """Replace the changed documents (with their content hashes) by their new chunks: `prepared`
        holds each one's chunks and the texts lexical search reads for them, `vectors` one row per
        chunk in order. Durable when it returns."""

    def delete(self, ids: Sequence[str], flt: Filter | None) -> int: ...

    def update_metadata(self, ids: Sequence[str], flt: Filter | None, edit: MetadataEdit) -> list[str]:
        """Rewrite the metadata, expiry and stored hash of the live documents given by id, or of
        those flt matches, as `edit` says, in one write that touches no chunk, vector or lexical row; what
        filters read (the metadata index, the chunks' copies of the metadata) changes with it.
        Durable when it returns; the ids of the documents rewritten (ids not stored are left out)."""

    def index_metadata(self, keys: Sequence[str]) -> None: ...

    def purge_expired(self) -> int:
        """Delete the documents whose expiry has passed, through the store's delete (every read
        leaves them out already); returns how many."""

    def checkpoint_after_write(self) -> None: ...

    # -- documents ----------------------------------------------------------------------------
    # Every read below leaves out documents whose expiry (Document.expires_at) has passed, purged
    # or not: get reports them missing.
    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]: ...

    def scroll(self, after: str, limit: int, flt: Filter | None = None, text: bool = True) -> list[Document]: ...

    def count(self, flt: Filter | None = None) -> int: ...

    def facet(self, key: str, flt: Filter | None, limit: int) -> Facets:
        """The `limit` most frequent values of a (valid) metadata key among the documents matching
        flt, with their document counts, as query/facets.py defines them."""
        ...

    def all_ids(self) -> set[str]: ...

    def all_hashes(self) -> dict[str, str]:
        """The stored hash (content:metadata) of every live document, by id: two stores holding
        the same documents list the same."""

    def pages(self, ids: Sequence[str] | None = None) -> Iterator[Any]:
        """Every live document (or those of `ids`) with its chunks and their vectors, as
        `transfer.Page`s: the arguments of another store's `write`, read without a model."""

    # -- retrieval, in chunks -----------------------------------------------------------------
    def view(self) -> AbstractContextManager[None]:
        """Reads inside agree with each other (one write's before or after, never a mix)."""

    def retrieve(self, vector: np.ndarray | None, query: Query | None, k: int, flt: Filter | None = None,
                 ef_search: int = 0, nprobe: int = 0, scale: bool = False) -> Retrieved:
        """The k best chunks by dense retrieval of vector and by lexical retrieval of query (a
        retriever given None is not run), among the chunks of documents flt allows; with scale,
        the lexical score scale too."""

    def dense(self, vectors: np.ndarray, k: int, allowed: Any = None, ef_search: int = 0,
              nprobe: int = 0) -> list[list[Candidate]]:
        """Per query vector, at most k chunks best first, among allowed (a `Retrieved.allowed`)."""

    def lexical(self, query: Query, k: int, flt: Filter | None = None) -> list[Candidate]:
        """The k best chunks by BM25 among those flt allows, scored on every store as FTS5
        scores them (stores/bm25.py)."""

    def lexical_scores(self, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
        """BM25 of the given chunks that match the query at all (others score 0 and are left out)."""

    def fetch(self, chunk_ids: Sequence[int] = (), documents: Sequence[str] = (), vectors: bool = False,
              rows: bool = False) -> list[StoredChunk]:
        """The chunks of the given ids, in the order given (chunks deleted meanwhile are left out),
        or every chunk of the given documents, by document and in chunk order; each with its vector
        and its row when asked."""

    def exact_ids(self, vectors: np.ndarray, k: int) -> np.ndarray: ...

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def index_kind(self) -> str: ...

    def stats(self) -> Stats: ...

    def checkpoint(self, force: bool = False) -> None: ...

    def wait_for_rebuild(self, timeout: float | None = None) -> None: ...

    def close(self, rebuild_wait: float | None = None) -> None:
        """Snapshot what the next open would otherwise rebuild, and close; a background index
        rebuild under way gets rebuild_wait seconds (None: no limit), then is abandoned."""

    def copy_to(self, folder: Path) -> None:
        """A consistent copy of the collection's files in an existing empty folder, taken while
        writes go on (a collection snapshot); FailedPrecondition where the store keeps no files."""

    def destroy(self) -> None: ...
