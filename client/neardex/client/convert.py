"""The one place where protobuf messages of ``neardex.v1`` and the client's models meet.

Request builders validate their arguments and raise :class:`~neardex.client.errors.InvalidArgument`
naming the offending argument (``filter.year``, ``documents[3].text``), so mistakes surface
before anything is sent. Response parsers never fail on values a newer server might add.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from google.protobuf import struct_pb2
from pydantic import ValidationError

from neardex.v1 import neardex_pb2 as pb

from .errors import Internal, InvalidArgument
from .models import (
    Alias,
    Answer,
    AskResult,
    ChunkSpan,
    CollectionInfo,
    Document,
    GetResult,
    Hit,
    RetrieverScore,
    ScrollPage,
    SearchResult,
    Snapshot,
    Token,
    Tokenization,
    UpsertResult,
)

__all__ = [
    "ask_request",
    "ask_result",
    "batch_search_request",
    "batch_search_results",
    "collection_info",
    "collection_infos",
    "count_request",
    "counted",
    "create_collection_request",
    "delete_collection_request",
    "delete_request",
    "deleted_collection",
    "deleted_count",
    "document_from_proto",
    "document_to_proto",
    "embed_request",
    "embeddings",
    "fields_to_proto",
    "filter_to_proto",
    "get_collection_request",
    "index_metadata_request",
    "get_request",
    "get_result",
    "health_serving",
    "hit_from_proto",
    "list_collections_request",
    "metadata_to_struct",
    "mode_from_proto",
    "mode_to_proto",
    "scroll_page",
    "scroll_request",
    "search_request",
    "similar_request",
    "similarity_matrix",
    "similarity_request",
    "tokenization",
    "tokenize_request",
    "search_result",
    "struct_to_metadata",
    "to_document",
    "upsert_request",
    "upsert_result",
]

Query = str | Sequence[float]

_MODES: dict[str, pb.SearchMode] = {
    "dense": pb.SEARCH_MODE_DENSE,
    "lexical": pb.SEARCH_MODE_LEXICAL,
    "hybrid": pb.SEARCH_MODE_HYBRID,
}
_MODE_NAMES: dict[int, str] = {int(v): k for k, v in _MODES.items()}
# A server from before collection states lists only collections that opened: ready.
_STATE_NAMES: dict[int, str] = {
    pb.COLLECTION_STATE_UNSPECIFIED: "ready",
    pb.COLLECTION_STATE_READY: "ready",
    pb.COLLECTION_STATE_UNAVAILABLE: "unavailable",
}
_RANGE_OPS = ("gt", "gte", "lt", "lte")
# Struct numbers are doubles: integers beyond this would come back silently changed.
_MAX_EXACT_INT = 2**53


# ---------------------------------------------------------------------------------------------
# Scalars and enums


def mode_to_proto(mode: str | None, field: str = "mode") -> pb.SearchMode:
    if not mode:
        return pb.SEARCH_MODE_UNSPECIFIED
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        expected = ", ".join(repr(m) for m in _MODES)
        raise InvalidArgument(f"{field}: expected one of {expected} or None, got {mode!r}") from None


def mode_from_proto(mode: int) -> str:
    if mode == pb.SEARCH_MODE_UNSPECIFIED:
        return ""
    # A mode added by a newer server is reported rather than rejected.
    return _MODE_NAMES.get(mode, str(mode))


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[numbers.Integral]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_arg(field: str, value: object, *, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        raise InvalidArgument(f"{field}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _optional_int_arg(field: str, value: object, *, minimum: int) -> int:
    # 0 on the wire means "the server's or collection's setting".
    return 0 if value is None else _int_arg(field, value, minimum=minimum)


# ---------------------------------------------------------------------------------------------
# Metadata <-> google.protobuf.Struct


def _to_value(value: Any, field: str) -> struct_pb2.Value:
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if _is_int(value):
        if abs(int(value)) > _MAX_EXACT_INT:
            raise InvalidArgument(
                f"{field}: integer {value} cannot be stored exactly (metadata numbers are "
                "doubles); store it as a string"
            )
        return struct_pb2.Value(number_value=float(value))
    if _is_number(value):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(f"{field}: metadata numbers must be finite, got {value!r}")
        return struct_pb2.Value(number_value=number)
    if isinstance(value, Mapping):
        return struct_pb2.Value(struct_value=metadata_to_struct(value, field))
    if isinstance(value, list | tuple):
        items = [_to_value(item, f"{field}[{i}]") for i, item in enumerate(value)]
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=items))
    raise InvalidArgument(
        f"{field}: metadata values must be JSON-like (str, number, bool, None, list, dict), "
        f"got {type(value).__name__}"
    )


def metadata_to_struct(metadata: Mapping[str, Any], field: str = "metadata") -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"{field}: keys must be strings, got {key!r}")
        struct.fields[key].CopyFrom(_to_value(value, f"{field}.{key}"))
    return struct


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        # The wire carries every number as a double: a whole one was sent as an int.
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _MAX_EXACT_INT else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_metadata(value.struct_value)
    if kind == "list_value":
        return [_from_value(item) for item in value.list_value.values]
    return None


def struct_to_metadata(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _from_value(value) for key, value in struct.fields.items()}


# ---------------------------------------------------------------------------------------------
# Filters


def _scalar_value(value: Any, field: str) -> struct_pb2.Value:
    if value is not None and not isinstance(value, str | bool) and not _is_number(value):
        raise InvalidArgument(f"{field}: expected a str, number, bool or None, got {type(value).__name__}")
    return _to_value(value, field)


def _values(values: Any, field: str, op: str) -> struct_pb2.ListValue:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidArgument(f"{field}: {op!r} expects a list of values, got {values!r}")
    items = [_scalar_value(v, f"{field}[{i}]") for i, v in enumerate(values)]
    if not items:
        raise InvalidArgument(f"{field}: {op!r} needs at least one value")
    return struct_pb2.ListValue(values=items)


_LIST_OPS = ("in", "not_in", "contains_any", "contains_all")
FILTER_OPS = ("eq", "ne", *_LIST_OPS, "exists", *_RANGE_OPS)


def _operator_condition(ops: Mapping[Any, Any], field: str) -> pb.Condition:
    keys = set(ops)
    if len(keys) == 1 and keys <= {"eq", "ne"}:
        op = next(iter(keys))
        return pb.Condition(**{op: _scalar_value(ops[op], f"{field}.{op}")})
    if len(keys) == 1 and keys <= set(_LIST_OPS):
        op = next(iter(keys))
        return pb.Condition(**{op: _values(ops[op], f"{field}.{op}", op)})
    if keys == {"exists"}:
        if not isinstance(ops["exists"], bool):
            raise InvalidArgument(f"{field}.exists: expected True or False, got {ops['exists']!r}")
        return pb.Condition(exists=ops["exists"])
    unknown = sorted(map(repr, keys.difference(_RANGE_OPS)))
    if unknown or not keys:
        raise InvalidArgument(
            f"{field}: expected one of {', '.join(FILTER_OPS[:-4])} or range bounds "
            f"{', '.join(_RANGE_OPS)}; got " + (", ".join(unknown) if unknown else "no operator")
        )
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for op in _RANGE_OPS:
        if op in ops:
            bound = ops[op]
            if isinstance(bound, str):
                texts[f"{op}_text"] = bound
            elif _is_number(bound) and math.isfinite(float(bound)):
                numbers[op] = float(bound)
            else:
                raise InvalidArgument(f"{field}.{op}: expected a number or a string, got {bound!r}")
    if numbers and texts:
        raise InvalidArgument(f"{field}: range bounds are all numbers or all strings")
    return pb.Condition(range=pb.Range(**numbers, **texts))


_COMBINATORS = {"$and": "all", "$or": "any", "$not": "none"}


def filter_to_proto(filter: Mapping[str, Any] | None, field: str = "filter", depth: int = 0) -> pb.Filter | None:
    """``{"lang": "en"}`` is equality (an array holding "en" matches too), a list/tuple/set is
    membership, and a dict names the operator: ``eq``, ``ne``, ``in``, ``not_in``,
    ``contains_any``, ``contains_all``, ``exists`` (True/False), or range bounds
    ``gt``/``gte``/``lt``/``lte`` (numbers, or strings such as ISO dates). Keys are dotted paths
    into nested metadata. Every condition must hold; ``"$and": [...]``, ``"$or": [...]`` and
    ``"$not": {...}`` (or a list: none may match) combine filters to any depth."""
    if not filter:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidArgument(f"{field}: expected a dict, got {type(filter).__name__}")
    if depth > 32:
        raise InvalidArgument(f"{field}: nested deeper than 32 levels")
    message = pb.Filter()
    for key, spec in filter.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"{field}: keys must be non-empty strings, got {key!r}")
        where = f"{field}.{key}"
        if key in _COMBINATORS:
            subs = spec if isinstance(spec, list | tuple) else [spec]
            target = getattr(message, _COMBINATORS[key])
            for i, sub in enumerate(subs):
                built = filter_to_proto(sub, f"{where}[{i}]", depth + 1)
                if built is None:
                    raise InvalidArgument(f"{where}[{i}]: an empty filter")
                target.add().CopyFrom(built)
        elif isinstance(spec, Mapping):
            message.conditions[key].CopyFrom(_operator_condition(spec, where))
        elif isinstance(spec, list | tuple | set | frozenset):
            message.conditions[key].CopyFrom(pb.Condition(**{"in": _values(spec, where, "in")}))
        else:
            message.conditions[key].CopyFrom(pb.Condition(eq=_scalar_value(spec, where)))
    return message


# ---------------------------------------------------------------------------------------------
# Documents


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
    )


# ---------------------------------------------------------------------------------------------
# Request builders, one per RPC


def create_collection_request(
    name: str,
    *,
    model: str | None = None,
    index: str | Mapping[str, Any] | None = None,
    chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
    default_mode: str | None = None,
    encoder: str | None = None,
    dimension: int | None = None,
    indexed_keys: Iterable[str] | None = None,
    store: str | None = None,
) -> pb.CreateCollectionRequest:
    request = pb.CreateCollectionRequest(
        name=name,
        store=store or "",
        model=model or "",
        dimension=_optional_int_arg("dimension", dimension, minimum=1),
        indexed_keys=_ids(indexed_keys or [], "indexed_keys"),
        chunk_tokens=_optional_int_arg("chunk_tokens", chunk_tokens, minimum=0),
        # -1 asks for the server's default overlap; 0 is a real choice (no overlap).
        overlap_tokens=-1
        if overlap_tokens is None
        else _int_arg("overlap_tokens", overlap_tokens, minimum=-1),
        default_mode=mode_to_proto(default_mode, "default_mode"),
        encoder=encoder or "",
    )
    if isinstance(index, str):
        request.index.kind = index
    elif isinstance(index, Mapping):
        params = dict(index)
        kind = params.pop("kind", "") or ""
        if not isinstance(kind, str):
            raise InvalidArgument(f"index.kind: expected a str, got {kind!r}")
        request.index.kind = kind
        for key, value in params.items():
            if not isinstance(key, str) or not _is_int(value):
                raise InvalidArgument(f"index.{key}: expected an integer, got {value!r}")
            request.index.params[key] = int(value)
    elif index is not None:
        raise InvalidArgument(f"index: expected a kind or a dict, got {type(index).__name__}")
    return request


def list_collections_request() -> pb.ListCollectionsRequest:
    return pb.ListCollectionsRequest()


def get_collection_request(name: str) -> pb.GetCollectionRequest:
    return pb.GetCollectionRequest(name=name)


def delete_collection_request(name: str) -> pb.DeleteCollectionRequest:
    return pb.DeleteCollectionRequest(name=name)


def upsert_request(
    collection: str, documents: Sequence[Document], *, first_index: int = 0
) -> pb.UpsertRequest:
    """``first_index`` is the position of ``documents[0]`` in the caller's whole iterable, so
    errors name the document the caller gave, not its place in a batch."""
    return pb.UpsertRequest(
        collection=collection,
        documents=[
            document_to_proto(doc, f"documents[{first_index + i}]") for i, doc in enumerate(documents)
        ],
    )


def _ids(ids: str | Iterable[str], field: str = "ids") -> list[str]:
    # A lone string would otherwise be split into one-character ids.
    items = [ids] if isinstance(ids, str) else list(ids)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidArgument(f"{field}[{i}]: expected a str, got {type(item).__name__}")
    return items


def delete_request(
    collection: str, ids: str | Iterable[str] | None = None, *, filter: Mapping[str, Any] | None = None
) -> pb.DeleteRequest:
    if (ids is None) == (filter is None):
        raise InvalidArgument("ids, filter: delete by ids or by a filter (one of them)")
    if ids is not None:
        return pb.DeleteRequest(collection=collection, ids=_ids(ids))
    conditions = filter_to_proto(filter)
    if conditions is None:
        raise InvalidArgument("filter: an empty filter would delete every document; give conditions")
    return pb.DeleteRequest(collection=collection, filter=conditions)


def create_alias_request(name: str, collection: str, *, replace: bool = False) -> pb.CreateAliasRequest:
    return pb.CreateAliasRequest(name=name, collection=collection, replace=bool(replace))


def delete_alias_request(name: str) -> pb.DeleteAliasRequest:
    return pb.DeleteAliasRequest(name=name)


def list_aliases_request(collection: str | None = None) -> pb.ListAliasesRequest:
    return pb.ListAliasesRequest(collection=collection or "")


def create_snapshot_request(collection: str) -> pb.CreateSnapshotRequest:
    return pb.CreateSnapshotRequest(collection=collection)


def list_snapshots_request(collection: str) -> pb.ListSnapshotsRequest:
    return pb.ListSnapshotsRequest(collection=collection)


def delete_snapshot_request(collection: str, name: str) -> pb.DeleteSnapshotRequest:
    return pb.DeleteSnapshotRequest(collection=collection, name=name)


def restore_snapshot_request(
    collection: str, snapshot: str, *, target: str | None = None, replace: bool = False
) -> pb.RestoreSnapshotRequest:
    return pb.RestoreSnapshotRequest(collection=collection, snapshot=snapshot, target=target or "",
                                     replace=bool(replace))


def alias(message: pb.Alias) -> Alias:
    return Alias(name=message.name, collection=message.collection)


def aliases(message: pb.ListAliasesResponse) -> list[Alias]:
    return [alias(a) for a in message.aliases]


def snapshot(message: pb.Snapshot) -> Snapshot:
    return Snapshot(collection=message.collection, name=message.name, bytes=message.bytes, created=message.created)


def snapshot_list(message: pb.ListSnapshotsResponse) -> list[Snapshot]:
    return [snapshot(s) for s in message.snapshots]


def nothing(message: Any) -> None:
    return None


def index_metadata_request(collection: str, keys: str | Iterable[str]) -> pb.IndexMetadataRequest:
    return pb.IndexMetadataRequest(collection=collection, keys=_ids(keys, "keys"))


def fields_to_proto(
    text: bool = True, metadata: bool | Sequence[str] = True, vectors: bool = False
) -> pb.Fields | None:
    """``text=False`` leaves texts out; ``metadata=False`` leaves metadata out, a list of keys keeps
    only those; ``vectors=True`` adds the vectors. None for the wire's default (text and all
    metadata)."""
    for name, value in (("text", text), ("vectors", vectors)):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name}: expected True or False, got {value!r}")
    if text and metadata is True and not vectors:
        return None
    fields = pb.Fields(no_text=not text, vectors=vectors)
    if metadata is False:
        fields.no_metadata = True
    elif metadata is not True:
        keys = _ids(metadata, "metadata")  # type: ignore[arg-type]
        if not keys:
            raise InvalidArgument("metadata: give True, False or at least one key")
        fields.metadata_keys.extend(keys)
    return fields


def get_request(
    collection: str,
    ids: str | Iterable[str],
    *,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
    vectors: bool = False,
) -> pb.GetRequest:
    return pb.GetRequest(collection=collection, ids=_ids(ids), fields=fields_to_proto(text, metadata, vectors))


def count_request(collection: str, *, filter: Mapping[str, Any] | None = None) -> pb.CountRequest:
    return pb.CountRequest(collection=collection, filter=filter_to_proto(filter))


def scroll_request(
    collection: str,
    *,
    filter: Mapping[str, Any] | None = None,
    limit: int = 100,
    cursor: str | None = None,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
    vectors: bool = False,
) -> pb.ScrollRequest:
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidArgument(f"cursor: expected the next_cursor of a page, got {cursor!r}")
    return pb.ScrollRequest(
        collection=collection,
        filter=filter_to_proto(filter),
        limit=_int_arg("limit", limit, minimum=1),
        cursor=cursor or "",
        fields=fields_to_proto(text, metadata, vectors),
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


def _search_request(
    collection: str,
    query: Query,
    *,
    k: int,
    filter: pb.Filter | None,
    min_score: float | None,
    mode: str | None,
    ef_search: int | None,
    nprobe: int | None,
    field: str,
    fields: pb.Fields | None = None,
) -> pb.SearchRequest:
    request = pb.SearchRequest(
        collection=collection,
        top_k=_int_arg("k", k, minimum=1),
        filter=filter,
        mode=mode_to_proto(mode),
        ef_search=_optional_int_arg("ef_search", ef_search, minimum=0),
        nprobe=_optional_int_arg("nprobe", nprobe, minimum=0),
        fields=fields,
    )
    if isinstance(query, str):
        request.text = query
    else:
        request.vector.CopyFrom(_vector(query, field))
    if min_score is not None:
        if not _is_number(min_score):
            raise InvalidArgument(f"min_score: expected a number, got {min_score!r}")
        request.min_score = float(min_score)
    return request


def search_request(
    collection: str,
    query: Query,
    *,
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    min_score: float | None = None,
    mode: str | None = None,
    ef_search: int | None = None,
    nprobe: int | None = None,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
) -> pb.SearchRequest:
    """A ``str`` query is embedded (or tokenized) by the server; anything else is taken as a
    ready-made query vector."""
    return _search_request(
        collection,
        query,
        k=k,
        filter=filter_to_proto(filter),
        min_score=min_score,
        mode=mode,
        ef_search=ef_search,
        nprobe=nprobe,
        field="query",
        fields=fields_to_proto(text, metadata),
    )


def batch_search_request(
    collection: str,
    queries: Sequence[Query],
    *,
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    min_score: float | None = None,
    mode: str | None = None,
    ef_search: int | None = None,
    nprobe: int | None = None,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
) -> pb.BatchSearchRequest:
    if isinstance(queries, str):
        raise InvalidArgument("queries: expected a sequence of queries, got a single str")
    conditions = filter_to_proto(filter)
    fields = fields_to_proto(text, metadata)
    return pb.BatchSearchRequest(
        requests=[
            _search_request(
                collection,
                query,
                k=k,
                filter=conditions,
                min_score=min_score,
                mode=mode,
                ef_search=ef_search,
                nprobe=nprobe,
                field=f"queries[{i}]",
                fields=fields,
            )
            for i, query in enumerate(queries)
        ]
    )


def ask_request(
    collection: str,
    question: str,
    *,
    k: int = 5,
    filter: Mapping[str, Any] | None = None,
    mode: str | None = None,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
) -> pb.AskRequest:
    if not isinstance(question, str):
        raise InvalidArgument(f"question: expected a str, got {type(question).__name__}")
    return pb.AskRequest(
        collection=collection,
        question=question,
        top_k=_int_arg("k", k, minimum=1),
        filter=filter_to_proto(filter),
        mode=mode_to_proto(mode),
        fields=fields_to_proto(text, metadata),
    )


def _texts(texts: Sequence[str], field: str = "texts") -> list[str]:
    """A list of texts: any sequence of str (a numpy array of strings too), never a lone str."""
    if isinstance(texts, str):
        raise InvalidArgument(f"{field}: expected a sequence of str, got a single str")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidArgument(f"{field}[{i}]: expected a str, got {type(text).__name__}")
    return [str(text) for text in items]


def embed_request(texts: Sequence[str], *, collection: str | None = None) -> pb.EmbedRequest:
    return pb.EmbedRequest(texts=_texts(texts), collection=collection or "")


def similarity_request(
    texts: Sequence[str], others: Sequence[str] | None = None, *, collection: str | None = None
) -> pb.SimilarityRequest:
    return pb.SimilarityRequest(
        texts=_texts(texts),
        others=_texts(others, "others") if others is not None else [],
        collection=collection or "",
    )


def tokenize_request(text: str, *, collection: str | None = None) -> pb.TokenizeRequest:
    if not isinstance(text, str):
        raise InvalidArgument(f"text: expected a str, got {type(text).__name__}")
    return pb.TokenizeRequest(text=text, collection=collection or "")


def similar_request(
    collection: str,
    positive: str | Iterable[str],
    *,
    negative: str | Iterable[str] | None = None,
    k: int = 10,
    filter: Mapping[str, Any] | None = None,
    min_score: float | None = None,
    ef_search: int | None = None,
    nprobe: int | None = None,
    text: bool = True,
    metadata: bool | Sequence[str] = True,
) -> pb.SearchSimilarRequest:
    request = pb.SearchSimilarRequest(
        fields=fields_to_proto(text, metadata),
        collection=collection,
        positive=_ids(positive, "positive"),
        negative=_ids(negative, "negative") if negative is not None else [],
        top_k=_int_arg("k", k, minimum=1),
        filter=filter_to_proto(filter),
        ef_search=_optional_int_arg("ef_search", ef_search, minimum=0),
        nprobe=_optional_int_arg("nprobe", nprobe, minimum=0),
    )
    if not request.positive:
        raise InvalidArgument("positive: give at least one document id")
    if min_score is not None:
        if not _is_number(min_score):
            raise InvalidArgument(f"min_score: expected a number, got {min_score!r}")
        request.min_score = float(min_score)
    return request


# ---------------------------------------------------------------------------------------------
# Response parsers


def collection_info(message: pb.CollectionInfo) -> CollectionInfo:
    return CollectionInfo(
        name=message.name,
        documents=message.documents,
        chunks=message.chunks,
        vectors=message.vectors,
        dimension=message.dimension,
        model=message.model,
        index_kind=message.index_kind,
        bytes=message.bytes,
        chunk_tokens=message.chunk_tokens,
        overlap_tokens=message.overlap_tokens,
        default_mode=mode_from_proto(message.default_mode),
        encoder=message.encoder,
        index_params=dict(message.index_params),
        indexed_keys=list(message.indexed_keys),
        aliases=list(message.aliases),
        store=message.store,
        state=_STATE_NAMES.get(message.state, str(message.state)),
        reason=message.reason,
    )


def collection_infos(message: pb.ListCollectionsResponse) -> list[CollectionInfo]:
    return [collection_info(c) for c in message.collections]


def deleted_collection(message: pb.DeleteCollectionResponse) -> None:
    return None


def upsert_result(message: pb.UpsertResponse) -> UpsertResult:
    return UpsertResult(
        upserted=message.upserted,
        unchanged=message.unchanged,
        chunks=message.chunks,
        ids=list(message.ids),
        tokens=message.tokens,
    )


def deleted_count(message: pb.DeleteResponse) -> int:
    return message.deleted


def get_result(message: pb.GetResponse) -> GetResult:
    return GetResult(
        documents=[document_from_proto(d) for d in message.documents],
        missing=list(message.missing),
    )


def counted(message: pb.CountResponse) -> int:
    return message.count


def scroll_page(message: pb.ScrollResponse) -> ScrollPage:
    return ScrollPage(
        documents=[document_from_proto(d) for d in message.documents],
        next_cursor=message.next_cursor or None,
    )


def hit_from_proto(message: pb.Hit) -> Hit:
    return Hit(
        id=message.id,
        score=message.score,
        text=message.text,
        title=message.title,
        metadata=struct_to_metadata(message.metadata),
        chunk_index=message.chunk_index,
        chunk_start=message.chunk_start,
        chunk_end=message.chunk_end,
        retrievers=[
            RetrieverScore(retriever=r.retriever, score=r.score, rank=r.rank) for r in message.retrievers
        ],
    )


def search_result(message: pb.SearchResponse) -> SearchResult:
    return SearchResult(
        hits=[hit_from_proto(h) for h in message.hits],
        timings_ms=dict(message.timings_ms),
        mode=mode_from_proto(message.mode),
    )


def batch_search_results(message: pb.BatchSearchResponse) -> list[SearchResult]:
    return [search_result(r) for r in message.responses]


def ask_result(message: pb.AskResponse) -> AskResult:
    return AskResult(
        answers=[
            Answer(
                passage=hit_from_proto(a.passage),
                sentence=a.sentence,
                sentence_start=a.sentence_start,
                sentence_end=a.sentence_end,
                confidence=a.confidence,
            )
            for a in message.answers
        ],
        timings_ms=dict(message.timings_ms),
    )


def embeddings(message: pb.EmbedResponse) -> list[list[float]]:
    return [list(v.values) for v in message.vectors]


def similarity_matrix(message: pb.SimilarityResponse) -> list[list[float]]:
    return [list(row.values) for row in message.rows]


def tokenization(message: pb.TokenizeResponse) -> Tokenization:
    return Tokenization(
        tokens=[Token(token=t.token, id=t.id, start=t.start, end=t.end) for t in message.tokens],
        count=message.count,
        window=message.window,
        fits=message.fits,
        chunks=[ChunkSpan(index=c.index, start=c.start, end=c.end, tokens=c.tokens) for c in message.chunks],
        model=message.model,
    )


# ---------------------------------------------------------------------------------------------
# grpc.health.v1, decoded by hand so the client needs no grpcio-health-checking

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
# HealthCheckRequest{service: ""} encodes to zero bytes: the server's overall health.
HEALTH_CHECK_REQUEST = b""
_SERVING = 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def health_serving(payload: bytes) -> bool:
    """Whether a HealthCheckResponse says SERVING (field 1, a varint enum, 1 == SERVING)."""
    try:
        return _health_status(payload) == _SERVING
    except ValueError as exc:
        raise Internal(f"malformed health check response: {exc}") from None


def _health_status(payload: bytes) -> int:
    status = 0
    pos = 0
    while pos < len(payload):
        key, pos = _read_varint(payload, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(payload, pos)
            if number == 1:
                status = value
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = _read_varint(payload, pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(payload):
            raise ValueError("truncated message")
    return status
