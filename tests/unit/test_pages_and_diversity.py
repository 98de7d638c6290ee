"""Pages of results (`offset`) and maximal marginal relevance (`diversity`) on both stores, in
every mode: pages put together are the unpaged ranking, diversity lets other documents past
near-copies without changing the hits' scores, and bad values are refused naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.retrieval import diversity
from neardex.indexer.retrieval.engine import Collection
from tests.support.stores import Stores

# Three near-copies about lunar landings, then documents on other sides of the same question.
DOCS = [
    Document("moon-1", "Apollo 11 landed on the Moon in July 1969; Neil Armstrong walked on the lunar surface."),
    Document("moon-2", "In July 1969 Apollo 11 landed on the Moon, and Neil Armstrong walked on the lunar surface."),
    Document("moon-3", "Neil Armstrong walked on the lunar surface after Apollo 11 landed on the Moon in July 1969."),
    Document("rover", "Lunar rovers drove astronauts across the Moon's surface on the later Apollo missions."),
    Document("samples", "Apollo crews brought 382 kg of Moon rock and soil back to Earth for study."),
    Document("luna", "The Soviet Luna 9 probe made the first soft landing on the Moon in 1966."),
    Document("bread", "Sourdough bread rises because wild yeast ferments the dough."),
    Document("nile", "The Nile flows north through eleven countries into the Mediterranean Sea."),
]
QUERY = "Apollo 11 Moon landing Neil Armstrong lunar surface"


@pytest.fixture
def col(stores: Stores) -> Collection:
    collection = stores.create("docs")
    collection.upsert(DOCS)
    return collection


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_pages_put_together_are_the_whole_ranking(col: Collection, mode: str) -> None:
    whole = [h.id for h in col.search(QUERY, k=8, mode=mode).hits]
    pages = [h.id for offset in (0, 3, 6) for h in col.search(QUERY, k=3, mode=mode, offset=offset).hits]
    assert pages == whole and len(whole) >= 6
    assert col.search(QUERY, k=3, mode=mode, offset=100).hits == []


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_diversity_lets_other_documents_past_near_copies(col: Collection, mode: str) -> None:
    plain = col.search(QUERY, k=3, mode=mode).hits
    assert {h.id for h in plain} == {"moon-1", "moon-2", "moon-3"}
    diverse = col.search(QUERY, k=3, mode=mode, diversity=0.5).hits
    assert diverse[0].id == plain[0].id  # the most relevant hit stays first
    assert len({h.id for h in diverse} & {"moon-1", "moon-2", "moon-3"}) == 1
    # Scores stay on the documented scale: each hit's own cosine, whatever its place.
    by_id = {h.id: h.score for h in col.search(QUERY, k=8, mode=mode).hits}
    assert all(abs(h.score - by_id[h.id]) < 1e-5 for h in diverse)
    # 0 is off: the plain ranking.
    assert [h.id for h in col.search(QUERY, k=3, mode=mode, diversity=0.0).hits] == [h.id for h in plain]


def test_bad_offsets_and_diversities_are_refused_naming_the_field(col: Collection) -> None:
    with pytest.raises(InvalidArgument, match=r"^offset: must not be negative, got -1$"):
        col.search(QUERY, k=3, offset=-1)
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match=r"^diversity: must be between 0 and 1"):
            col.search(QUERY, k=3, diversity=bad)
    with pytest.raises(InvalidArgument, match=r"^requests\[2\]\.diversity: must be between 0 and 1"):
        col.request(QUERY, k=3, field="requests[2].query", diversity=2.0)


def test_mmr_alone() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    relevance = np.array([0.9, 0.89, 0.5], dtype=np.float32)
    assert diversity.mmr(relevance, vectors, 0.0, 3) == [0, 1, 2]
    assert diversity.mmr(relevance, vectors, 0.5, 3) == [0, 2, 1]
    assert diversity.mmr(relevance, vectors, 0.5, 10) == [0, 2, 1]
    assert diversity.mmr(relevance[:0], vectors[:0], 0.5, 3) == []
