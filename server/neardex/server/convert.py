"""The server's one conversion module between protobuf messages and domain objects."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

from neardex.indexer.answers import AskResult
from neardex.indexer.collection import Collection, unit_mean
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.filters import (
    LIST_OPS,
    MAX_DEPTH,
    OPS,
    RANGE_OPS,
    Condition,
    Filter,
    key_field,
    validate_condition,
)
from neardex.indexer.records import MODES, Hit, SearchResult, UpsertResult
from neardex.indexer.snapshots import SnapshotInfo
from neardex.v1 import neardex_pb2 as pb

# Doubles hold every integer up to 2^53 exactly; beyond, a whole-looking double is no integer.
MAX_EXACT_INT = 2**53
MODE_TO_PB = {"": pb.SEARCH_MODE_UNSPECIFIED, "dense": pb.SEARCH_MODE_DENSE,
              "lexical": pb.SEARCH_MODE_LEXICAL, "hybrid": pb.SEARCH_MODE_HYBRID}
PB_TO_MODE = {v: k for k, v in MODE_TO_PB.items()}


def mode_from_pb(value: int, field: str = "mode") -> str:
    if value not in PB_TO_MODE:
        raise InvalidArgument(f"{field}: unknown search mode {value}; expected one of {MODES}")
    return PB_TO_MODE[value]


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return whole_numbers(json_format.MessageToDict(struct))


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
    metadata = selected_metadata(doc.metadata, fields)
    if metadata is not None:
        message.metadata.CopyFrom(dict_to_struct(metadata))
    if fields.vectors and chunk_vectors is not None and len(chunk_vectors):
        message.vector.values.extend(unit_mean(chunk_vectors).tolist())
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




def filter_from_pb(flt: pb.Filter, field: str = "filter", depth: int = 0) -> Filter:
    """The wire's filter tree as a domain Filter, checked; errors name the condition's path."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{field}: nested deeper than {MAX_DEPTH} levels")
    conditions = {}
    for key, cond in flt.conditions.items():
        where = key_field(field, key)
        condition = _condition_from_pb(cond, where)
        validate_condition(where, key, condition)
        conditions[key] = condition
    subs = {name: tuple(filter_from_pb(sub, f"{field}.{name}[{i}]", depth + 1)
                        for i, sub in enumerate(getattr(flt, name))) for name in ("all", "any", "none")}
    return Filter(conditions, subs["all"], subs["any"], subs["none"])


def _condition_from_pb(cond: pb.Condition, where: str) -> Condition:
    kind = cond.WhichOneof("kind")
    if kind in ("eq", "ne", *LIST_OPS):
        return Condition(kind, whole_numbers(json_format.MessageToDict(getattr(cond, kind))))
    if kind == "exists":
        return Condition("exists", cond.exists)
    if kind == "range":
        bounds: dict[str, Any] = {op: getattr(cond.range, op) for op in RANGE_OPS if cond.range.HasField(op)}
        texts = {op: getattr(cond.range, f"{op}_text") for op in RANGE_OPS if cond.range.HasField(f"{op}_text")}
        if bounds and texts:
            raise InvalidArgument(f"{where}: a range has number bounds or text bounds, not both")
        return Condition("range", bounds or texts)
    raise InvalidArgument(f"{where}: condition has no kind ({', '.join(OPS)})")


def whole_numbers(value: Any) -> Any:
    """JSON values with every whole number as an int: the wire (Struct) carries numbers as
    doubles, and 2001 must stay 2001, not become 2001.0, in the store and on the way back."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INT:
        return int(value)
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    return value


def selected_metadata(metadata: dict[str, Any], fields: pb.Fields | None) -> dict[str, Any] | None:
    """The metadata `fields` asks for: all of it, the listed keys, or none (None)."""
    if fields is None or not (fields.no_metadata or fields.metadata_keys):
        return metadata
    if fields.no_metadata:
        return None
    return {k: metadata[k] for k in fields.metadata_keys if k in metadata}


def hit_to_pb(hit: Hit, fields: pb.Fields | None = None) -> pb.Hit:
    metadata = selected_metadata(hit.metadata, fields)
    message = pb.Hit(
        id=hit.id, score=hit.score, text="" if fields is not None and fields.no_text else hit.text,
        title=hit.title, chunk_index=hit.chunk_index, chunk_start=hit.chunk_start, chunk_end=hit.chunk_end,
        retrievers=[pb.RetrieverScore(retriever=r.retriever, score=r.score, rank=r.rank)
                    for r in hit.retrievers],
    )
    if metadata is not None:
        message.metadata.CopyFrom(dict_to_struct(metadata))
    return message


def search_result_to_pb(result: SearchResult, fields: pb.Fields | None = None) -> pb.SearchResponse:
    return pb.SearchResponse(hits=[hit_to_pb(h, fields) for h in result.hits],
                             timings_ms=result.timings_ms, mode=MODE_TO_PB[result.mode])


def ask_result_to_pb(result: AskResult, fields: pb.Fields | None = None) -> pb.AskResponse:
    return pb.AskResponse(
        answers=[pb.Answer(passage=hit_to_pb(a.passage, fields), sentence=a.sentence,
                           sentence_start=a.sentence_start, sentence_end=a.sentence_end,
                           confidence=a.confidence) for a in result.answers],
        timings_ms=result.timings_ms)


def upsert_result_to_pb(result: UpsertResult) -> pb.UpsertResponse:
    return pb.UpsertResponse(upserted=result.upserted, unchanged=result.unchanged,
                             chunks=result.chunks, ids=result.ids, tokens=result.tokens)


def snapshot_to_pb(info: SnapshotInfo) -> pb.Snapshot:
    return pb.Snapshot(collection=info.collection, name=info.name, bytes=info.bytes, created=info.created)


def collection_to_pb(collection: Collection, aliases: list[str] | None = None) -> pb.CollectionInfo:
    m = collection.manifest
    stats = collection.stats()
    return pb.CollectionInfo(
        name=m.name, documents=stats.documents, chunks=stats.chunks, vectors=stats.vectors,
        dimension=m.dimension, model=m.model, index_kind=collection.index_kind, bytes=stats.bytes, chunk_tokens=m.chunk_tokens,
        overlap_tokens=m.overlap_tokens, default_mode=MODE_TO_PB[m.default_mode],
        encoder=m.encoder, index_params=m.index.params, indexed_keys=m.indexed_keys, aliases=aliases or [], store=m.store,
        state=pb.COLLECTION_STATE_READY,
    )


def unavailable_to_pb(name: str, reason: str, aliases: list[str] | None = None) -> pb.CollectionInfo:
    return pb.CollectionInfo(name=name, aliases=aliases or [], state=pb.COLLECTION_STATE_UNAVAILABLE, reason=reason)
