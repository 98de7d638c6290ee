"""LlamaIndex on neardex (neardex.client.llama_index) against a real server on a real port: nodes
added, queried (dense, hybrid and its alpha, lexical, MMR), filtered by every operator neardex maps,
deleted by source document, by id and by filter, in sync and async form; NeardexEmbedding giving
the vectors the server searches with; and a VectorStoreIndex over the store answering a retrieval
query, with the network closed to prove that nothing (NLTK data, tiktoken files, a hosted model)
is fetched."""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest
from llama_index.core import Document as LlamaDocument
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.node_parser import TokenTextSplitter
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from neardex.client import AsyncClient, Client, InvalidArgument, NotFound
from neardex.client.llama_index import NeardexEmbedding, NeardexVectorStore

# Each node: id, source document, text, metadata.
NOTES = [
    ("n1", "rivers", "The Nile flows north through Egypt into the Mediterranean Sea.",
     {"topic": "rivers", "year": 2001, "tags": ["africa", "water"]}),
    ("n2", "rivers", "The Amazon carries more water than any other river on Earth.",
     {"topic": "rivers", "year": 2015, "tags": ["america", "water"]}),
    ("n3", "volcanoes", "Volcanoes erupt molten rock, ash and gas from inside the planet.",
     {"topic": "geology", "year": 1999, "tags": ["fire"]}),
    ("n4", "volcanoes", "Mount Etna in Sicily is one of the most active volcanoes in Europe.",
     {"topic": "geology", "year": 2020, "tags": ["europe", "fire"]}),
    ("n5", "kitchen", "Bread rises because yeast turns sugar into carbon dioxide.",
     {"topic": "cooking", "year": 2010, "tags": ["food"]}),
    ("n6", "kitchen", "The part number QX-7731 fits the oven door hinge.",
     {"topic": "cooking", "year": 2023, "tags": ["food", "parts"]}),
]
METADATA = {node_id: metadata for node_id, _, _, metadata in NOTES}


def notes() -> list[TextNode]:
    return [TextNode(id_=node_id, text=text, metadata=dict(metadata),
                     relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=source)})
            for node_id, source, text, metadata in NOTES]


