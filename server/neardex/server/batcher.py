"""Micro-batching of query embeddings: concurrent requests share one model call.

Requests join a queue; one worker thread hands everything queued (up to max_size texts) to the
model in one call. The model runs one call at a time, so requests that arrive while it is busy
gather into the next call by themselves: batching costs a lone request nothing. max_wait adds an
optional pause to gather more before a call, for loads where that pays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from . import metrics

Encode = Callable[[Sequence[str]], np.ndarray]


class QueryBatcher:
    def __init__(self, encode: Encode, max_size: int = 64, max_wait: float = 0.0) -> None:
        self._encode = encode
        self.max_size = max_size
        self.max_wait = max_wait
        self._queue: list[tuple[list[str], Future[np.ndarray]]] = []
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None
        if max_size > 1:
            self._worker = threading.Thread(target=self._run, name="query-batcher", daemon=True)
            self._worker.start()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for texts, in order; raises what the model raised for this request."""
        if self._worker is None or len(texts) >= self.max_size:
            return self._encode(texts)
        future: Future[np.ndarray] = Future()
        with self._cond:
            self._queue.append((list(texts), future))
            self._queued_texts += len(texts)
            metrics.BATCH_QUEUE_DEPTH.set(self._queued_texts)
            self._cond.notify()
        return future.result()

    def _take(self) -> list[tuple[list[str], Future[np.ndarray]]]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait
            while self.max_wait and self._queued_texts < self.max_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken, size = [], 0
            while self._queue and (not taken or size + len(self._queue[0][0]) <= self.max_size):
                item = self._queue.pop(0)
                taken.append(item)
                size += len(item[0])
            self._queued_texts -= size
            metrics.BATCH_QUEUE_DEPTH.set(self._queued_texts)
            return taken

    def _run(self) -> None:
        while not self._closed:
            batch = self._take()
            if not batch:
                continue
            texts = [t for item, _ in batch for t in item]
            try:
                vectors = self._encode(texts)
            except Exception:  # noqa: BLE001 - retry one by one so one bad request fails alone
                for item, future in batch:
                    try:
                        future.set_result(self._encode(item))
                    except Exception as exc:  # noqa: BLE001
                        future.set_exception(exc)
                continue
            row = 0
            for item, future in batch:
                future.set_result(vectors[row : row + len(item)])
                row += len(item)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
