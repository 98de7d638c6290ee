"""The filter language in the store: its SQL (with and without a metadata index, and in the flat
forms large filters compile to) agrees with a plain Python reading of the same filter over random
metadata; dotted keys are paths; filtered search on approximate indexes is exact. (Through the
server: tests/integration/test_filters_server.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, seed, settings

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.query.filters import Condition, Filter
from neardex.indexer.stores.local import sql_filters
from tests.support.filter_model import filter_strategy, matches, random_metadata


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, list[dict[str, Any]]]]:
    """The same 300 random documents in a plain collection and in one with every key indexed."""
    documents = random_metadata(300)
    with Catalog(tmp_path_factory.mktemp("filters")) as catalog:
        plain = catalog.create("plain", model="none", dimension=2)
        indexed = catalog.create("indexed", model="none", dimension=2, indexed_keys=["a", "b", "n.x"])
        docs = [Document(f"d{i}", "", metadata=m, vector=(1.0, float(i))) for i, m in enumerate(documents)]
        plain.upsert(docs)
        indexed.upsert(docs[:150])
        indexed.index_metadata(["n.y"])  # a key indexed after documents were stored
        indexed.upsert(docs[150:])
        yield plain, indexed, documents


@seed(11)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_the_store_agrees_with_python(stores: tuple[Any, Any, list[dict[str, Any]]], flt: Filter) -> None:
    plain, indexed, documents = stores
    expected = sorted(f"d{i}" for i, m in enumerate(documents) if matches(m, flt))
    for collection in (plain, indexed):
        assert collection.count(flt) == len(expected)
        assert sorted(d.id for d in collection.scroll("", 1000, flt, text=False)) == expected


@seed(12)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(flt=filter_strategy())
def test_the_flat_sql_forms_agree_with_python(stores: tuple[Any, Any, list[dict[str, Any]]], flt: Filter) -> None:
    """The forms large filters compile to (flat AND / OR lists, sub-filters as WITH sets), used
    here for every filter, give the same answers."""
    plain, indexed, documents = stores
    expected = sorted(f"d{i}" for i, m in enumerate(documents) if matches(m, flt))
    with mock.patch.multiple(sql_filters, _CHAIN=1, _INLINE=1):
        for collection in (plain, indexed):
            assert collection.count(flt) == len(expected)
            assert sorted(d.id for d in collection.scroll("", 1000, flt, text=False)) == expected


def test_a_real_path(tmp_path: Path) -> None:
    # Keys with dots in a stored document are paths: {"a.b": 1} stored flat is not {"a": {"b": 1}}.
    with Catalog(tmp_path) as catalog:
        col = catalog.create("c", model="none", dimension=2)
        col.upsert([Document("flat", "", metadata={"a.b": 1}, vector=(1.0, 0.0)),
                    Document("nested", "", metadata={"a": {"b": 1}}, vector=(0.0, 1.0))])
        assert [d.id for d in col.scroll("", 10, Filter({"a.b": Condition("eq", 1)}))] == ["nested"]


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
@pytest.mark.parametrize("limit", [20_000, 0])  # 0: the index answers first, a short answer is redone exactly
def test_filtered_search_on_approximate_indexes_is_exact(tmp_path: Path, kind: str, limit: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from neardex.indexer.query.filters import parse_filter
    from neardex.indexer.records import IndexSpec
    from neardex.indexer.stores import local as collection_module

    monkeypatch.setattr(collection_module, "EXACT_FILTER_LIMIT", limit)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec.parse(kind, {"m": 8} if kind == "hnsw" else {"nlist": 8, "m": 4, "nbits": 4, "nprobe": 1})
    with Catalog(tmp_path) as catalog:
        col = catalog.create("c", model="none", dimension=16, index=spec)
        col.upsert([Document(f"d{i}", "", metadata={"bucket": i % 100}, vector=tuple(vectors[i])) for i in range(1500)])
        col.wait_for_rebuild()
        assert col.store.index.trained_kind == kind
        for buckets in ([7], [1, 2, 3]):
            allowed = [i for i in range(1500) if i % 100 in buckets]
            for query in rng.normal(size=(5, 16)).astype(np.float32):
                query /= np.linalg.norm(query)
                expected = sorted(allowed, key=lambda i: -float(vectors[i] @ query))[:10]
                hits = col.search(vector=query, k=10, flt=parse_filter({"bucket": buckets})).hits
                assert [h.id for h in hits] == [f"d{i}" for i in expected]
