"""Collections of the caller's own vectors (model "none") over a real server: vector search,
SearchSimilar and filters work and match numpy; text is optional and searched lexically; text
queries, bad vectors and vectors sent to a collection with a model are refused, naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from neardex.client import Client, InvalidArgument

DIM = 16


@pytest.fixture
def own(client: Client) -> tuple[Client, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, DIM)).astype(np.float32)
    info = client.create_collection("own", model="none", dimension=DIM)
    assert (info.model, info.dimension, info.default_mode) == ("none", DIM, "dense")
    client.upsert("own", [{"id": f"v{i}", "vector": vectors[i].tolist(), "metadata": {"even": i % 2 == 0},
                           "text": f"river delta {i}" if i < 10 else ""} for i in range(40)])
    return client, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_vector_search_matches_numpy_cosines(own: tuple[Client, np.ndarray]) -> None:
    client, unit = own
    query = np.random.default_rng(8).normal(size=DIM)
    expected = unit @ (query / np.linalg.norm(query))
    order = np.argsort(-expected)[:5]
    result = client.search("own", query.tolist(), k=5)
    assert [h.id for h in result] == [f"v{i}" for i in order]
    np.testing.assert_allclose([h.score for h in result], expected[order], atol=1e-5)
    even = client.search("own", query.tolist(), k=5, filter={"even": True})
    assert [h.id for h in even] == [f"v{i}" for i in np.argsort(-expected) if i % 2 == 0][:5]


def test_similar_and_stored_vectors(own: tuple[Client, np.ndarray]) -> None:
    client, unit = own
    expected = unit @ unit[3]
    order = [i for i in np.argsort(-expected) if i != 3][:4]
    assert [h.id for h in client.similar("own", ["v3"], k=4)] == [f"v{i}" for i in order]
    [doc] = client.get("own", ["v3"], vectors=True).documents
    np.testing.assert_allclose(doc.vector, unit[3], atol=1e-6)
    assert len(doc.chunk_vectors) == 1 and client.info("own").vectors == 40


def test_text_is_optional_and_searched_lexically(own: tuple[Client, np.ndarray]) -> None:
    client, _ = own
    hits = client.search("own", "delta 7", k=3, mode="lexical")
    assert hits[0].id == "v7" and all(int(h.id[1:]) < 10 for h in hits)


def test_refusals_name_the_field(own: tuple[Client, np.ndarray], client: Client) -> None:
    own_client, _ = own
    with pytest.raises(InvalidArgument, match="query: collection 'own' has no model"):
        own_client.search("own", "river delta", k=3)
    with pytest.raises(InvalidArgument, match="has no model"):
        own_client.ask("own", "what is a river delta?")
    with pytest.raises(InvalidArgument, match="has no model"):
        own_client.similarity(["a"], collection="own")
    for vector, message in (([0.1] * (DIM + 1), r"documents\[1\]\.vector: has dimension 17"),
                            ([float("nan")] * DIM, "vector"),
                            ([0.0] * DIM, r"documents\[1\]\.vector: a zero vector"),
                            (None, r"documents\[1\]\.vector: collection 'own' has no model")):
        doc = {"id": "bad", "text": "x"} | ({"vector": vector} if vector is not None else {})
        with pytest.raises(InvalidArgument, match=message):
            own_client.upsert("own", [{"id": "ok", "vector": [1.0] * DIM}, doc])
    assert own_client.get("own", ["ok", "bad"]).missing == ["ok", "bad"]  # nothing of a refused batch
    client.create_collection("texts")
    with pytest.raises(InvalidArgument, match=r"documents\[0\]\.vector: collection 'texts' embeds its documents"):
        client.upsert("texts", [{"id": "a", "text": "hello", "vector": [0.1] * 384}])
    with pytest.raises(InvalidArgument, match="dimension"):
        client.create_collection("nodim", model="none")
    with pytest.raises(InvalidArgument, match="dimension: comes from the model"):
        client.create_collection("both", dimension=8)
