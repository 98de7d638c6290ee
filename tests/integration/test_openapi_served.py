"""The OpenAPI document against a real server on a real port: served at /openapi.json without a
key, and every operation's example request, sent as the document writes it (in its order, to the
collection its examples describe), answered as its schema says: the 200 response's schema, or the
error the example documents in the Connect error schema."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.openapi import DOCUMENT, validator

# The world the examples describe (the document's description says so).
DOCS = [
    {"id": "faiss", "title": "FAISS", "text": "FAISS searches dense vectors with flat, graph and quantized indexes.",
     "metadata": {"topic": "indexes", "year": 2017}},
    {"id": "sqlite", "title": "SQLite", "text": "SQLite is a transactional SQL database in one file.",
     "metadata": {"topic": "storage", "year": 2000}},
    {"id": "bm25", "title": "BM25", "text": "BM25 ranks documents by term frequency and inverse document frequency.",
     "metadata": {"topic": "ranking", "year": 1994}},
    {"id": "draft", "text": "An unfinished note.", "metadata": {"topic": "notes", "year": 2024}},
]


def request(base: str, path: str, body: Any = None, method: str = "POST",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    sent = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                  headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(sent, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    keys_file = tmp_path / "keys.json"
    admin = auth.create_key(keys_file, "admin", "admin")
    server, _ = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                       http_port=0, api_keys_file=keys_file))
    yield f"http://127.0.0.1:{server.http_port}", admin
    server.stop(grace=1)


def test_document_is_served_without_a_key_beside_the_gated_calls(served: tuple[str, str]) -> None:
    base, key = served
    status, headers, body = request(base, "/openapi.json", method="GET")
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == DOCUMENT.read_bytes()
    status, headers, body = request(base, "/openapi.json", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(DOCUMENT.stat().st_size))
    status, headers, _ = request(base, "/openapi.json", {})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, body = request(base, "/neardex.v1.Neardex/ListCollections", {})
    assert status == 401 and json.loads(body)["code"] == "unauthenticated"  # calls still need a key
    assert request(base, "/neardex.v1.Neardex/ListCollections", {}, headers={"api-key": key})[0] == 200


def _world(base: str, key: str) -> None:
    auth_header = {"authorization": f"Bearer {key}"}
    for path, body in [("CreateCollection", {"name": "docs"}), ("Upsert", {"collection": "docs", "documents": DOCS}),
                       ("CreateCollection", {"name": "docs-old"}),
                       ("CreateAlias", {"name": "docs-previous", "collection": "docs"})]:
        status, _, answer = request(base, f"/neardex.v1.Neardex/{path}", body, headers=auth_header)
        assert status == 200, answer


def test_every_example_is_answered_as_its_schema_says(served: tuple[str, str]) -> None:
    base, key = served
    status, _, raw = request(base, "/openapi.json", method="GET")
    document = json.loads(raw)
    _world(base, key)
    answered = []
    for path, item in document["paths"].items():
        operation = item["post"]
        example = operation["requestBody"]["content"]["application/json"]["example"]
        documented = {code: response["content"]["application/json"]["example"]
                      for code, response in operation["responses"].items()
                      if "example" in response.get("content", {}).get("application/json", {})}
        expected = next(iter(documented), "200")
        status, _, raw = request(base, path, example, headers={"authorization": f"Bearer {key}",
                                                               "connect-protocol-version": "1",
                                                               "connect-timeout-ms": "120000"})
        body = json.loads(raw)
        assert str(status) == expected, f"{path}: {status} {body}"
        response = operation["responses"][expected]
        if "$ref" in response:
            response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        errors = list(validator(response["content"]["application/json"]["schema"], document).iter_errors(body))
        assert not errors, f"{path}: {errors[0].message} at {list(errors[0].absolute_path)} in {body}"
        if expected != "200":
            assert body == documented[expected], path
        answered.append((operation["operationId"], status, body))
    names = {name for name, _, _ in answered}
    assert len(names) == len(document["paths"])
    found = {name: body for name, _, body in answered}
    # The examples reach what they show: hits, a Timestamp written back, groups, a count.
    assert found["Search"]["hits"] and found["Ask"]["answers"]
    assert found["Get"]["documents"][0]["expiresAt"] == "2099-01-01T00:00:00Z" and found["Get"]["missing"]
    assert found["BatchSearch"]["responses"][1]["groups"]
    assert found["Count"]["count"] == "3"  # faiss, sqlite and the upserted hnsw
