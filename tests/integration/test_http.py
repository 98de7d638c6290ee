"""HTTP/JSON over real HTTP: every unary RPC in the Connect unary shape, answering what gRPC
answers, with Connect errors, the same keys, deadlines and metrics, and TLS."""

from __future__ import annotations

import json
import ssl
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from prometheus_client import REGISTRY

from neardex.client import Client
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings

BOOKS = [
    {"id": "nile", "text": "The Nile flows north into the Mediterranean.", "metadata": {"year": 2001, "tags": ["river"]}},
    {"id": "andes", "text": "The Andes are the longest mountain range above sea level.", "metadata": {"year": 2015}},
]


def post(base: str, method: str, body: Any, key: str | None = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/neardex.v1.Neardex/{method}", data=data, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else {}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    keys_file = tmp_path / "keys.json"
    keys = {role: auth.create_key(keys_file, role, role) for role in ("read", "admin")}
    keys["scoped"] = auth.create_key(keys_file, "scoped", "read", "other")
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=0, api_keys_file=keys_file))
    yield f"http://127.0.0.1:{server.http_port}", port, keys
    server.stop(grace=1)


def test_calls_answer_what_grpc_answers(served: tuple[str, int, dict[str, str]]) -> None:
    base, port, keys = served
    admin = keys["admin"]
    assert post(base, "CreateCollection", {"name": "books"}, admin)[0] == 200
    status, body = post(base, "Upsert", {"collection": "books", "documents": BOOKS}, admin)
    assert status == 200 and body["upserted"] == "2"  # int64 is a string in protobuf's JSON mapping
    status, found = post(base, "Search", {"collection": "books", "text": "which way does the Nile flow", "topK": 1},
                         keys["read"])
    assert status == 200 and found["hits"][0]["id"] == "nile"
    assert found["hits"][0]["metadata"] == {"year": 2001, "tags": ["river"]}
    with Client(f"127.0.0.1:{port}", api_key=keys["read"]) as client:
        assert found["hits"][0]["score"] == pytest.approx(client.search("books", "which way does the Nile flow", k=1)[0].score,
                                                          abs=1e-5)
    status, counted = post(base, "Count", {"collection": "books", "filter": {"conditions": {"year": {"range": {"gte": 2010}}}}},
                           keys["read"])
    assert (status, counted) == (200, {"count": "1"})
    status, got = post(base, "Get", {"collection": "books", "ids": ["andes", "gone"]}, keys["read"])
    assert [d["id"] for d in got["documents"]] == ["andes"] and got["missing"] == ["gone"]
    assert post(base, "Delete", {"collection": "books", "ids": ["andes"]}, admin) == (200, {"deleted": "1"})


METADATA_DOCS = [
    {"id": "apollo", "text": "Apollo 11 landed on the Moon on 20 July 1969.", "metadata": {"topic": "space", "year": 1969}},
    {"id": "nile", "text": "The Nile flows north into the Mediterranean.", "metadata": {"topic": "geography", "year": 2000}},
    {"id": "bread", "text": "Sourdough bread rises because wild yeast ferments the dough.", "metadata": {"year": 2015}},
]


