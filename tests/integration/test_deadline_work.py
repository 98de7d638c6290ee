"""Work bounded by the caller: a lexical query past the term limit is refused before any work,
a text past the model's window is refused from its head, SQLite reads stop once the request's
deadline has passed or its caller has gone (never without a deadline), and the per-term reads of
the lexical score scale stop too. Timings belong to bench/deadline_cpu.py; these check behaviour."""

from __future__ import annotations

import random
import sqlite3
import string
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from neardex.indexer import deadline
from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import Cancelled, DeadlineExceeded
from neardex.indexer.query import analysis
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.stores.local import fts
from neardex.server.app import create_server
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from neardex.v1 import neardex_pb2_grpc

DOCS = [
    pb.Document(id="apollo", text="Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong stepped out first."),
    pb.Document(id="nile", text="The Nile is about 6,650 km long and flows north into the Mediterranean."),
]


def made_up_words(n: int, seed: int = 17) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(n))


def stub_for(tmp_path: Path, **settings: object) -> Iterator[neardex_pb2_grpc.NeardexStub]:
    srv, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                       **settings))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 16 << 20)])
    stub = neardex_pb2_grpc.NeardexStub(channel)
    stub.CreateCollection(pb.CreateCollectionRequest(name="docs"))
    stub.Upsert(pb.UpsertRequest(collection="docs", documents=DOCS))
    yield stub
    channel.close()
    srv.stop(grace=1)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[neardex_pb2_grpc.NeardexStub]:
    yield from stub_for(tmp_path)


@pytest.fixture
def five_terms(tmp_path: Path) -> Iterator[neardex_pb2_grpc.NeardexStub]:
    yield from stub_for(tmp_path, max_query_terms=5)


def refusal(method: Callable[..., object], request: object) -> str:
    with pytest.raises(grpc.RpcError) as err:
        method(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return str(err.value.details())


def test_a_3_mb_lexical_query_is_refused_naming_the_field_and_the_limit(stub) -> None:
    text = made_up_words(400_000)  # the reported attack: 3 MB, 400,000 words
    assert len(text) > 2_900_000
    lex = pb.SEARCH_MODE_LEXICAL
    details = refusal(stub.Search, pb.SearchRequest(collection="docs", text=text, top_k=5, mode=lex))
    assert details == "query: more than 1024 terms after analysis; the limit is 1024 (NEARDEX_MAX_QUERY_TERMS)"
    details = refusal(stub.BatchSearch, pb.BatchSearchRequest(requests=[
        pb.SearchRequest(collection="docs", text="moon", top_k=1, mode=lex),
        pb.SearchRequest(collection="docs", text=text, top_k=1, mode=lex)]))
    assert details.startswith("requests[1].query: more than 1024 terms after analysis")
    # Hybrid embeds the text: it is refused from its head, without tokenizing 3 MB.
    details = refusal(stub.Search, pb.SearchRequest(collection="docs", text=text, top_k=5,
                                                    mode=pb.SEARCH_MODE_HYBRID))
    assert details.startswith("query: ") and "characters already exceed the model's window of 254 tokens" in details
    # Still serving, and a query within the limit is answered.
    hits = stub.Search(pb.SearchRequest(collection="docs", text="moon landing", top_k=1, mode=lex)).hits
    assert hits[0].id == "apollo"


def test_the_term_limit_is_a_setting_applied_in_every_mode_and_call(five_terms) -> None:
    six = "moon landing armstrong nile river apollo"
    five = "moon landing armstrong nile river"
    message = "{}: more than 5 terms after analysis; the limit is 5 (NEARDEX_MAX_QUERY_TERMS)"
    for mode in (pb.SEARCH_MODE_LEXICAL, pb.SEARCH_MODE_HYBRID):
        search = pb.SearchRequest(collection="docs", text=six, top_k=1, mode=mode)
        within = pb.SearchRequest(collection="docs", text=five, top_k=1, mode=mode)
        assert refusal(five_terms.Search, search) == message.format("query")
        assert five_terms.Search(within).hits
        batch = pb.BatchSearchRequest(requests=[within, search])
        assert refusal(five_terms.BatchSearch, batch) == message.format("requests[1].query")
    assert refusal(five_terms.Ask, pb.AskRequest(collection="docs", question=six, top_k=1)) == message.format("question")
    # Dense search reads no terms: the limit is not its.
    assert five_terms.Search(pb.SearchRequest(collection="docs", text=six, top_k=1, mode=pb.SEARCH_MODE_DENSE)).hits


# -- SQLite reads stop at the deadline --------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    """A collection of own vectors (no model to run) with rows enough for reads of many steps."""
    with Catalog(tmp_path_factory.mktemp("many")) as catalog:
        col = catalog.create("many", model="none", dimension=2)
        col.upsert([Document(f"d{i:05d}", f"passage {i} about the moon", vector=[1.0, float(i)]) for i in range(5000)])
        yield col


def flips_after(calls: int) -> tuple[Callable[[], bool], list[int]]:
    """An `active` that answers True `calls` times, then False (a caller who goes away mid-read),
    and the number of times it was asked."""
    asked = [0]

    def active() -> bool:
        asked[0] += 1
        return asked[0] <= calls

    return active, asked


def test_a_read_whose_deadline_passed_is_interrupted(many: Collection) -> None:
    with deadline.bound(deadline.Deadline(time.monotonic() - 1)), pytest.raises(DeadlineExceeded, match="during all_ids"):
        many.all_ids()
    # The thread's read connection is still good afterwards.
    assert len(many.all_ids()) == 5000


def test_a_read_whose_caller_goes_away_midway_is_interrupted(many: Collection) -> None:
    active, asked = flips_after(2)
    with deadline.bound(deadline.Deadline(None, active)), pytest.raises(Cancelled, match="during scroll"):
        many.scroll("", 5000)
    # The progress handler asked while the one statement ran and stopped it at the first False
    # (the third answer); the fourth question names the reason.
    assert asked[0] == 4


def test_reads_without_a_deadline_or_within_it_are_never_interrupted(many: Collection) -> None:
    assert len(many.all_ids()) == 5000  # a library caller: nothing bound
    active, asked = flips_after(10**9)
    with deadline.bound(deadline.Deadline(time.monotonic() + 600, active)):
        assert len(many.scroll("", 5000)) == 5000
        assert len(many.search("moon", k=5, mode="lexical").hits) == 5
    assert asked[0] > 2  # the handler ran, and let the reads finish


def test_the_lexical_score_scale_stops_between_terms(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "fts.sqlite")
    fts.create_table(db)
    fts.add(db, [(i, f"passage {i} {made_up_words(20, seed=i)}") for i in range(50)])
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    query = analysis.Analyzer("english").query(made_up_words(1000))
    active, _ = flips_after(2)
    with deadline.bound(deadline.Deadline(None, active)), pytest.raises(Cancelled):
        fts.max_score(db, query)
    # Two terms of 1,000 were counted; the rest were never asked for.
    assert len([s for s in statements if "MATCH" in s]) == 2
