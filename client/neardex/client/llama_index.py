"""LlamaIndex over neardex: :class:`NeardexVectorStore` (a LlamaIndex vector store on a collection)
and :class:`NeardexEmbedding` (LlamaIndex's embedding interface over the Embed RPC), for
``pip install "neardex-client[llama-index]"``, which adds ``llama-index-core`` and nothing else.

It sits on the public client only, so whatever the client gets right (retries, deadlines, keys,
TLS, several servers) LlamaIndex gets too. Each operation is written once, as a plan: a generator
that yields the client calls it needs and gets their answers back, holding the mapping from
LlamaIndex's types to neardex's and back but no I/O. The sync methods run a plan on a
:class:`~neardex.client.Client`, the async ones on an :class:`~neardex.client.AsyncClient` (the
drivers and the clients an object calls through are ``_plans``, shared with the LangChain
integration), so the two forms cannot drift apart.

Nodes are stored the way LlamaIndex's own stores keep them (``node_to_metadata_dict``): the node's
text as the document's text, the node without its text as JSON in the metadata key
``_node_content``, its metadata keys beside it (so filters reach them) and ``ref_doc_id`` (so a
source document's nodes are deleted by one filter). Two keys of our own ride along: ``_node_id``
(filters by node id: neardex filters metadata, not ids) and ``_node_text_length`` (a hit is a
node's best chunk; this says when the chunk is the whole text, so that the whole text is read
with one Get only when it is not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from ._plans import Clients, Plan, Refusal, call
from .errors import InvalidArgument
from .models import CollectionInfo, Document, Hit

__all__ = ["NeardexEmbedding", "NeardexVectorStore", "filters_to_neardex", "search_arguments"]

# The collection's model name when it holds the caller's own vectors.
NO_MODEL = "none"
NODE_CONTENT_KEY = "_node_content"
NODE_ID_KEY = "_node_id"
TEXT_LENGTH_KEY = "_node_text_length"
REF_DOC_ID_KEY = "ref_doc_id"
# neardex's filters take at most this many values in one list.
MAX_FILTER_VALUES = 1000
# Read by a scroll a page at a time (the server's largest page).
PAGE_SIZE = 1000
# What the store and the embedding model say when they lack a client (``_plans.Clients``).
_NONE_GIVEN: Refusal = (InvalidArgument, "client, aclient: give a neardex Client, an AsyncClient or both")
_ASYNC_ONLY: Refusal = (InvalidArgument, "client: given an AsyncClient only; use the async methods "
                                         "(aquery, async_add, adelete, ...) or give a Client too")


def _connect(client: Any, aclient: Any) -> Clients:
    return Clients(client, aclient, none_given=_NONE_GIVEN, async_only=_ASYNC_ONLY)


# ---------------------------------------------------------------------------------------------
# LlamaIndex's filters and queries in neardex's terms


_COMPARISONS = {
    FilterOperator.EQ: "eq",
    FilterOperator.NE: "ne",
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
}
_LISTS = {
    FilterOperator.IN: "in",
    FilterOperator.NIN: "not_in",
    FilterOperator.ANY: "contains_any",
    FilterOperator.ALL: "contains_all",
}


def _condition(flt: MetadataFilter, where: str) -> dict[str, Any]:
    operator = FilterOperator(flt.operator)
    if operator in _COMPARISONS:
        if isinstance(flt.value, list):
            raise InvalidArgument(f"{where}.value: {operator.name} compares with one value, got a list")
        return {flt.key: {_COMPARISONS[operator]: flt.value}}
    if operator in _LISTS:
        if not isinstance(flt.value, list):
            raise InvalidArgument(f"{where}.value: {operator.name} takes a list of values, got {flt.value!r}")
        return {flt.key: {_LISTS[operator]: flt.value}}
    if operator == FilterOperator.CONTAINS:
        return {flt.key: {"contains_any": [flt.value]}}
    raise InvalidArgument(
        f"{where}.operator: {operator.name} is not supported by neardex filters (supported: EQ, NE, GT, GTE, "
        "LT, LTE, IN, NIN, ANY, ALL, CONTAINS; pass neardex_filter={key: {'exists': False}} to query for "
        "a missing key)")


def _all_of(parts: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    present = [dict(p) for p in parts if p]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"$and": present}


def filters_to_neardex(filters: MetadataFilters | None, where: str = "filters") -> dict[str, Any] | None:
    """LlamaIndex's ``MetadataFilters`` as a neardex filter (None for none).

    EQ, NE, GT, GTE, LT, LTE map to ``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte``; IN and NIN to
    ``in`` and ``not_in``; ANY and ALL to ``contains_any`` and ``contains_all``; CONTAINS to
    ``contains_any`` of its one value. Conditions AND, OR and NOT (none may match) map to ``$and``,
    ``$or`` and ``$not`` of an ``$or``, nested groups to any depth neardex allows (32). neardex's
    rules hold: a key holding an array matches EQ when one element does, NE and NIN hold for a
    document without the key, ranges compare numbers with numbers and strings with strings, and a
    key is a dotted path into nested metadata. TEXT_MATCH, TEXT_MATCH_INSENSITIVE and IS_EMPTY have
    no neardex counterpart and are refused (InvalidArgument, naming the filter)."""
    if filters is None or not filters.filters:
        return None
    parts: list[dict[str, Any]] = []
    for i, flt in enumerate(filters.filters):
        at = f"{where}.filters[{i}]"
        if isinstance(flt, MetadataFilters):
            nested = filters_to_neardex(flt, at)
            if nested is None:
                raise InvalidArgument(f"{at}: an empty group of filters")
            parts.append(nested)
        else:
            parts.append(_condition(flt, at))
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.AND:
        return _all_of(parts)
    if condition == FilterCondition.OR:
        return {"$or": parts}
    if condition == FilterCondition.NOT:
        return {"$not": {"$or": parts}}
    raise InvalidArgument(f"{where}.condition: {condition.name} is not supported (AND, OR, NOT are)")


def _ids_filter(key: str, ids: Sequence[str], where: str) -> dict[str, Any]:
    if len(ids) > MAX_FILTER_VALUES:
        raise InvalidArgument(f"{where}: {len(ids)} ids; a query restricts to at most {MAX_FILTER_VALUES}")
    return {key: {"in": list(ids)}}


def search_arguments(query: VectorStoreQuery, neardex_filter: Mapping[str, Any] | None = None
                     ) -> tuple[str | list[float], dict[str, Any]]:
    """The query and keyword arguments of the client's ``search`` for a ``VectorStoreQuery``.

    - DEFAULT: dense search, by ``query_embedding`` when there is one, else by ``query_str``
      (embedded by the server with the collection's model).
    - HYBRID: neardex's hybrid search of ``query_str`` (the wire carries one query, so the text:
      the server embeds it with the collection's model, and ``query_embedding`` is not used).
      neardex chooses the dense weight itself for each query (the share of its words the model's
      vocabulary covers), then refines it by one round of feedback, so ``alpha`` is not a weight:
      ``alpha=1`` is dense search alone and ``alpha=0`` lexical (BM25) search alone; any other
      alpha, or none, is neardex's hybrid. ``hybrid_top_k``, when set, is the number of hits;
      ``sparse_top_k`` has no counterpart (fusion ranks both retrievers 100 deep).
    - SPARSE, TEXT_SEARCH: lexical (BM25) search of ``query_str``.
    - MMR: dense search re-ordered by maximal marginal relevance, with neardex's
      ``diversity = 1 - mmr_threshold`` (both weigh relevance against similarity to the hits
      chosen before; LlamaIndex's default threshold 0.5).
    - Others (SVM, regressions, SEMANTIC_HYBRID) are refused.

    ``similarity_top_k`` is ``k``; ``doc_ids`` and ``node_ids`` restrict the hits (by the stored
    ``ref_doc_id`` and ``_node_id``, at most 1,000 each; an empty list, which a
    ``VectorStoreIndex``'s retriever passes for a store that keeps the text, restricts nothing); ``filters`` as :func:`filters_to_neardex`,
    and ``neardex_filter`` (neardex's own filter language) must hold too. Hit scores are on
    neardex's scales: the cosine of the best chunk (dense, hybrid, MMR), BM25 as a share of the
    most the query's words can score (lexical)."""
    try:
        mode = VectorStoreQueryMode(query.mode)
    except ValueError:
        raise InvalidArgument(f"query.mode: unknown mode {query.mode!r}") from None
    k = query.similarity_top_k
    text = query.query_str if query.query_str and query.query_str.strip() else None
    vector = list(query.query_embedding) if query.query_embedding is not None else None
    options: dict[str, Any] = {}
    subject: str | list[float] | None
    if mode in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
        subject, options["mode"] = (vector if vector is not None else text), "dense"
        if mode == VectorStoreQueryMode.MMR:
            threshold = 0.5 if query.mmr_threshold is None else query.mmr_threshold
            if not 0.0 <= threshold <= 1.0:
                raise InvalidArgument(f"query.mmr_threshold: between 0 and 1, got {threshold}")
            options["diversity"] = 1.0 - threshold
    elif mode == VectorStoreQueryMode.HYBRID:
        alpha = query.alpha
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise InvalidArgument(f"query.alpha: between 0 (lexical) and 1 (dense), got {alpha}")
        if alpha == 1.0:
            subject, options["mode"] = (vector if vector is not None else text), "dense"
        else:
            if text is None:
                raise InvalidArgument("query.query_str: hybrid and lexical search need the query text")
            subject, options["mode"] = text, "lexical" if alpha == 0.0 else "hybrid"
        k = query.hybrid_top_k or k
    elif mode in (VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.TEXT_SEARCH):
        if text is None:
            raise InvalidArgument(f"query.query_str: {mode.value} search needs the query text")
        subject, options["mode"] = text, "lexical"
    else:
        raise InvalidArgument(f"query.mode: {mode.value} is not supported by neardex "
                              "(default, hybrid, sparse, text_search and mmr are)")
    if subject is None:
        raise InvalidArgument("query: give query_embedding or query_str")
    options["k"] = k
    restrictions = [
        filters_to_neardex(query.filters, "query.filters"),
        _ids_filter(REF_DOC_ID_KEY, query.doc_ids, "query.doc_ids") if query.doc_ids else None,
        _ids_filter(NODE_ID_KEY, query.node_ids, "query.node_ids") if query.node_ids else None,
        neardex_filter,
    ]
    flt = _all_of(restrictions)
    if flt is not None:
        options["filter"] = flt
    return subject, options


# ---------------------------------------------------------------------------------------------
# Nodes and documents


def _document(node: BaseNode, index: int, own_vectors: bool, collection: str,
              flat_metadata: bool) -> dict[str, Any]:
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=flat_metadata)
    metadata[NODE_ID_KEY] = node.node_id
    metadata[TEXT_LENGTH_KEY] = len(text)
    document: dict[str, Any] = {"id": node.node_id, "text": text, "metadata": metadata}
    if own_vectors:
        if node.embedding is None:
            raise InvalidArgument(
                f"nodes[{index}].embedding: collection {collection!r} holds the caller's own vectors "
                "(no model), so each node needs its embedding (give the index an embed_model)")
        document["vector"] = list(node.embedding)
    return document


def _node(node_id: str, text: str, title: str, metadata: Mapping[str, Any]) -> BaseNode:
    """A stored document as the node it was, or as a TextNode when it was written by other means
    (``neardex index``, the client), its title among the metadata."""
    if NODE_CONTENT_KEY in metadata:
        return metadata_dict_to_node(dict(metadata), text=text)
    extra = {"title": title} if title and "title" not in metadata else {}
    return TextNode(id_=node_id, text=text, metadata={**metadata, **extra})


def _whole(hit: Hit) -> bool:
    """Whether a hit's chunk is its document's whole text."""
    length = hit.metadata.get(TEXT_LENGTH_KEY)
    return isinstance(length, int) and hit.chunk_start == 0 and hit.chunk_end == length


# ---------------------------------------------------------------------------------------------
# The vector store


class NeardexVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on one neardex collection.

    ``client`` (a :class:`~neardex.client.Client`) serves the sync methods, ``aclient`` (an
    :class:`~neardex.client.AsyncClient`) the async ones (``async_add``, ``adelete``,
    ``adelete_nodes``, ``aquery``, ``aget_nodes``, ``aclear``); with a Client only, the async
    methods run it on a worker thread.

    The collection is made unless it exists (``create_collection=False``: it must), when the store
    is made with a Client, else on first use:
    with the server's model by default, ``model=`` another one the server may load, or
    ``dimension=N`` for a collection of the caller's own vectors (model "none"). In a collection
    with a model the server embeds each node's text (cut into chunks of the model's window, with
    the collection's document prompt) and a node's own embedding is not sent; in a collection of
    own vectors each node brings its embedding. A ``VectorStoreIndex`` embeds nodes before adding
    them, so over a collection with a model a node is embedded twice; ``store.add(nodes)``
    directly, then ``VectorStoreIndex.from_vector_store(store, embed_model=...)``, embeds it once.

    Queries: see :func:`search_arguments` (modes, ``alpha``, filters). ``is_embedding_query=False``
    lets a retriever hand the query text over unembedded, so that a collection with a model embeds
    it in the Search call itself (one call instead of Embed then Search). ``query`` also takes
    ``neardex_filter=`` in neardex's own filter language, which must hold beside ``filters``.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection: str
    model: str | None = None
    dimension: int | None = None
    create_collection: bool = True
    batch_size: int = Field(default=64, gt=0, description="documents per Upsert call")

    _clients: Clients = PrivateAttr()
    _info: CollectionInfo | None = PrivateAttr(default=None)

    def __init__(self, collection: str, client: Any = None, aclient: Any = None, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "collection": collection})
        self._clients = _connect(client, aclient)
        if client is not None:
            # At once where it can be: a wrong model shows here, and an embedding model naming the
            # collection finds it before the first nodes arrive.
            self._clients.run(self._collection_plan())

    @classmethod
    def class_name(cls) -> str:
        return "NeardexVectorStore"

    @property
    def client(self) -> Any:
        """The blocking client (the async one when only that was given)."""
        return self._clients.client if self._clients.client is not None else self._clients.async_client

    @property
    def aclient(self) -> Any:
        return self._clients.async_client

    # -- plans ------------------------------------------------------------------------------------

    def _collection_plan(self) -> Plan[CollectionInfo]:
        if self._info is None:
            if not self.create_collection:
                info = yield call("info", self.collection)
            elif self.dimension is not None:
                info = yield call("create_collection", self.collection, model=self.model or NO_MODEL,
                                   dimension=self.dimension, exist_ok=True)
            else:
                info = yield call("create_collection", self.collection, model=self.model, exist_ok=True)
            self._info = info
        return self._info

    def _add_plan(self, nodes: Sequence[BaseNode]) -> Plan[list[str]]:
        if not nodes:
            return []
        info = yield from self._collection_plan()
        documents = [_document(node, i, info.model == NO_MODEL, self.collection, self.flat_metadata)
                     for i, node in enumerate(nodes)]
        yield call("upsert", self.collection, documents, batch_size=self.batch_size)
        return [node.node_id for node in nodes]

    def _delete_plan(self, ref_doc_id: str) -> Plan[None]:
        yield call("delete", self.collection, filter={REF_DOC_ID_KEY: ref_doc_id})

    def _delete_nodes_plan(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None) -> Plan[None]:
        mapped = filters_to_neardex(filters)
        if node_ids is None and mapped is None:
            raise InvalidArgument("node_ids, filters: give node ids, filters or both (clear() deletes every node)")
        if node_ids is not None and mapped is None:
            if node_ids:
                yield call("delete", self.collection, list(node_ids))
            return
        if node_ids is None:
            yield call("delete", self.collection, filter=mapped)
            return
        for start in range(0, len(node_ids), MAX_FILTER_VALUES):
            batch = list(node_ids[start : start + MAX_FILTER_VALUES])
            yield call("delete", self.collection, filter=_all_of([mapped, {NODE_ID_KEY: {"in": batch}}]))

    def _clear_plan(self) -> Plan[None]:
        # Every document holds ref_doc_id or does not: the one filter neardex takes that matches all
        # (an empty one is refused), and the collection keeps its settings.
        everything = {"$or": [{REF_DOC_ID_KEY: {"exists": True}}, {REF_DOC_ID_KEY: {"exists": False}}]}
        yield call("delete", self.collection, filter=everything)

    def _query_plan(self, query: VectorStoreQuery, neardex_filter: Mapping[str, Any] | None
                    ) -> Plan[VectorStoreQueryResult]:
        subject, options = search_arguments(query, neardex_filter)
        result = yield call("search", self.collection, subject, **options)
        hits: list[Hit] = list(result.hits)
        partial = [h.id for h in hits if not _whole(h)]
        texts: dict[str, str] = {}
        if partial:
            # A hit is its document's best chunk: the nodes' whole texts in one Get.
            got = yield call("get", self.collection, partial, metadata=False)
            texts = {d.id: d.text for d in got.documents}
        nodes = [_node(h.id, texts.get(h.id, h.text), h.title, h.metadata) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[h.id for h in hits])

    def _get_nodes_plan(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None
                        ) -> Plan[list[BaseNode]]:
        mapped = filters_to_neardex(filters)
        if node_ids is None and mapped is None:
            raise InvalidArgument("node_ids, filters: give node ids, filters or both")
        if mapped is None:
            got = yield call("get", self.collection, list(node_ids or []))
            return [_node(d.id, d.text, d.title, d.metadata) for d in got.documents]
        batches = ([None] if node_ids is None else
                   [list(node_ids[s : s + MAX_FILTER_VALUES]) for s in range(0, len(node_ids), MAX_FILTER_VALUES)])
        documents: list[Document] = []
        for batch in batches:
            flt = _all_of([mapped, {NODE_ID_KEY: {"in": batch}} if batch is not None else None])
            cursor: str | None = None
            while True:
                page = yield call("scroll", self.collection, filter=flt, limit=PAGE_SIZE, cursor=cursor)
                documents.extend(page.documents)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return [_node(d.id, d.text, d.title, d.metadata) for d in documents]

    # -- sync forms -------------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Stores the nodes (replacing those with the same ids); returns their ids."""
        return self._clients.run(self._add_plan(nodes))

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Deletes every node of the source document ``ref_doc_id``."""
        self._clients.run(self._delete_plan(ref_doc_id))

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Deletes the nodes with these ids, those matching ``filters``, or (both given) those with
        these ids that match."""
        self._clients.run(self._delete_nodes_plan(node_ids, filters))

    def clear(self) -> None:
        """Deletes every document of the collection; the collection and its settings stay."""
        self._clients.run(self._clear_plan())

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return self._clients.run(self._query_plan(query, kwargs.get("neardex_filter")))

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Stored nodes by id (those not stored are left out), matching ``filters``, or both."""
        return self._clients.run(self._get_nodes_plan(node_ids, filters))

    # -- async forms ------------------------------------------------------------------------------

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await self._clients.arun(self._add_plan(nodes))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await self._clients.arun(self._delete_plan(ref_doc_id))

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        await self._clients.arun(self._delete_nodes_plan(node_ids, filters))

    async def aclear(self) -> None:
        await self._clients.arun(self._clear_plan())

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await self._clients.arun(self._query_plan(query, kwargs.get("neardex_filter")))

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await self._clients.arun(self._get_nodes_plan(node_ids, filters))


# ---------------------------------------------------------------------------------------------
# The embedding model


class NeardexEmbedding(BaseEmbedding):
    """The server's model as a LlamaIndex embedding model, over the Embed RPC: a process using it
    needs no torch. ``collection`` names the collection whose model (and query prompt) embeds; None
    is the server's default model. Texts embed as queries do, and each must fit the model's window
    (neardex refuses, never truncates, a longer one: keep nodes within it, or let the collection
    embed them, see :class:`NeardexVectorStore`). ``client`` serves the sync methods, ``aclient``
    the async ones."""

    collection: str | None = Field(default=None, description="the collection whose model embeds")

    _clients: Clients = PrivateAttr()

    def __init__(self, client: Any = None, aclient: Any = None, collection: str | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("model_name", f"neardex:{collection}" if collection else "neardex")
        kwargs.setdefault("embed_batch_size", 64)
        super().__init__(**{**kwargs, "collection": collection})
        self._clients = _connect(client, aclient)

    @classmethod
    def class_name(cls) -> str:
        return "NeardexEmbedding"

    def _embed_plan(self, texts: Sequence[str]) -> Plan[list[Embedding]]:
        vectors = yield call("embed", list(texts), collection=self.collection)
        return [list(v) for v in vectors]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._clients.run(self._embed_plan([query]))[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._clients.arun(self._embed_plan([query])))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._clients.run(self._embed_plan([text]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._clients.arun(self._embed_plan([text])))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._clients.run(self._embed_plan(texts))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._clients.arun(self._embed_plan(texts))
