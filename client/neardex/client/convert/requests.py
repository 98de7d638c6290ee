"""One request builder per RPC: each checks its arguments and raises
:class:`~neardex.client.errors.InvalidArgument` naming the offending one, so mistakes surface
before anything is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from neardex.v1 import neardex_pb2 as pb

from ..errors import InvalidArgument
from ..models import Document
from .documents import _vector, document_to_proto
from .filters import filter_to_proto
from .metadata import metadata_to_struct
from .scalars import _int_arg, _is_int, _is_number, _optional_int_arg, mode_to_proto

Query = str | Sequence[float]
# A cross-encoder's folder or Hugging Face id ("none": no rerank, whatever the collection's
# default), or {"model": ..., "depth": N}; None: the collection's default.
RerankArg = str | Mapping[str, Any] | None


def rerank_to_proto(rerank: RerankArg, field: str = "rerank") -> pb.Rerank | None:
    """A rerank stage as the wire carries it; None leaves the field unset."""
    if rerank is None:
        return None
    if isinstance(rerank, str):
        return pb.Rerank(model=rerank)
    if not isinstance(rerank, Mapping):
        raise InvalidArgument(f"{field}: expected a model (str) or {{'model': ..., 'depth': N}}, got {rerank!r}")
    unknown = set(rerank) - {"model", "depth"}
    if unknown:
        raise InvalidArgument(f"{field}: unknown keys {sorted(unknown)}; expected 'model' and 'depth'")
    model = rerank.get("model") or ""
    if not isinstance(model, str):
        raise InvalidArgument(f"{field}.model: expected a str, got {model!r}")
    return pb.Rerank(model=model, depth=_int_arg(f"{field}.depth", rerank.get("depth") or 0, minimum=0))


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
    language: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    rerank: RerankArg = None,
    ttl_seconds: int | None = None,
) -> pb.CreateCollectionRequest:
    for field, prompt in (("query_prompt", query_prompt), ("document_prompt", document_prompt)):
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidArgument(f"{field}: expected a str or None, got {prompt!r}")
    request = pb.CreateCollectionRequest(
        # None leaves a prompt unset (the model's own); "" is sent, and means none.
        query_prompt=query_prompt,
        document_prompt=document_prompt,
        name=name,
        store=store or "",
        language=language or "",
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
        rerank=rerank_to_proto(rerank),
        ttl_seconds=_optional_int_arg("ttl_seconds", ttl_seconds, minimum=0),
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


def update_metadata_request(
    collection: str,
    ids: str | Iterable[str] | None = None,
    *,
    filter: Mapping[str, Any] | None = None,
    set: Mapping[str, Any] | None = None,
    unset: str | Iterable[str] = (),
    replace: bool = False,
) -> pb.UpdateMetadataRequest:
    if (ids is None) == (filter is None):
        raise InvalidArgument("ids, filter: update by ids or by a filter (one of them)")
    if set is not None and not isinstance(set, Mapping):
        raise InvalidArgument(f"set: expected a mapping of keys to values, got {type(set).__name__}")
    request = pb.UpdateMetadataRequest(collection=collection, set=metadata_to_struct(set or {}, "set"),
                                       unset=_ids(unset, "unset"), replace=bool(replace))
    if ids is not None:
        request.ids.extend(_ids(ids))
        return request
    conditions = filter_to_proto(filter)
    if conditions is None:
        raise InvalidArgument("filter: an empty filter would update every document; give conditions")
    request.filter.CopyFrom(conditions)
    return request


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
    collection: str, snapshot: str, *, target: str | None = None, replace: bool = False, store: str | None = None
) -> pb.RestoreSnapshotRequest:
    return pb.RestoreSnapshotRequest(collection=collection, snapshot=snapshot, target=target or "",
                                     replace=bool(replace), store=store or "")


def migrate_collection_request(name: str, to: str | None = None, *, target: str | None = None,
                               keep_as: str | None = None) -> pb.MigrateCollectionRequest:
    return pb.MigrateCollectionRequest(name=name, to=to or "", target=target or "", keep_as=keep_as or "")


def update_collection_request(name: str, *, language: str | None = None,
                              ttl_seconds: int | None = None) -> pb.UpdateCollectionRequest:
    request = pb.UpdateCollectionRequest(name=name, language=language or "")
    if ttl_seconds is not None:  # unset leaves it; 0 turns it off
        request.ttl_seconds = _int_arg("ttl_seconds", ttl_seconds, minimum=0)
    return request


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


def facet_request(
    collection: str, key: str, *, filter: Mapping[str, Any] | None = None, limit: int = 10
) -> pb.FacetRequest:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"key: expected a metadata key such as 'tags' or 'address.city', got {key!r}")
    return pb.FacetRequest(
        collection=collection, key=key, filter=filter_to_proto(filter), limit=_int_arg("limit", limit, minimum=1)
    )


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
    offset: int = 0,
    diversity: float = 0.0,
    rerank: pb.Rerank | None = None,
    group_by: str | None = None,
    group_size: int | None = None,
    chunks_per_document: int | None = None,
) -> pb.SearchRequest:
    if not _is_number(diversity):
        raise InvalidArgument(f"diversity: expected a number, got {diversity!r}")
    if group_by is not None and not isinstance(group_by, str):
        raise InvalidArgument(f"group_by: expected a str such as 'metadata.source', got {group_by!r}")
    request = pb.SearchRequest(
        collection=collection,
        top_k=_int_arg("k", k, minimum=1),
        offset=_int_arg("offset", offset, minimum=0),
        diversity=float(diversity),
        group_by=group_by or "",
        group_size=_optional_int_arg("group_size", group_size, minimum=0),
        chunks_per_document=_optional_int_arg("chunks_per_document", chunks_per_document, minimum=0),
        filter=filter,
        mode=mode_to_proto(mode),
        ef_search=_optional_int_arg("ef_search", ef_search, minimum=0),
        nprobe=_optional_int_arg("nprobe", nprobe, minimum=0),
        fields=fields,
        rerank=rerank,
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
    offset: int = 0,
    diversity: float = 0.0,
    rerank: RerankArg = None,
    group_by: str | None = None,
    group_size: int | None = None,
    chunks_per_document: int | None = None,
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
        offset=offset,
        diversity=diversity,
        rerank=rerank_to_proto(rerank),
        group_by=group_by,
        group_size=group_size,
        chunks_per_document=chunks_per_document,
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
    offset: int = 0,
    diversity: float = 0.0,
    rerank: RerankArg = None,
    group_by: str | None = None,
    group_size: int | None = None,
    chunks_per_document: int | None = None,
) -> pb.BatchSearchRequest:
    if isinstance(queries, str):
        raise InvalidArgument("queries: expected a sequence of queries, got a single str")
    conditions = filter_to_proto(filter)
    fields = fields_to_proto(text, metadata)
    stage = rerank_to_proto(rerank)
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
                offset=offset,
                diversity=diversity,
                rerank=stage,
                group_by=group_by,
                group_size=group_size,
                chunks_per_document=chunks_per_document,
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
    rerank: RerankArg = None,
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
        rerank=rerank_to_proto(rerank),
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


def tokenize_request(text: str, *, collection: str | None = None, language: str | None = None) -> pb.TokenizeRequest:
    if not isinstance(text, str):
        raise InvalidArgument(f"text: expected a str, got {type(text).__name__}")
    return pb.TokenizeRequest(text=text, collection=collection or "", language=language or "")


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
