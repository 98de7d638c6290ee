"""OpenTelemetry traces of a real server on a real port: a hybrid search's span tree and its
attributes, a caller's trace continued over gRPC (through the client) and over HTTP (a
`traceparent` header), a refused call's status, and spans sent by the real OTLP gRPC exporter to a
collector started here."""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from neardex.client import Client
from neardex.client.errors import NotFound, Unauthenticated
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.traces import Receiver, memory_provider, traced_server, tree

DOCS = [
    {"id": "nile", "text": "The Nile flows north through Egypt into the Mediterranean Sea.", "title": "Nile"},
    {"id": "andes", "text": "The Andes are the longest continental mountain range in the world.", "title": "Andes"},
    {"id": "rhine", "text": "The Rhine rises in the Swiss Alps and flows into the North Sea.", "title": "Rhine"},
    {"id": "bread", "text": "Bread dough rises while the yeast ferments its sugars.", "title": "Bread"},
]
QUERY = "which river flows into the sea"
SEARCH = "neardex.v1.Neardex/Search"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Any, str]]:
    """A traced server with keys on and HTTP beside gRPC, holding DOCS: (gRPC port, HTTP port,
    its span exporter, an admin key)."""
    root = tmp_path_factory.mktemp("traced")
    key = auth.create_key(root / "keys.json", "admin", "admin")
    with traced_server(root / "data", http_port=0, api_keys_file=root / "keys.json") as (server, port, exporter):
        with Client(f"127.0.0.1:{port}", timeout=60, api_key=key) as client:
            client.create_collection("docs")
            client.upsert("docs", DOCS)
            client.search("docs", "warm the model up", k=2)
        yield port, server.http_port, exporter, key


def test_hybrid_search_is_one_span_tree_under_the_callers_span(traced: tuple[int, int, Any, str]) -> None:
    port, _, exporter, key = traced
    provider, caller_spans = memory_provider()
    with Client(f"127.0.0.1:{port}", timeout=60, api_key=key) as client:
        with provider.get_tracer("caller").start_as_current_span("caller") as parent:
            hits = client.search("docs", QUERY, k=3, mode="hybrid")
    spans = list(caller_spans.get_finished_spans()) + list(exporter.get_finished_spans())
    root = tree(spans, "caller")

    # The server's span is the caller's span's child, in the caller's trace.
    assert root.names() == [SEARCH]
    call = root.children[0]
    assert call.span.context.trace_id == parent.get_span_context().trace_id
    assert call.span.parent.span_id == parent.get_span_context().span_id
    assert call.span.kind is SpanKind.SERVER
    assert dict(call.span.attributes) == {
        "rpc.service": "neardex.v1.Neardex", "rpc.method": "Search", "neardex.collection": "docs",
        "neardex.k": 3, "neardex.mode": "hybrid", "neardex.hits": len(hits),
        "rpc.grpc.status_code": 0, "neardex.status_code": "OK"}

    # A stage span per stage of the response's timings, in the order they ran.
    assert call.names() == ["auth", "embed", "dense", "lexical", "fuse", "feedback", "store.fetch", "fetch"]
    embed, dense, _, _, feedback, scores, _ = (c for c in call.children if c.name != "auth")
    assert embed.names() == ["scheduler.wait", "model"]
    assert embed.children[1].span.attributes["neardex.texts"] == 1
    assert dense.names() == ["store.retrieve"]
    assert set(dense.children[0].names()) <= {"store.dense", "store.lexical"}
    assert feedback.names() == ["store.fetch", "store.dense"]
    # 4 store round trips, as the store interface promises for a hybrid search with feedback.
    assert [n.name for n in (dense.children[0], *feedback.children, scores)] == [
        "store.retrieve", "store.fetch", "store.dense", "store.fetch"]
    # Spans nest in time, and a response's stage time is its span's.
    for node in (embed, dense, feedback):
        assert call.span.start_time <= node.span.start_time <= node.span.end_time <= call.span.end_time
    # The stages the response reports are the stage spans: one timer for both.
    assert set(hits.timings_ms) - {"total"} == {"embed", "dense", "lexical", "fuse", "feedback", "fetch"}

    # Nothing that was sent or stored, and no key, is in any attribute.
    said = [str(v) for s in spans for v in (s.attributes or {}).values()]
    for secret in (QUERY, key, *(d["text"] for d in DOCS), "Nile"):
        assert not any(secret in value for value in said), secret


