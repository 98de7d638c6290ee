"""Prometheus metrics, all prefixed neardex_. The same stages timed in responses feed these."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter's series for a timestamp nobody graphs.
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RPC_REQUESTS = Counter("neardex_rpc_requests", "RPCs handled, by method and status code",
                       ["method", "code"])
RPC_LATENCY = Histogram("neardex_rpc_latency_seconds", "RPC latency by method", ["method"],
                        buckets=_LATENCY_BUCKETS)
EMBED_BATCH = Histogram("neardex_embed_batch_size", "Texts per model call",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
EMBED_LATENCY = Histogram("neardex_embed_latency_seconds", "Seconds per model call",
                          buckets=_LATENCY_BUCKETS)
SEARCH_STAGE = Histogram("neardex_search_stage_seconds", "Seconds per search stage", ["stage"],
                         buckets=_LATENCY_BUCKETS)
COLLECTION_DOCUMENTS = Gauge("neardex_collection_documents", "Documents per collection", ["collection"])
COLLECTION_CHUNKS = Gauge("neardex_collection_chunks", "Chunks per collection", ["collection"])
COLLECTION_VECTORS = Gauge("neardex_collection_vectors", "Vectors in the index per collection",
                           ["collection"])
BATCH_QUEUE_DEPTH = Gauge("neardex_batch_queue_depth", "Query texts waiting for the embedding queue")
TOP_SCORE = Histogram("neardex_search_top_score", "Score of the first hit per search",
                      ["collection"], buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
SEARCH_EMPTY = Counter("neardex_search_empty", "Searches that returned no hit", ["collection"])
ANN_RECALL = Histogram("neardex_ann_recall_at_10",
                       "Sampled recall@10 of the approximate index against exact search",
                       ["collection"], buckets=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
RECALL_CHECKS_DROPPED = Counter("neardex_ann_recall_checks_dropped_total",
                                "Sampled recall checks skipped because earlier ones were still running")


def observe_embed(batch: int, seconds: float) -> None:
    EMBED_BATCH.observe(batch)
    EMBED_LATENCY.observe(seconds)


def observe_timings(timings_ms: dict[str, float]) -> None:
    for stage, ms in timings_ms.items():
        SEARCH_STAGE.labels(stage).observe(ms / 1000.0)


def set_collection_sizes(name: str, documents: int, chunks: int, vectors: int) -> None:
    COLLECTION_DOCUMENTS.labels(name).set(documents)
    COLLECTION_CHUNKS.labels(name).set(chunks)
    COLLECTION_VECTORS.labels(name).set(vectors)


def forget_collection(name: str) -> None:
    for gauge in (COLLECTION_DOCUMENTS, COLLECTION_CHUNKS, COLLECTION_VECTORS):
        try:
            gauge.remove(name)
        except KeyError:
            pass
