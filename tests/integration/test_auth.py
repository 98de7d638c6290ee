"""API keys over a real server: every RPC x role x collection scope, the header forms, keys files
changing under a running server, and the key never showing in a repr, error, log or metric. (The
`neardex keys` command and a served keyed folder: tests/e2e/test_auth_cli.py.)"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from neardex.client import Client, PermissionDenied, Unauthenticated
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["Neardex"]
Keyed = tuple[Any, Path, dict[str, str], int]
DOC = pb.Document(id="d1", text="Apollo 11 landed on the Moon in July 1969.")
ROLES = ("read", "write", "admin")
# What each role may call, as the README promises it; the server's own table is not the oracle.
NEEDS = {
    "read": {"Search", "BatchSearch", "Ask", "Get", "Count", "Facet", "Scroll", "Embed", "SearchSimilar",
             "Similarity", "Tokenize", "ListCollections", "GetCollection", "ListAliases", "ListSnapshots"},
    "write": {"Upsert", "UpsertStream", "Delete", "UpdateMetadata"},
    "admin": {"CreateCollection", "DeleteCollection", "IndexMetadata", "UpdateCollection", "CreateAlias", "DeleteAlias",
              "CreateSnapshot", "DeleteSnapshot", "RestoreSnapshot", "MigrateCollection"},
}
NEEDED_ROLE = {method: role for role, methods in NEEDS.items() for method in methods}
# Scope of the key under test, and the collection each call targets.
SCOPES = {"all": "", "docs": "docs-*"}
TARGETS = ("docs", "team")


def request_for(method: str, target: str) -> Any:
    """A valid request of each RPC against collection `target` (which holds DOC)."""
    search = pb.SearchRequest(collection=target, text="moon landing", top_k=1)
    return {
        "CreateCollection": pb.CreateCollectionRequest(name=f"{target}-new"),
        "ListCollections": pb.ListCollectionsRequest(),
        "GetCollection": pb.GetCollectionRequest(name=target),
        "DeleteCollection": pb.DeleteCollectionRequest(name=target),
        "IndexMetadata": pb.IndexMetadataRequest(collection=target, keys=["topic"]),
        "UpdateCollection": pb.UpdateCollectionRequest(name=target, language="german"),
        "CreateAlias": pb.CreateAliasRequest(name=f"{target}-b", collection=target),
        "DeleteAlias": pb.DeleteAliasRequest(name=f"{target}-a"),
        "ListAliases": pb.ListAliasesRequest(collection=target),
        "CreateSnapshot": pb.CreateSnapshotRequest(collection=target),
        "ListSnapshots": pb.ListSnapshotsRequest(collection=target),
        "DeleteSnapshot": pb.DeleteSnapshotRequest(collection=target, name=SNAPSHOTS.get(target, "")),
        "RestoreSnapshot": pb.RestoreSnapshotRequest(collection=target, snapshot=SNAPSHOTS.get(target, ""),
                                                     target=f"{target}-restored"),
        # Into a milvus-lite file in the data folder (a store every server may use).
        "MigrateCollection": pb.MigrateCollectionRequest(name=target, to=str(MILVUS_FILE[0]) if MILVUS_FILE else "x.db"),
        "Upsert": pb.UpsertRequest(collection=target, documents=[pb.Document(id="d2", text="The Nile flows north.")]),
        "UpsertStream": iter([pb.UpsertRequest(collection=target, documents=[pb.Document(id="d3", text="Bread rises.")])]),
        "Delete": pb.DeleteRequest(collection=target, ids=["d1"]),
        "UpdateMetadata": pb.UpdateMetadataRequest(collection=target, ids=["d1"], unset=["topic"]),
        "Get": pb.GetRequest(collection=target, ids=["d1"]),
        "Count": pb.CountRequest(collection=target),
        "Facet": pb.FacetRequest(collection=target, key="topic"),
        "Scroll": pb.ScrollRequest(collection=target, limit=10),
        "Search": search,
        "BatchSearch": pb.BatchSearchRequest(requests=[search, search]),
        "Ask": pb.AskRequest(collection=target, question="When did Apollo 11 land?", top_k=1),
        "Embed": pb.EmbedRequest(texts=["hello"], collection=target),
        "SearchSimilar": pb.SearchSimilarRequest(collection=target, positive=["d1"], top_k=3),
        "Similarity": pb.SimilarityRequest(texts=["a", "b"], collection=target),
        "Tokenize": pb.TokenizeRequest(text="hello world", collection=target),
    }[method]


def call(stub: Any, method: str, request: Any, key: str | None, header: str = "authorization") -> Any:
    metadata = () if key is None else ((header, f"Bearer {key}" if header == "authorization" else key),)
    result = getattr(stub, method)(request, metadata=metadata, timeout=60)
    return list(result) if SERVICE.methods_by_name[method].server_streaming else result


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, dict[str, str], int]]:
    """A server with a keys file: an admin key for set-up, and one key per role x scope; and its port."""
    root = tmp_path_factory.mktemp("auth")
    keys_file = root / "keys.json"
    keys = {"setup": auth.create_key(keys_file, "setup", "admin")}
    for role, (scope, patterns) in itertools.product(ROLES, SCOPES.items()):
        keys[f"{role}-{scope}"] = auth.create_key(keys_file, f"{role}-{scope}", role, patterns)
    MILVUS_FILE[:] = [root / "data" / "milvus.db"]
    server, port = create_server(Settings(data_dir=root / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          api_keys_file=keys_file))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield neardex_pb2_grpc.NeardexStub(channel), keys_file, keys, port
    channel.close()
    server.stop(grace=1)


_counter = itertools.count()


SNAPSHOTS: dict[str, str] = {}
MILVUS_FILE: list[Path] = []


def fresh(stub: Any, keys: dict[str, str], prefix: str) -> str:
    """A new collection holding DOC, with an alias `<name>-a` and a snapshot, made with the set-up key."""
    name = f"{prefix}-{next(_counter)}"
    call(stub, "CreateCollection", pb.CreateCollectionRequest(name=name), keys["setup"])
    call(stub, "Upsert", pb.UpsertRequest(collection=name, documents=[DOC]), keys["setup"])
    call(stub, "CreateAlias", pb.CreateAliasRequest(name=f"{name}-a", collection=name), keys["setup"])
    SNAPSHOTS[name] = call(stub, "CreateSnapshot", pb.CreateSnapshotRequest(collection=name), keys["setup"]).name
    return name


CASES = [(m.name, role, scope, target) for m in SERVICE.methods for role in ROLES
         for scope in SCOPES for target in TARGETS if m.name != "ListCollections"]


def test_every_rpc_has_a_role_and_a_case() -> None:
    assert set(NEEDED_ROLE) == {m.name for m in SERVICE.methods}
    for method in SERVICE.methods:
        request_for(method.name, "docs")


@pytest.mark.parametrize(("method", "role", "scope", "target"), CASES,
                         ids=[f"{m}-{r}-{s}-on-{t}" for m, r, s, t in CASES])
def test_rpc_role_scope(keyed: Keyed, method: str, role: str, scope: str,
                        target: str) -> None:
    stub, _, keys, _ = keyed
    name = fresh(stub, keys, target)
    needed = NEEDED_ROLE[method]
    in_role = ROLES.index(role) >= ROLES.index(needed)
    in_scope = scope == "all" or target == "docs"
    key = keys[f"{role}-{scope}"]
    if in_role and in_scope:
        call(stub, method, request_for(method, name), key)
        return
    before = call(stub, "Get", pb.GetRequest(collection=name, ids=["d1", "d2", "d3"]), keys["setup"])
    with pytest.raises(grpc.RpcError) as err:
        call(stub, method, request_for(method, name), key)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert method in err.value.details() and f"{role}-{scope}" in err.value.details()
    if in_role:  # refused for its scope: the message names the collection
        assert name in err.value.details()
    # Nothing changed: the collection and its documents are as they were.
    assert call(stub, "Get", pb.GetRequest(collection=name, ids=["d1", "d2", "d3"]), keys["setup"]) == before
    with pytest.raises(grpc.RpcError):
        call(stub, "GetCollection", pb.GetCollectionRequest(name=f"{name}-new"), keys["setup"])


@pytest.mark.parametrize("role", ROLES)
def test_list_collections_shows_a_scoped_key_only_its_collections(keyed: Keyed,
                                                                   role: str) -> None:
    stub, _, keys, _ = keyed
    fresh(stub, keys, "docs")
    fresh(stub, keys, "team")
    every = {c.name for c in call(stub, "ListCollections", pb.ListCollectionsRequest(), keys["setup"]).collections}
    scoped = {c.name for c in call(stub, "ListCollections", pb.ListCollectionsRequest(), keys[f"{role}-docs"]).collections}
    assert scoped == {n for n in every if n.startswith("docs-")} and scoped < every
    assert {c.name for c in call(stub, "ListCollections", pb.ListCollectionsRequest(), keys[f"{role}-all"]).collections} == every


def test_embed_with_the_default_model_needs_no_collection_scope(keyed: Keyed) -> None:
    stub, _, keys, _ = keyed
    assert call(stub, "Embed", pb.EmbedRequest(texts=["hello"]), keys["read-docs"]).dimension == 384


@pytest.mark.parametrize("header", ["authorization", "api-key"])
def test_header_forms(keyed: Keyed, header: str) -> None:
    stub, _, keys, _ = keyed
    assert call(stub, "ListCollections", pb.ListCollectionsRequest(), keys["read-all"], header) is not None
    # The scheme is case-insensitive, as HTTP's is.
    stub.ListCollections(pb.ListCollectionsRequest(), metadata=(("authorization", f"bearer {keys['read-all']}"),))


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer ndx_not-a-key"),), (("api-key", "wrong"),),
                                      (("authorization", "Basic abc"),), (("authorization", "Bearer "),)])
def test_missing_or_unknown_keys_are_unauthenticated(keyed: Keyed, metadata: Any) -> None:
    stub, _, _, port = keyed
    with pytest.raises(grpc.RpcError) as err:
        stub.ListCollections(pb.ListCollectionsRequest(), metadata=metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "key" in err.value.details()


def test_health_and_reflection_need_no_key(keyed: Keyed) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, _, _, port = keyed
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        assert "neardex.v1.Neardex" in {s.name for s in answer.list_services_response.service}


def test_keys_file_changes_apply_without_restart(keyed: Keyed,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    stub, keys_file, keys, _ = keyed
    new = auth.create_key(keys_file, "late", "read")
    assert call(stub, "ListCollections", pb.ListCollectionsRequest(), new) is not None
    auth.revoke_key(keys_file, "late")
    with pytest.raises(grpc.RpcError) as err:
        call(stub, "ListCollections", pb.ListCollectionsRequest(), new)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A broken file keeps the keys loaded before: nobody is locked out, nobody let in.
    good = keys_file.read_text()
    try:
        with caplog.at_level(logging.ERROR, logger="neardex.server"):
            keys_file.write_text("{not json")
            assert call(stub, "ListCollections", pb.ListCollectionsRequest(), keys["read-all"]) is not None
        assert "keeping the" in caplog.text
    finally:
        keys_file.write_text(good)


def test_keys_file_stores_hashes_only(keyed: Keyed) -> None:
    _, keys_file, keys, _ = keyed
    text = keys_file.read_text()
    assert all(key not in text for key in keys.values())
    assert all(auth.hash_key(key) in text for key in keys.values())
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"


def test_client_sends_its_key_and_never_shows_it(keyed: Keyed,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stub, _, keys, port = keyed
    target = f"127.0.0.1:{port}"
    name = fresh(stub, keys, "docs")
    with Client(target, api_key=keys["read-docs"], timeout=60) as client:
        assert client.search(name, "moon landing", k=1).hits[0].id == "d1"
        with pytest.raises(PermissionDenied, match="Upsert"):
            client.upsert(name, [{"id": "x", "text": "not allowed"}])
        assert keys["read-docs"] not in repr(client) and "api_key=<set>" in repr(client)
    monkeypatch.setenv("NEARDEX_API_KEY", keys["write-all"])
    with Client(target, timeout=60) as client:  # from the environment
        assert client.upsert(name, [{"id": "x", "text": "allowed now"}]).upserted == 1
    bad = "ndx_this-is-not-a-key"
    with Client(target, api_key=bad, timeout=10) as client:
        with pytest.raises(Unauthenticated) as err:
            client.collections()
        assert bad not in str(err.value) and bad not in repr(err.value) and bad not in repr(client)
