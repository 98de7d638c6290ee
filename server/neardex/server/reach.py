"""Where a request may send the server: the stores and the models CreateCollection may name.

A store or a model named in a request is a place on the server's network or disk. Left open, an
admin key scoped to one collection could make the server connect to any host
(`store="milvus://10.0.0.5:80"`), create milvus-lite files wherever the server may write, or load
any folder it can read as a model. So a request may name only what the operator allowed:

- stores (CreateCollection's `store`, RestoreSnapshot's `store`, MigrateCollection's `to`): the data folder (`local`, and milvus-lite `.db` files directly inside it), the Milvus
  instances the server serves (`--milvus`), and what `--allow-store` lists: Milvus instances,
  milvus-lite `.db` files, and folders where `.db` files may be made (directly inside them);
- models: the bundled one by name, `none`, and folders under `--model-dir` (named by their path
  or relative to it); without `--model-dir`, the bundled model only.

Every check reads the request's text alone: nothing named is resolved, opened or connected to
before it is allowed. The `neardex` commands that write a data folder their user owns (`index`,
`eval` without `--server`) are not requests and are not limited.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from neardex.indexer.embedding.embedder import is_bundled
from neardex.indexer.errors import InvalidArgument, PermissionDenied
from neardex.indexer.records import NO_MODEL

from .settings import Settings

MILVUS = "milvus://"
LITE_SUFFIX = ".db"


class Reach:
    def __init__(self, data_dir: Path, milvus: Iterable[str] = (), allow_store: Iterable[str] = (),
                 model_dir: Path | None = None) -> None:
        # Each allowed instance and file by its normal form, mapped to the operator's spelling:
        # a store is opened by one spelling only (milvus-lite takes one client per file).
        self._instances: dict[tuple[str, int], str] = {}
        self._files: dict[str, str] = {}
        self._folders = _spellings(data_dir)
        entries = [(f"milvus[{i}]", e) for i, e in enumerate(milvus)]
        entries += [(f"allow_store[{i}]", e) for i, e in enumerate(allow_store)]
        for field, entry in entries:
            if entry.startswith(MILVUS):
                self._instances[_instance(entry, field)] = entry
            elif entry.endswith(LITE_SUFFIX):
                self._files.update(dict.fromkeys(_spellings(Path(entry)), entry))
            else:
                self._folders |= _spellings(Path(entry))
        self._model_dir = _lexical(str(model_dir)) if model_dir is not None else None

    @classmethod
    def of(cls, settings: Settings) -> Reach:
        return cls(settings.data_dir, settings.milvus, settings.allow_store, settings.model_dir)

    def store(self, store: str, field: str = "store") -> str:
        """The store a request names, as the catalog is to open it; refused unless allowed.
        Text that names no store at all is left to the catalog to refuse."""
        if store.startswith(MILVUS):
            try:
                allowed = self._instances.get(_instance(store, "store"))
            except InvalidArgument:
                allowed = None
            if allowed is not None:
                return allowed
        elif store.endswith(LITE_SUFFIX):
            path = _lexical(store)
            if path in self._files:
                return self._files[path]
            if os.path.dirname(path) in self._folders:
                return path
        else:
            return store  # "", "local", or no store (InvalidArgument from the catalog)
        raise PermissionDenied(
            f"{field}: {store!r} is not a store this server may use: collections live in its data folder, in"
            " the Milvus instances it serves, or where its operator allows (--allow-store)")

    def model(self, model: str, field: str = "model") -> str:
        """The model a request names (in `field`), as the catalog is to load it; refused unless
        allowed. Embedding models and cross-encoders (rerank.model) pass the same check."""
        if is_bundled(model) or model == NO_MODEL:
            return model
        if self._model_dir is not None:
            path = _lexical(os.path.join(self._model_dir, model))
            if path != self._model_dir and os.path.commonpath([path, self._model_dir]) == self._model_dir:
                return path
        where = "a folder under its model folder (--model-dir)" if self._model_dir else "no other"
        raise PermissionDenied(f"{field}: {model!r} is not a model this server may load: the bundled one by name,"
                               f" or {where}")


def _instance(uri: str, field: str) -> tuple[str, int]:
    """(host, port) of milvus://HOST:PORT, so that spellings of one instance compare equal."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise InvalidArgument(f"{field}: {uri!r} is not milvus://HOST:PORT")
    return host.lower(), port


def _lexical(path: str) -> str:
    """An absolute, normalized path, computed from the text alone (no link is followed, nothing
    is looked up): `..` cannot climb out of an allowed folder."""
    return os.path.normpath(os.path.abspath(path))


def _spellings(path: Path) -> set[str]:
    """An operator's path as written and as the file system resolves it (the data folder may be
    reached through a link)."""
    return {_lexical(str(path.expanduser())), str(path.expanduser().resolve())}

