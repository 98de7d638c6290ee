"""The HTTP port against hostile callers: idle and half-sent connections, lying or missing
Content-Length, chunked and oversized bodies, too many connections. Each test sends the bytes an
attacker would, over a raw socket, and then checks that an honest caller is still served."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from neardex.server.app import Server, create_server
from neardex.server.settings import Settings

LIMIT = 10_000
EDGE = dict(http_idle_timeout_s=1.0, http_body_timeout_s=2.0, tls_handshake_timeout_s=1.0)


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0, http_port=0,
                    max_message_bytes=LIMIT, **{**EDGE, **extra})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    server, _ = create_server(_settings(tmp_path, http_max_connections=8))
    yield server
    server.stop(grace=1)


def call(port: int, method: str, body: dict[str, Any], timeout: float = 30,
         context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any]]:
    scheme = "https" if context else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/neardex.v1.Neardex/{method}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else {}


def raw(port: int, data: bytes, wait: float = 10) -> bytes:
    """Send bytes as they are and read what comes back until the server closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True


def head(method: str, *lines: str) -> bytes:
    return ("\r\n".join((f"POST /neardex.v1.Neardex/{method} HTTP/1.1", "host: x",
                         "content-type: application/json", *lines)) + "\r\n\r\n").encode()


def test_content_length_minus_one_stores_nothing(served: Server) -> None:
    port = served.http_port
    assert call(port, "CreateCollection", {"name": "books"})[0] == 200
    documents = [{"id": f"d{i}", "text": "word " * 500} for i in range(100)]
    body = json.dumps({"collection": "books", "documents": documents}).encode()
    assert len(body) > 20 * LIMIT
    answer = raw(port, head("Upsert", "content-length: -1") + body)
    assert answer.startswith(b"HTTP/1.1 400")
    assert call(port, "Count", {"collection": "books"}) == (200, {})  # a count of 0 is the default


def test_content_length_not_a_number_is_answered(served: Server) -> None:
    answer = raw(served.http_port, head("ListCollections", "content-length: abc") + b"{}")
    assert answer.startswith(b"HTTP/1.1 400")


def test_chunked_bodies_are_read_as_bodies(served: Server) -> None:
    port = served.http_port
    call(port, "CreateCollection", {"name": "books"})
    body = json.dumps({"collection": "books", "documents": [{"id": "nile", "text": "The Nile flows north."}]})
    chunked = b"".join(f"{len(part):x}\r\n{part}\r\n".encode() for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    answer = raw(port, head("Upsert", "transfer-encoding: chunked", "connection: close") + chunked)
    assert answer.startswith(b"HTTP/1.1 200") and b'"upserted"' in answer
    assert call(port, "Count", {"collection": "books"}) == (200, {"count": "1"})


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_bodies_over_the_limit_are_refused_whatever_the_framing(served: Server, framing: str) -> None:
    port = served.http_port
    call(port, "CreateCollection", {"name": "books"})
    body = json.dumps({"collection": "books", "documents": [{"id": "big", "text": "word " * LIMIT}]}).encode()
    if framing == "length":
        request = head("Upsert", f"content-length: {len(body)}", "connection: close") + body
    else:
        request = head("Upsert", "transfer-encoding: chunked", "connection: close") + (
            f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    answer = raw(port, request)
    assert answer.startswith(b"HTTP/1.1 429") and b"resource_exhausted" in answer
    assert call(port, "Count", {"collection": "books"}) == (200, {})


def test_half_sent_requests_are_closed_and_hold_nothing(served: Server) -> None:
    port = served.http_port
    idle = []
    for i in range(6):
        sock = socket.create_connection(("127.0.0.1", port))
        # Headers never finished, or a body promised and never sent.
        sock.sendall(head("ListCollections", "content-length: 100")[: 40 + i] if i % 2 else
                     head("ListCollections", "content-length: 100") + b"{")
        idle.append(sock)
    started = time.monotonic()
    assert call(port, "ListCollections", {}, timeout=5) == (200, {})
    assert time.monotonic() - started < 5
    for sock in idle:
        assert closed_within(sock, 10), "a half-sent request kept its connection past the timeouts"
        sock.close()


def test_connections_past_the_cap_are_closed_at_once(served: Server) -> None:
    port = served.http_port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", port)) as extra:
        assert closed_within(extra, 2)
    for sock in held:
        sock.close()
    time.sleep(EDGE["http_idle_timeout_s"] + 0.5)  # the server lets go of them by then at the latest
    assert call(port, "ListCollections", {}, timeout=5) == (200, {})


def test_an_idle_tls_connection_does_not_stop_https(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client_cert = ca.issue_cert("caller")
    server, _ = create_server(_settings(tmp_path, tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.key",
                                        tls_client_ca=tmp_path / "ca.pem"))
    try:
        silent = socket.create_connection(("127.0.0.1", server.http_port))  # never sends a ClientHello
        context = ssl.create_default_context()
        ca.configure_trust(context)
        client_cert.configure_cert(context)
        started = time.monotonic()
        assert call(server.http_port, "ListCollections", {}, timeout=5, context=context) == (200, {})
        assert time.monotonic() - started < 5
        assert closed_within(silent, 10), "a connection without a TLS handshake was kept open"
        silent.close()
    finally:
        server.stop(grace=1)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_json_are_refused_naming_the_field(served: Server, number: str) -> None:
    port = served.http_port
    call(port, "CreateCollection", {"name": "books"})
    document = '{"id": "a", "text": "The Nile.", "metadata": {"score": ' + number + "}}"
    body = ('{"collection": "books", "documents": [' + document + "]}").encode()
    answer = raw(port, head("Upsert", f"content-length: {len(body)}", "connection: close") + body)
    assert answer.startswith(b"HTTP/1.1 400") and b"invalid_argument" in answer
    assert b"documents[0].metadata.score" in answer or b"request: not a valid" in answer
    assert call(port, "Count", {"collection": "books"}) == (200, {})
