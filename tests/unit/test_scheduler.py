"""The model scheduler, over the bundled model: every query request gets its own vectors in
order, concurrent queries share model calls, the size and time budgets decide a flush, one
request's failure fails no other, and document texts go in bounded pieces behind any waiting
query."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import REGISTRY

from neardex.indexer import deadline
from neardex.indexer.embedding.embedder import Embedder
from neardex.indexer.embedding.loading import load_embedder
from neardex.indexer.errors import Cancelled, DeadlineExceeded, Overloaded
from neardex.server.scheduler import ModelScheduler

POISON = "this text makes the model fail"


class RecordingModel:
    """The real model, recording each call's texts; a call can be held open to let a queue build,
    and a call containing POISON fails as a model call can (out of memory, a bad input)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait(timeout=30)
        if POISON in texts:
            raise RuntimeError("model call failed")
        return self.embedder.encode(texts)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder()


@pytest.fixture
def model(embedder: Embedder) -> RecordingModel:
    return RecordingModel(embedder)


@contextlib.contextmanager
def model_busy(model: RecordingModel, batcher: ModelScheduler, workers: int,
               first: str = "blocker") -> Iterator[tuple[ThreadPoolExecutor, Future[np.ndarray]]]:
    """A pool whose first request holds the model call open until model.release is set, so
    later requests queue behind it; the batcher is closed on the way out."""
    model.release.clear()
    try:
        with ThreadPoolExecutor(workers) as pool:
            running = pool.submit(batcher.queries, [first])
            assert model.started.wait(timeout=30)
            yield pool, running
            model.release.set()
    finally:
        model.release.set()
        batcher.close()


def wait_queued(batcher: ModelScheduler, texts: int) -> None:
    while batcher._queued_texts < texts:
        time.sleep(0.005)


def assert_same_vectors(got: np.ndarray, want: np.ndarray) -> None:
    """Row by row the same text's vector. Padding differs with the batch a text shares, so they
    agree to rounding: far closer in fp32, within cosine 0.9999 in bf16; another text's vector
    (a row out of order) would be far below."""
    assert got.shape == want.shape
    assert float(np.min(np.sum(got * want, axis=1))) >= 0.9999


def texts_for(i: int) -> list[str]:
    return [f"question number {i} about topic {j}" for j in range(1 + i % 3)]


@pytest.mark.slow
def test_concurrent_requests_get_their_own_vectors_in_order(model: RecordingModel,
                                                            embedder: Embedder) -> None:
    batcher = ModelScheduler(model.encode, max_size=16)
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: batcher.queries(texts_for(i)), range(60)))
    finally:
        batcher.close()
    for i, vectors in enumerate(results):
        expected = embedder.encode(texts_for(i))
        assert vectors.shape == expected.shape
        assert_same_vectors(vectors, expected)
    assert sum(len(c) for c in model.calls) == sum(len(texts_for(i)) for i in range(60))
    assert all(len(c) <= 16 for c in model.calls)


def test_requests_arriving_during_a_model_call_share_the_next(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64)
    with model_busy(model, batcher, 9, first="the first request") as (pool, first):
        rest = [pool.submit(batcher.queries, [f"waiting request {i}"]) for i in range(8)]
        wait_queued(batcher, 8)  # all eight queued behind the running call
        assert REGISTRY.get_sample_value("neardex_batch_queue_depth") == 8
        model.release.set()
        assert first.result(timeout=30).shape == (1, 384)
        assert all(f.result(timeout=30).shape == (1, 384) for f in rest)
    assert model.calls == [["the first request"], [f"waiting request {i}" for i in range(8)]]
    assert REGISTRY.get_sample_value("neardex_batch_queue_depth") == 0


