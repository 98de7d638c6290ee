"""UpdateMetadata and metadata-only re-upserts through a real server, on both stores: over gRPC
with both clients, the server's own validation through the raw stub, and the role it needs (its
HTTP shape is in test_http.py). The server's model-call counter (neardex_embed_batch_size, one sample per model call)
stays still for every metadata write."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from prometheus_client import REGISTRY

from neardex.client import AsyncClient, Client, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

DOCS = [
    {"id": "apollo", "text": "Apollo 11 landed on the Moon on 20 July 1969.", "title": "Apollo 11",
     "metadata": {"topic": "space", "year": 1969}},
    {"id": "nile", "text": "The Nile is about 6,650 km long and flows north into the Mediterranean.",
     "metadata": {"topic": "geography", "year": 2000}},
    {"id": "bread", "text": "Sourdough bread rises because wild yeast ferments the dough.",
     "metadata": {"topic": "cooking", "year": 2015}},
]


def model_calls() -> float:
    return REGISTRY.get_sample_value("neardex_embed_batch_size_count") or 0.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int, dict[str, str], Path]]:
    keys_file = tmp_path / "keys.json"
    keys = {role: auth.create_key(keys_file, role, role) for role in ("read", "write", "admin")}
    data = tmp_path / "data"
    server, port = create_server(Settings(data_dir=data, host="127.0.0.1", port=0, metrics_port=0, http_port=0,
                                          api_keys_file=keys_file, max_batch_documents=3))
    yield port, server.http_port, keys, data
    server.stop(grace=1)


@pytest.mark.parametrize("store", ["local", pytest.param("milvus", marks=pytest.mark.slow)])
def test_update_metadata_over_grpc_embeds_nothing(served: tuple[int, int, dict[str, str], Path], store: str) -> None:
    port, _, keys, data = served
    with Client(f"127.0.0.1:{port}", api_key=keys["admin"], timeout=60) as admin:
        admin.create_collection("docs", store=str(data / "docs.db") if store == "milvus" else None)
        admin.index_metadata("docs", ["topic"])
    with Client(f"127.0.0.1:{port}", api_key=keys["write"], timeout=60) as client:
        client.upsert("docs", DOCS)
        calls = model_calls()
        result = client.update_metadata("docs", ["nile", "atlantis"], set={"topic": "rivers", "source.name": "atlas"},
                                        unset=["year"])
        assert (result.updated, result.missing) == (1, ["atlantis"])
        assert client.get("docs", ["nile"]).documents[0].metadata == {"topic": "rivers", "source": {"name": "atlas"}}
        assert client.count("docs", filter={"topic": "rivers"}) == 1
        assert client.count("docs", filter={"topic": "geography"}) == 0
        by_filter = client.update_metadata("docs", filter={"year": {"gte": 1900}}, set={"dated": True})
        assert (by_filter.updated, by_filter.missing) == (2, [])
        assert {d.id for d in client.scroll_all("docs", filter={"dated": True}, page_size=3)} == {"apollo", "bread"}
        replaced = client.update_metadata("docs", "bread", set={"only": 1}, replace=True)
        assert replaced.updated == 1 and client.get("docs", "bread").documents[0].metadata == {"only": 1}
        # The async client shares the call.
        async def tag() -> Any:
            async with AsyncClient(f"127.0.0.1:{port}", api_key=keys["write"], timeout=60) as aio:
                return await aio.update_metadata("docs", ["apollo"], set={"crew": 3})
        assert asyncio.run(tag()).updated == 1
        assert model_calls() == calls
        # A re-upsert whose documents changed only their metadata embeds nothing either.
        changed = [{**DOCS[0], "metadata": {"topic": "moon"}}, DOCS[1], DOCS[2]]
        again = client.upsert("docs", changed)
        assert (again.upserted, again.metadata_updated, again.unchanged) == (0, 3, 0)
        assert model_calls() == calls
        assert [h.id for h in client.search("docs", "landing on the moon", k=1, filter={"topic": "moon"})] == ["apollo"]


def test_bad_updates_are_refused_naming_the_field(served: tuple[int, int, dict[str, str], Path]) -> None:
    port, _, keys, _ = served
    with Client(f"127.0.0.1:{port}", api_key=keys["admin"], timeout=60) as client:
        client.create_collection("docs")
        client.upsert("docs", DOCS)
        with pytest.raises(NotFound, match="collection: 'nope' does not exist"):
            client.update_metadata("nope", ["nile"], set={"a": 1})
        with pytest.raises(InvalidArgument, match=r"unset\[0\]: 'topic' is also set"):
            client.update_metadata("docs", ["nile"], set={"topic": "x"}, unset=["topic"])
        with pytest.raises(InvalidArgument, match="filter: an empty filter"):
            client.update_metadata("docs", filter={}, set={"a": 1})
        with pytest.raises(ResourceExhausted, match="ids: 4 ids in one call; the limit is 3"):
            client.update_metadata("docs", ["a", "b", "c", "d"], set={"a": 1})
    # The server's own checks, past the client's: a non-finite number inside the Struct, ids and a
    # filter together, nothing to do.
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = neardex_pb2_grpc.NeardexStub(channel)
    metadata = (("authorization", f"Bearer {keys['write']}"),)
    nested = struct_pb2.Struct()
    nested.update({"inner": {"score": 1.0}})
    nested["inner"]["score"] = math.inf
    cases = [
        (pb.UpdateMetadataRequest(collection="docs", ids=["nile"], set=nested), "set.inner.score: not a finite number"),
        (pb.UpdateMetadataRequest(collection="docs", ids=["nile"], filter=pb.Filter(), set=nested),
         "filter: update by ids or by a filter, not both"),
        (pb.UpdateMetadataRequest(collection="docs", ids=["nile"]), "set: give keys to set or to unset"),
        (pb.UpdateMetadataRequest(collection="docs", ids=["nile"], unset=["a b"]), "unset[0]: a key is a dotted path"),
    ]
    try:
        for request, message in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.UpdateMetadata(request, metadata=metadata, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(message), err.value.details()
    finally:
        channel.close()
    with Client(f"127.0.0.1:{port}", api_key=keys["read"], timeout=60) as client:
        assert client.get("docs", "nile").documents[0].metadata == DOCS[1]["metadata"]
        with pytest.raises(PermissionDenied, match="needs role write"):
            client.update_metadata("docs", ["nile"], set={"a": 1})