def test_update_metadata_over_http(served: tuple[str, int, dict[str, str]]) -> None:
    base, _, keys = served
    assert post(base, "CreateCollection", {"name": "docs"}, keys["admin"])[0] == 200
    assert post(base, "Upsert", {"collection": "docs", "documents": METADATA_DOCS}, keys["admin"])[0] == 200
    calls = REGISTRY.get_sample_value("neardex_embed_batch_size_count")
    status, body = post(base, "UpdateMetadata", {"collection": "docs", "ids": ["nile", "gone"],
                                                 "set": {"topic": "rivers", "km": 6650}, "unset": ["year"]},
                        keys["admin"])
    assert (status, body) == (200, {"updated": "1", "missing": ["gone"]})
    status, body = post(base, "UpdateMetadata", {"collection": "docs", "filter": {"conditions": {"topic": {"eq": "space"}}},
                                                 "set": {"crew": 3}}, keys["admin"])
    assert (status, body) == (200, {"updated": "1"})
    status, got = post(base, "Get", {"collection": "docs", "ids": ["nile", "apollo"]}, keys["read"])
    assert [d["metadata"] for d in got["documents"]] == [{"topic": "rivers", "km": 6650},
                                                         {"topic": "space", "year": 1969, "crew": 3}]
    status, upserted = post(base, "Upsert", {"collection": "docs", "documents": [{**METADATA_DOCS[2], "metadata": {"x": 1}}]},
                            keys["admin"])
    assert status == 200 and upserted["metadataUpdated"] == "1" and "upserted" not in upserted
    assert REGISTRY.get_sample_value("neardex_embed_batch_size_count") == calls  # nothing embedded
    status, error = post(base, "UpdateMetadata", {"collection": "docs", "ids": ["nile"], "set": {"a": 1}, "unset": ["a"]},
                         keys["admin"])
    assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("unset[0]:")
    status, error = post(base, "UpdateMetadata", {"collection": "docs", "ids": ["nile"], "set": {"a": 1}}, keys["read"])
    # A write needs a write key.
    assert (status, error["code"]) == (403, "permission_denied")


def test_errors_in_connect_form(served: tuple[str, int, dict[str, str]]) -> None:
    base, _, keys = served
    assert post(base, "Search", {"collection": "nope", "text": "x", "topK": 1}, keys["read"]) == \
        (404, {"code": "not_found", "message": "collection: 'nope' does not exist"})
    post(base, "CreateCollection", {"name": "books"}, keys["admin"])
    status, body = post(base, "Search", {"collection": "books", "text": "x", "topK": 0}, keys["read"])
    assert status == 400 and body["code"] == "invalid_argument" and body["message"].startswith("top_k:")
    status, body = post(base, "Search", b"{not json", keys["read"])
    assert status == 400 and body["message"].startswith("request: not a valid SearchRequest")
    status, body = post(base, "Search", {"collection": "x", "bogus": 1}, keys["read"])
    assert status == 400 and "bogus" in body["message"]
    assert post(base, "Nope", {}, keys["read"])[0] == 404
    assert post(base, "UpsertStream", {}, keys["read"])[0] == 415  # a stream: application/connect+json
    assert post(base, "ListCollections", {})[1]["code"] == "unauthenticated"
    assert post(base, "ListCollections", {}, "wrong")[0] == 401
    assert post(base, "CreateCollection", {"name": "x"}, keys["read"])[0] == 403
    assert post(base, "Count", {"collection": "books"}, keys["scoped"])[1]["code"] == "permission_denied"
    status, body = post(base, "ListCollections", {}, keys["read"], headers={"content-type": "text/plain"})
    assert status == 415


def test_deadline_and_metrics(served: tuple[str, int, dict[str, str]]) -> None:
    base, _, keys = served
    post(base, "CreateCollection", {"name": "books"}, keys["admin"])
    before = REGISTRY.get_sample_value("neardex_rpc_requests_total", {"method": "Count", "code": "OK"}) or 0
    assert post(base, "Count", {"collection": "books"}, keys["read"])[0] == 200
    after = REGISTRY.get_sample_value("neardex_rpc_requests_total", {"method": "Count", "code": "OK"})
    assert after == before + 1
    status, body = post(base, "Search", {"collection": "books", "text": "rivers", "topK": 3}, keys["read"],
                        headers={"connect-timeout-ms": "0"})
    assert (status, body["code"]) == (504, "deadline_exceeded")


def test_https_with_the_grpc_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server, _ = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                       http_port=0, tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.key"))
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        status, body = post(f"https://127.0.0.1:{server.http_port}", "ListCollections", {}, context=context)
        assert (status, body) == (200, {})
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(f"http://127.0.0.1:{server.http_port}", "ListCollections", {})
    finally:
        server.stop(grace=1)


def _envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


