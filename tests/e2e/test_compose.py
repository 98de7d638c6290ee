"""The deployment files: the compose file, the Prometheus config and the Grafana dashboard.

None of them is exercised by the other tests, and a broken one only shows when someone runs
`docker-compose up`; these checks catch it with the tools' own validators, no containers needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from neardex.server import metrics
from tests.support.paths import ROOT

DOCKER_COMPOSE = shutil.which("docker-compose")
PROMTOOL = shutil.which("promtool")
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "neardex.json"
METRIC_NAME = re.compile(r"neardex_[a-z0-9_]+")

# The sample names prometheus_client exposes for one metric, by metric type.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}
# What a query may append to a metric's name, per the brief: strip one of these to find it.
QUERY_SUFFIXES = ("_bucket", "_sum", "_count", "_total")

needs_compose = pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not on PATH")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE is not None
    return subprocess.run([DOCKER_COMPOSE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@needs_compose
def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stdout}\n{result.stderr}"


@needs_compose
def test_compose_defines_the_stack() -> None:
    result = _compose("config", "--services")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {"neardex", "prometheus", "grafana"} <= services, services


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not on PATH")
def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    # promtool checks that the metrics key file exists: the one the compose file mounts, here made.
    key = tmp_path / "metrics.key"
    key.write_text("ndx_example\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.read_text().replace("/etc/prometheus/metrics.key", str(key)))
    result = subprocess.run([PROMTOOL, "check", "config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool rejected {PROMETHEUS_CONFIG}:\n{result.stdout}\n{result.stderr}"


def _expressions(node: Any) -> Iterator[str]:
    """Every panel query ("expr") anywhere in the dashboard, rows and nested panels included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def _defined_metrics() -> dict[str, str]:
    """name -> type of each prometheus_client metric object in neardex.server.metrics."""
    return {m._name: str(m._type) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def test_metrics_module_is_found() -> None:
    # Guards the dashboard test below against passing vacuously on an empty name set.
    defined = _defined_metrics()
    assert "neardex_rpc_requests" in defined and defined["neardex_rpc_requests"] == "counter"
    assert "neardex_rpc_latency_seconds" in defined


def test_dashboard_queries_only_defined_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = list(_expressions(dashboard))
    assert expressions, f"no query expressions found in {DASHBOARD}"
    referenced = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert referenced, "the dashboard references no neardex_ metric"

    defined = _defined_metrics()
    exposed = {name + suffix for name, kind in defined.items() for suffix in SAMPLE_SUFFIXES[kind]}
    unknown = []
    for name in sorted(referenced):
        base = next((name[: -len(s)] for s in QUERY_SUFFIXES if name.endswith(s) and name[: -len(s)] in defined),
                    name)
        # The base must be a defined metric, and the full name one of the samples its type exposes
        # (a counter queried as _count, or a histogram without a suffix, matches no series).
        if base not in defined or name not in exposed:
            unknown.append(name)
    assert not unknown, (
        f"{DASHBOARD.name} queries metrics that neardex.server.metrics does not expose: {unknown};"
        f" defined: {sorted(defined)}")


@needs_compose
def test_compose_server_requires_keys() -> None:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    assert "NEARDEX_API_KEYS_FILE: /data/api-keys.json" in result.stdout


def test_image_runs_as_a_user_not_root() -> None:
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert lines and lines[-1][1] not in ("root", "0")


@needs_compose
def test_compose_cluster_profile_puts_two_replicas_before_milvus() -> None:
    assert _compose("--profile", "cluster", "config", "-q").returncode == 0
    result = _compose("--profile", "cluster", "config")
    assert result.returncode == 0, result.stderr
    services = set(_compose("--profile", "cluster", "config", "--services").stdout.split())
    assert {"etcd", "minio", "milvus", "neardex-a", "neardex-b", "prometheus", "grafana"} <= services, services
    assert result.stdout.count("milvus://milvus:19530") == 2  # each replica serves Milvus' collections
    for name in ("etcd", "minio", "milvus", "neardex-a"):  # started only with the profile
        assert re.search(rf"\n  {name}:(\n    .*)*\n    profiles:\n    - cluster\n", result.stdout), name
    scraped = PROMETHEUS_CONFIG.read_text()
    assert "neardex-a:50052" in scraped and "neardex-b:50052" in scraped
    # Every neardex job scrapes with the metrics key (the server refuses keyless scrapes).
    assert scraped.count("credentials_file: /etc/prometheus/metrics.key") == 2
    assert "/etc/prometheus/metrics.key:ro" in result.stdout
