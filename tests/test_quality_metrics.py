"""Quality telemetry: top-1 score distribution, empty searches, sampled recall of ANN indexes."""

from __future__ import annotations

import time
from pathlib import Path

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
            count = _value("neardex_ann_recall_at_10_count", collection="quality-ann")
            mean = _value("neardex_ann_recall_at_10_sum", collection="quality-ann") / count
            assert 0.8 <= mean <= 1.0
    finally:
        server.stop(grace=1)
