"""Index a stream of documents into a collection in batches, with progress and a summary."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..documents import Document
from ..records import UpsertResult

# Documents per write: large enough that length-sorted embedding batches stay full, small enough
# that an interrupted run loses little and progress moves.
WRITE_BATCH = 256


@dataclass
class IndexSummary:
    documents: int = 0
    upserted: int = 0  # embedded and written whole
    metadata_updated: int = 0  # text unchanged, metadata rewritten, nothing embedded
    unchanged: int = 0
    chunks: int = 0
    tokens: int = 0
    skipped: int = 0
    deleted: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


Progress = Callable[[int, int], None]  # (documents, chunks) done in the last batch
Writer = Callable[[list[Document]], UpsertResult]


def batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def run_batches(documents: Iterable[Document], write: Writer, *, batch_size: int = WRITE_BATCH,
                progress: Progress | None = None) -> tuple[IndexSummary, set[str]]:
    """Send documents through write() in batches; the summary and every id seen.

    Duplicate ids within the input keep their last occurrence, as a re-run would."""
    summary = IndexSummary()
    seen: set[str] = set()
    started = time.perf_counter()
    for batch in batched(documents, batch_size):
        unique = list({d.id: d for d in batch}.values())
        result = write(unique)
        seen.update(d.id for d in unique)
        summary.documents += len(batch)
        summary.upserted += result.upserted
        summary.unchanged += result.unchanged
        summary.metadata_updated += result.metadata_updated
        summary.chunks += result.chunks
        summary.tokens += result.tokens
        if progress:
            progress(len(batch), result.chunks)
    summary.seconds = time.perf_counter() - started
    return summary, seen


class Target(Protocol):
    """Where documents go: a local Collection, or a collection behind a server."""

    def upsert(self, documents: Sequence[Document]) -> UpsertResult: ...

    def all_ids(self) -> set[str]: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def checkpoint(self) -> None: ...


def index_documents(target: Target, documents: Iterable[Document], *,
                    delete_missing: bool = False, batch_size: int = WRITE_BATCH,
                    progress: Progress | None = None) -> IndexSummary:
    summary, seen = run_batches(documents, target.upsert, batch_size=batch_size,
                                progress=progress)
    if delete_missing:
        summary.deleted = target.delete(sorted(target.all_ids() - seen))
    target.checkpoint()
    return summary