def test_a_batch_never_exceeds_max_size_and_keeps_arrival_order(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=4)
    with model_busy(model, batcher, 11) as (pool, _):
        futures = []
        for i in range(10):
            futures.append(pool.submit(batcher.queries, [f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"]))
            wait_queued(batcher, sum(2 if j % 2 else 1 for j in range(i + 1)))  # a known order
        model.release.set()
        for f in futures:
            f.result(timeout=30)
    flat = [t for call in model.calls[1:] for t in call]
    assert flat == [t for i in range(10) for t in ([f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"])]
    assert all(len(call) <= 4 for call in model.calls)
    # A request's texts are never split across two model calls.
    for call in model.calls[1:]:
        assert not any(t.endswith("a") and f"{t[:-1]}b" not in call for t in call)


def test_time_budget_gathers_requests_that_arrive_within_it(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64, max_wait=2.0)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(batcher.queries, ["early"])
            time.sleep(0.2)  # well inside the two-second budget
            second = pool.submit(batcher.queries, ["late"])
            first.result(timeout=30)
            second.result(timeout=30)
    finally:
        batcher.close()
    assert model.calls == [["early", "late"]]


def test_a_full_batch_does_not_wait_for_the_time_budget(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=4, max_wait=600.0)
    try:
        with ThreadPoolExecutor(2) as pool:
            halves = [pool.submit(batcher.queries, ["a", "b"]), pool.submit(batcher.queries, ["c", "d"])]
            # Far less than the ten-minute budget: the flush came from the size.
            assert all(h.result(timeout=60).shape == (2, 384) for h in halves)
    finally:
        batcher.close()
    assert sorted(t for c in model.calls for t in c) == ["a", "b", "c", "d"]


def test_a_failing_request_fails_alone(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64)
    with model_busy(model, batcher, 6) as (pool, _):
        good = [pool.submit(batcher.queries, [f"good {i}"]) for i in range(4)]
        bad = pool.submit(batcher.queries, ["fine text", POISON])
        wait_queued(batcher, 6)
        model.release.set()
        with pytest.raises(RuntimeError, match="model call failed"):
            bad.result(timeout=30)
        assert all(g.result(timeout=30).shape == (1, 384) for g in good)
    # The shared call failed, then each request was retried on its own.
    assert any(POISON in c and len(c) == 6 for c in model.calls)


def test_close_answers_what_is_queued_and_later_requests_run_directly(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64)
    with model_busy(model, batcher, 3) as (pool, _):
        queued = pool.submit(batcher.queries, ["queued before close"])
        wait_queued(batcher, 1)
        closing = pool.submit(batcher.close)
        while not batcher._closed:  # closed while the request still waits
            time.sleep(0.005)
        model.release.set()
        assert queued.result(timeout=30).shape == (1, 384)
        closing.result(timeout=30)
    assert batcher.queries(["after close"]).shape == (1, 384)
    assert model.calls[-1] == ["after close"]


def test_batching_off_still_runs_one_request_per_call_on_the_worker(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=1)
    with model_busy(model, batcher, 4) as (pool, _):
        waiting = [pool.submit(batcher.queries, [f"request {i}", "its second text"]) for i in range(3)]
        wait_queued(batcher, 6)
        model.release.set()
        assert all(w.result(timeout=30).shape == (2, 384) for w in waiting)
    assert model.calls == [["blocker"], *([f"request {i}", "its second text"] for i in range(3))]


def test_past_the_queue_limit_a_request_is_refused_at_once(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64, max_queue=4)
    with model_busy(model, batcher, 4) as (pool, _):
        waiting = pool.submit(batcher.queries, ["one", "two", "three"])
        wait_queued(batcher, 3)
        with pytest.raises(Overloaded, match="NEARDEX_BATCH_MAX_QUEUE"):
            batcher.queries(["four", "five"])
        fits = pool.submit(batcher.queries, ["four"])
        wait_queued(batcher, 4)
        model.release.set()
        assert waiting.result(timeout=30).shape == (3, 384) and fits.result(timeout=30).shape == (1, 384)
    assert ["four", "five"] not in model.calls


def test_a_request_whose_deadline_passes_in_the_queue_is_dropped(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64)

    def with_deadline(texts: list[str], seconds: float) -> np.ndarray:
        with deadline.bound(deadline.Deadline(time.monotonic() + seconds)):
            return batcher.queries(texts)

    with model_busy(model, batcher, 3) as (pool, _):
        expiring = pool.submit(with_deadline, ["too late"], 0.05)
        patient = pool.submit(with_deadline, ["in time"], 60)
        wait_queued(batcher, 2)
        time.sleep(0.1)
        model.release.set()
        with pytest.raises(DeadlineExceeded):
            expiring.result(timeout=30)
        assert patient.result(timeout=30).shape == (1, 384)
    assert model.calls == [["blocker"], ["in time"]]
    # An expired request is refused before it joins the queue at all.
    idle = ModelScheduler(model.encode)
    try:
        with pytest.raises(DeadlineExceeded), deadline.bound(deadline.Deadline(time.monotonic() - 1)):
            idle.queries(["never queued"])
    finally:
        idle.close()
    assert ["never queued"] not in model.calls


def test_a_request_whose_caller_left_during_a_failed_shared_call_is_not_retried(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, max_size=64)
    # The caller goes away once the shared call (holding POISON) has been made.
    leaves = deadline.Deadline(None, lambda: not any(POISON in c for c in model.calls))

    def as_caller(texts: list[str]) -> np.ndarray:
        with deadline.bound(leaves):
            return batcher.queries(texts)

    with model_busy(model, batcher, 3) as (pool, _):
        bad = pool.submit(batcher.queries, [POISON])
        leaving = pool.submit(as_caller, ["leaving"])
        wait_queued(batcher, 2)
        model.release.set()
        with pytest.raises(RuntimeError, match="model call failed"):
            bad.result(timeout=30)
        with pytest.raises(Cancelled):
            leaving.result(timeout=30)
    assert [POISON, "leaving"] in model.calls  # taken while its caller waited
    assert ["leaving"] not in model.calls  # not embedded again for nobody


def wait_documents(batcher: ModelScheduler, pieces: int) -> None:
    while len(batcher._documents) < pieces:
        time.sleep(0.005)


def test_documents_go_in_bounded_pieces_and_keep_their_order(model: RecordingModel,
                                                              embedder: Embedder) -> None:
    batcher = ModelScheduler(model.encode, document_batch=3)
    texts = [f"passage {i} about the history of the harbour" * (1 + i % 4) for i in range(14)]
    try:
        quiet = batcher.documents(texts)  # no query yet: pieces of 4 x 3 texts
        assert len(batcher.documents(texts, batch_size=5)) == 14  # the caller may ask for smaller
        batcher.queries(["a query: from now on queries flow"])
        flowing = batcher.documents(texts)
    finally:
        batcher.close()
    assert_same_vectors(quiet, embedder.encode(texts))
    assert_same_vectors(flowing, quiet)
    sizes = [len(c) for c in model.calls]
    assert sizes == [12, 2, 5, 5, 4, 1, 3, 3, 3, 3, 2]


def test_a_query_goes_before_document_pieces_already_waiting(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, document_batch=2)
    with model_busy(model, batcher, 3, first="the running query") as (pool, _):
        upsert = pool.submit(batcher.documents, [f"doc {i}" for i in range(4)])
        wait_documents(batcher, 1)  # the upsert's first piece waits for the model
        query = pool.submit(batcher.queries, ["a query that arrives later"])
        wait_queued(batcher, 1)
        model.release.set()
        assert query.result(timeout=30).shape == (1, 384)
        assert upsert.result(timeout=30).shape == (4, 384)
    assert model.calls == [["the running query"], ["a query that arrives later"],
                           ["doc 0", "doc 1"], ["doc 2", "doc 3"]]


def test_writes_progress_however_many_queries_arrive(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, document_batch=1)
    stop = threading.Event()

    def search_forever(i: int) -> None:
        while not stop.is_set():
            batcher.queries([f"query from client {i}"])

    try:
        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(search_forever, i) for i in range(3)]
            while sum(1 for c in model.calls if c[0].startswith("query")) < 10:
                time.sleep(0.005)  # queries are flowing
            vectors = batcher.documents([f"doc {i}" for i in range(6)])
            stop.set()
            for c in clients:
                c.result(timeout=30)
    finally:
        batcher.close()
    assert vectors.shape == (6, 384)
    pieces = [i for i, c in enumerate(model.calls) if c[0].startswith("doc")]
    assert len(pieces) == 6
    # Queries and pieces alternate: at most one query call between two pieces.
    assert all(b - a <= 2 for a, b in zip(pieces, pieces[1:]))


def test_a_document_piece_whose_deadline_passed_is_not_embedded(model: RecordingModel) -> None:
    batcher = ModelScheduler(model.encode, document_batch=2)

    def upsert(seconds: float) -> np.ndarray:
        with deadline.bound(deadline.Deadline(time.monotonic() + seconds)):
            return batcher.documents(["late doc a", "late doc b", "late doc c"])

    with model_busy(model, batcher, 2) as (pool, _):
        expiring = pool.submit(upsert, 0.05)
        wait_documents(batcher, 1)
        time.sleep(0.1)
        model.release.set()
        with pytest.raises(DeadlineExceeded):
            expiring.result(timeout=30)
    assert not any(t.startswith("late doc") for c in model.calls for t in c)
