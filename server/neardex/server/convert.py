"""The server's one conversion module between protobuf messages and domain objects."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
from google.protobuf import struct_pb2

from neardex.indexer.catalog.snapshots import SnapshotInfo
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.query.facets import Facets
from neardex.indexer.query.filters import (
    LIST_OPS,
    MAX_DEPTH,
    OPS,
    RANGE_OPS,
    Condition,
    Filter,
    check_size,
    key_field,
    validate_condition,
)
from neardex.indexer.records import MODES, Group, Hit, SearchResult, UpsertResult
from neardex.indexer.retrieval.answers import AskResult
from neardex.indexer.retrieval.engine import Collection, MetadataUpdate, unit_mean
from neardex.indexer.retrieval.request import Rerank
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
    return {key: value_to_python(value) for key, value in struct.fields.items()}


def value_to_python(value: struct_pb2.Value) -> Any:
    """A Struct value as plain Python, whole numbers as ints. Not json_format's conversion: that
    one raises on NaN and infinite numbers, which must reach validation to be refused there, with
    the field named."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return list_to_python(value.list_value)
    if kind == "number_value":
        return whole_numbers(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def list_to_python(values: struct_pb2.ListValue) -> list[Any]:
    return [value_to_python(v) for v in values.values]


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def python_to_value(value: Any) -> struct_pb2.Value:
    """A group's value (a string, number or boolean) as a Struct value."""
    message = struct_pb2.Value()
    if isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, (int, float)):
        message.number_value = value
    else:
        message.string_value = str(value)
    return message


def documents_from_pb(docs: Any) -> list[Document]:
    return [Document(d.id, d.text, d.title, struct_to_dict(d.metadata),
                     tuple(d.vector.values) if d.HasField("vector") else None,
                     expires_at_from_pb(d.expires_at, f"documents[{i}].expires_at") if d.HasField("expires_at") else None)
            for i, d in enumerate(docs)]


def expires_at_from_pb(stamp: Any, field: str) -> float:
    """A Timestamp as unix seconds; whether it is in the future is the engine's check
    (expiry.check_expiry), made for every transport and for library callers alike."""
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(f"{field}: nanos must be 0 to 999,999,999, got {stamp.nanos}")
    return stamp.seconds + stamp.nanos / 1e9


def expires_at_to_pb(value: float, message: Any) -> None:
    seconds = math.floor(value)
    message.expires_at.seconds = seconds
    message.expires_at.nanos = min(999_999_999, round((value - seconds) * 1e9))


def document_to_pb(doc: Document, fields: pb.Fields | None = None,
                   chunk_vectors: np.ndarray | None = None) -> pb.Document:
    """The document with the parts `fields` asks for (text and metadata by default); with
    fields.vectors, its chunks' vectors and their normalized mean."""
    if fields is None:
        message = pb.Document(id=doc.id, text=doc.text, title=doc.title, metadata=dict_to_struct(doc.metadata))
        if doc.expires_at is not None:
            expires_at_to_pb(doc.expires_at, message)
        return message
    message = pb.Document(id=doc.id, title=doc.title, text="" if fields.no_text else doc.text)
    if doc.expires_at is not None:
        expires_at_to_pb(doc.expires_at, message)
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




def filter_from_pb(flt: pb.Filter, field: str = "filter") -> Filter:
    """The wire's filter tree as a domain Filter, checked; errors name the condition's path."""
    converted = _filter_from_pb(flt, field, 0)
    check_size(converted, field)
    return converted


