"""Quality telemetry that needs more than one search: sampled recall of approximate indexes.

A sampled search is repeated exactly on a background thread, so the check costs the caller
nothing; its recall@10 feeds neardex_ann_recall_at_10.
"""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from neardex.indexer.retrieval.engine import Collection

from . import metrics

log = logging.getLogger("neardex.server")
K = 10


class RecallSampler:
    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._random = random.Random(seed)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recall-sampler")
        # One check running and one waiting at most: an exact search over a large collection can
        # be slower than the sampled searches arrive, and a backlog would only grow.
        self._slots = threading.BoundedSemaphore(2)

    def maybe_check(self, collection: Collection, text: str | None, vector: np.ndarray | None,
                    k: int) -> None:
        if collection.index_kind == "flat" or self._random.random() >= self.rate:
            return
        if not self._slots.acquire(blocking=False):
            metrics.RECALL_CHECKS_DROPPED.inc()
            return
        self._pool.submit(self._check, collection, text, vector)

    def _check(self, collection: Collection, text: str | None, vector: np.ndarray | None) -> float | None:
        try:
            return self._recall(collection, text, vector)
        finally:
            self._slots.release()

    def _recall(self, collection: Collection, text: str | None, vector: np.ndarray | None) -> float | None:
        try:
            if vector is None:
                vector = collection.encode_queries([text or ""])[0]
            query = np.asarray(vector, dtype=np.float32)[None, :]
            approximate = {c.chunk_id for c in collection.store.dense(query, K)[0]}
            exact = {int(i) for i in collection.store.exact_ids(query, K) if i >= 0}
            if not exact:
                return None
            recall = len(approximate & exact) / len(exact)
            metrics.ANN_RECALL.labels(collection.manifest.name).observe(recall)
            return recall
        except Exception:  # noqa: BLE001 - telemetry must never break serving
            log.exception("recall check failed")
            return None
