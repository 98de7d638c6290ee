"""The metrics a real `neardex serve` exposes, as a real Prometheus scrapes and stores them.

Everything the Grafana dashboard shows comes through this path: prometheus_client's exposition,
Prometheus's scrape and its query API. So the test drives the server with the typed client, lets
Prometheus scrape it, and asks Prometheus (not the /metrics page) for each series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from neardex.client import Client, NotFound
from tests.support.processes import free_port, start_serve, stop_process, wait_for_port

PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the `prometheus` binary is not on PATH (CI installs it: `make system-deps`)",
)

COLLECTION = "metrics_docs"
DOCUMENTS = [
    {"id": "m1", "text": "Prometheus scrapes metrics from HTTP endpoints at a fixed interval."},
    {"id": "m2", "text": "Grafana draws dashboards from queries against a time series database."},
    {"id": "m3", "text": "The lighthouse keeper climbed the spiral stairs every evening at dusk."},
    {"id": "m4", "text": "Sourdough bread needs a starter, flour, water, salt and a lot of patience."},
    {"id": "m5", "text": "Glaciers carve valleys slowly as they advance and retreat over millennia."},
]
QUERIES = [
    "how does prometheus collect metrics",
    "dashboards and charts",
    "baking bread at home",
    "ice shaping mountains",
    "a tower with a light by the sea",
]
SCRAPE_DEADLINE_S = 60


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _value(series: list[dict[str, Any]]) -> float:
    """The value of a query that must answer with exactly one series."""
    assert len(series) == 1, f"expected one series, got {series}"
    return float(series[0]["value"][1])


def _write_config(folder: Path, metrics_port: int) -> Path:
    # JSON is a subset of YAML, so the config needs no YAML writer.
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "neardex",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
        }],
    }
    path = folder / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))
    return path


def test_prometheus_scrapes_the_servers_metrics(tmp_path: Path) -> None:
    port, metrics_port, prom_port = free_port(), free_port(), free_port()
    prom_log = tmp_path / "prometheus.log"
    server: subprocess.Popen[bytes] | None = None
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        server = start_serve(tmp_path / "data", port, metrics_port)
        wait_for_port(metrics_port, server, timeout=30)

        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            client.create_collection(COLLECTION)
            ack = client.upsert(COLLECTION, DOCUMENTS)
            assert sorted(ack.ids) == sorted(d["id"] for d in DOCUMENTS)
            for query in QUERIES:
                assert len(client.search(COLLECTION, query, k=3).hits) == 3
            with pytest.raises(NotFound):
                client.search("no_such_collection", "anything")
        searches = len(QUERIES)

        config = _write_config(tmp_path, metrics_port)
        with prom_log.open("wb") as log:
            prometheus = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{prom_port}"

        # Every request was made before Prometheus started, so its first successful scrape holds
        # them all; poll until that scrape is queryable.
        ok_searches = 'neardex_rpc_requests_total{method="Search",code="OK"}'
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while True:
            assert prometheus.poll() is None, (
                f"prometheus exited with {prometheus.returncode}:\n{prom_log.read_text(errors='replace')}")
            try:
                if _query(base, ok_searches):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass  # Prometheus still starting
            if time.monotonic() > deadline:
                targets = ""
                try:
                    with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as response:
                        targets = response.read().decode()
                except (urllib.error.URLError, ConnectionError) as exc:
                    targets = repr(exc)
                pytest.fail(f"no scraped neardex series in Prometheus after {SCRAPE_DEADLINE_S} s;"
                            f" targets: {targets}\nprometheus log:\n{prom_log.read_text(errors='replace')}")
            time.sleep(0.5)

        assert _value(_query(base, 'up{job="neardex"}')) == 1
        assert _value(_query(base, ok_searches)) >= searches
        not_found = _query(base, 'neardex_rpc_requests_total{code="NOT_FOUND"}')
        assert not_found, "the failed search left no NOT_FOUND series"
        assert {s["metric"]["method"] for s in not_found} == {"Search"}
        assert _value(_query(base, 'neardex_rpc_requests_total{method="Upsert",code="OK"}')) >= 1
        assert _value(_query(base, 'neardex_rpc_latency_seconds_count{method="Search"}')) >= searches
        assert _value(_query(base, "neardex_embed_batch_size_count")) > 0
        assert _value(_query(base, "neardex_embed_latency_seconds_count")) > 0
        assert _value(_query(base, 'neardex_search_stage_seconds_count{stage="dense"}')) >= searches
        assert _value(_query(base, f'neardex_collection_documents{{collection="{COLLECTION}"}}')) == len(DOCUMENTS)
        chunks = _value(_query(base, f'neardex_collection_chunks{{collection="{COLLECTION}"}}'))
        vectors = _value(_query(base, f'neardex_collection_vectors{{collection="{COLLECTION}"}}'))
        # Each short document is one chunk, and every chunk has its vector in the index.
        assert chunks == vectors == len(DOCUMENTS)
    finally:
        stop_process(prometheus)
        stop_process(server)