def _filter_from_pb(flt: pb.Filter, field: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{field}: nested deeper than {MAX_DEPTH} levels")
    conditions = {}
    for key, cond in flt.conditions.items():
        where = key_field(field, key)
        condition = _condition_from_pb(cond, where)
        validate_condition(where, key, condition)
        conditions[key] = condition
    subs = {name: tuple(_filter_from_pb(sub, f"{field}.{name}[{i}]", depth + 1)
                        for i, sub in enumerate(getattr(flt, name))) for name in ("all", "any", "none")}
    return Filter(conditions, subs["all"], subs["any"], subs["none"])


def _condition_from_pb(cond: pb.Condition, where: str) -> Condition:
    kind = cond.WhichOneof("kind")
    if kind in ("eq", "ne"):
        return Condition(kind, value_to_python(getattr(cond, kind)))
    if kind in LIST_OPS:
        return Condition(kind, list_to_python(getattr(cond, kind)))
    if kind == "exists":
        return Condition("exists", cond.exists)
    if kind == "range":
        bounds: dict[str, Any] = {op: getattr(cond.range, op) for op in RANGE_OPS if cond.range.HasField(op)}
        texts = {op: getattr(cond.range, f"{op}_text") for op in RANGE_OPS if cond.range.HasField(f"{op}_text")}
        if bounds and texts:
            raise InvalidArgument(f"{where}: a range has number bounds or text bounds, not both")
        return Condition("range", bounds or texts)
    raise InvalidArgument(f"{where}: condition has no kind ({', '.join(OPS)})")


def min_score_from_pb(request: pb.SearchRequest | pb.SearchSimilarRequest, field: str = "min_score") -> float | None:
    """The request's min_score, if it has one; NaN, which no score is at or above, is refused."""
    if not request.HasField("min_score"):
        return None
    if math.isnan(request.min_score):
        raise InvalidArgument(f"{field}: not a number")
    return request.min_score


def rerank_from_pb(request: Any) -> Rerank | None:
    """A request's rerank stage, if it names one (depth checked by the engine, the model by the
    server's reach)."""
    if not request.HasField("rerank"):
        return None
    return Rerank(request.rerank.model, request.rerank.depth)


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
        chunks=[pb.MatchedChunk(text=c.text, chunk_index=c.index, start=c.start, end=c.end, score=c.score)
                for c in hit.chunks],
    )
    if metadata is not None:
        message.metadata.CopyFrom(dict_to_struct(metadata))
    if hit.group is not None:
        message.group.CopyFrom(python_to_value(hit.group))
    return message


def search_result_to_pb(result: SearchResult, fields: pb.Fields | None = None) -> pb.SearchResponse:
    return pb.SearchResponse(hits=[hit_to_pb(h, fields) for h in result.hits],
                             timings_ms=result.timings_ms, mode=MODE_TO_PB[result.mode],
                             groups=[group_to_pb(g, fields) for g in result.groups or []])


def group_to_pb(group: Group, fields: pb.Fields | None = None) -> pb.Group:
    return pb.Group(value=python_to_value(group.value), hits=[hit_to_pb(h, fields) for h in group.hits])


def ask_result_to_pb(result: AskResult, fields: pb.Fields | None = None) -> pb.AskResponse:
    return pb.AskResponse(
        answers=[pb.Answer(passage=hit_to_pb(a.passage, fields), sentence=a.sentence,
                           sentence_start=a.sentence_start, sentence_end=a.sentence_end,
                           confidence=a.confidence) for a in result.answers],
        timings_ms=result.timings_ms)


def facets_to_pb(result: Facets) -> pb.FacetResponse:
    values = []
    for item in result.values:
        value = struct_pb2.Value()
        if isinstance(item.value, bool):
            value.bool_value = item.value
        elif isinstance(item.value, str):
            value.string_value = item.value
        else:
            value.number_value = float(item.value)
        values.append(pb.FacetValue(value=value, count=item.count))
    return pb.FacetResponse(values=values, documents=result.documents, exact=result.exact)


def upsert_result_to_pb(result: UpsertResult) -> pb.UpsertResponse:
    return pb.UpsertResponse(upserted=result.upserted, unchanged=result.unchanged,
                             chunks=result.chunks, ids=result.ids, tokens=result.tokens,
                             metadata_updated=result.metadata_updated)


def metadata_update_from_pb(request: pb.UpdateMetadataRequest) -> MetadataUpdate:
    """The update a request asks for, checked (its values are checked where it is applied)."""
    return MetadataUpdate.check(struct_to_dict(request.set), list(request.unset), request.replace)


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
        state=pb.COLLECTION_STATE_READY, language=m.language, lexical_language=collection.store.analyzer.language,
        languages=m.languages, model_revision=m.model_revision, query_prompt=m.query_prompt,
        document_prompt=m.document_prompt,
        rerank=pb.Rerank(model=m.rerank_model, depth=m.rerank_depth) if m.rerank_model else None,
        ttl_seconds=m.ttl_seconds,
    )


def unavailable_to_pb(name: str, reason: str, aliases: list[str] | None = None) -> pb.CollectionInfo:
    return pb.CollectionInfo(name=name, aliases=aliases or [], state=pb.COLLECTION_STATE_UNAVAILABLE, reason=reason)
