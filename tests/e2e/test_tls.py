"""TLS and mutual TLS on a real port, with a CA and certificates made for this run: calls over
TLS work, a plaintext client is refused cleanly, mTLS refuses a client without a certificate, and
keys and TLS work together; the metrics endpoint never carries keys."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from neardex.client import AsyncClient, Client, InvalidArgument, RetryPolicy, Unauthenticated, Unavailable
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.processes import free_port, run_cli, start_serve, stop_process

NO_RETRY = RetryPolicy(max_attempts=1)


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.ca_cert = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_cert))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert, self.server_key = root / "server.pem", root / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        client = self.ca.issue_cert("client@neardex.test")
        self.client_cert, self.client_key = root / "client.pem", root / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))
        # A certificate from a CA the server does not trust.
        stranger = trustme.CA().issue_cert("stranger")
        self.stranger_cert, self.stranger_key = root / "stranger.pem", root / "stranger.key"
        stranger.cert_chain_pems[0].write_to_path(str(self.stranger_cert))
        stranger.private_key_pem.write_to_path(str(self.stranger_key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[int]:
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          tls_cert=pki.server_cert, tls_key=pki.server_key))
    yield port
    server.stop(grace=1)


@pytest.fixture
def mtls_server(tmp_path: Path, pki: Pki) -> Iterator[tuple[int, str]]:
    keys_file = tmp_path / "keys.json"
    key = auth.create_key(keys_file, "svc", "admin")
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          tls_cert=pki.server_cert, tls_key=pki.server_key,
                                          tls_client_ca=pki.ca_cert, api_keys_file=keys_file))
    yield port, key
    server.stop(grace=1)


def test_tls_call_works_and_plaintext_is_refused(tls_server: int, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_server}"
    with Client(target, tls=True, ca_cert=pki.ca_cert, timeout=60) as client:
        client.create_collection("docs")
        client.upsert("docs", [{"id": "a", "text": "Apollo 11 landed on the Moon in 1969."}])
        assert client.search("docs", "moon landing", k=1).hits[0].id == "a"
        assert client.health()
    with Client(target, timeout=5, retry=NO_RETRY) as plain, pytest.raises(Unavailable):
        plain.collections()
    # A server certificate from an unknown CA is not trusted.
    with Client(target, tls=True, timeout=5, retry=NO_RETRY) as untrusting, pytest.raises(Unavailable):
        untrusting.collections()


async def test_async_client_over_tls(tls_server: int, pki: Pki) -> None:
    async with AsyncClient(f"127.0.0.1:{tls_server}", tls=True, ca_cert=pki.ca_cert.read_bytes(),
                           timeout=60) as client:
        assert await client.collections() == []


def test_mtls_needs_a_client_certificate_and_keys_still_apply(mtls_server: tuple[int, str], pki: Pki) -> None:
    port, key = mtls_server
    target = f"127.0.0.1:{port}"
    with Client(target, tls=True, ca_cert=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key,
                api_key=key, timeout=60) as client:
        client.create_collection("docs")
        assert [c.name for c in client.collections()] == ["docs"]
    with Client(target, tls=True, ca_cert=pki.ca_cert, api_key=key, timeout=5, retry=NO_RETRY) as no_cert:
        with pytest.raises(Unavailable):
            no_cert.collections()
    with Client(target, tls=True, ca_cert=pki.ca_cert, client_cert=pki.stranger_cert, client_key=pki.stranger_key,
                api_key=key, timeout=5, retry=NO_RETRY) as stranger:
        with pytest.raises(Unavailable):
            stranger.collections()
    # The certificate lets the connection in; the key still decides what it may call.
    with Client(target, tls=True, ca_cert=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key,
                timeout=10, retry=NO_RETRY) as keyless:
        with pytest.raises(Unauthenticated):
            keyless.collections()


def test_client_refuses_half_a_client_certificate(pki: Pki) -> None:
    with pytest.raises(InvalidArgument, match="client_key"):
        Client("127.0.0.1:1", client_cert=pki.client_cert)
    with pytest.raises(InvalidArgument, match="ca_cert: cannot read"):
        Client("127.0.0.1:1", ca_cert="/no/such/ca.pem")


def test_serve_and_cli_over_mtls(tmp_path: Path, pki: Pki) -> None:
    keys_file = tmp_path / "keys.json"
    key = run_cli("keys", "create", "--name", "ops", "--role", "admin", "--file", str(keys_file)).stdout.strip()
    port, metrics_port = free_port(), free_port()
    proc = start_serve(tmp_path / "data", port, metrics_port, "--api-keys", str(keys_file),
                       "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                       "--tls-client-ca", str(pki.ca_cert))
    try:
        with Client(f"127.0.0.1:{port}", tls=True, ca_cert=pki.ca_cert, client_cert=pki.client_cert,
                    client_key=pki.client_key, api_key=key, timeout=60) as client:
            client.create_collection("docs")
            client.upsert("docs", [{"id": "a", "text": "The Nile flows north into the Mediterranean."}])
        tls_args = ["--server", f"127.0.0.1:{port}", "--api-key", key, "--ca-cert", str(pki.ca_cert),
                    "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
        found = run_cli("search", "docs", "which way does the Nile flow", *tls_args)
        assert " a" in found.stdout
        refused = run_cli("search", "docs", "Nile", "--server", f"127.0.0.1:{port}", "--api-key", key,
                          "--ca-cert", str(pki.ca_cert), check=False)
        assert refused.returncode == 2 and "UNAVAILABLE" in refused.stderr and "Traceback" not in refused.stderr
        scrape = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/metrics",
                                        headers={"authorization": f"Bearer {key}"})  # keys on: metrics need one
        with urllib.request.urlopen(scrape, timeout=10) as page:
            exposition = page.read().decode()
        assert "neardex_rpc_requests_total" in exposition and key not in exposition
        assert "Nile" not in exposition
    finally:
        stop_process(proc)


def test_bad_tls_settings_stop_the_start_with_their_reason(tmp_path: Path, pki: Pki) -> None:
    for settings, field in (
        (dict(tls_cert=pki.server_cert), "tls_key"),
        (dict(tls_client_ca=pki.ca_cert), "tls_client_ca"),
        (dict(tls_cert=tmp_path / "missing.pem", tls_key=pki.server_key), "tls_cert: cannot read"),
    ):
        with pytest.raises(Exception, match=field):
            create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                   **settings))
