"""The server's one conversion module between protobuf messages and domain objects."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

from neardex.indexer.answers import AskResult
from neardex.indexer.collection import MODES, Collection, Hit, SearchResult, UpsertResult
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.filters import Condition, Filter, key_field, validate_condition
from neardex.v1 import neardex_pb2 as pb

MODE_TO_PB = {"": pb.SEARCH_MODE_UNSPECIFIED, "dense": pb.SEARCH_MODE_DENSE,
              "lexical": pb.SEARCH_MODE_LEXICAL, "hybrid": pb.SEARCH_MODE_HYBRID}
PB_TO_MODE = {v: k for k, v in MODE_TO_PB.items()}


def mode_from_pb(value: int, field: str = "mode") -> str:
    if value not in PB_TO_MODE:
        raise InvalidArgument(f"{field}: unknown search mode {value}; expected one of {MODES}")
    return PB_TO_MODE[value]


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def documents_from_pb(docs: Any) -> list[Document]:
    return [Document(d.id, d.text, d.title, struct_to_dict(d.metadata),
                     tuple(d.vector.values) if d.HasField("vector") else None) for d in docs]


def document_to_pb(doc: Document, fields: pb.Fields | None = None,
                   chunk_vectors: np.ndarray | None = None) -> pb.Document:
    """The document with the parts `fields` asks for (text and metadata by default); with
    fields.vectors, its chunks' vectors and their normalized mean."""
    if fields is None:
        return pb.Document(id=doc.id, text=doc.text, title=doc.title, metadata=dict_to_struct(doc.metadata))
    message = pb.Document(id=doc.id, title=doc.title, text="" if fields.no_text else doc.text)
    if not fields.no_metadata:
        keys = list(fields.metadata_keys)
        kept = {k: doc.metadata[k] for k in keys if k in doc.metadata} if keys else doc.metadata
        message.metadata.CopyFrom(dict_to_struct(kept))
    if fields.vectors and chunk_vectors is not None and len(chunk_vectors):
        mean = chunk_vectors.mean(0)
        message.vector.values.extend((mean / max(float(np.linalg.norm(mean)), 1e-12)).tolist())
        message.chunk_vectors.extend(pb.Vector(values=v.tolist()) for v in chunk_vectors)
    return message


CURSOR_PREFIX = "after:"


def cursor_to_pb(last_id: str) -> str:
    """An opaque cursor: the last id of a page, so the next page starts after it."""
    return base64.urlsafe_b64encode((CURSOR_PREFIX + last_id).encode()).decode()


def cursor_from_pb(cursor: str) -> str:
    """The id a page starts after ('' for the first page)."""
    if not cursor:
        return ""
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeError):
        decoded = ""
    if not decoded.startswith(CURSOR_PREFIX):
        raise InvalidArgument("cursor: not a cursor this server gave; send next_cursor of the previous page")
    return decoded[len(CURSOR_PREFIX):]


def filter_from_pb(flt: pb.Filter) -> Filter:
    result: Filter = {}
    for key, cond in flt.conditions.items():
        field = key_field("filter", key)
        kind = cond.WhichOneof("kind")
        if kind == "eq":
            value = json_format.MessageToDict(cond.eq)
            condition = Condition("eq", _int_if_integral(value))
        elif kind == "in":
            condition = Condition("in", [_int_if_integral(v) for v in json_format.MessageToDict(getattr(cond, "in"))])
        elif kind == "range":
            bounds = {op: getattr(cond.range, op) for op in ("gt", "gte", "lt", "lte")
                      if cond.range.HasField(op)}
            condition = Condition("range", bounds)
        else:
            raise InvalidArgument(f"{field}: condition has no kind (eq, in or range)")
        validate_condition(field, key, condition)
        result[key] = condition
    return result


def _int_if_integral(value: Any) -> Any:
    # Struct carries every number as a double; SQLite compares 2 and 2.0 equal either way, but
    # JSON text of integers stays integral in the store, so keep equality exact.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def hit_to_pb(hit: Hit) -> pb.Hit:
    return pb.Hit(
        id=hit.id, score=hit.score, text=hit.text, title=hit.title,
        metadata=dict_to_struct(hit.metadata), chunk_index=hit.chunk_index,
        chunk_start=hit.chunk_start, chunk_end=hit.chunk_end,
        retrievers=[pb.RetrieverScore(retriever=r.retriever, score=r.score, rank=r.rank)
                    for r in hit.retrievers],
    )


def search_result_to_pb(result: SearchResult) -> pb.SearchResponse:
    return pb.SearchResponse(hits=[hit_to_pb(h) for h in result.hits],
                             timings_ms=result.timings_ms, mode=MODE_TO_PB[result.mode])


def ask_result_to_pb(result: AskResult) -> pb.AskResponse:
    return pb.AskResponse(
        answers=[pb.Answer(passage=hit_to_pb(a.passage), sentence=a.sentence,
                           sentence_start=a.sentence_start, sentence_end=a.sentence_end,
                           confidence=a.confidence) for a in result.answers],
        timings_ms=result.timings_ms)


def upsert_result_to_pb(result: UpsertResult) -> pb.UpsertResponse:
    return pb.UpsertResponse(upserted=result.upserted, unchanged=result.unchanged,
                             chunks=result.chunks, ids=result.ids, tokens=result.tokens)


def collection_to_pb(collection: Collection) -> pb.CollectionInfo:
    m = collection.manifest
    stats = collection.stats()
    return pb.CollectionInfo(
        name=m.name, documents=stats.documents, chunks=stats.chunks, vectors=stats.vectors,
        dimension=m.dimension, model=m.model, index_kind=collection.index.trained_kind
        if m.index.kind != "ivfpq" else "ivfpq", bytes=stats.bytes, chunk_tokens=m.chunk_tokens,
        overlap_tokens=m.overlap_tokens, default_mode=MODE_TO_PB[m.default_mode],
        encoder=m.encoder, index_params=m.index.params,
    )