class Recording:
    """A real client whose method calls are written down by name, to show which calls a plan made."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.client, name)


@pytest.fixture
def store(client: Client) -> NeardexVectorStore:
    made = NeardexVectorStore("notes", client=client)
    made.add(notes())
    return made


def query(store: NeardexVectorStore, text: str | None = None, k: int = 10, **options: Any) -> list[str]:
    return list(store.query(VectorStoreQuery(query_str=text, similarity_top_k=k, **options)).ids or [])


def test_nodes_come_back_whole_with_their_metadata_and_source(store: NeardexVectorStore, client: Client) -> None:
    result = store.query(VectorStoreQuery(query_str="which way does the Nile flow", similarity_top_k=3))
    assert result.ids is not None and result.nodes is not None and result.similarities is not None
    assert result.ids[0] == "n1" and [n.node_id for n in result.nodes] == result.ids
    first = result.nodes[0]
    assert isinstance(first, TextNode)
    assert first.text == NOTES[0][2] and first.metadata == METADATA["n1"] and first.ref_doc_id == "rivers"
    assert result.similarities == sorted(result.similarities, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in result.similarities)
    # The same query embedded by NeardexEmbedding: the vector the server searches with.
    embedding = NeardexEmbedding(client=client, collection="notes")
    vector = embedding.get_query_embedding("which way does the Nile flow")
    assert len(vector) == client.info("notes").dimension
    by_vector = store.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=3))
    assert by_vector.ids == result.ids
    assert by_vector.similarities == pytest.approx(result.similarities, abs=1e-5)


def test_a_node_cut_into_chunks_comes_back_whole_with_one_get(client: Client) -> None:
    recording = Recording(client)
    store = NeardexVectorStore("long", client=recording)
    long_text = " ".join(f"Sentence {i} is about ordinary things." for i in range(150)) + \
        " The lighthouse keeper counted seagulls at dawn."
    store.add([TextNode(id_="long", text=long_text), TextNode(id_="short", text="Bread rises because of yeast.")])
    assert client.info("long").chunks > 2  # the server cut the long node
    recording.calls.clear()
    result = store.query(VectorStoreQuery(query_str="lighthouse keeper counting seagulls", similarity_top_k=1))
    assert result.ids == ["long"] and result.nodes is not None and result.nodes[0].get_content() == long_text
    assert recording.calls == ["search", "get"]
    recording.calls.clear()
    result = store.query(VectorStoreQuery(query_str="why does bread rise", similarity_top_k=1))
    assert result.ids == ["short"] and recording.calls == ["search"]  # whole already: no Get


def test_delete_by_source_document_by_ids_and_by_filters(store: NeardexVectorStore, client: Client) -> None:
    store.delete("volcanoes")
    assert client.count("notes") == 4 and not set(query(store, "volcano")) & {"n3", "n4"}
    store.delete_nodes(["n1"])
    assert sorted(query(store, "water")) == ["n2", "n5", "n6"]
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2015)]))
    assert sorted(query(store, "water")) == ["n5", "n6"]
    # Both: only the listed nodes that match.
    store.delete_nodes(["n5", "n6"], filters=MetadataFilters(filters=[
        MetadataFilter(key="year", operator=FilterOperator.GT, value=2020)]))
    assert query(store, "water") == ["n5"]
    assert [n.node_id for n in store.get_nodes(["n5", "n6"])] == ["n5"]
    store.clear()
    assert client.count("notes") == 0 and client.collection_exists("notes")
    with pytest.raises(InvalidArgument, match="node_ids, filters"):
        store.delete_nodes()


def _matches(operator: FilterOperator, stored: Any, value: Any) -> bool:
    """LlamaIndex's operators read plainly, for the metadata above (an array matches EQ-like
    operators through its elements, as neardex reads arrays)."""
    items = stored if isinstance(stored, list) else [stored]
    if operator == FilterOperator.EQ:
        return value in items
    if operator == FilterOperator.NE:
        return value not in items
    if operator == FilterOperator.IN:
        return any(v in items for v in value)
    if operator == FilterOperator.NIN:
        return not any(v in items for v in value)
    if operator == FilterOperator.ANY:
        return any(v in items for v in value)
    if operator == FilterOperator.ALL:
        return all(v in items for v in value)
    if operator == FilterOperator.CONTAINS:
        return value in items
    compare = {FilterOperator.GT: lambda a: a > value, FilterOperator.GTE: lambda a: a >= value,
               FilterOperator.LT: lambda a: a < value, FilterOperator.LTE: lambda a: a <= value}[operator]
    return any(compare(a) for a in items)


FILTERS = [
    ("topic", FilterOperator.EQ, "rivers"),
    ("topic", FilterOperator.NE, "rivers"),
    ("year", FilterOperator.GT, 2010),
    ("year", FilterOperator.GTE, 2010),
    ("year", FilterOperator.LT, 2010),
    ("year", FilterOperator.LTE, 2010),
    ("topic", FilterOperator.IN, ["rivers", "cooking"]),
    ("topic", FilterOperator.NIN, ["rivers", "cooking"]),
    ("tags", FilterOperator.ANY, ["europe", "africa"]),
    ("tags", FilterOperator.ALL, ["food", "parts"]),
    ("tags", FilterOperator.CONTAINS, "water"),
    ("tags", FilterOperator.EQ, "fire"),
]


@pytest.mark.parametrize(("key", "operator", "value"), FILTERS, ids=[f"{k}-{o.name}" for k, o, _ in FILTERS])
def test_each_filter_operator(store: NeardexVectorStore, key: str, operator: FilterOperator, value: Any) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key=key, operator=operator, value=value)])
    expected = sorted(i for i, m in METADATA.items() if _matches(operator, m[key], value))
    assert expected and len(expected) < len(METADATA)  # each case tells something apart
    assert sorted(query(store, "anything at all", filters=filters)) == expected


def test_and_or_not_and_nested_conditions(store: NeardexVectorStore) -> None:
    def f(key: str, operator: FilterOperator, value: Any) -> MetadataFilter:
        return MetadataFilter(key=key, operator=operator, value=value)

    recent = f("year", FilterOperator.GTE, 2010)
    water = f("tags", FilterOperator.CONTAINS, "water")
    cases = [
        (MetadataFilters(filters=[recent, water], condition=FilterCondition.AND),
         lambda m: m["year"] >= 2010 and "water" in m["tags"]),
        (MetadataFilters(filters=[recent, water], condition=FilterCondition.OR),
         lambda m: m["year"] >= 2010 or "water" in m["tags"]),
        (MetadataFilters(filters=[recent, water], condition=FilterCondition.NOT),
         lambda m: not (m["year"] >= 2010 or "water" in m["tags"])),
        # Two conditions on one key, and a group inside a group.
        (MetadataFilters(filters=[
            MetadataFilters(filters=[recent, f("year", FilterOperator.LT, 2021)]),
            f("topic", FilterOperator.EQ, "rivers")], condition=FilterCondition.OR),
         lambda m: 2010 <= m["year"] < 2021 or m["topic"] == "rivers"),
    ]
    for filters, rule in cases:
        expected = sorted(i for i, m in METADATA.items() if rule(m))
        assert sorted(query(store, "anything", filters=filters)) == expected, filters


def test_unsupported_filters_and_modes_are_refused_by_name(store: NeardexVectorStore) -> None:
    for operator in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE, FilterOperator.IS_EMPTY):
        filters = MetadataFilters(filters=[MetadataFilter(key="topic", operator=operator, value="riv")])
        with pytest.raises(InvalidArgument, match=rf"query\.filters\.filters\[0\]\.operator: {operator.name}"):
            query(store, "rivers", filters=filters)
    with pytest.raises(InvalidArgument, match="query.mode: svm"):
        query(store, "rivers", mode=VectorStoreQueryMode.SVM)
    with pytest.raises(InvalidArgument, match="query.query_str: hybrid"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 384, mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(InvalidArgument, match="query.alpha"):
        query(store, "rivers", mode=VectorStoreQueryMode.HYBRID, alpha=1.5)


def test_hybrid_alpha_and_lexical(store: NeardexVectorStore) -> None:
    hybrid = VectorStoreQueryMode.HYBRID
    # A part number: only the lexical retriever reads it exactly.
    assert query(store, "QX-7731", k=3, mode=hybrid)[0] == "n6"
    assert query(store, "QX-7731", k=3, mode=hybrid, alpha=0.0) == ["n6"]  # BM25 alone: the one match
    assert query(store, "QX-7731", k=3, mode=VectorStoreQueryMode.SPARSE) == ["n6"]
    assert query(store, "QX-7731", k=3, mode=VectorStoreQueryMode.TEXT_SEARCH) == ["n6"]
    dense = query(store, "QX-7731", k=3, mode=hybrid, alpha=1.0)
    assert dense == query(store, "QX-7731", k=3) and len(dense) == 3  # dense ranks every node
    lexical = store.query(VectorStoreQuery(query_str="QX-7731", mode=hybrid, alpha=0.0))
    assert lexical.similarities is not None and 0.0 < lexical.similarities[0] <= 1.0  # BM25's share
    assert len(query(store, "volcano", k=2, mode=hybrid, hybrid_top_k=4)) == 4
    volcanoes = MetadataFilters(filters=[MetadataFilter(key="topic", value="geology")])
    assert set(query(store, "river water", k=5, mode=hybrid, filters=volcanoes)) <= {"n3", "n4"}


def test_mmr_gives_near_copies_way(client: Client) -> None:
    store = NeardexVectorStore("mmr", client=client)
    copy = "Penguins live in Antarctica and swim in cold water."
    store.add([TextNode(id_="a", text=copy), TextNode(id_="b", text=copy),
               TextNode(id_="c", text="Polar bears hunt seals on Arctic sea ice.")])
    assert sorted(query(store, "penguins in Antarctica", k=2)) == ["a", "b"]
    diverse = query(store, "penguins in Antarctica", k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3)
    assert diverse[1] == "c" and diverse[0] in {"a", "b"}


def test_doc_ids_node_ids_and_neardex_filters_restrict(store: NeardexVectorStore) -> None:
    assert sorted(query(store, "anything", doc_ids=["kitchen"])) == ["n5", "n6"]
    assert sorted(query(store, "anything", node_ids=["n1", "n4"])) == ["n1", "n4"]
    result = store.query(VectorStoreQuery(query_str="anything", similarity_top_k=10),
                         neardex_filter={"tags": {"exists": True}, "$not": {"topic": "geology"}})
    assert sorted(result.ids or []) == ["n1", "n2", "n5", "n6"]


def test_own_vectors_collection_stores_the_nodes_embeddings(client: Client) -> None:
    embedding = NeardexEmbedding(client=client)  # the server's default model
    nodes = notes()
    for node, vector in zip(nodes, embedding.get_text_embedding_batch([n.text for n in nodes]), strict=True):
        node.embedding = vector
    store = NeardexVectorStore("own", client=client, dimension=len(nodes[0].embedding or []))
    store.add(nodes)
    assert client.info("own").model == "none"
    vector = embedding.get_query_embedding("an active volcano in Sicily")
    result = store.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=2))
    assert result.ids is not None and result.ids[0] == "n4"
    assert result.nodes is not None and result.nodes[0].get_content() == NOTES[3][2]
    [stored] = client.get("own", ["n4"], vectors=True).documents
    norm = math.sqrt(sum(v * v for v in nodes[3].embedding or []))
    assert stored.vector == pytest.approx([v / norm for v in nodes[3].embedding or []], abs=1e-5)
    with pytest.raises(InvalidArgument, match=r"nodes\[0\]\.embedding"):
        store.add([TextNode(id_="bare", text="no vector")])


async def test_async_forms(server: tuple[object, int], client: Client) -> None:
    async with AsyncClient(f"127.0.0.1:{server[1]}", timeout=60) as aclient:
        store = NeardexVectorStore("notes", aclient=aclient)
        assert await store.async_add(notes()) == [n for n, *_ in NOTES]
        result = await store.aquery(VectorStoreQuery(query_str="which way does the Nile flow", similarity_top_k=2))
        assert result.ids is not None and result.ids[0] == "n1"
        hybrid = await store.aquery(VectorStoreQuery(query_str="QX-7731", mode=VectorStoreQueryMode.HYBRID,
                                                     alpha=0.0))
        assert hybrid.ids == ["n6"]
        await store.adelete("volcanoes")
        await store.adelete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")]))
        assert sorted(n.node_id for n in await store.aget_nodes(
            filters=MetadataFilters(filters=[MetadataFilter(key="year", operator=FilterOperator.GT, value=0)])
        )) == ["n1", "n2"]
        await store.aclear()
        assert client.count("notes") == 0
        embedding = NeardexEmbedding(aclient=aclient, collection="notes")
        assert await embedding.aget_query_embedding("Nile") == pytest.approx(
            NeardexEmbedding(client=client, collection="notes").get_query_embedding("Nile"), abs=1e-6)
        with pytest.raises(InvalidArgument, match="client: given an AsyncClient only"):
            store.query(VectorStoreQuery(query_str="Nile"))
    # A Client alone serves the async forms too, on a worker thread.
    sync_only = NeardexVectorStore("notes", client=client)
    assert await sync_only.async_add(notes()[:1]) == ["n1"]
    assert (await sync_only.aquery(VectorStoreQuery(query_str="Nile"))).ids == ["n1"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection leaves this machine from Python for the rest of the test (gRPC connects in
    its C core, to the test's own server on 127.0.0.1); a download would raise."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def local(host: Any) -> bool:
        return host in ("127.0.0.1", "::1", "localhost", "", None)

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family != getattr(socket, "AF_UNIX", None) and not local(address[0]):
            raise OSError(f"this test must stay offline: connect to {address!r}")
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host):
            raise OSError(f"this test must stay offline: look up {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_vector_store_index_answers_a_retrieval_query(client: Client, offline: None) -> None:
    documents = [
        LlamaDocument(id_="baking", text="Sourdough bread needs a starter of wild yeast and flour. "
                      "Bakers feed the starter every day with fresh flour and water, and keep it warm. "
                      "The dough is folded several times and left to rise overnight in a cool room. "
                      "In the morning it is shaped, scored with a blade and baked in a very hot oven "
                      "until the crust is dark and crackles as it cools on a rack."),
        LlamaDocument(id_="astronomy", text="Jupiter is the largest planet in the solar system. "
                      "It is a gas giant made mostly of hydrogen and helium, with dozens of moons. "
                      "Its Great Red Spot is a storm larger than the Earth that has raged for centuries. "
                      "Galileo discovered its four largest moons in 1610 with a small telescope, and "
                      "spacecraft have since photographed its clouds and faint rings."),
        LlamaDocument(id_="sailing", text="Sailors tack into the wind by turning the bow through it. "
                      "A close-hauled boat sails about forty-five degrees off the wind and heels over. "
                      "The crew eases the sheets when the boat bears away onto a reach or a run. "
                      "Reefing the mainsail reduces its area when the wind grows too strong, and "
                      "a good skipper watches the clouds for squalls coming across the water."),
    ]
    with pytest.raises(OSError, match="offline"):
        socket.create_connection(("pypi.org", 443), timeout=5)
    store = NeardexVectorStore("library", client=client)
    # A splitter that counts whitespace-separated words: no tokenizer file to load, no NLTK data.
    splitter = TokenTextSplitter(chunk_size=60, chunk_overlap=0, tokenizer=str.split)
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=NeardexEmbedding(client=client, collection="library"), transformations=[splitter])
    assert client.count("library") > len(documents)  # split into several nodes each
    retrieved = index.as_retriever(similarity_top_k=2).retrieve("Which planet has a giant storm?")
    assert retrieved[0].node.ref_doc_id == "astronomy" and "Red Spot" in retrieved[0].node.get_content()
    # The server embeds the query itself when the store asks for text.
    store.is_embedding_query = False
    by_server = index.as_retriever(similarity_top_k=2).retrieve("Which planet has a giant storm?")
    assert [r.node.node_id for r in by_server] == [r.node.node_id for r in retrieved]
    hybrid = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=2)
    assert hybrid.retrieve("how do sailors tack into the wind")[0].node.ref_doc_id == "sailing"
    index.delete_ref_doc("astronomy")
    assert all(r.node.ref_doc_id != "astronomy"
               for r in index.as_retriever(similarity_top_k=5).retrieve("Which planet has a giant storm?"))


def test_get_nodes_by_ids_and_filters(store: NeardexVectorStore) -> None:
    assert sorted(n.node_id for n in store.get_nodes([n for n, *_ in NOTES])) == sorted(METADATA)
    geology = MetadataFilters(filters=[MetadataFilter(key="topic", value="geology")])
    assert sorted(n.node_id for n in store.get_nodes(filters=geology)) == ["n3", "n4"]
    assert [n.node_id for n in store.get_nodes(["n1", "n3"], filters=geology)] == ["n3"]


def test_a_collection_written_by_the_client_is_searched_as_it_is(client: Client) -> None:
    client.create_collection("plain")
    client.upsert("plain", [{"id": "p1", "title": "Rivers", "text": "The Danube crosses ten countries.",
                             "metadata": {"lang": "en"}},
                            {"id": "p2", "text": "Glaciers carve valleys.", "metadata": {"lang": "en"}}])
    store = NeardexVectorStore("plain", client=client, create_collection=False)
    index = VectorStoreIndex.from_vector_store(store, embed_model=NeardexEmbedding(client=client, collection="plain"))
    [first, _] = index.as_retriever(similarity_top_k=2).retrieve("Which river crosses many countries?")
    assert first.node.node_id == "p1" and first.node.get_content() == "The Danube crosses ten countries."
    assert first.node.metadata == {"lang": "en", "title": "Rivers"}
    with pytest.raises(NotFound):
        NeardexVectorStore("missing", client=client, create_collection=False)
