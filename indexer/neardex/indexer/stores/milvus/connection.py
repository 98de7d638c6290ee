"""One Milvus client per instance in a process, whose errors are neardex's.

milvus-lite allows one client per database file, and a client is costly to open, so clients are
shared by every store of a process. Milvus' own exceptions become the domain's: a collection
dropped by another server is NotFound, an instance out of reach is Unavailable (a retry may
succeed), anything else Milvus refuses is FailedPrecondition with Milvus' words.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...errors import FailedPrecondition, NotFound, Unavailable

# pymilvus warns on every query iterator that milvus-lite gives it no server timestamp.
_QUIET = ("pymilvus", "pymilvus.milvus_client", "pymilvus.client.iterator.query_iterator")
_CONNECT_TIMEOUT_S = 10.0


def is_milvus(uri: str) -> bool:
    return uri.startswith("milvus://") or uri.endswith(".db")


def _client_uri(uri: str) -> str:
    return "http://" + uri[len("milvus://"):] if uri.startswith("milvus://") else uri


class _Client:
    """A MilvusClient whose errors are neardex's: a collection dropped meanwhile (by another
    server) is NotFound, an instance that cannot be reached is Unavailable (a retry may succeed),
    anything else Milvus refuses is FailedPrecondition with Milvus' own words."""

    def __init__(self, uri: str, client: Any) -> None:
        self.uri = uri
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from pymilvus.exceptions import MilvusException, MilvusUnavailableException

            try:
                return method(*args, **kwargs)
            except MilvusUnavailableException as exc:
                raise Unavailable(f"store: Milvus at {self.uri} cannot be reached: {exc.message}") from None
            except MilvusException as exc:
                text = exc.message or str(exc)
                if exc.code == _COLLECTION_NOT_FOUND:
                    raise NotFound(f"collection: its data is gone from {self.uri} (dropped meanwhile): {text}") from None
                if exc.code in _UNAVAILABLE_CODES:
                    raise Unavailable(f"store: Milvus at {self.uri} cannot be reached: {text}") from None
                raise FailedPrecondition(f"store: Milvus at {self.uri} refused: {text}") from None

        return call


# pymilvus' codes: a connection that failed, and a collection that does not exist.
_UNAVAILABLE_CODES = {2}
_COLLECTION_NOT_FOUND = 100
_clients: dict[str, _Client] = {}
_clients_lock = threading.Lock()


def client_for(uri: str) -> _Client:
    """One MilvusClient per instance in a process (milvus-lite allows one per file)."""
    from pymilvus import MilvusClient

    for name in _QUIET:  # after pymilvus configured its loggers on import
        logging.getLogger(name).setLevel(logging.ERROR)
    with _clients_lock:
        if uri not in _clients:
            try:
                _clients[uri] = _Client(uri, MilvusClient(_client_uri(uri), timeout=_CONNECT_TIMEOUT_S))
            except Exception as exc:  # noqa: BLE001 - pymilvus raises several kinds
                raise Unavailable(f"store: cannot reach Milvus at {uri}: {exc}") from None
        return _clients[uri]
