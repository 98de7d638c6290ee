"""The gRPC port against hostile callers: calls without a key, streams of health and reflection,
calls whose request never arrives, and a key revoked while its stream is open. Each attack is
made as described, then an honest keyed caller must still be served, over gRPC and HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from neardex.server import auth
from neardex.server.app import Server, create_server
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

LIMIT = 4
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str], Path]]:
    keys_file = tmp_path / "keys.json"
    keys = {role: auth.create_key(keys_file, role, role) for role in ("read", "write", "admin")}
    server, _ = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                       http_port=0, api_keys_file=keys_file, max_concurrent_rpcs=LIMIT,
                                       request_timeout_s=1.0))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = neardex_pb2_grpc.NeardexStub(channel)
        stub.CreateCollection(pb.CreateCollectionRequest(name="docs"), metadata=_key(keys["admin"]), timeout=300)
    yield server, keys, keys_file
    server.stop(grace=1)


def _key(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


class Silent:
    """A request iterator that sends nothing until released: the call's headers go out, its
    message never does."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        self.release.wait(60)
        yield from ()


def header_only(channel: grpc.Channel, path: str, silent: Silent, metadata: Any = ()) -> Any:
    call = channel.stream_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pb.CountResponse.FromString)
    return call.future(iter(silent), metadata=metadata, timeout=60)


def keyed_count(server: Server, key: str) -> tuple[int, int]:
    """(gRPC count, HTTP status) of an honest read call, each with a short deadline."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        count = neardex_pb2_grpc.NeardexStub(channel).Count(pb.CountRequest(collection="docs"),
                                                            metadata=_key(key), timeout=5).count
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/neardex.v1.Neardex/Count",
                                     data=json.dumps({"collection": "docs"}).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return count, response.status


def test_keyless_calls_and_streams_hold_no_slot(keyed: tuple[Server, dict[str, str], Path]) -> None:
    server, keys, _ = keyed
    silent = Silent()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as attacker:
        stalled = [header_only(attacker, "/neardex.v1.Neardex/Count", silent) for _ in range(LIMIT * 4)]
        reflection = attacker.stream_stream(REFLECTION)
        streams = [reflection(iter(silent)) for _ in range(64)]
        time.sleep(0.5)
        assert keyed_count(server, keys["read"]) == (0, 200)
        refused = [f.exception() for f in stalled]
        assert {e.code() for e in refused} == {grpc.StatusCode.UNAUTHENTICATED}
        silent.release.set()
        for stream in streams:
            stream.cancel()


def test_a_call_whose_request_never_arrives_is_cancelled(keyed: tuple[Server, dict[str, str], Path]) -> None:
    server, keys, _ = keyed
    silent = Silent()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as attacker:
        # A read key's calls, all admitted, none sending its request: every slot taken.
        stalled = [header_only(attacker, "/neardex.v1.Neardex/Count", silent, _key(keys["read"]))
                   for _ in range(LIMIT)]
        codes = {f.exception(timeout=30).code() for f in stalled}
        assert codes == {grpc.StatusCode.CANCELLED}
        assert keyed_count(server, keys["read"]) == (0, 200)
        silent.release.set()


def test_side_streams_have_their_own_cap(keyed: tuple[Server, dict[str, str], Path]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, keys, _ = keyed
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        watches = [health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
                   for _ in range(20)]
        time.sleep(0.5)
        refused = []
        for watch in watches:
            try:
                next(watch)
            except grpc.RpcError as err:
                refused.append(err.code())
        assert refused and set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert keyed_count(server, keys["read"]) == (0, 200)
        for watch in watches:
            watch.cancel()


def test_a_revoked_key_stops_writing_on_its_open_stream(keyed: tuple[Server, dict[str, str], Path]) -> None:
    server, keys, keys_file = keyed
    sent: list[pb.UpsertRequest] = []
    next_one = threading.Event()

    def requests() -> Iterator[pb.UpsertRequest]:
        for i in range(2):
            if i:
                next_one.wait(60)
            sent.append(pb.UpsertRequest(collection="docs", documents=[pb.Document(id=f"d{i}", text=f"text {i}")]))
            yield sent[-1]

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = neardex_pb2_grpc.NeardexStub(channel).UpsertStream(requests(), metadata=_key(keys["write"]),
                                                                     timeout=60)
        assert list(next(stream).ids) == ["d0"]
        auth.revoke_key(keys_file, "write")
        next_one.set()
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = neardex_pb2_grpc.NeardexStub(channel)
        got = stub.Get(pb.GetRequest(collection="docs", ids=["d0", "d1"]), metadata=_key(keys["read"]), timeout=10)
        assert [d.id for d in got.documents] == ["d0"] and list(got.missing) == ["d1"]
