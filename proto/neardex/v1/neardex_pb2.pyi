import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_LEXICAL: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]

class CollectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTION_STATE_UNSPECIFIED: _ClassVar[CollectionState]
    COLLECTION_STATE_READY: _ClassVar[CollectionState]
    COLLECTION_STATE_UNAVAILABLE: _ClassVar[CollectionState]
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_LEXICAL: SearchMode
SEARCH_MODE_HYBRID: SearchMode
COLLECTION_STATE_UNSPECIFIED: CollectionState
COLLECTION_STATE_READY: CollectionState
COLLECTION_STATE_UNAVAILABLE: CollectionState

class IndexSpec(_message.Message):
    __slots__ = ("kind", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    params: _containers.ScalarMap[str, int]
    def __init__(self, kind: _Optional[str] = ..., params: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "model", "index", "chunk_tokens", "overlap_tokens", "default_mode", "encoder", "dimension", "indexed_keys", "store", "language", "query_prompt", "document_prompt", "rerank", "ttl_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    INDEXED_KEYS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    index: IndexSpec
    chunk_tokens: int
    overlap_tokens: int
    default_mode: SearchMode
    encoder: str
    dimension: int
    indexed_keys: _containers.RepeatedScalarFieldContainer[str]
    store: str
    language: str
    query_prompt: str
    document_prompt: str
    rerank: Rerank
    ttl_seconds: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., index: _Optional[_Union[IndexSpec, _Mapping]] = ..., chunk_tokens: _Optional[int] = ..., overlap_tokens: _Optional[int] = ..., default_mode: _Optional[_Union[SearchMode, str]] = ..., encoder: _Optional[str] = ..., dimension: _Optional[int] = ..., indexed_keys: _Optional[_Iterable[str]] = ..., store: _Optional[str] = ..., language: _Optional[str] = ..., query_prompt: _Optional[str] = ..., document_prompt: _Optional[str] = ..., rerank: _Optional[_Union[Rerank, _Mapping]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class UpdateCollectionRequest(_message.Message):
    __slots__ = ("name", "language", "ttl_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    ttl_seconds: int
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "documents", "chunks", "vectors", "dimension", "model", "index_kind", "bytes", "chunk_tokens", "overlap_tokens", "default_mode", "encoder", "index_params", "indexed_keys", "aliases", "store", "state", "reason", "language", "lexical_language", "languages", "model_revision", "query_prompt", "document_prompt", "rerank", "ttl_seconds")
    class IndexParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class LanguagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_KEYS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    QUERY_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    documents: int
    chunks: int
    vectors: int
    dimension: int
    model: str
    index_kind: str
    bytes: int
    chunk_tokens: int
    overlap_tokens: int
    default_mode: SearchMode
    encoder: str
    index_params: _containers.ScalarMap[str, int]
    indexed_keys: _containers.RepeatedScalarFieldContainer[str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    store: str
    state: CollectionState
    reason: str
    language: str
    lexical_language: str
    languages: _containers.ScalarMap[str, int]
    model_revision: str
    query_prompt: str
    document_prompt: str
    rerank: Rerank
    ttl_seconds: int
    def __init__(self, name: _Optional[str] = ..., documents: _Optional[int] = ..., chunks: _Optional[int] = ..., vectors: _Optional[int] = ..., dimension: _Optional[int] = ..., model: _Optional[str] = ..., index_kind: _Optional[str] = ..., bytes: _Optional[int] = ..., chunk_tokens: _Optional[int] = ..., overlap_tokens: _Optional[int] = ..., default_mode: _Optional[_Union[SearchMode, str]] = ..., encoder: _Optional[str] = ..., index_params: _Optional[_Mapping[str, int]] = ..., indexed_keys: _Optional[_Iterable[str]] = ..., aliases: _Optional[_Iterable[str]] = ..., store: _Optional[str] = ..., state: _Optional[_Union[CollectionState, str]] = ..., reason: _Optional[str] = ..., language: _Optional[str] = ..., lexical_language: _Optional[str] = ..., languages: _Optional[_Mapping[str, int]] = ..., model_revision: _Optional[str] = ..., query_prompt: _Optional[str] = ..., document_prompt: _Optional[str] = ..., rerank: _Optional[_Union[Rerank, _Mapping]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexMetadataRequest(_message.Message):
    __slots__ = ("collection", "keys")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "title", "metadata", "vector", "chunk_vectors", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    CHUNK_VECTORS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    title: str
    metadata: _struct_pb2.Struct
    vector: Vector
    chunk_vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., title: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., chunk_vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "unchanged", "chunks", "ids", "tokens", "metadata_updated")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    METADATA_UPDATED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    unchanged: int
    chunks: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    tokens: int
    metadata_updated: int
    def __init__(self, upserted: _Optional[int] = ..., unchanged: _Optional[int] = ..., chunks: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., tokens: _Optional[int] = ..., metadata_updated: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    filter: Filter
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "fields")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    fields: Fields
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ...) -> None: ...

class Fields(_message.Message):
    __slots__ = ("no_text", "no_metadata", "metadata_keys", "vectors")
    NO_TEXT_FIELD_NUMBER: _ClassVar[int]
    NO_METADATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_KEYS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    no_text: bool
    no_metadata: bool
    metadata_keys: _containers.RepeatedScalarFieldContainer[str]
    vectors: bool
    def __init__(self, no_text: _Optional[bool] = ..., no_metadata: _Optional[bool] = ..., metadata_keys: _Optional[_Iterable[str]] = ..., vectors: _Optional[bool] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: Filter
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "filter", "limit", "cursor", "fields")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: Filter
    limit: int
    cursor: str
    fields: Fields
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ...) -> None: ...

class ScrollResponse(_message.Message):
    __slots__ = ("documents", "next_cursor")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    next_cursor: str
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("documents", "missing")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("eq", "range", "ne", "not_in", "exists", "contains_any", "contains_all")
    EQ_FIELD_NUMBER: _ClassVar[int]
    IN_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    NE_FIELD_NUMBER: _ClassVar[int]
    NOT_IN_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_ANY_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_ALL_FIELD_NUMBER: _ClassVar[int]
    eq: _struct_pb2.Value
    range: Range
    ne: _struct_pb2.Value
    not_in: _struct_pb2.ListValue
    exists: bool
    contains_any: _struct_pb2.ListValue
    contains_all: _struct_pb2.ListValue
    def __init__(self, eq: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ..., ne: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., not_in: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., exists: _Optional[bool] = ..., contains_any: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., contains_all: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., **kwargs) -> None: ...

class Range(_message.Message):
    __slots__ = ("gt", "gte", "lt", "lte", "gt_text", "gte_text", "lt_text", "lte_text")
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    GT_TEXT_FIELD_NUMBER: _ClassVar[int]
    GTE_TEXT_FIELD_NUMBER: _ClassVar[int]
    LT_TEXT_FIELD_NUMBER: _ClassVar[int]
    LTE_TEXT_FIELD_NUMBER: _ClassVar[int]
    gt: float
    gte: float
    lt: float
    lte: float
    gt_text: str
    gte_text: str
    lt_text: str
    lte_text: str
    def __init__(self, gt: _Optional[float] = ..., gte: _Optional[float] = ..., lt: _Optional[float] = ..., lte: _Optional[float] = ..., gt_text: _Optional[str] = ..., gte_text: _Optional[str] = ..., lt_text: _Optional[str] = ..., lte_text: _Optional[str] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("conditions", "all", "any", "none")
    class ConditionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Condition
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.MessageMap[str, Condition]
    all: _containers.RepeatedCompositeFieldContainer[Filter]
    any: _containers.RepeatedCompositeFieldContainer[Filter]
    none: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, conditions: _Optional[_Mapping[str, Condition]] = ..., all: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., any: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., none: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "text", "vector", "top_k", "filter", "min_score", "mode", "ef_search", "nprobe", "fields", "offset", "diversity", "rerank", "group_by", "group_size", "chunks_per_document")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_PER_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    text: str
    vector: Vector
    top_k: int
    filter: Filter
    min_score: float
    mode: SearchMode
    ef_search: int
    nprobe: int
    fields: Fields
    offset: int
    diversity: float
    rerank: Rerank
    group_by: str
    group_size: int
    chunks_per_document: int
    def __init__(self, collection: _Optional[str] = ..., text: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., ef_search: _Optional[int] = ..., nprobe: _Optional[int] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ..., offset: _Optional[int] = ..., diversity: _Optional[float] = ..., rerank: _Optional[_Union[Rerank, _Mapping]] = ..., group_by: _Optional[str] = ..., group_size: _Optional[int] = ..., chunks_per_document: _Optional[int] = ...) -> None: ...

class RetrieverScore(_message.Message):
    __slots__ = ("retriever", "score", "rank")
    RETRIEVER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    retriever: str
    score: float
    rank: int
    def __init__(self, retriever: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "text", "title", "metadata", "chunk_index", "chunk_start", "chunk_end", "retrievers", "chunks", "group")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_END_FIELD_NUMBER: _ClassVar[int]
    RETRIEVERS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    text: str
    title: str
    metadata: _struct_pb2.Struct
    chunk_index: int
    chunk_start: int
    chunk_end: int
    retrievers: _containers.RepeatedCompositeFieldContainer[RetrieverScore]
    chunks: _containers.RepeatedCompositeFieldContainer[MatchedChunk]
    group: _struct_pb2.Value
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., text: _Optional[str] = ..., title: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., chunk_index: _Optional[int] = ..., chunk_start: _Optional[int] = ..., chunk_end: _Optional[int] = ..., retrievers: _Optional[_Iterable[_Union[RetrieverScore, _Mapping]]] = ..., chunks: _Optional[_Iterable[_Union[MatchedChunk, _Mapping]]] = ..., group: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "timings_ms", "mode", "groups")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    HITS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    timings_ms: _containers.ScalarMap[str, float]
    mode: SearchMode
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("collection", "question", "top_k", "filter", "mode", "fields", "rerank")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    collection: str
    question: str
    top_k: int
    filter: Filter
    mode: SearchMode
    fields: Fields
    rerank: Rerank
    def __init__(self, collection: _Optional[str] = ..., question: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ..., rerank: _Optional[_Union[Rerank, _Mapping]] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("passage", "sentence", "sentence_start", "sentence_end", "confidence")
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_START_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_END_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    passage: Hit
    sentence: str
    sentence_start: int
    sentence_end: int
    confidence: float
    def __init__(self, passage: _Optional[_Union[Hit, _Mapping]] = ..., sentence: _Optional[str] = ..., sentence_start: _Optional[int] = ..., sentence_end: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("answers", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "collection")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    collection: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., collection: _Optional[str] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("vectors", "dimension", "model")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    dimension: int
    model: str
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., dimension: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class SearchSimilarRequest(_message.Message):
    __slots__ = ("collection", "positive", "negative", "top_k", "filter", "min_score", "ef_search", "nprobe", "fields")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    positive: _containers.RepeatedScalarFieldContainer[str]
    negative: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    filter: Filter
    min_score: float
    ef_search: int
    nprobe: int
    fields: Fields
    def __init__(self, collection: _Optional[str] = ..., positive: _Optional[_Iterable[str]] = ..., negative: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., ef_search: _Optional[int] = ..., nprobe: _Optional[int] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("texts", "others", "collection")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    others: _containers.RepeatedScalarFieldContainer[str]
    collection: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., others: _Optional[_Iterable[str]] = ..., collection: _Optional[str] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("rows", "model")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[Vector]
    model: str
    def __init__(self, rows: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("text", "collection", "language")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    collection: str
    language: str
    def __init__(self, text: _Optional[str] = ..., collection: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class Term(_message.Message):
    __slots__ = ("text", "start", "end", "term", "stop")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    text: str
    start: int
    end: int
    term: str
    stop: bool
    def __init__(self, text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., term: _Optional[str] = ..., stop: _Optional[bool] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token", "id", "start", "end")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    token: str
    id: int
    start: int
    end: int
    def __init__(self, token: _Optional[str] = ..., id: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class ChunkSpan(_message.Message):
    __slots__ = ("index", "start", "end", "tokens")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    index: int
    start: int
    end: int
    tokens: int
    def __init__(self, index: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("tokens", "count", "window", "fits", "chunks", "model", "terms", "analyzer", "language")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    count: int
    window: int
    fits: bool
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkSpan]
    model: str
    terms: _containers.RepeatedCompositeFieldContainer[Term]
    analyzer: str
    language: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., count: _Optional[int] = ..., window: _Optional[int] = ..., fits: _Optional[bool] = ..., chunks: _Optional[_Iterable[_Union[ChunkSpan, _Mapping]]] = ..., model: _Optional[str] = ..., terms: _Optional[_Iterable[_Union[Term, _Mapping]]] = ..., analyzer: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("name", "collection")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class CreateAliasRequest(_message.Message):
    __slots__ = ("name", "collection", "replace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    replace: bool
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., replace: _Optional[bool] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    def __init__(self, aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("collection", "name", "bytes", "created")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    bytes: int
    created: str
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ..., bytes: _Optional[int] = ..., created: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("collection", "name")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("collection", "snapshot", "target", "replace", "store")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    snapshot: str
    target: str
    replace: bool
    store: str
    def __init__(self, collection: _Optional[str] = ..., snapshot: _Optional[str] = ..., target: _Optional[str] = ..., replace: _Optional[bool] = ..., store: _Optional[str] = ...) -> None: ...

class MigrateCollectionRequest(_message.Message):
    __slots__ = ("name", "to", "target", "keep_as")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KEEP_AS_FIELD_NUMBER: _ClassVar[int]
    name: str
    to: str
    target: str
    keep_as: str
    def __init__(self, name: _Optional[str] = ..., to: _Optional[str] = ..., target: _Optional[str] = ..., keep_as: _Optional[str] = ...) -> None: ...

class MigrateCollectionResponse(_message.Message):
    __slots__ = ("collection", "kept_as", "copied", "deleted", "rounds")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    KEPT_AS_FIELD_NUMBER: _ClassVar[int]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    kept_as: str
    copied: int
    deleted: int
    rounds: int
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., kept_as: _Optional[str] = ..., copied: _Optional[int] = ..., deleted: _Optional[int] = ..., rounds: _Optional[int] = ...) -> None: ...

class FacetRequest(_message.Message):
    __slots__ = ("collection", "key", "filter", "limit")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    key: str
    filter: Filter
    limit: int
    def __init__(self, collection: _Optional[str] = ..., key: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class FacetValue(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: _struct_pb2.Value
    count: int
    def __init__(self, value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class FacetResponse(_message.Message):
    __slots__ = ("values", "documents", "exact")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[FacetValue]
    documents: int
    exact: bool
    def __init__(self, values: _Optional[_Iterable[_Union[FacetValue, _Mapping]]] = ..., documents: _Optional[int] = ..., exact: _Optional[bool] = ...) -> None: ...

class Rerank(_message.Message):
    __slots__ = ("model", "depth")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    model: str
    depth: int
    def __init__(self, model: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class UpdateMetadataRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter", "set", "unset", "replace")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    filter: Filter
    set: _struct_pb2.Struct
    unset: _containers.RepeatedScalarFieldContainer[str]
    replace: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., set: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unset: _Optional[_Iterable[str]] = ..., replace: _Optional[bool] = ...) -> None: ...

class UpdateMetadataResponse(_message.Message):
    __slots__ = ("updated", "missing")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    updated: int
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, updated: _Optional[int] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("value", "hits")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    value: _struct_pb2.Value
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class MatchedChunk(_message.Message):
    __slots__ = ("text", "chunk_index", "start", "end", "score")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    chunk_index: int
    start: int
    end: int
    score: float
    def __init__(self, text: _Optional[str] = ..., chunk_index: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...
