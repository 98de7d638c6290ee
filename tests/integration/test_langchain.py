"""NeardexVectorStore and NeardexEmbeddings over a real server, on what LangChain's standard suite
(test_langchain_standard.py) does not reach: a collection with the bundled model (the server embeds,
no Embeddings object), hybrid and lexical modes, neardex filters, maximal marginal relevance,
retrievers, the async forms over an AsyncClient, API keys, and Embed-backed embeddings. The
expected answers come from the neardex client itself: the store must say what the server says."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from neardex.client import AsyncClient, Client, PermissionDenied
from neardex.client.langchain import NeardexEmbeddings, NeardexVectorStore, relevance
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings

NOTES = {
    "nile": ("The Nile flows north through Egypt into the Mediterranean Sea.",
             {"lang": "en", "year": 2001, "topic": "rivers"}),
    "amazon": ("The Amazon carries more water than any other river on Earth.",
               {"lang": "en", "year": 2015, "topic": "rivers"}),
    "rhein": ("Der Rhein fließt von den Alpen bis zur Nordsee.", {"lang": "de", "year": 1999, "topic": "rivers"}),
    "bread": ("Bread dough rises because yeast ferments the sugars in flour.",
              {"lang": "en", "year": 2020, "topic": "baking"}),
    "sourdough": ("A sourdough starter is a culture of wild yeast and lactic acid bacteria.",
                  {"lang": "en", "year": 2018, "topic": "baking"}),
    "apollo": ("Apollo 11 landed on the Moon in July 1969.", {"lang": "en", "year": 1969, "topic": "space"}),
}
IDS = list(NOTES)
TEXTS = [text for text, _ in NOTES.values()]
METADATAS = [metadata for _, metadata in NOTES.values()]
QUERY = "which way does the river in Egypt flow"
_names = itertools.count()


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("langchain")
    server, port = create_server(Settings(data_dir=root / "data", host="127.0.0.1", port=0, metrics_port=0))
    yield f"127.0.0.1:{port}"
    server.stop(grace=1)


@pytest.fixture(scope="module")
def admin(address: str) -> Iterator[Client]:
    with Client(address, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def notes(admin: Client) -> NeardexVectorStore:
    """A collection with the bundled model, made and filled through from_texts without any
    Embeddings: the server embeds."""
    store = NeardexVectorStore.from_texts(TEXTS, None, METADATAS, ids=IDS, collection_name="notes", client=admin)
    info = admin.info("notes")
    assert info.model not in ("", "none") and info.documents == len(IDS) and info.default_mode == "hybrid"
    return store


def fresh(admin: Client, **options: object) -> str:
    name = f"lc-{next(_names)}"
    admin.create_collection(name, **options)  # type: ignore[arg-type]
    return name


def test_the_server_embeds_and_scores_are_neardex_cosines(notes: NeardexVectorStore, admin: Client) -> None:
    assert notes.embeddings is None
    found = notes.similarity_search_with_score(QUERY, k=3)
    expected = admin.search("notes", QUERY, k=3)
    assert [doc.id for doc, _ in found] == [hit.id for hit in expected] and found[0][0].id == "nile"
    assert [score for _, score in found] == [hit.score for hit in expected]
    assert found[0][0] == Document(id="nile", page_content=NOTES["nile"][0], metadata=NOTES["nile"][1])
    # Hybrid (the collection's default) reports the best chunk's cosine: the same as dense search's.
    dense = {hit.id: hit.score for hit in admin.search("notes", QUERY, k=6, mode="dense")}
    for doc, score in found:
        assert -1.0 <= score <= 1.0 and score == pytest.approx(dense[doc.id], abs=1e-5)
    relevant = notes.similarity_search_with_relevance_scores(QUERY, k=3)
    assert [(doc, r) for doc, r in relevant] == [(doc, (1 + score) / 2) for doc, score in found]
    assert [doc.id for doc in notes.similarity_search(QUERY, k=3)] == [doc.id for doc, _ in found]


def test_modes_hybrid_lexical_dense(admin: Client, notes: NeardexVectorStore) -> None:
    hybrid = NeardexVectorStore("notes", client=admin, mode="hybrid")
    lexical = NeardexVectorStore("notes", client=admin, mode="lexical")
    dense = NeardexVectorStore("notes", client=admin, mode="dense")
    query = "yeast in sourdough bread"
    for store, mode in ((hybrid, "hybrid"), (lexical, "lexical"), (dense, "dense")):
        expected = admin.search("notes", query, k=4, mode=mode)
        assert expected.mode == mode
        assert [(doc.id, score) for doc, score in store.similarity_search_with_score(query, k=4)] == [
            (hit.id, hit.score) for hit in expected]
    # Lexical search finds only documents holding the query's words; dense always finds k.
    assert lexical.similarity_search("zebra giraffe", k=3) == []
    assert len(dense.similarity_search("zebra giraffe", k=3)) == 3
    # A per-search mode overrides the store's, and lexical scores are already relevances (0 to 1).
    assert dense.similarity_search("zebra giraffe", k=3, mode="lexical") == []
    scored = lexical.similarity_search_with_relevance_scores(query, k=4)
    assert scored and all(0.0 <= r <= 1.0 for _, r in scored)
    assert [r for _, r in scored] == [s for _, s in lexical.similarity_search_with_score(query, k=4)]
    assert relevance(0.4, "lexical") == 0.4 and relevance(-1.0, "dense") == 0.0


def test_metadata_filters_in_neardex_language(notes: NeardexVectorStore) -> None:
    assert [d.id for d in notes.similarity_search(QUERY, k=5, filter={"lang": "de"})] == ["rhein"]
    baking = notes.similarity_search("yeast", k=5, filter={"topic": "baking", "year": {"gte": 2019}})
    assert [d.id for d in baking] == ["bread"]
    either = notes.similarity_search(QUERY, k=6, filter={"$or": [{"topic": "space"}, {"lang": "de"}]})
    assert {d.id for d in either} == {"apollo", "rhein"}
    assert {d.id for d in notes.similarity_search(QUERY, k=6, filter={"$not": {"topic": "rivers"}})} == {
        "bread", "sourdough", "apollo"}
    retriever = notes.as_retriever(search_kwargs={"k": 2, "filter": {"lang": "en", "topic": "rivers"}})
    assert {d.id for d in retriever.invoke(QUERY)} == {"nile", "amazon"}


def test_get_delete_and_ids(admin: Client) -> None:
    name = fresh(admin)
    store = NeardexVectorStore(name, client=admin)
    ids = store.add_texts(TEXTS[:3], METADATAS[:3], ids=IDS[:3])
    generated = store.add_documents([Document(page_content=TEXTS[3], metadata=METADATAS[3])])
    assert ids == IDS[:3] and len(generated) == 1 and len(generated[0]) == 36  # a uuid4 string
    got = store.get_by_ids(["rhein", "missing", "nile", generated[0]])
    assert [d.id for d in got] == ["rhein", "nile", generated[0]]
    assert got[2].page_content == TEXTS[3] and got[2].metadata == METADATAS[3]
    assert store.delete(filter={"lang": "de"}) is True and store.get_by_ids(["rhein"]) == []
    assert store.delete(["nile", "never-stored"]) is True
    assert admin.count(name) == 2
    with pytest.raises(ValueError, match="ids, filter"):
        store.delete()


def test_max_marginal_relevance_is_neardex_diversity(admin: Client) -> None:
    name = fresh(admin, default_mode="dense")
    store = NeardexVectorStore(name, client=admin)
    store.add_texts(["The Nile flows north through Egypt.", "The Nile flows north through Egypt.",
                     "The Amazon is the largest river by volume.", "Bread rises with yeast."],
                    ids=["n1", "n2", "amazon", "bread"])
    query = "the river Nile in Egypt"
    plain = [d.id for d in store.max_marginal_relevance_search(query, k=2, lambda_mult=1.0)]
    assert sorted(plain) == ["n1", "n2"] and plain == [d.id for d in store.similarity_search(query, k=2)]
    # lambda_mult 0.25 is diversity 0.75: the copy of the first hit gives way to another document.
    diverse = store.max_marginal_relevance_search(query, k=2, fetch_k=10, lambda_mult=0.25)
    assert [d.id for d in diverse] == [hit.id for hit in admin.search(name, query, k=10, diversity=0.75)][:2]
    assert diverse[0].id in ("n1", "n2") and diverse[1].id in ("amazon", "bread")
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "lambda_mult": 0.25})
    assert retriever.invoke(query) == diverse
    with pytest.raises(ValueError, match="lambda_mult"):
        store.max_marginal_relevance_search(query, lambda_mult=1.5)


def test_retriever_with_a_relevance_threshold(notes: NeardexVectorStore) -> None:
    scored = notes.similarity_search_with_relevance_scores(QUERY, k=6)
    threshold = (scored[0][1] + scored[-1][1]) / 2
    retriever = notes.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 6, "score_threshold": threshold})
    assert [d.id for d in retriever.invoke(QUERY)] == [d.id for d, r in scored if r >= threshold]


def test_neardex_embeddings_are_the_servers_model(admin: Client, notes: NeardexVectorStore) -> None:
    embeddings = NeardexEmbeddings(client=admin, batch_size=4)
    vectors = embeddings.embed_documents(TEXTS)  # two Embed calls: 4 + 2 texts
    np.testing.assert_allclose(vectors, admin.embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(QUERY), admin.embed([QUERY])[0], atol=1e-6)
    by_collection = NeardexEmbeddings(client=admin, collection="notes")
    np.testing.assert_allclose(by_collection.embed_query(QUERY), admin.embed([QUERY], collection="notes")[0],
                               atol=1e-6)
    assert len(vectors) == len(TEXTS) and len(vectors[0]) == admin.info("notes").dimension


def test_own_vectors_embedded_client_side(admin: Client, notes: NeardexVectorStore) -> None:
    # The server's model as a LangChain Embeddings, filling a collection of one's own vectors:
    # the same vectors as the model collection's, so the same dense cosines.
    embeddings = NeardexEmbeddings(client=admin)
    mine = NeardexVectorStore.from_texts(TEXTS, embeddings, METADATAS, ids=IDS, collection_name="mine",
                                         client=admin)
    info = admin.info("mine")
    assert (info.model, info.dimension, info.documents) == ("none", 384, len(IDS))
    dense = admin.search("notes", QUERY, k=4, mode="dense")
    found = mine.similarity_search_with_score(QUERY, k=4)
    assert [d.id for d, _ in found] == [hit.id for hit in dense]
    np.testing.assert_allclose([s for _, s in found], [hit.score for hit in dense], atol=1e-4)
    by_vector = mine.similarity_search_by_vector(embeddings.embed_query(QUERY), k=4, filter={"lang": "en"})
    assert [d.id for d in by_vector] == [hit.id for hit in dense if hit.id != "rhein"][:4][: len(by_vector)]
    # Lexical search reads the stored texts; hybrid needs the server's model.
    assert [d.id for d in mine.similarity_search("sourdough starter", k=1, mode="lexical")] == ["sourdough"]
    with pytest.raises(ValueError, match="mode: hybrid"):
        mine.similarity_search(QUERY, mode="hybrid")
    with pytest.raises(TypeError, match="unexpected search options: colour"):
        mine.similarity_search(QUERY, colour="red")


async def test_async_forms_over_an_async_client(address: str, admin: Client, notes: NeardexVectorStore) -> None:
    async with AsyncClient(address, timeout=60) as client:
        store = await NeardexVectorStore.afrom_texts(TEXTS[:4], None, METADATAS[:4], ids=IDS[:4],
                                                     collection_name="async-notes", async_client=client)
        assert admin.info("async-notes").documents == 4
        assert await store.aadd_texts([TEXTS[4]], [METADATAS[4]], ids=[IDS[4]]) == [IDS[4]]
        found = await store.asimilarity_search_with_score(QUERY, k=3, filter={"lang": "en"})
        expected = admin.search("async-notes", QUERY, k=3, filter={"lang": "en"})
        assert [(d.id, s) for d, s in found] == [(hit.id, hit.score) for hit in expected]
        assert [d.id for d in await store.asimilarity_search(QUERY, k=3, filter={"lang": "en"})] == [
            hit.id for hit in expected]
        mmr = await store.amax_marginal_relevance_search(QUERY, k=2, lambda_mult=0.5)
        assert [d.id for d in mmr] == [hit.id for hit in admin.search("async-notes", QUERY, k=20, diversity=0.5)][:2]
        assert [d.id for d in await store.aget_by_ids(["bread", "nile"])] == ["bread", "nile"]
        assert await store.adelete(["bread"]) is True and await store.aget_by_ids(["bread"]) == []
        assert [d.id for d in await store.as_retriever(search_kwargs={"k": 1}).ainvoke(QUERY)] == [found[0][0].id]
        embeddings = NeardexEmbeddings(async_client=client)
        np.testing.assert_allclose(await embeddings.aembed_documents(TEXTS[:2]), admin.embed(TEXTS[:2]), atol=1e-6)
        np.testing.assert_allclose(await embeddings.aembed_query(QUERY), admin.embed([QUERY])[0], atol=1e-6)
        # Given only an AsyncClient, the blocking forms say what they lack.
        with pytest.raises(RuntimeError, match="only an AsyncClient"):
            store.similarity_search(QUERY)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root: Path = tmp_path_factory.mktemp("langchain-keys")
    keys_file = root / "keys.json"
    keys = {role: auth.create_key(keys_file, f"lc-{role}", role) for role in ("read", "write", "admin")}
    server, port = create_server(Settings(data_dir=root / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          api_keys_file=keys_file))
    yield f"127.0.0.1:{port}", keys
    server.stop(grace=1)


async def test_keys_a_read_key_searches_but_cannot_write(keyed: tuple[str, dict[str, str]]) -> None:
    address, keys = keyed
    embedding = DeterministicFakeEmbedding(size=8)
    # An admin key makes the collection (from_texts), a write key adds, a read key searches.
    NeardexVectorStore.from_texts(["foo"], embedding, ids=["foo"], collection_name="keyed", address=address,
                                  api_key=keys["admin"]).close()
    writer = NeardexVectorStore("keyed", address=address, api_key=keys["write"], embedding=embedding)
    assert writer.add_texts(["bar"], ids=["bar"]) == ["bar"]
    reader = NeardexVectorStore("keyed", address=address, api_key=keys["read"], embedding=embedding)
    assert [d.id for d in reader.similarity_search("bar", k=2)] == ["bar", "foo"]
    for attempt in (lambda: reader.add_texts(["baz"], ids=["baz"]), lambda: reader.delete(["foo"])):
        with pytest.raises(PermissionDenied, match="lc-read") as err:
            attempt()
        assert err.value.code.name == "PERMISSION_DENIED"
    with pytest.raises(PermissionDenied, match="Upsert"):
        await reader.aadd_texts(["baz"], ids=["baz"])
    assert [d.id for d in reader.get_by_ids(["foo", "bar", "baz"])] == ["foo", "bar"]
    await reader.aclose()
    await writer.aclose()
