"""A server started without traces imports the OpenTelemetry API only: neither the SDK nor an
exporter is loaded, so tracing off costs no import time or memory. Its own process, so no other
test's imports are counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

SERVE_AND_SEARCH = """
import json, sys, tempfile
from pathlib import Path
from neardex.client import Client
from neardex.server.app import create_server
from neardex.server.settings import Settings

with tempfile.TemporaryDirectory() as tmp:
    server, port = create_server(Settings(data_dir=Path(tmp), host="127.0.0.1", port=0, metrics_port=0, http_port=0))
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.create_collection("docs")
            client.upsert("docs", [{"id": "a", "text": "The Nile flows north into the Mediterranean."}])
            hits = client.search("docs", "which way does the Nile flow", k=1, mode="hybrid")
    finally:
        server.stop(grace=1)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print(json.dumps({"hits": len(hits), "tracing": server.tracing is not None, "loaded": loaded}))
"""


def test_untraced_server_never_imports_the_sdk(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "NEARDEX_OTLP_ENDPOINT"}
    paths = [str(ROOT / p) for p in ("proto", "client", "indexer", "server")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", SERVE_AND_SEARCH], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["hits"] == 1 and report["tracing"] is False
    assert "opentelemetry.trace" in report["loaded"]  # the API: what the gate and the client name
    heavy = [m for m in report["loaded"] if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter",
                                                          "opentelemetry.proto"))]
    assert heavy == [], heavy
