"""A search asks its store few times: a hybrid search with feedback makes at most 4 store calls,
filtered or not, on the embedded store and on the Milvus store (milvus-lite), where each call is
a network round trip.

The store is wrapped in a proxy that counts every method called on it during one
`Collection.search`. `view()` is left out of the count: on the Milvus store it does nothing (no
round trip; Milvus' Strong consistency is what makes the reads agree), and on the embedded store
it takes an in-process read lock. Every other method counts. On the Milvus store one call is one
round trip, but for `retrieve`, which sends its dense and its lexical search at once: a hybrid
search there sends 5 requests and waits for 4 (and, inside `retrieve`, the lexical statistics'
counts the first time in 5 minutes that a query term is seen, `MilvusStore._statistics`). Before the store interface was cut by round trips
the same search made 10 calls (restrict, dense x2, doc_ids_of x3, lexical, vectors_of, chunks_of,
fetch_chunks), 9 of them round trips on Milvus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.query.filters import Condition, Filter
from neardex.indexer.retrieval.engine import Collection
from tests.support.counting import counting

MOST_CALLS = 4
TOPICS = ["copper kettles and their repair", "lighthouse lamps on the northern cliffs",
          "orchids that grow in the salt marsh", "the cathedral clock and its bells",
          "ferries that cross the river at dawn", "glass blowing in the old town"]
DOCS = [Document(f"d{i:02d}", f"A note on {TOPICS[i % len(TOPICS)]}, number {i}. It tells how"
                 f" {TOPICS[(i * 5) % len(TOPICS)]} changed over the years.",
                 metadata={"shelf": i % 3}) for i in range(60)]
QUERY = "how were copper kettles repaired near the lighthouse"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Collection]]:
    pytest.importorskip("pymilvus")
    root: Path = tmp_path_factory.mktemp("calls")
    with Catalog(root / "data") as catalog:
        found = {"local": catalog.create("local"), "milvus": catalog.create("milvus", store=str(root / "milvus.db"))}
        for col in found.values():
            col.upsert(DOCS)
        yield found


@pytest.mark.parametrize("store", ["local", "milvus"])
@pytest.mark.parametrize("flt", [None, Filter(conditions={"shelf": Condition("in", [0, 1])})],
                         ids=["unfiltered", "filtered"])
def test_a_hybrid_search_with_feedback_makes_few_store_calls(stores: dict[str, Collection], store: str,
                                                             flt: Filter | None) -> None:
    collection = stores[store]
    expected = collection.search(QUERY, k=10, mode="hybrid", flt=flt)
    assert "feedback" in expected.timings_ms  # Rocchio feedback ran: a second dense retrieval
    with counting(collection) as proxy:
        result = collection.search(QUERY, k=10, mode="hybrid", flt=flt)
    calls = sum(proxy.calls.values())
    print(f"\n{store} hybrid search with feedback ({'filtered' if flt else 'unfiltered'}):"
          f" {calls} store calls {dict(proxy.calls)}")
    assert calls <= MOST_CALLS, dict(proxy.calls)
    # Counted or not, the answer is the same.
    assert [h.id for h in result.hits] == [h.id for h in expected.hits]
    assert np.allclose([h.score for h in result.hits], [h.score for h in expected.hits])


@pytest.mark.parametrize("store", ["local", "milvus"])
def test_groups_and_matching_chunks_add_no_round_trip_to_hybrid_search(stores: dict[str, Collection],
                                                                        store: str) -> None:
    """Matching chunks come from the chunks hybrid scoring read already, and grouping from their
    rows: a grouped hybrid search with chunks makes the same calls while one ranking fills its
    groups (60 documents over 3 shelves, 2 groups of 2)."""
    collection = stores[store]
    with counting(collection) as proxy:
        result = collection.search(QUERY, k=2, mode="hybrid", group_by="metadata.shelf", group_size=2,
                                   chunks_per_document=3)
    assert sum(proxy.calls.values()) <= MOST_CALLS, dict(proxy.calls)
    assert len(result.groups) == 2 and all(len(g.hits) == 2 and g.hits[0].chunks for g in result.groups)
    with counting(collection) as proxy:
        dense = collection.search(QUERY, k=10, mode="dense", chunks_per_document=3)
    # retrieve, and one fetch of the hits' rows and their matching chunks' rows.
    assert sum(proxy.calls.values()) == 2, dict(proxy.calls)
    assert all(h.chunks for h in dense.hits)
