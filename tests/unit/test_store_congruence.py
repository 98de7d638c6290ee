"""The same random documents, metadata, queries and filters through the embedded store and the
Milvus store (milvus-lite) give the same answers: the same top-k ids and scores in dense mode
(both exact), the same documents for every filter (read as the plain Python reading of the filter
language says, with the Milvus store's one documented difference: a range does not look inside
arrays), lexical and hybrid top-10 lists that overlap by at least 0.9, and on a corpus where
Milvus' own BM25 ranks otherwise, the same lexical ranking and scores (the Milvus store scores
Milvus' candidates as FTS5 does, stores/bm25.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.query.filters import Filter
from neardex.indexer.retrieval.engine import Collection
from tests.support.filter_model import filter_strategy, matches, random_metadata

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.slow

SUBJECTS = ["The old miller", "A young engineer", "The harbour pilot", "Our village baker", "The night nurse",
            "A travelling botanist", "The river ferryman", "A retired astronomer", "The glass blower",
            "A mountain guide", "The orchard keeper", "A radio operator"]
VERBS = ["repaired", "painted", "measured", "photographed", "carried", "studied", "sold", "guarded",
         "catalogued", "rebuilt", "sketched", "weighed"]
OBJECTS = ["a copper kettle", "the broken windmill", "seven wooden boats", "a rare orchid", "the lighthouse lamp",
           "an iron bridge", "the comet's tail", "a barrel of cider", "the frozen waterfall", "a silk kite",
           "the village clock", "a basket of pears", "the signal tower", "a marble statue"]
PLACES = ["near the northern cliffs", "beside the salt marsh", "in the walled garden", "under the railway arch",
          "at the fish market", "on the glacier", "inside the observatory", "by the cathedral", "across the valley",
          "along the canal"]
TIMES = ["before dawn", "during the storm", "every autumn", "after the flood", "on market day", "at midnight",
         "in early spring", "through the winter"]


def corpus(count: int, seed_: int = 7) -> list[Document]:
    rng = random.Random(seed_)
    metadata = random_metadata(count, seed=seed_)
    docs = []
    for i in range(count):
        sentences = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}"
                     f" {rng.choice(TIMES)}." for _ in range(rng.randint(1, 4))]
        docs.append(Document(f"d{i:03d}", " ".join(sentences), metadata=metadata[i]))
    return docs


def queries(count: int, seed_: int = 3) -> list[str]:
    rng = random.Random(seed_)
    words = " ".join(SUBJECTS + VERBS + OBJECTS + PLACES + TIMES).replace("'s", "").split()
    out = [f"{rng.choice(OBJECTS)} {rng.choice(PLACES)}" for _ in range(count // 2)]
    return out + [" ".join(rng.sample(words, rng.randint(2, 5))) for _ in range(count - len(out))]


DOCS = corpus(300)
QUERIES = queries(30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collection, Collection]]:
    root = tmp_path_factory.mktemp("congruence")
    with Catalog(root / "data") as catalog:
        local = catalog.create("local")
        milvus = catalog.create("milvus", store=str(root / "milvus.db"))
        for col in (local, milvus):
            col.upsert(DOCS)
        yield local, milvus


def hit_ids(col: Collection, query: str, mode: str, flt: Filter | None = None, k: int = 10) -> list[str]:
    return [h.id for h in col.search(query, k=k, mode=mode, flt=flt).hits]


def test_both_stores_hold_the_same_documents(pair: tuple[Collection, Collection]) -> None:
    local, milvus = pair
    assert local.stats().chunks == milvus.stats().chunks and local.count() == milvus.count() == len(DOCS)
    assert [(d.id, d.text, d.metadata) for d in local.scroll("", 1000)] == \
           [(d.id, d.text, d.metadata) for d in milvus.scroll("", 1000)]


def test_dense_top_k_is_the_same(pair: tuple[Collection, Collection]) -> None:
    local, milvus = pair
    for query in QUERIES:
        a, b = (col.search(query, k=10, mode="dense").hits for col in (local, milvus))
        assert [h.id for h in a] == [h.id for h in b], query
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def overlap(a: list[str], b: list[str]) -> float:
    return len(set(a) & set(b)) / max(len(a), len(b), 1)


# Words of which one ("river") is in most documents, repeated and in documents of many lengths:
# where Milvus' own BM25 (Lucene's IDF, milvus-lite's k1 1.5) ranked differently from FTS5.
VOCABULARY = ["river", "stone", "bridge", "lamp", "kettle", "orchid", "copper", "marble", "valley", "harbour",
              "tower", "clock"]
BM25_QUERIES = ["river stone", "river kettle lamp", "river bridge", "copper river", "river valley clock",
                "marble tower river", "harbour river orchid", "river"]


def bm25_corpus() -> list[Document]:
    rng = random.Random(11)
    docs = []
    for i in range(40):
        words = ["river"] * rng.choice([0, 1, 1, 2, 3, 5]) if rng.random() < 0.8 else []
        words += rng.choices(VOCABULARY[1:], k=rng.randint(1, 12))
        rng.shuffle(words)
        docs.append(Document(f"w{i:02d}", " ".join(words) or "stone"))
    return docs


@pytest.fixture(scope="module")
def bm25_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collection, Collection]]:
    root = tmp_path_factory.mktemp("bm25")
    with Catalog(root / "data") as catalog:
        local = catalog.create("local")
        milvus = catalog.create("milvus", store=str(root / "milvus.db"))
        for col in (local, milvus):
            col.upsert(bm25_corpus())
        yield local, milvus


def ranked(col: Collection, query: str) -> list[tuple[float, str]]:
    """The lexical hits as (score, id), ties in id order (the stores break them differently)."""
    return sorted((-round(h.score, 6), h.id) for h in col.search(query, k=10, mode="lexical").hits)


@pytest.mark.parametrize("query", BM25_QUERIES)
def test_lexical_ranking_and_scores_are_the_same(bm25_pair: tuple[Collection, Collection], query: str) -> None:
    local, milvus = bm25_pair
    assert ranked(local, query) == ranked(milvus, query)


def test_lexical_ranking_follows_writes_after_a_search(tmp_path: Path) -> None:
    """The Milvus store keeps BM25's statistics a while; a search before the first write counted
    none of the words, which must not stand once chunks hold them."""
    with Catalog(tmp_path / "data") as catalog:
        pair = catalog.create("local"), catalog.create("milvus", store=str(tmp_path / "milvus.db"))
        for col in pair:
            assert col.search("river stone", k=10, mode="lexical").hits == []
            col.upsert(bm25_corpus())
        for query in BM25_QUERIES:
            assert ranked(pair[0], query) == ranked(pair[1], query), query


def test_lexical_scores_of_given_chunks_are_the_same(bm25_pair: tuple[Collection, Collection]) -> None:
    local, milvus = bm25_pair
    for query in BM25_QUERIES:
        scores = []
        for col in (local, milvus):
            chunks = {c.chunk_id: c.doc_id for c in col.store.fetch(documents=[d.id for d in bm25_corpus()])}
            found = col.store.lexical_scores(col.analyze(query), list(chunks))
            scores.append(sorted((chunks[i], round(s, 6)) for i, s in found))
        assert scores[0] == scores[1], query


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_lexical_and_hybrid_top_10_overlap(pair: tuple[Collection, Collection], mode: str) -> None:
    local, milvus = pair
    overlaps = [overlap(hit_ids(local, q, mode), hit_ids(milvus, q, mode)) for q in QUERIES]
    assert float(np.mean(overlaps)) >= 0.9, overlaps
    assert min(overlaps) >= 0.6, overlaps


@seed(11)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_filters_select_the_same_documents(pair: tuple[Collection, Collection], flt: Filter) -> None:
    local, milvus = pair
    metadata: list[dict[str, Any]] = [d.metadata for d in DOCS]
    expected = {d.id for d, m in zip(DOCS, metadata) if matches(m, flt)}
    expected_milvus = {d.id for d, m in zip(DOCS, metadata) if matches(m, flt, ranges_in_arrays=False)}
    assert {d.id for d in local.scroll("", 1000, flt, text=False)} == expected
    assert {d.id for d in milvus.scroll("", 1000, flt, text=False)} == expected_milvus
    assert milvus.count(flt) == len(expected_milvus)
    if expected == expected_milvus:  # then every read agrees, searches included
        query = QUERIES[len(expected) % len(QUERIES)]
        assert hit_ids(local, query, "dense", flt) == hit_ids(milvus, query, "dense", flt)


def facet_rows(col: Collection, key: str, flt: Filter | None) -> tuple[list[tuple[str, Any, int]], int]:
    result = col.facet(key, flt, 1000)
    # The type beside each value: Python's True == 1 would hide a boolean counted as a number.
    return [(type(v.value).__name__ if isinstance(v.value, bool | str) else "number", v.value, v.count)
            for v in result.values], result.documents


@seed(13)
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_facets_count_the_same_values(pair: tuple[Collection, Collection], flt: Filter) -> None:
    local, milvus = pair
    metadata: list[dict[str, Any]] = [d.metadata for d in DOCS]
    if {d.id for d, m in zip(DOCS, metadata) if matches(m, flt)} != \
            {d.id for d, m in zip(DOCS, metadata) if matches(m, flt, ranges_in_arrays=False)}:
        return  # the stores read this filter apart (ranges over arrays): their facets may differ too
    for key in ("a", "b", "n", "n.x", "n.y"):
        assert facet_rows(local, key, flt) == facet_rows(milvus, key, flt), key
