"""API keys end to end: `neardex keys` creates, lists and revokes keys in a keys file that a
`neardex serve` reads (the command line, the environment variable and the metrics scrape each
carry a key, and no key shows in the server's output), and serving beyond loopback without keys
warns once."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from neardex.client import Client, PermissionDenied
from neardex.server import auth
from tests.support.processes import free_port, run_cli, start_serve, stop_process


def test_cli_keys_and_a_served_keyed_collection(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    admin = run_cli("keys", "create", "--name", "ops", "--role", "admin", "--file", str(keys_file)).stdout.strip()
    reader = run_cli("keys", "create", "--name", "ci", "--role", "read", "--collections", "docs,team-*",
                     "--file", str(keys_file)).stdout.strip()
    assert admin.startswith("ndx_") and reader.startswith("ndx_") and admin != reader
    listing = run_cli("keys", "list", "--file", str(keys_file)).stdout
    assert "ops\tadmin\t*" in listing and "ci\tread\tdocs,team-*" in listing
    assert admin not in listing and reader not in listing
    duplicate = run_cli("keys", "create", "--name", "ci", "--role", "read", "--file", str(keys_file), check=False)
    assert duplicate.returncode != 0 and "exists already" in duplicate.stderr and "Traceback" not in duplicate.stderr

    port, metrics_port = free_port(), free_port()
    proc = start_serve(tmp_path / "data", port, metrics_port, "--api-keys", str(keys_file))
    try:
        with Client(f"127.0.0.1:{port}", api_key=admin, timeout=60) as client:
            client.create_collection("docs")
            client.upsert("docs", [{"id": "a", "text": "Apollo 11 landed on the Moon in 1969."}])
        env = {**os.environ, "NEARDEX_API_KEY": reader}
        found = run_cli_env(env, "search", "docs", "moon landing", "--server", f"127.0.0.1:{port}")
        assert found.returncode == 0 and " a" in found.stdout
        refused = run_cli_env({k: v for k, v in env.items() if k != "NEARDEX_API_KEY"},
                              "search", "docs", "moon", "--server", f"127.0.0.1:{port}")
        assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr and "Traceback" not in refused.stderr
        flag = run_cli_env({k: v for k, v in env.items() if k != "NEARDEX_API_KEY"},
                           "search", "docs", "moon", "--server", f"127.0.0.1:{port}", "--api-key", reader)
        assert flag.returncode == 0
        run_cli("keys", "revoke", "ci", "--file", str(keys_file))
        revoked = run_cli_env(env, "search", "docs", "moon", "--server", f"127.0.0.1:{port}")
        assert revoked.returncode == 2 and "UNAUTHENTICATED" in revoked.stderr
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as keyless:
            urllib.request.urlopen(scrape, timeout=10)
        assert keyless.value.code == 401
        scraper = run_cli("keys", "create", "--name", "prometheus", "--role", "metrics",
                          "--file", str(keys_file)).stdout.strip()
        with urllib.request.urlopen(urllib.request.Request(scrape, headers={"authorization": f"Bearer {scraper}"}),
                                    timeout=10) as page:
            exposition = page.read().decode()
        with pytest.raises(PermissionDenied):  # a metrics key calls no RPC
            with Client(f"127.0.0.1:{port}", api_key=scraper, timeout=10) as client:
                client.collections()
        assert 'code="UNAUTHENTICATED"' in exposition
        assert reader not in exposition and admin not in exposition
    finally:
        stop_process(proc)
    assert proc.output and all(reader not in line and admin not in line for line in proc.output)


def run_cli_env(env: dict[str, str], *args: str) -> Any:
    import subprocess

    from tests.support.paths import NEARDEX

    return subprocess.run([str(NEARDEX), *args], capture_output=True, text=True, timeout=120, env=env)


def test_serving_beyond_loopback_without_keys_warns_once(tmp_path: Path) -> None:
    import time

    def started(proc: Any) -> list[str]:
        deadline = time.monotonic() + 60
        while not any("neardex serving" in line for line in proc.output):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        return [line for line in proc.output if "no API keys" in line]

    port = free_port()
    proc = start_serve(tmp_path / "open", port, 0, "--host", "0.0.0.0")
    try:
        [warning] = started(proc)
        assert "WARNING" in warning and "--api-keys" in warning
    finally:
        stop_process(proc)
    keys_file = tmp_path / "keys.json"
    auth.create_key(keys_file, "ops", "admin")
    port = free_port()
    proc = start_serve(tmp_path / "keyed", port, 0, "--host", "0.0.0.0", "--api-keys", str(keys_file))
    try:
        assert started(proc) == []
    finally:
        stop_process(proc)
