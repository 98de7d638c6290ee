"""Quality telemetry: top-1 score distribution, empty searches, sampled recall of ANN indexes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from neardex.client import Client


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_quality_metrics(tmp_path: Path) -> None:
    from neardex.server.app import create_server
    from neardex.server.settings import Settings

    server, port = create_server(Settings(data_dir=tmp_path / "data", port=0, metrics_port=0,
                                          recall_sample_rate=1.0))
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.create_collection("quality-ann", index={"kind": "hnsw", "m": 16})
            client.upsert("quality-ann", [{"id": f"d{i}", "text": f"document {i} about topic {i % 7}",
                                           "metadata": {"n": i}} for i in range(200)])
            before_top = _value("neardex_search_top_score_count", collection="quality-ann")
            before_empty = _value("neardex_search_empty_total", collection="quality-ann")
            for q in ("topic 3", "document 42", "topic 5"):
                client.search("quality-ann", q, k=10)
            assert not client.search("quality-ann", "topic", k=5, filter={"n": {"gt": 10_000}}).hits
            assert _value("neardex_search_top_score_count", collection="quality-ann") == before_top + 3
            assert _value("neardex_search_empty_total", collection="quality-ann") == before_empty + 1
            deadline = time.monotonic() + 30
            while _value("neardex_ann_recall_at_10_count", collection="quality-ann") < 3:
                assert time.monotonic() < deadline, "recall was never sampled"
                time.sleep(0.1)
            # Samples are taken in the background: read the sum between two equal counts, so a
            # sample landing in between cannot pair one count with another's sum.
            while True:
                count = _value("neardex_ann_recall_at_10_count", collection="quality-ann")
                total = _value("neardex_ann_recall_at_10_sum", collection="quality-ann")
                if _value("neardex_ann_recall_at_10_count", collection="quality-ann") == count:
                    break
            mean = total / count
            assert 0.8 <= mean <= 1.0
    finally:
        server.stop(grace=1)


def test_recall_checks_never_pile_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.documents import Document
    from neardex.indexer.records import IndexSpec
    from neardex.server.quality import RecallSampler

    release = threading.Event()
    with Catalog(tmp_path / "data") as catalog:
        collection = catalog.create("ann", index=IndexSpec.parse("hnsw", {"m": 8}))
        collection.upsert([Document(f"d{i}", f"note {i} on subject {i % 5}") for i in range(50)])
        exact_ids = collection.store.exact_ids

        def slow_exact_ids(vectors: np.ndarray, k: int) -> np.ndarray:
            assert release.wait(timeout=60)  # an exact search slower than the searches arrive
            return exact_ids(vectors, k)

        monkeypatch.setattr(collection.store, "exact_ids", slow_exact_ids)
        sampler = RecallSampler(rate=1.0)
        dropped = _value("neardex_ann_recall_checks_dropped_total")
        checked = _value("neardex_ann_recall_at_10_count", collection="ann")
        for i in range(6):
            sampler.maybe_check(collection, f"subject {i % 5}", None, 10)
        assert _value("neardex_ann_recall_checks_dropped_total") == dropped + 4
        release.set()
        _wait_for_checks(checked + 2)  # the admitted two
        sampler.maybe_check(collection, "subject 1", None, 10)  # room again once they are done
        assert _value("neardex_ann_recall_checks_dropped_total") == dropped + 4
        _wait_for_checks(checked + 3)


def _wait_for_checks(count: float) -> None:
    deadline = time.monotonic() + 60
    while _value("neardex_ann_recall_at_10_count", collection="ann") < count:
        assert time.monotonic() < deadline, "an admitted recall check never finished"
        time.sleep(0.05)
