"""Domain records shared by readers, chunker and store."""

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
    # When it stops existing (unix time, seconds); None: never. Not part of the content hash: the
    # store keeps it beside (expiry.stored_hash).
    expires_at: float | None = None

    def content_hash(self) -> str:
        """Hash of everything that shapes the stored document; unchanged hash means skip."""
        # Text documents hash as they always did: a new field must not re-embed stored collections.
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
