"""Where a collection's documents, chunks and vectors live, behind one interface.

The retrieval engine (collection.py: chunking and embedding writes, grouping chunks into
documents, fusion, feedback, similarity) is written once against `Store`. `LocalStore` keeps a
collection in its data folder (SQLite + FAISS) and is the default; `MilvusStore` keeps it in a
Milvus instance (milvus-lite for tests), so that any number of stateless servers can serve it.
A store works in chunk ids of its own; the engine never looks inside them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..documents import Chunk, Document
from ..query.analysis import Query
from ..query.filters import Filter
from ..records import Manifest, Stats


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


class Store(Protocol):
    manifest: Manifest

    # -- writes (the engine chunked and embedded them) ---------------------------------------
    def hashes(self, ids: Sequence[str]) -> dict[str, str]: ...

    def write(self, changed: list[tuple[Document, str]], prepared: list[tuple[list[Chunk], list[str]]],
              vectors: np.ndarray) -> None:
        """Replace the changed documents (with their content hashes) by their new chunks: `prepared`
        holds each one's chunks and the texts lexical search reads for them, `vectors` one row per
        chunk in order. Durable when it returns."""

    def delete(self, ids: Sequence[str], flt: Filter | None) -> int: ...

    def index_metadata(self, keys: Sequence[str]) -> None: ...

    def checkpoint_after_write(self) -> None: ...

    # -- documents ----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> tuple[list[Document], list[str]]: ...

    def scroll(self, after: str, limit: int, flt: Filter | None = None, text: bool = True) -> list[Document]: ...

    def count(self, flt: Filter | None = None) -> int: ...

    def all_ids(self) -> set[str]: ...

    # -- retrieval, in chunks -----------------------------------------------------------------
    def view(self) -> AbstractContextManager[None]:
        """Reads inside agree with each other (one write's before or after, never a mix)."""

    def restrict(self, flt: Filter | None) -> Any:
        """A filter in the form dense() takes, resolved once per search (None: no filter)."""

    def dense(self, vectors: np.ndarray, k: int, allowed: Any = None, ef_search: int = 0,
              nprobe: int = 0) -> list[list[tuple[int, float]]]: ...

    def lexical(self, query: Query, k: int, flt: Filter | None = None) -> list[tuple[int, float]]: ...

    def lexical_max_score(self, query: Query) -> float: ...

    def lexical_scores(self, query: Query, chunk_ids: Sequence[int]) -> list[tuple[int, float]]: ...

    def doc_ids_of(self, chunk_ids: Sequence[int]) -> dict[int, str]: ...

    def fetch_chunks(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]: ...

    def vectors_of(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def chunks_of(self, doc_ids: Sequence[str]) -> Iterator[tuple[int, str, np.ndarray]]:
        """(chunk id, document id, vector) of every chunk of the documents, in chunk order."""

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
