"""Deadlines, cancellation and bounded load on a real server: work whose caller has gone is not
done, a flood past the concurrency limit is refused at once and leaves the server healthy, and
BatchSearch has its own limit and embeds its queries in one model call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from neardex.client import Client
from neardex.server.app import create_server
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc
from tests.support.processes import free_port, start_serve, stop_process

DOCS = [
    {"id": "apollo", "text": "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong stepped out first."},
    {"id": "nile", "text": "The Nile is about 6,650 km long and flows north into the Mediterranean."},
    {"id": "bread", "text": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough."},
]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rpc_count(method: str, code: str) -> float:
    return sample("neardex_rpc_requests_total", method=method, code=code)


def sample_total(method: str) -> float:
    """Calls of a method counted under any code."""
    return sum(s.value for metric in REGISTRY.collect() if metric.name == "neardex_rpc_requests"
               for s in metric.samples if s.name.endswith("_total") and s.labels.get("method") == method)


def texts_embedded() -> float:
    return sample("neardex_embed_batch_size_sum")


def model_calls() -> float:
    return sample("neardex_embed_batch_size_count")


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, Client]]:
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          max_batch_searches=8))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    with Client(f"127.0.0.1:{port}", timeout=120) as client:
        client.create_collection("docs", default_mode="dense")
        client.upsert("docs", DOCS)
        yield neardex_pb2_grpc.NeardexStub(channel), client
    channel.close()
    server.stop(grace=1)


def search_calls() -> dict[str, float]:
    return {code: rpc_count("Search", code) for code in ("OK", "DEADLINE_EXCEEDED", "CANCELLED")}


def settled(read: Callable[[], dict[str, float]], quiet: float = 0.5, timeout: float = 30) -> dict[str, float]:
    """read() once it has stopped changing for `quiet` seconds (calls finish in the pool's threads)."""
    last, since, limit = read(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < limit, "never settled"
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_burst_of_expired_searches_is_not_embedded(served: tuple[Any, Client]) -> None:
    stub, client = served
    burst = 100
    before_texts, before = texts_embedded(), search_calls()
    total_before = sample_total("Search")
    futures = [stub.Search.future(pb.SearchRequest(collection="docs", text=f"moon landing number {i}", top_k=3),
                                  timeout=0.001) for i in range(burst)]
    for future in futures:
        with pytest.raises(grpc.RpcError) as err:
            future.result()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The normal search behind the burst is answered, and answered right.
    assert client.search("docs", "who first walked on the moon", k=1).hits[0].id == "apollo"
    after = settled(search_calls)
    arrived = sample_total("Search") - total_before
    # Every call of the burst that reached the server (one can expire in the client before it is
    # sent) is counted under DEADLINE_EXCEEDED or CANCELLED; only the normal search is OK.
    assert after["OK"] - before["OK"] == 1
    expired = (after["DEADLINE_EXCEEDED"] - before["DEADLINE_EXCEEDED"]) + (after["CANCELLED"] - before["CANCELLED"])
    assert expired == arrived - 1 and expired > 0
    # Nearly none of the burst reached the model: the normal search was not queued behind it.
    assert texts_embedded() - before_texts <= 1 + 0.1 * burst


def test_searches_that_expire_while_queued_are_dropped_not_embedded(served: tuple[Any, Client]) -> None:
    """The model is busy with a large Embed; searches with a short deadline queue behind it and
    expire there. When the model frees, the normal search queued after them runs alone."""
    stub, client = served
    busy = stub.Embed.future(pb.EmbedRequest(texts=[f"text number {i} about rivers and deltas" for i in range(3000)]),
                             timeout=300)
    wait_until(lambda: sample("neardex_batch_queue_depth") == 0 and not busy.done())
    time.sleep(0.2)  # the worker has taken the Embed: the model is busy with it
    burst = [stub.Search.future(pb.SearchRequest(collection="docs", text=f"moon question {i}", top_k=1), timeout=0.05)
             for i in range(30)]
    wait_until(lambda: all(f.done() for f in burst))
    assert not busy.done(), "the model call ended before the burst expired: make the Embed larger"
    texts, calls = texts_embedded(), model_calls()
    normal = stub.Search.future(pb.SearchRequest(collection="docs", text="who first walked on the moon", top_k=1),
                                timeout=300)
    assert len(busy.result().vectors) == 3000
    assert normal.result().hits[0].id == "apollo"
    # After the Embed: one model call, of the normal search's one text.
    wait_until(lambda: model_calls() - calls >= 2)
    assert (model_calls() - calls, texts_embedded() - texts) == (2, 3000 + 1)


def test_a_cancelled_write_is_not_made(served: tuple[Any, Client]) -> None:
    stub, client = served
    long_text = " ".join(f"Sentence {i} of a long report on river deltas and sediment transport." for i in range(60))
    request = pb.UpsertRequest(collection="docs", documents=[pb.Document(id=f"r{i}", text=f"{i} {long_text}")
                                                             for i in range(200)])
    before_calls, before_cancelled = model_calls(), rpc_count("Upsert", "CANCELLED")
    future = stub.Upsert.future(request, timeout=300)
    wait_until(lambda: model_calls() > before_calls)  # the write is embedding
    future.cancel()
    wait_until(lambda: rpc_count("Upsert", "CANCELLED") > before_cancelled)
    assert client.info("docs").documents == len(DOCS)
    assert client.get("docs", ["r0", "r199"]).missing == ["r0", "r199"]
    # It stopped within a model call or two, not after embedding all 200 documents.
    assert model_calls() - before_calls < 200 * 4 / 64


def test_batch_search_embeds_its_queries_in_one_model_call(served: tuple[Any, Client]) -> None:
    _, client = served
    queries = ["moon landing", "longest river", "bread yeast", "first man on the moon",
               "Mediterranean", "fermented dough"]
    calls, texts = model_calls(), texts_embedded()
    results = client.batch_search("docs", queries, k=1)
    assert (model_calls() - calls, texts_embedded() - texts) == (1, len(queries))
    assert [r.hits[0].id for r in results] == [client.search("docs", q, k=1).hits[0].id for q in queries]
    assert [r.hits[0].id for r in results][:3] == ["apollo", "nile", "bread"]


def test_batch_search_has_its_own_limit(served: tuple[Any, Client]) -> None:
    stub, _ = served
    request = pb.BatchSearchRequest(requests=[pb.SearchRequest(collection="docs", text="moon", top_k=1)] * 9)
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchSearch(request)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests: 9 searches" in err.value.details() and "limit is 8" in err.value.details()
    assert len(stub.BatchSearch(pb.BatchSearchRequest(requests=request.requests[:8])).responses) == 8


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# The server's memory after a flood of 10x its concurrency limit; it holds the model (~90 MiB of
# weights), PyTorch and FAISS, about 700 MiB idle on this machine.
RSS_BOUND_MIB = 1536


def test_a_flood_past_the_limit_is_refused_at_once_and_the_server_stays_healthy(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    limit, flood, rounds = 4, 40, 3
    port = free_port()
    proc = start_serve(tmp_path / "data", port, 0, "--max-concurrent-rpcs", str(limit))
    try:
        target = f"127.0.0.1:{port}"
        with Client(target, timeout=120) as client:
            client.create_collection("docs")
            client.upsert("docs", DOCS)
        outcomes: list[tuple[grpc.StatusCode, str, dict[str, str]]] = []
        lock = threading.Lock()
        start = threading.Barrier(flood)

        def caller(i: int) -> None:
            with grpc.insecure_channel(target) as channel:
                stub = neardex_pb2_grpc.NeardexStub(channel)
                grpc.channel_ready_future(channel).result(timeout=60)
                start.wait(timeout=120)
                for r in range(rounds):
                    request = pb.SearchRequest(collection="docs", text=f"question {i} round {r} about the moon",
                                               top_k=2)
                    try:
                        stub.Search(request, timeout=120)
                        outcome = (grpc.StatusCode.OK, "", {})
                    except grpc.RpcError as err:
                        outcome = (err.code(), err.details(), dict(err.trailing_metadata() or ()))
                    with lock:
                        outcomes.append(outcome)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(flood)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = {code for code, _, _ in outcomes}
        assert len(outcomes) == flood * rounds
        assert codes == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        refused = [(d, m) for c, d, m in outcomes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert all("NEARDEX_MAX_CONCURRENT_RPCS" in d and m.get("neardex-retry-after-ms") for d, m in refused)
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with Client(target, timeout=60) as client:
            assert client.search("docs", "who first walked on the moon", k=1).hits[0].id == "apollo"
        assert proc.poll() is None
        assert rss_mib(proc.pid) < RSS_BOUND_MIB
    finally:
        stop_process(proc)
