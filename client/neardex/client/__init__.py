"""Typed Python client for the neardex embedding search service.

>>> from neardex.client import Client
>>> with Client("localhost:50051") as c:
...     c.create_collection("docs", exist_ok=True)
...     c.upsert("docs", [{"id": "1", "text": "hello world"}])
...     hits = c.search("docs", "greeting", k=3)
...     hits[0].id
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NeardexError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unknown,
)
from .models import (
    Alias,
    Answer,
    AskResult,
    ChunkSpan,
    CollectionInfo,
    Document,
    FacetResult,
    FacetValue,
    GetResult,
    Group,
    Hit,
    MatchedChunk,
    Migration,
    Rerank,
    RetrieverScore,
    ScrollPage,
    SearchResult,
    Snapshot,
    Term,
    Token,
    Tokenization,
    UpdateMetadataResult,
    UpsertResult,
)
from .retry import RetryPolicy

__all__ = [
    "Alias",
    "AlreadyExists",
    "Answer",
    "AskResult",
    "AsyncClient",
    "Cancelled",
    "ChunkSpan",
    "Client",
    "CollectionInfo",
    "DeadlineExceeded",
    "Document",
    "FacetResult",
    "FacetValue",
    "FailedPrecondition",
    "GetResult",
    "Group",
    "Hit",
    "Internal",
    "InvalidArgument",
    "MatchedChunk",
    "Migration",
    "NeardexError",
    "NotFound",
    "PermissionDenied",
    "Rerank",
    "ResourceExhausted",
    "RetrieverScore",
    "RetryPolicy",
    "ScrollPage",
    "SearchResult",
    "Snapshot",
    "Term",
    "Token",
    "Tokenization",
    "Unauthenticated",
    "Unavailable",
    "Unknown",
    "UpdateMetadataResult",
    "UpsertResult",
]
