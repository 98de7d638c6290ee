"""Domain records shared by readers, chunker and store, and the hashes that decide what a write
changes.

A store keeps two hashes per document in one string (`join_hash`, at most 64 characters, the width
the Milvus store's column has): the content hash (title, text, own vector: what the chunks and
vectors depend on) and the metadata hash. A re-upsert whose content hash matches rewrites the
metadata alone, without embedding. Rows written before the split hold one SHA-256 of title, text
and metadata together (64 hex digits, no separator: `split_hash` answers None); the engine compares
those with `Document.legacy_hash` and, where they differ, with the stored title and text."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # The document's own vector, in a collection without a model (and only there).
    vector: tuple[float, ...] | None = None
    # When it stops existing (unix time, seconds); None: never. Hashed with the metadata: no chunk
    # or vector depends on it, so a new expiry (a ttl renewed by a rewrite) is a metadata-only write.
    expires_at: float | None = None

    def content_hash(self) -> str:
        """Hash of what the chunks and their vectors depend on (title, text, and the document's own
        vector where it brings one): when it is unchanged, nothing is embedded again."""
        parts: list[Any] = [self.title, self.text]
        if self.vector is not None:
            parts.append(list(self.vector))
        return _digest(parts)

    def metadata_hash(self) -> str:
        return metadata_hash(self.metadata, self.expires_at)

    def stored_hash(self) -> str:
        """The hash a store keeps for this document: its content hash and its metadata hash."""
        return join_hash(self.content_hash(), self.metadata_hash())

    def legacy_hash(self) -> str:
        """The one hash stores kept before the split (title, text and metadata together), which
        rows written then still hold."""
        parts: list[Any] = [self.title, self.text, self.metadata]
        if self.vector is not None:
            parts.append(list(self.vector))
        payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def embedding_text(self, chunk_text: str) -> str:
        """Text the model sees for one chunk: the title gives every chunk its document's topic."""
        return f"{self.title} {chunk_text}" if self.title else chunk_text


@dataclass(frozen=True)
class Chunk:
    """A token-bounded span of a document's text: text == document.text[start:end]."""

    index: int
    text: str
    start: int
    end: int
    tokens: int


# Hex digits kept of each SHA-256: two of them and the separator fit the stores' 64-character
# hash column, and 124 bits leave no chance of a collision telling a changed document unchanged.
HASH_DIGITS = 31
_SEPARATOR = ":"


def _digest(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:HASH_DIGITS]


def metadata_hash(metadata: dict[str, Any], expires_at: float | None = None) -> str:
    """Hash of what a metadata-only write rewrites: the metadata, and the expiry where there is one
    (without one, the hash of the metadata alone, as rows written before expiry hold)."""
    return _digest(metadata if expires_at is None else [metadata, {"expires_at": repr(float(expires_at))}])


def join_hash(content: str, metadata: str) -> str:
    """The stored form of both hashes; content is "" where it is not known (a row written before
    the split whose metadata was then updated)."""
    return f"{content}{_SEPARATOR}{metadata}"


def split_hash(stored: str) -> tuple[str, str] | None:
    """(content hash, metadata hash) of a stored hash, or None for a row written before the split."""
    content, separator, metadata = stored.partition(_SEPARATOR)
    return (content, metadata) if separator else None


def rehashed(stored: str, metadata: dict[str, Any], expires_at: float | None) -> str:
    """A stored hash after the document's metadata and expiry alone became these: the content
    part is kept (unknown for a row written before the split)."""
    parts = split_hash(stored)
    return join_hash(parts[0] if parts else "", metadata_hash(metadata, expires_at))