def test_http_call_continues_the_trace_of_its_traceparent(traced: tuple[int, int, Any, str]) -> None:
    _, http_port, exporter, key = traced
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/neardex.v1.Neardex/Search", method="POST",
        data=json.dumps({"collection": "docs", "text": QUERY, "topK": 2, "mode": "SEARCH_MODE_HYBRID"}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}",
                 "traceparent": f"00-{trace_id}-{parent_id}-01"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["hits"]) == 2
    calls = [s for s in exporter.get_finished_spans()
             if s.name == SEARCH and s.context.trace_id == int(trace_id, 16)]
    assert len(calls) == 1
    call = calls[0]
    assert call.parent.span_id == int(parent_id, 16) and call.parent.is_remote
    assert call.attributes["neardex.hits"] == 2 and call.attributes["neardex.status_code"] == "OK"
    node = tree(list(exporter.get_finished_spans()), SEARCH)
    assert node.span.context.span_id == call.context.span_id
    assert {"auth", "embed", "dense", "lexical", "fuse", "fetch"} <= set(node.names())


def test_refused_and_failed_calls_end_their_span_with_the_code(traced: tuple[int, int, Any, str]) -> None:
    port, _, exporter, key = traced
    with Client(f"127.0.0.1:{port}", timeout=60, api_key=key) as client, pytest.raises(NotFound):
        client.search("nowhere", QUERY)
    missing = [s for s in exporter.get_finished_spans() if s.attributes.get("neardex.collection") == "nowhere"]
    assert missing and missing[-1].attributes["neardex.status_code"] == "NOT_FOUND"
    assert missing[-1].attributes["rpc.grpc.status_code"] == 5
    assert missing[-1].status.status_code is StatusCode.UNSET  # the caller's mistake, not the server's

    with Client(f"127.0.0.1:{port}", timeout=60, api_key="nd_not-a-key") as stranger, pytest.raises(Unauthenticated):
        stranger.count("docs")
    refused = [s for s in exporter.get_finished_spans() if s.name == "neardex.v1.Neardex/Count"]
    assert refused and refused[-1].attributes["neardex.status_code"] == "UNAUTHENTICATED"
    auth_spans = [s for s in exporter.get_finished_spans()
                  if s.name == "auth" and s.parent.span_id == refused[-1].context.span_id]
    assert auth_spans and auth_spans[0].status.status_code is StatusCode.ERROR


def test_otlp_exporter_sends_spans_to_a_collector(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0,
                                              metrics_port=0, otlp_endpoint=receiver.endpoint))
        try:
            with Client(f"127.0.0.1:{port}", timeout=60) as client:
                client.create_collection("docs")
                client.upsert("docs", DOCS)
                client.search("docs", QUERY, k=2, mode="hybrid")
        finally:
            server.stop(grace=1)  # flushes the batch of spans
        call = receiver.wait_for(SEARCH)
        assert call is not None, [s.name for s in receiver.spans]
        children = {s.name for s in receiver.spans if s.parent_span_id == call.span_id}
        assert {"embed", "dense", "lexical", "fuse", "fetch"} <= children
        attributes = {a.key: a.value for a in call.attributes}
        assert attributes["neardex.collection"].string_value == "docs"
        assert attributes["neardex.hits"].int_value == 2
        service = {a.key: a.value.string_value for r in receiver.resources for a in r.attributes}
        assert service["service.name"] == "neardex"
    finally:
        receiver.stop()


def test_upsert_shows_its_store_calls_and_model_pieces(traced: tuple[int, int, Any, str]) -> None:
    port, _, exporter, key = traced
    with Client(f"127.0.0.1:{port}", timeout=60, api_key=key) as client:
        client.upsert("docs", [{"id": "volga", "text": "The Volga flows into the Caspian Sea.", "title": "Volga"}])
    node = tree(list(exporter.get_finished_spans()), "neardex.v1.Neardex/Upsert")
    assert node.span.attributes["neardex.collection"] == "docs"
    names = node.names()
    assert names[0] == "auth" and "store.hashes" in names and "store.write" in names
    assert names.index("model") < names.index("store.write")  # embedded, then written
    assert names[names.index("model") - 1] == "scheduler.wait"
    assert node.find("model")[0].span.attributes["neardex.texts"] == 1