def test_upsert_stream_over_connect_streaming(served: tuple[str, int, dict[str, str]]) -> None:
    base, _, keys = served
    post(base, "CreateCollection", {"name": "books"}, keys["admin"])
    body = b"".join(_envelope({"collection": "books", "documents": [book]}) for book in BOOKS)
    request = urllib.request.Request(f"{base}/neardex.v1.Neardex/UpsertStream", data=body, method="POST",
                                     headers={"content-type": "application/connect+json",
                                              "authorization": f"Bearer {keys['admin']}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        data = response.read()
    messages, at = [], 0
    while at < len(data):
        flags, size = struct.unpack(">BI", data[at:at + 5])
        messages.append((flags, json.loads(data[at + 5:at + 5 + size])))
        at += 5 + size
    assert [m["ids"] for flags, m in messages if flags == 0] == [["nile"], ["andes"]]
    assert messages[-1] == (2, {})  # the end of the stream, without an error
    assert post(base, "Count", {"collection": "books"}, keys["read"]) == (200, {"count": "2"})
    # A read key may not write over the stream either.
    request.remove_header("Authorization")
    request.add_header("authorization", f"Bearer {keys['read']}")
    with urllib.request.urlopen(request, timeout=60) as response:
        data = response.read()
    assert b"permission_denied" in data


def test_pages_and_diversity_over_http_grpc_and_both_clients(served: tuple[str, int, dict[str, str]]) -> None:
    base, port, keys = served
    admin, read = keys["admin"], keys["read"]
    books = [*BOOKS, {"id": "nile-2", "text": "The Nile river flows north into the Mediterranean Sea."},
             {"id": "amazon", "text": "The Amazon carries more water than any other river."}]
    assert post(base, "CreateCollection", {"name": "books"}, admin)[0] == 200
    assert post(base, "Upsert", {"collection": "books", "documents": books}, admin)[0] == 200
    query = {"collection": "books", "text": "which way does the Nile flow", "mode": "SEARCH_MODE_DENSE"}
    whole = [h["id"] for h in post(base, "Search", {**query, "topK": 4}, read)[1]["hits"]]
    second = [h["id"] for h in post(base, "Search", {**query, "topK": 2, "offset": 2}, read)[1]["hits"]]
    assert second == whole[2:4]
    diverse = [h["id"] for h in post(base, "Search", {**query, "topK": 2, "diversity": 0.6}, read)[1]["hits"]]
    assert whole[:2] == ["nile", "nile-2"] and diverse[0] == "nile" and diverse[1] != "nile-2"
    status, error = post(base, "BatchSearch", {"requests": [{**query, "topK": 2}, {**query, "topK": 2, "diversity": 3}]},
                         read)
    assert (status, error["code"]) == (400, "invalid_argument")
    assert error["message"].startswith("requests[1].diversity: must be between 0 and 1")
    status, error = post(base, "Search", {**query, "topK": 2, "offset": 10**6}, read)
    assert status == 400 and error["message"].startswith("offset: offset + top_k is at most")
    with Client(f"127.0.0.1:{port}", api_key=read) as client:
        assert [h.id for h in client.search("books", query["text"], k=2, mode="dense", offset=2)] == whole[2:4]
        assert [h.id for h in client.batch_search("books", [query["text"]], k=2, mode="dense", diversity=0.6)[0]] == diverse
        from neardex.client import InvalidArgument

        with pytest.raises(InvalidArgument, match="offset"):
            client.search("books", query["text"], offset=-1)


def test_facets_over_http_grpc_and_both_clients(served: tuple[str, int, dict[str, str]]) -> None:
    base, port, keys = served
    admin, read = keys["admin"], keys["read"]
    books = [*BOOKS, {"id": "amazon", "text": "The Amazon carries more water than any other river.",
                      "metadata": {"year": 2001, "tags": ["river", "rainforest", "river"], "open": True}},
             {"id": "sahara", "text": "The Sahara is the largest hot desert.", "metadata": {"tags": "desert", "open": 1}}]
    assert post(base, "CreateCollection", {"name": "books"}, admin)[0] == 200
    assert post(base, "Upsert", {"collection": "books", "documents": books}, admin)[0] == 200
    status, body = post(base, "Facet", {"collection": "books", "key": "tags"}, read)
    assert status == 200 and body == {"values": [{"value": "river", "count": "2"}, {"value": "desert", "count": "1"},
                                                 {"value": "rainforest", "count": "1"}],
                                      "documents": "4", "exact": True}
    only = {"conditions": {"year": {"eq": 2001}}}
    status, body = post(base, "Facet", {"collection": "books", "key": "tags", "filter": only, "limit": 1}, read)
    assert (status, body) == (200, {"values": [{"value": "river", "count": "2"}], "documents": "2", "exact": True})
    # A boolean and a number stay two values.
    assert post(base, "Facet", {"collection": "books", "key": "open"}, read)[1]["values"] == \
        [{"value": True, "count": "1"}, {"value": 1, "count": "1"}]
    for request, field, code in (({"key": ""}, "key", "invalid_argument"), ({"key": "a..b"}, "key", "invalid_argument"),
                                 ({"key": "tags", "limit": -1}, "limit", "invalid_argument"),
                                 ({"key": "tags", "limit": 1001}, "limit", "invalid_argument"),
                                 ({"key": "tags", "filter": {"conditions": {"year": {}}}}, "filter.year",
                                  "invalid_argument")):
        status, error = post(base, "Facet", {"collection": "books", **request}, read)
        assert (status, error["code"]) == (400, code) and error["message"].startswith(f"{field}:"), error
    assert post(base, "Facet", {"collection": "nope", "key": "tags"}, read)[1]["code"] == "not_found"
    assert post(base, "Facet", {"collection": "books", "key": "tags"}, keys["scoped"])[1]["code"] == "permission_denied"
    from neardex.client import AsyncClient, FacetValue, InvalidArgument, NotFound

    with Client(f"127.0.0.1:{port}", api_key=read) as client:
        result = client.facet("books", "tags", filter={"year": 2001})
        assert list(result) == [FacetValue(value="river", count=2), FacetValue(value="rainforest", count=1)]
        assert (result.documents, result.exact) == (2, True)
        assert [(v.value, v.count) for v in client.facet("books", "year", limit=1)] == [(2001, 2)]
        with pytest.raises(InvalidArgument, match="key: a key is a dotted path"):
            client.facet("books", "bad key")
        with pytest.raises(InvalidArgument, match="limit: expected an integer >= 1"):
            client.facet("books", "tags", limit=0)
        with pytest.raises(NotFound):
            client.facet("nope", "tags")

    async def facet_async() -> list[tuple[object, int]]:
        async with AsyncClient(f"127.0.0.1:{port}", api_key=read) as aclient:
            return [(v.value, v.count) for v in await aclient.facet("books", "open")]

    import asyncio

    assert asyncio.run(facet_async()) == [(True, 1), (1, 1)]


def test_groups_and_matched_chunks_over_http_grpc_and_both_clients(served: tuple[str, int, dict[str, str]]) -> None:
    base, port, keys = served
    admin, read = keys["admin"], keys["read"]
    long = ("The Nile flows north through eleven countries. Farmers along its banks grow wheat and cotton. "
            "Its waters reach the Mediterranean Sea at a wide delta in Egypt.")
    pages = [
        {"id": "nile-a", "text": "The Nile river flows north into the Mediterranean Sea.", "metadata": {"site": "a.org"}},
        {"id": "nile-b", "text": long, "metadata": {"site": "a.org"}},
        {"id": "nile-c", "text": "Which way does the Nile flow? North, to the sea.", "metadata": {"site": "b.org"}},
        {"id": "amazon", "text": "The Amazon carries more water than any other river.", "metadata": {"site": "c.org"}},
        {"id": "nosite", "text": "The Nile flows north.", "metadata": {}},
    ]
    assert post(base, "CreateCollection", {"name": "pages", "chunkTokens": 16, "overlapTokens": 0}, admin)[0] == 200
    assert post(base, "Upsert", {"collection": "pages", "documents": pages}, admin)[0] == 200
    query = {"collection": "pages", "text": "which way does the Nile flow", "mode": "SEARCH_MODE_DENSE"}
    status, body = post(base, "Search", {**query, "topK": 2, "groupBy": "metadata.site", "groupSize": 2,
                                         "chunksPerDocument": 3}, read)
    assert status == 200
    groups = body["groups"]
    assert sorted(g["value"] for g in groups) == ["a.org", "b.org"]
    assert {g["value"]: sorted(h["id"] for h in g["hits"]) for g in groups} == {
        "a.org": ["nile-a", "nile-b"], "b.org": ["nile-c"]}
    assert [h["id"] for h in body["hits"]] == [h["id"] for g in groups for h in g["hits"]]
    assert all(h["group"] == g["value"] for g in groups for h in g["hits"])
    texts = {p["id"]: p["text"] for p in pages}
    for hit in body["hits"]:
        assert 1 <= len(hit["chunks"]) <= 3
        assert set(hit["chunks"][0]) <= {"text", "chunkIndex", "start", "end", "score"}
        for chunk in hit["chunks"]:
            assert texts[hit["id"]][chunk.get("start", 0) : chunk["end"]] == chunk["text"]
    assert len(next(h for h in body["hits"] if h["id"] == "nile-b")["chunks"]) >= 2
    # Ungrouped answers carry neither.
    plain = post(base, "Search", {**query, "topK": 2}, read)[1]
    assert "groups" not in plain and all("group" not in h and "chunks" not in h for h in plain["hits"])
    for bad, message in (({"groupBy": "site"}, "group_by: expected metadata.<key>"),
                         ({"groupSize": 2}, "group_size: needs group_by"),
                         ({"groupBy": "metadata.site", "groupSize": 101}, "group_size: must be between 1 and 100"),
                         ({"groupBy": "metadata.site", "groupSize": 100, "topK": 20}, "group_size: (offset + top_k)"),
                         ({"chunksPerDocument": 17}, "chunks_per_document: must be between 0 and 16")):
        status, error = post(base, "Search", {**query, "topK": 2, **bad}, read)
        assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith(message), error
    status, error = post(base, "BatchSearch", {"requests": [{**query, "topK": 2}, {**query, "topK": 2, "groupBy": "metadata."}]},
                         read)
    assert status == 400 and error["message"].startswith("requests[1].group_by:")
    with Client(f"127.0.0.1:{port}", api_key=read) as client:
        result = client.search("pages", query["text"], k=2, mode="dense", group_by="metadata.site", group_size=2,
                               chunks_per_document=3)
        assert [(g.value, [h.id for h in g.hits]) for g in result.groups] == [
            (g["value"], [h["id"] for h in g["hits"]]) for g in groups]
        assert [(h.id, h.group, len(h.chunks)) for h in result] == [
            (h["id"], h["group"], len(h["chunks"])) for h in body["hits"]]
        assert client.search("pages", query["text"], group_by="metadata.publisher").groups == []
        batch = client.batch_search("pages", [query["text"]], k=1, mode="dense", group_by="metadata.site")
        assert [g.value for g in batch[0].groups] == [groups[0]["value"]]
        from neardex.client import InvalidArgument

        with pytest.raises(InvalidArgument, match="group_by: expected metadata"):
            client.search("pages", query["text"], group_by="site")
        with pytest.raises(InvalidArgument, match="chunks_per_document: "):
            client.search("pages", query["text"], chunks_per_document=-1)


def test_expiry_over_http_grpc_and_both_clients(tmp_path: Path) -> None:
    """Expiry's HTTP shape (RFC 3339 `expiresAt`, int64 `ttlSeconds` as a string), its refusals,
    expired documents gone from every read, and the server's own purge; then the two clients."""
    import asyncio
    import time
    from datetime import datetime, timedelta, timezone

    from neardex.client import AsyncClient, Document, InvalidArgument

    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=0, purge_interval_s=0.5))
    base = f"http://127.0.0.1:{server.http_port}"
    try:
        status, info = post(base, "CreateCollection", {"name": "news", "ttlSeconds": "3600"})
        assert status == 200 and info["ttlSeconds"] == "3600"
        soon = datetime.now(timezone.utc) + timedelta(seconds=8)  # the checks below run meanwhile
        stamp = soon.isoformat().replace("+00:00", "Z")
        books = [{**BOOKS[0], "expiresAt": stamp}, BOOKS[1]]
        assert post(base, "Upsert", {"collection": "news", "documents": books})[0] == 200
        got = post(base, "Get", {"collection": "news", "ids": ["nile", "andes"]})[1]["documents"]
        assert abs(datetime.fromisoformat(got[0]["expiresAt"]) - soon) < timedelta(milliseconds=1)
        assert datetime.fromisoformat(got[1]["expiresAt"]) > datetime.now(timezone.utc) + timedelta(minutes=59)
        # Refusals name the field.
        past = {**BOOKS[0], "id": "old", "expiresAt": "2001-01-01T00:00:00Z"}
        status, error = post(base, "Upsert", {"collection": "news", "documents": [BOOKS[1], past]})
        assert (status, error["code"]) == (400, "invalid_argument")
        assert error["message"].startswith("documents[1].expires_at: ") and "in the past" in error["message"]
        for method, body in (("CreateCollection", {"name": "bad", "ttlSeconds": "-1"}),
                             ("UpdateCollection", {"name": "news", "ttlSeconds": "-1"})):
            status, error = post(base, method, body)
            assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("ttl_seconds: ")
        status, info = post(base, "UpdateCollection", {"name": "news", "ttlSeconds": "0"})
        assert status == 200 and "ttlSeconds" not in info
        time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.2)
        query = {"collection": "news", "text": "which way does the Nile flow", "topK": 5}
        for mode in ("SEARCH_MODE_DENSE", "SEARCH_MODE_LEXICAL", "SEARCH_MODE_HYBRID"):
            hits = post(base, "Search", {**query, "mode": mode, "topK": 5})[1].get("hits", [])
            assert "nile" not in [h["id"] for h in hits], mode
        batch = post(base, "BatchSearch", {"requests": [query, {**query, "diversity": 0.5}]})[1]["responses"]
        assert all(h["id"] != "nile" for r in batch for h in r.get("hits", []))
        answers = post(base, "Ask", {"collection": "news", "question": "Where does the Nile flow?"})[1]
        assert all(a["passage"]["id"] != "nile" for a in answers.get("answers", []))
        assert post(base, "Get", {"collection": "news", "ids": ["nile"]})[1]["missing"] == ["nile"]
        assert post(base, "Count", {"collection": "news"})[1]["count"] == "1"
        assert [d["id"] for d in post(base, "Scroll", {"collection": "news"})[1]["documents"]] == ["andes"]
        # The server's purge gives the space back through the store's delete.
        store = server.catalog.get("news").store
        deadline = time.time() + 30
        while len(store.chunk_ids()) > 1 and time.time() < deadline:
            time.sleep(0.2)
        assert len(store.chunk_ids()) == 1 and store.index.live == 1

        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            info = client.create_collection("mail", ttl_seconds=600)
            assert info.ttl_seconds == 600
            later = datetime.now(timezone.utc) + timedelta(hours=1)
            client.upsert("mail", [Document(id="a", text="The Nile flows north.", expires_at=later),
                                   Document(id="b", text="The Andes are long.")])
            found = client.get("mail", ["a", "b"]).documents
            assert abs(found[0].expires_at - later) < timedelta(milliseconds=1)
            assert found[1].expires_at > later - timedelta(minutes=51)
            assert client.update_collection("mail", ttl_seconds=0).ttl_seconds == 0
            with pytest.raises(InvalidArgument, match=r"documents\[0\]\.expires_at"):
                client.upsert("mail", [Document(id="c", text="late", expires_at=datetime(2001, 1, 1))])
            with pytest.raises(InvalidArgument, match="ttl_seconds"):
                client.create_collection("bad", ttl_seconds=-1)

        async def in_async() -> None:
            async with AsyncClient(f"127.0.0.1:{port}", timeout=60) as aclient:
                assert (await aclient.info("mail")).ttl_seconds == 0
                assert (await aclient.update_collection("mail", ttl_seconds=5)).ttl_seconds == 5
                docs = (await aclient.get("mail", ["a"])).documents
                assert docs[0].expires_at is not None and docs[0].expires_at.tzinfo is not None

        asyncio.run(in_async())
    finally:
        server.stop(grace=1)
