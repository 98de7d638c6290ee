"""The one road to a loaded model in the server: queries first, document texts in bounded
pieces between them, and concurrent queries sharing one model call.

Query requests join a queue; one worker thread hands everything queued (up to max_size texts) to
the model in one call. The model runs one call at a time, so requests that arrive while it is busy
gather into the next call by themselves: batching costs a lone request nothing. max_wait adds an
optional pause to gather more before a call, for loads where that pays; a full batch never waits.

Document texts (upserts) are cut into pieces, and a waiting query goes before a waiting piece,
but never twice in a row: a search arriving while a large batch is being indexed waits for at
most one piece, not for the batch, and writes still get every other model call however many
searches arrive. While queries flow (one in the last QUERIES_FLOWING seconds) a piece is
document_batch texts, small so that a query's wait is short; with no queries it is QUIET_FACTOR
times that, nearer the size the model embeds fastest on a CPU (fewer, fuller calls).

Every model call runs on the worker, even with batching off (max_size 1: one request per call).
PyTorch's OpenMP runtime keeps a thread team per calling thread, so model calls made from
whichever gRPC thread took the request leave idle teams spinning on the cores.

A traced request sees its wait in the queue and the model call that answered it as two spans
(`scheduler.wait`, `model`), from clock readings the worker leaves on the request's future.

The queue is bounded (max_queue texts): past it a request is refused at once rather than left to
wait behind work the server cannot finish in time. A request whose caller's deadline passed or who
cancelled while it waited is dropped from the batch, not embedded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from neardex.indexer import deadline, stages
from neardex.indexer.errors import NeardexError, Overloaded

from . import metrics

Encode = Callable[[Sequence[str]], np.ndarray]
Pending = tuple[list[str], "Future[np.ndarray]", deadline.Deadline | None]

DEFAULT_MAX_QUEUE = 4096
DEFAULT_DOCUMENT_BATCH = 2
QUERIES_FLOWING = 1.0
QUIET_FACTOR = 4


class ModelScheduler:
    def __init__(self, encode: Encode, max_size: int = 64, max_wait: float = 0.0,
                 max_queue: int = DEFAULT_MAX_QUEUE, document_batch: int = DEFAULT_DOCUMENT_BATCH) -> None:
        self._encode = encode
        self.max_size = max_size
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.document_batch = max(1, document_batch)
        self._queue: deque[Pending] = deque()
        self._queued_texts = 0
        self._documents: deque[Pending] = deque()
        self._last_query = -QUERIES_FLOWING
        self._piece_owed = False  # a piece waited through a query call: it goes next
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="model-scheduler", daemon=True)
        self._worker.start()

    def documents(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Vectors for document texts, in order, one piece per model call (batch_size may make
        pieces smaller); the caller's deadline is checked between pieces."""
        parts = []
        start = 0
        while start < len(texts):
            deadline.check("embed")
            size = min(batch_size or len(texts), self.piece_size())
            piece = list(texts[start : start + size])
            start += size
            future: Future[np.ndarray] = Future()
            queued_ns = time.time_ns()
            with self._cond:
                queued = not self._closed
                if queued:
                    self._documents.append((piece, future, deadline.current()))
                    self._cond.notify()
            parts.append(_result(future, queued_ns, len(piece)) if queued else self._encode(piece))  # closing: direct
        return np.concatenate(parts) if parts else self._encode([])

    def piece_size(self) -> int:
        """Texts in the next document piece: small while queries flow, larger when none do."""
        flowing = time.monotonic() - self._last_query < QUERIES_FLOWING
        return self.document_batch if flowing else self.document_batch * QUIET_FACTOR

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors for texts, in order; raises what the model raised for this request."""
        self._last_query = time.monotonic()
        request = deadline.current()
        if request is not None:
            request.check("embed")
        future: Future[np.ndarray] = Future()
        queued_ns = time.time_ns()
        with self._cond:
            queued = not self._closed
            # A lone request larger than the queue still runs: it is bounded by the request
            # size limits, and refusing it would make it impossible to serve at all.
            if queued and self._queued_texts and self._queued_texts + len(texts) > self.max_queue:
                raise Overloaded(
                    f"embedding queue: {self._queued_texts} texts wait for the model and {len(texts)}"
                    f" more would pass the limit of {self.max_queue} (NEARDEX_BATCH_MAX_QUEUE);"
                    " retry later")
            if queued:
                self._queue.append((list(texts), future, request))
                self._queued_texts += len(texts)
                metrics.BATCH_QUEUE_DEPTH.set(self._queued_texts)
                self._cond.notify()
        if not queued:  # closing: the worker takes no more
            return self._encode(texts)
        return _result(future, queued_ns, len(texts))

    def _take(self) -> list[Pending]:
        """The next model call's requests: queries when any wait (gathered up to max_wait), else
        one piece of document texts; a piece that waited through a query call goes first."""
        with self._cond:
            while not self._queue and not self._documents and not self._closed:
                self._cond.wait()
            if not self._queue or (self._documents and self._piece_owed):
                self._piece_owed = False
                if not self._documents:
                    return []
                piece = self._documents.popleft()
                return [] if _abandoned(piece) else [piece]
            self._piece_owed = bool(self._documents)
            until = time.monotonic() + self.max_wait
            while self._queued_texts < self.max_size and not self._closed:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken: list[Pending] = []
            size = 0
            while self._queue and (not taken or size + len(self._queue[0][0]) <= self.max_size):
                item = self._queue.popleft()
                self._queued_texts -= len(item[0])
                if _abandoned(item):
                    continue
                taken.append(item)
                size += len(item[0])
            metrics.BATCH_QUEUE_DEPTH.set(self._queued_texts)
            return taken

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._closed and not self._queue and not self._documents:  # closed and drained
                    return
                continue  # every request taken had been abandoned
            self._answer(batch)

    def _answer(self, batch: list[Pending]) -> None:
        texts = [t for item, _, _ in batch for t in item]
        started_ns = time.time_ns()
        try:
            vectors = self._encode(texts)
        except Exception as exc:  # noqa: BLE001 - retry one by one so a bad request fails alone
            if len(batch) == 1:  # it already was alone: its failure is its own
                batch[0][1].set_exception(exc)
                return
            for pending in batch:
                item, future, _ = pending
                if _abandoned(pending):  # its caller left during the failed call
                    continue
                try:
                    future.set_result(self._encode(item))
                except Exception as exc:  # noqa: BLE001
                    future.set_exception(exc)
            return
        ran = (started_ns, time.time_ns(), len(texts))
        row = 0
        for item, future, _ in batch:
            future.ran = ran  # type: ignore[attr-defined]  # read by a traced caller (queries)
            future.set_result(vectors[row : row + len(item)])
            row += len(item)

    def close(self) -> None:
        """Stop taking requests; those already queued are still answered."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join()


def _result(future: Future[np.ndarray], queued_ns: int, texts: int) -> np.ndarray:
    """The future's vectors; for a traced request, its wait in the queue and the model call that
    answered it, as the worker timed them."""
    vectors = future.result()
    ran: tuple[int, int, int] | None = getattr(future, "ran", None)
    if ran is not None and stages.observer() is not None:
        started_ns, ended_ns, batch = ran
        stages.record("scheduler.wait", queued_ns, started_ns)
        stages.record("model", started_ns, ended_ns, **{"neardex.texts": texts, "neardex.batch_texts": batch})
    return vectors


def _abandoned(item: Pending) -> bool:
    """Whether the request's caller no longer waits; its future then carries the reason."""
    _, future, request = item
    if request is None:
        return False
    try:
        request.check("embed")
    except NeardexError as exc:
        future.set_exception(exc)
        return True
    return False
