"""Documents as callers give them (a :class:`Document` or a dict) and as the wire carries them,
with their vectors."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timezone
from typing import Any

from pydantic import ValidationError

from neardex.v1 import neardex_pb2 as pb

from ..errors import InvalidArgument
from ..models import Document
from .metadata import metadata_to_struct, struct_to_metadata
from .scalars import _is_number


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def to_document(value: Document | Mapping[str, Any], field: str = "document") -> Document:
    """Accept a :class:`Document` or a dict with keys id (or _id), text, title and metadata."""
    if isinstance(value, Document):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{field}: expected a Document or a dict, got {type(value).__name__}")
    data = dict(value)
    if "_id" in data:
        if "id" in data:
            raise InvalidArgument(f"{field}: give either 'id' or '_id', not both")
        data["id"] = data.pop("_id")
    try:
        document = Document.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(field, e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(problems) from None
    if "text" not in data and document.vector is None:
        raise InvalidArgument(f"{field}.text: missing (a document has a text, or a vector in a collection"
                              " without a model)")
    return document


def document_to_proto(document: Document, field: str = "document") -> pb.Document:
    message = pb.Document(id=document.id, text=document.text, title=document.title)
    if document.metadata:
        message.metadata.CopyFrom(metadata_to_struct(document.metadata, f"{field}.metadata"))
    if document.vector is not None:
        message.vector.CopyFrom(_vector(document.vector, f"{field}.vector"))
    if document.expires_at is not None:
        expires = document.expires_at
        # Naive times are UTC, as Timestamp's own conversion reads them; aware ones are converted.
        message.expires_at.FromDatetime(expires if expires.tzinfo is None else expires.astimezone(timezone.utc))
    return message


def document_from_proto(message: pb.Document) -> Document:
    # Built without validation: the server is the authority on what it stored.
    return Document.model_construct(
        id=message.id,
        text=message.text,
        title=message.title,
        metadata=struct_to_metadata(message.metadata),
        vector=list(message.vector.values) if message.HasField("vector") else None,
        chunk_vectors=[list(v.values) for v in message.chunk_vectors],
        expires_at=message.expires_at.ToDatetime(tzinfo=timezone.utc) if message.HasField("expires_at") else None,
    )


def _vector(query: Any, field: str) -> pb.Vector:
    if isinstance(query, bytes | bytearray | Mapping) or not isinstance(query, Iterable):
        raise InvalidArgument(f"{field}: expected a str or a sequence of floats, got {type(query).__name__}")
    values = list(query)
    if not values:
        raise InvalidArgument(f"{field}: the vector is empty")
    for i, value in enumerate(values):
        if not _is_number(value) or not math.isfinite(float(value)):
            raise InvalidArgument(f"{field}[{i}]: expected a finite number, got {value!r}")
    return pb.Vector(values=[float(v) for v in values])
