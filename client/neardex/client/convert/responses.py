"""Response parsers, one per RPC: they turn messages into the client's models and never fail on
values a newer server might add (an unknown mode or state is reported as it is)."""

from __future__ import annotations

from typing import Any

from neardex.v1 import neardex_pb2 as pb

from ..models import (
    Alias,
    Answer,
    AskResult,
    ChunkSpan,
    CollectionInfo,
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
from .documents import document_from_proto
from .metadata import struct_to_metadata, value_from_proto
from .scalars import mode_from_proto

# A server from before collection states lists only collections that opened: ready.
_STATE_NAMES: dict[int, str] = {
    pb.COLLECTION_STATE_UNSPECIFIED: "ready",
    pb.COLLECTION_STATE_READY: "ready",
    pb.COLLECTION_STATE_UNAVAILABLE: "unavailable",
}


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
        language=message.language,
        lexical_language=message.lexical_language,
        languages=dict(message.languages),
        model_revision=message.model_revision,
        query_prompt=message.query_prompt,
        document_prompt=message.document_prompt,
        rerank=Rerank(model=message.rerank.model, depth=message.rerank.depth) if message.HasField("rerank") else None,
        ttl_seconds=message.ttl_seconds,
    )


def migration(message: pb.MigrateCollectionResponse) -> Migration:
    return Migration(collection=collection_info(message.collection), kept_as=message.kept_as, copied=message.copied,
                     deleted=message.deleted, rounds=message.rounds)


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
        metadata_updated=message.metadata_updated,
    )


def metadata_updated(message: pb.UpdateMetadataResponse) -> UpdateMetadataResult:
    return UpdateMetadataResult(updated=message.updated, missing=list(message.missing))


def deleted_count(message: pb.DeleteResponse) -> int:
    return message.deleted


def get_result(message: pb.GetResponse) -> GetResult:
    return GetResult(
        documents=[document_from_proto(d) for d in message.documents],
        missing=list(message.missing),
    )


def counted(message: pb.CountResponse) -> int:
    return message.count


def facet_result(message: pb.FacetResponse) -> FacetResult:
    return FacetResult(
        values=[FacetValue(value=value_from_proto(v.value), count=v.count) for v in message.values],
        documents=message.documents,
        exact=message.exact,
    )


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
        chunks=[
            MatchedChunk(text=c.text, chunk_index=c.chunk_index, start=c.start, end=c.end, score=c.score)
            for c in message.chunks
        ],
        group=value_from_proto(message.group) if message.HasField("group") else None,
    )


def search_result(message: pb.SearchResponse) -> SearchResult:
    return SearchResult(
        hits=[hit_from_proto(h) for h in message.hits],
        timings_ms=dict(message.timings_ms),
        mode=mode_from_proto(message.mode),
        groups=[Group(value=value_from_proto(g.value), hits=[hit_from_proto(h) for h in g.hits])
                for g in message.groups],
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
        terms=[Term(text=t.text, start=t.start, end=t.end, term=t.term, stop=t.stop) for t in message.terms],
        analyzer=message.analyzer,
        language=message.language,
    )
