"""LangChain's ``VectorStore`` and ``Embeddings`` over a neardex server, for the Python services that
reach their search backend through LangChain (``pip install "neardex-client[langchain]"``, which adds
``langchain-core`` and nothing else).

The integration is thin on purpose: it sits on the public :class:`~neardex.client.Client` and
:class:`~neardex.client.AsyncClient`, so it gets their retries, deadlines, keys and TLS, and the
server does the work (embedding, dense, lexical and hybrid search, filters, maximal marginal
relevance). A collection with a model needs no LangChain ``Embeddings``: the server embeds texts and
queries. A collection of your own vectors (``model="none"``) takes one, and texts and queries are then
embedded here and sent as vectors.

As in the client, each operation is written once, as a plan: a generator that yields the client
calls (and the embeddings) it needs and gets their answers back. The blocking methods run a plan
against a ``Client``, the ``a``-prefixed ones await it against an ``AsyncClient`` (both drivers, and
the clients a store calls through, are ``_plans``, shared with the LlamaIndex integration), so the
two cannot drift apart.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        'neardex.client.langchain needs langchain-core: pip install "neardex-client[langchain]"'
    ) from exc

from ._plans import Call, Clients, Refusal
from .aio import AsyncClient
from .client import Client
from .models import Document as NeardexDocument
from .models import Hit, SearchResult

__all__ = ["NeardexEmbeddings", "NeardexVectorStore", "relevance"]

T = TypeVar("T")

# Search options a store takes once (its defaults) and each search may override by keyword.
SEARCH_OPTIONS = frozenset({"mode", "min_score", "ef_search", "nprobe", "rerank", "offset", "timeout"})


# ---------------------------------------------------------------------------------------------
# What a plan asks its runner to do besides client calls (``_plans.Call``)


@dataclass(frozen=True)
class _Embed:
    """Embed these texts with the store's LangChain ``Embeddings`` (its async form on the async
    path); answers one vector per text."""

    texts: list[str]
    query: bool


_Plan = Generator[Call | _Embed, Any, T]

_NONE_GIVEN: Refusal = (ValueError, "client: give a Client, an AsyncClient or an address")
_ASYNC_ONLY: Refusal = (RuntimeError, "client: this store has only an AsyncClient; use the a-prefixed methods, "
                                      "or give client= or address= for the blocking ones")


def _embed(embedding: Embeddings, step: _Embed) -> list[list[float]]:
    if step.query:
        return [embedding.embed_query(text) for text in step.texts]
    return embedding.embed_documents(step.texts)


async def _aembed(embedding: Embeddings, step: _Embed) -> list[list[float]]:
    if step.query:
        return [await embedding.aembed_query(text) for text in step.texts]
    return await embedding.aembed_documents(step.texts)


def _connect(
    client: Client | None,
    async_client: AsyncClient | None,
    address: str | None,
    api_key: str | None,
    client_options: Mapping[str, Any] | None,
    embedding: Embeddings | None = None,
) -> Clients:
    """The clients a store or an embeddings object calls through; ``embedding`` answers ``_Embed``."""
    options = {**(client_options or {}), **({"api_key": api_key} if api_key is not None else {})}
    return Clients(client, async_client, none_given=_NONE_GIVEN, async_only=_ASYNC_ONLY, address=address,
                   options=options,
                   handle=None if embedding is None else functools.partial(_embed, embedding),
                   ahandle=None if embedding is None else functools.partial(_aembed, embedding))


def relevance(score: float, mode: str) -> float:
    """A hit's score as LangChain's relevance (0 dissimilar to 1 most similar): a lexical score is
    one already (a share of the highest BM25 the query can reach); a cosine (dense and hybrid
    search) is mapped from -1..1 by ``(1 + cosine) / 2``."""
    return score if mode == "lexical" else (1.0 + score) / 2.0


def _document(hit: Hit | NeardexDocument) -> Document:
    return Document(id=hit.id, page_content=hit.text, metadata=dict(hit.metadata))


# ---------------------------------------------------------------------------------------------
# The store


class NeardexVectorStore(VectorStore):
    """A neardex collection as a LangChain vector store.

    Connect with ``client=`` (a :class:`~neardex.client.Client`), ``async_client=`` (an
    :class:`~neardex.client.AsyncClient`), both, or ``address=`` (``"host:port"``; with ``api_key=``
    and any other client argument in ``client_options``), from which the store makes and owns its
    clients (:meth:`close` / :meth:`aclose`). The ``a``-prefixed methods await the ``AsyncClient``;
    given only a ``Client``, they run the blocking call in a worker thread.

    ``embedding`` is for collections of your own vectors (``model="none"`` with a ``dimension``):
    texts are then embedded with it here and stored with their vectors, and queries are embedded
    with it and searched by vector (dense; ``mode="lexical"`` searches the stored texts instead;
    hybrid search needs the server's model). Without one, the server embeds texts and queries with
    the collection's model, and every mode works.

    Search options (``mode`` "dense", "lexical" or "hybrid", None for the collection's default;
    ``min_score``, ``ef_search``, ``nprobe``, ``rerank``, ``offset``, ``timeout``) given here are the
    defaults of every search; each search may override them by keyword. ``filter=`` takes neardex's
    filter language (``{"lang": "en"}``, ``{"year": {"gte": 2000}}``, ``{"$or": [...]}``: see the
    README's Filters) and is passed through as it is.

    Scores (``similarity_search_with_score``) are neardex's, the same scale in every query: in dense
    and hybrid search the cosine similarity of the document's best chunk to the query (-1 to 1,
    higher is closer); in lexical search the chunk's BM25 as a share of the highest BM25 the query's
    words can reach (0 to 1). ``similarity_search_with_relevance_scores`` maps them to 0..1 (see
    :func:`relevance`).

    A hit's ``page_content`` is its best matching chunk: the whole text when it fits one chunk
    (always so in a collection of your own vectors, and for the chunk-sized pieces LangChain's text
    splitters make); :meth:`get_by_ids` returns whole texts. Ids are the ones given (``ids=`` or
    ``Document.id``), else new uuid4 strings.
    """

    def __init__(
        self,
        collection: str,
        *,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
        address: str | None = None,
        api_key: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        embedding: Embeddings | None = None,
        batch_size: int = 64,
        mode: str | None = None,
        min_score: float | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        rerank: str | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.collection = collection
        self.batch_size = batch_size
        self._embedding = embedding
        self._clients = _connect(client, async_client, address, api_key, client_options, embedding)
        given: dict[str, Any] = {"mode": mode, "min_score": min_score, "ef_search": ef_search, "nprobe": nprobe,
                 "rerank": rerank, "timeout": timeout}
        self._options = {key: value for key, value in given.items() if value is not None}
        self._check_mode(mode)

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    def close(self) -> None:
        """Closes the blocking client the store made from its address (not one it was given)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Closes the clients the store made from its address (not those it was given)."""
        await self._clients.aclose()

    # -- plans: each operation once ---------------------------------------------------------------

    def _check_mode(self, mode: str | None) -> None:
        if mode == "hybrid" and self.embeddings is not None:
            raise ValueError("mode: hybrid search needs the server's model; a store with an embedding "
                             "searches by vector (dense) or by text (lexical)")

    def _add(
        self,
        texts: Iterable[str],
        metadatas: Sequence[Mapping[str, Any]] | None,
        ids: Sequence[str | None] | None,
        vectors: list[list[float]] | None = None,
    ) -> _Plan[list[str]]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"metadatas: {len(metadatas)} for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"ids: {len(ids)} for {len(texts)} texts")
        given = ids or [None] * len(texts)
        # Documents without an id get a new one, as LangChain's stores do.
        chosen = [str(id_) if id_ else str(uuid.uuid4()) for id_ in given]
        if not texts:
            return chosen
        if vectors is None and self.embeddings is not None:
            vectors = yield _Embed(texts, query=False)
        documents = []
        for i, (id_, text) in enumerate(zip(chosen, texts)):
            document: dict[str, Any] = {"id": id_, "text": text, "metadata": dict(metadatas[i]) if metadatas else {}}
            if vectors is not None:
                document["vector"] = list(vectors[i])
            documents.append(document)
        yield Call("upsert", (self.collection, documents),
                    {"batch_size": self.batch_size, "timeout": self._options.get("timeout")})
        return chosen

    def _delete(self, ids: Sequence[str] | None, filter: Mapping[str, Any] | None) -> _Plan[bool]:
        if ids is None and filter is None:
            raise ValueError("ids, filter: delete by ids or by a filter; a whole collection goes with "
                             "Client.delete_collection")
        if ids is not None and not ids and filter is None:
            return True
        yield Call("delete", (self.collection, None if ids is None else list(ids)),
                    {"filter": filter, "timeout": self._options.get("timeout")})
        return True

    def _get(self, ids: Sequence[str]) -> _Plan[list[Document]]:
        if not ids:
            return []
        result = yield Call("get", (self.collection, list(ids)), {"timeout": self._options.get("timeout")})
        return [_document(document) for document in result.documents]

    def _search(
        self,
        query: str | None,
        vector: Sequence[float] | None,
        k: int,
        filter: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        *,
        fetch_k: int | None = None,
        lambda_mult: float | None = None,
    ) -> _Plan[tuple[list[tuple[Document, float]], str]]:
        """Hits as (document, score) and the mode the server searched in. With ``lambda_mult``,
        maximal marginal relevance (see :meth:`max_marginal_relevance_search`)."""
        unknown = set(options) - SEARCH_OPTIONS
        if unknown:
            raise TypeError(f"unexpected search options: {', '.join(sorted(unknown))}")
        settings = {**self._options, **options}
        self._check_mode(settings.get("mode"))
        if vector is None and self.embeddings is not None and settings.get("mode") != "lexical":
            [vector] = yield _Embed([query or ""], query=True)
        top_k = k
        diversity = 0.0
        if lambda_mult is not None:
            if not 0.0 <= lambda_mult <= 1.0:
                raise ValueError(f"lambda_mult: {lambda_mult} is not between 0 and 1")
            diversity = 1.0 - lambda_mult
            # neardex's MMR picks greedily among its best max(50, offset + top_k) candidates, so
            # asking for fetch_k hits and keeping the first k is MMR over at least fetch_k.
            top_k = max(k, fetch_k or k)
        result: SearchResult = yield Call(
            "search", (self.collection, list(vector) if vector is not None else query),
            {"k": top_k, "filter": filter, "diversity": diversity, **settings})
        return [(_document(hit), hit.score) for hit in result.hits[:k]], result.mode

    def _from_texts(
        self,
        texts: list[str],
        metadatas: Sequence[Mapping[str, Any]] | None,
        ids: Sequence[str | None] | None,
        collection_options: Mapping[str, Any],
    ) -> _Plan[list[str]]:
        options = dict(collection_options)
        vectors = None
        if self.embeddings is not None:
            # The collection's dimension is the embedding's: learnt from the texts themselves (or
            # from one probe when there are none), so nothing is embedded twice.
            vectors = (yield _Embed(texts, query=False)) if texts else None
            dimension = len(vectors[0]) if vectors else len((yield _Embed(["dimension"], query=True))[0])
            options = {"model": "none", "dimension": dimension, **options}
        yield Call("create_collection", (self.collection,), {"exist_ok": True, **options})
        return (yield from self._add(texts, metadatas, ids, vectors))

    # -- writing ----------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Writes the texts (an existing id is replaced) and returns their ids: ``ids`` where given,
        new uuid4 strings elsewhere."""
        return self._clients.run(self._add(texts, metadatas, ids))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        return await self._clients.arun(self._add(texts, metadatas, ids))

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Deletes documents by id, or those matching ``filter=`` (never all of them: neardex refuses
        an empty filter). Ids that do not exist are no error."""
        return self._clients.run(self._delete(ids, kwargs.get("filter")))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return await self._clients.arun(self._delete(ids, kwargs.get("filter")))

    # -- reading ----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id, in the order asked, whole texts; ids not stored are left out."""
        return self._clients.run(self._get(ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await self._clients.arun(self._get(ids))

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` best documents for ``query`` with their scores, best first (scores on neardex's
        scale: cosines in dense and hybrid search, BM25 shares in lexical; see the class)."""
        return self._clients.run(self._search(query, None, k, filter, kwargs))[0]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return (await self._clients.arun(self._search(query, None, k, filter, kwargs)))[0]

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """Searches by a query vector: for collections of your own vectors (a collection with a model
        embeds its queries itself and refuses vectors)."""
        return [doc for doc, _ in self._clients.run(self._search(None, embedding, k, filter, kwargs))[0]]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        found, _ = await self._clients.arun(self._search(None, embedding, k, filter, kwargs))
        return [doc for doc, _ in found]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        found, mode = self._clients.run(self._search(query, None, k, filter, kwargs))
        return [(doc, relevance(score, mode)) for doc, score in found]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        found, mode = await self._clients.arun(self._search(query, None, k, filter, kwargs))
        return [(doc, relevance(score, mode)) for doc, score in found]

    def _select_relevance_score_fn(self) -> Any:
        mode = self._options.get("mode") or "dense"
        return lambda score: relevance(score, mode)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance, done by the server: neardex's ``diversity`` is
        ``1 - lambda_mult`` (each next hit is chosen for ``lambda_mult`` x its score -
        ``(1 - lambda_mult)`` x its highest cosine to the hits chosen before it, as LangChain's own
        MMR), so ``lambda_mult=1`` is a plain search and 0 the most diverse. The server chooses among
        its best ``max(50, fetch_k)`` candidates: ``fetch_k`` is a lower bound, not an exact pool."""
        found, _ = self._clients.run(
            self._search(query, None, k, filter, kwargs, fetch_k=fetch_k, lambda_mult=lambda_mult))
        return [doc for doc, _ in found]

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        found, _ = await self._clients.arun(
            self._search(query, None, k, filter, kwargs, fetch_k=fetch_k, lambda_mult=lambda_mult))
        return [doc for doc, _ in found]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        found, _ = self._clients.run(
            self._search(None, embedding, k, filter, kwargs, fetch_k=fetch_k, lambda_mult=lambda_mult))
        return [doc for doc, _ in found]

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        found, _ = await self._clients.arun(
            self._search(None, embedding, k, filter, kwargs, fetch_k=fetch_k, lambda_mult=lambda_mult))
        return [doc for doc, _ in found]

    # -- making one -------------------------------------------------------------------------------

    @classmethod
    def _for_texts(cls, embedding: Embeddings | None, kwargs: dict[str, Any]) -> tuple[NeardexVectorStore,
                                                                                         dict[str, Any]]:
        collection = kwargs.pop("collection_name", None) or kwargs.pop("collection", None)
        if not collection:
            raise ValueError("collection_name: name the collection to create or add to")
        options = dict(kwargs.pop("collection_options", None) or {})
        if "model" in kwargs:
            options["model"] = kwargs.pop("model")
        return cls(collection, embedding=embedding, **kwargs), options

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> NeardexVectorStore:
        """Creates the collection ``collection_name`` unless it exists, writes the texts and returns
        the store. Without ``embedding`` the collection has a model (``model=``, default the server's;
        more settings in ``collection_options``, as :meth:`Client.create_collection` takes them); with
        one it holds your own vectors of the embedding's dimension. Other keywords are the
        constructor's (``client=``, ``address=``, ``mode=``, ...)."""
        store, options = cls._for_texts(embedding, kwargs)
        store._clients.run(store._from_texts(texts, metadatas, ids, options))
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> NeardexVectorStore:
        store, options = cls._for_texts(embedding, kwargs)
        await store._clients.arun(store._from_texts(texts, metadatas, ids, options))
        return store


# ---------------------------------------------------------------------------------------------
# Embeddings


class NeardexEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over neardex's Embed call: the server's model (the collection's, with
    ``collection=``, else the server's default), so a LangChain app uses it without torch in its own
    process. Connects as :class:`NeardexVectorStore` does.

    Embed reads every text as a query (the collection's query prompt goes before it), so documents
    and queries get the same kind of vector; the server refuses empty texts and texts past the
    model's window rather than truncate them. ``batch_size`` texts go in each call.
    """

    def __init__(
        self,
        *,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
        address: str | None = None,
        api_key: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        collection: str | None = None,
        batch_size: int = 64,
    ) -> None:
        self.collection = collection
        self.batch_size = batch_size
        self._clients = _connect(client, async_client, address, api_key, client_options)

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _embed(self, texts: Sequence[str]) -> _Plan[list[list[float]]]:
        texts = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += yield Call("embed", (texts[start : start + self.batch_size],),
                                   {"collection": self.collection})
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._clients.run(self._embed(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._clients.run(self._embed([text]))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._clients.arun(self._embed(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return (await self._clients.arun(self._embed([text])))[0]
