"""A data folder: every collection in it, and the lock that gives the folder one writer.

Two processes writing one folder would each keep their own FAISS cache and change log and corrupt
the other's view, so opening a folder takes an exclusive lock for the life of the process; a second
`neardex serve` or `neardex index --data-dir` on it is refused and told to send documents through
the server instead.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from . import snapshots
from .aliases import Alias, Aliases
from .chunker import default_overlap
from .collection import MODES, NO_MODEL, Collection, Manifest, QueryEncoder
from .embedder import DEFAULT_MODEL, ENCODERS, Embedder, load_embedder, resolve_model
from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from .files import fsync_path
from .filters import Condition, validate_condition
from .vector_index import IndexSpec

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Dimensions a collection of its caller's own vectors may have.
MAX_DIMENSION = 8192
LOCK_FILE = ".neardex.lock"
# Encoders built from a model's weights (onnx-int8) are cached here, beside the data they serve.
MODEL_CACHE = ".models"

# Wraps a collection's embedder for queries, e.g. with the server's micro-batching queue.
QueryEncoderFactory = Callable[[Embedder], QueryEncoder]


def validate_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(
            f"{field}: collection name {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return name


class DataDirLocked(FailedPrecondition):
    pass


class Catalog:
    def __init__(self, root: Path | str, *, default_encoder: str = "torch",
                 query_encoder_factory: QueryEncoderFactory | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.default_encoder = default_encoder
        self.query_encoder_factory = query_encoder_factory
        self._lock_file = self._acquire_lock()
        self._open: dict[str, Collection] = {}
        self._mutex = threading.Lock()
        self.aliases = Aliases(self.root)
        # Leftovers of a create, delete or snapshot that a crash interrupted: never collections.
        for leftover in [*self.root.glob(".creating-*"), *self.root.glob(".deleted-*"),
                         *self.root.glob(f"{snapshots.FOLDER}/*/.*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def _acquire_lock(self) -> IO[str]:
        handle = open(self.root / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DataDirLocked(
                f"data dir {self.root} is in use by {holder}; it has one writer at a time."
                " Send documents through the running server instead: neardex index PATH"
                " --collection NAME --server HOST:PORT"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"neardex process {os.getpid()}\n")
        handle.flush()
        return handle

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (p / "manifest.json").exists() and NAME.match(p.name))

    def exists(self, name: str) -> bool:
        """Whether the name is a collection, or an alias of one."""
        return (self.root / self.aliases.resolve(validate_name(name)) / "manifest.json").exists()

    def set_alias(self, name: str, collection: str, replace: bool = False) -> Alias:
        validate_name(name)
        validate_name(collection, "collection")
        with self._mutex:
            if (self.root / name / "manifest.json").exists():
                raise AlreadyExists(f"name: {name!r} is a collection; an alias needs a name of its own")
            if self.aliases.is_alias(collection):
                raise InvalidArgument(f"collection: {collection!r} is an alias; point at a collection")
            if not (self.root / collection / "manifest.json").exists():
                raise NotFound(f"collection: {collection!r} does not exist")
            return self.aliases.set(name, collection, replace)

    def create(self, name: str, *, model: str | None = None, index: IndexSpec | None = None,
               chunk_tokens: int = 0, overlap_tokens: int = -1, default_mode: str = "",
               encoder: str = "", dimension: int = 0, indexed_keys: Sequence[str] = ()) -> Collection:
        """model NO_MODEL ("none") makes a collection of the caller's own vectors of `dimension`;
        filters on `indexed_keys` are answered from an index instead of a scan."""
        validate_name(name)
        for i, key in enumerate(indexed_keys):
            validate_condition(f"indexed_keys[{i}]", key, Condition("exists", True))
        own_vectors = model == NO_MODEL
        encoder = NO_MODEL if own_vectors else encoder or self.default_encoder
        if not own_vectors and encoder not in ENCODERS:
            raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {ENCODERS}")
        if own_vectors and not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidArgument(f"dimension: a collection without a model needs the dimension of its"
                                  f" vectors, 1 to {MAX_DIMENSION}; got {dimension}")
        if not own_vectors and dimension:
            raise InvalidArgument("dimension: comes from the model; give it only with model 'none'")
        default_mode = default_mode or ("dense" if own_vectors else "hybrid")
        if default_mode not in MODES:
            raise InvalidArgument(f"default_mode: unknown mode {default_mode!r}; expected one of {MODES}")
        with self._mutex:
            folder = self.root / name
            if folder.exists():
                raise AlreadyExists(f"name: collection {name!r} already exists")
            if self.aliases.is_alias(name):
                raise AlreadyExists(f"name: {name!r} is an alias (of {self.aliases.resolve(name)!r})")
            if own_vectors:
                embedder = None
                manifest = Manifest(name=name, model=NO_MODEL, model_path="", dimension=dimension,
                                    chunk_tokens=0, overlap_tokens=0, index=index or IndexSpec.parse("flat"),
                                    encoder=NO_MODEL, default_mode=default_mode)
            else:
                embedder, manifest = self._model_manifest(name, model, index, chunk_tokens, overlap_tokens,
                                                          default_mode, encoder)
            manifest = replace(manifest, indexed_keys=tuple(dict.fromkeys(indexed_keys)))
            # Built aside and renamed into place: a crash leaves no half-made collection.
            building = self.root / f".creating-{name}-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            Collection.create(building, manifest, embedder).close()
            os.replace(building, folder)
            fsync_path(self.root)
            collection = Collection(folder, manifest, embedder, self.query_encoder(embedder))
            self._open[name] = collection
            return collection

    def _model_manifest(self, name: str, model: str | None, index: IndexSpec | None, chunk_tokens: int,
                        overlap_tokens: int, default_mode: str, encoder: str) -> tuple[Embedder, Manifest]:
        model_name, model_path = resolve_model(model)
        embedder = self.embedder(str(model_path) if model_name != DEFAULT_MODEL else None, encoder)
        window = embedder.max_seq_length - 2
        chunk_tokens = chunk_tokens or window
        if not 8 <= chunk_tokens <= window:
            raise InvalidArgument(
                f"chunk_tokens: must be between 8 and the model's window of {window}, got {chunk_tokens}")
        if overlap_tokens < 0:
            overlap_tokens = default_overlap(chunk_tokens)
        return embedder, Manifest(
            name=name,
            model=model_name,
            # The bundled model's folder differs per install, so it is found by name on open.
            model_path="" if model_name == DEFAULT_MODEL else str(model_path),
            dimension=embedder.dimension,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            index=index or IndexSpec.parse("flat"),
            encoder=encoder,
            default_mode=default_mode,
        )

    def get(self, name: str, *, expect_model: str | None = None) -> Collection:
        """The collection of that name, or the one an alias of that name points to."""
        name = self.aliases.resolve(validate_name(name))
        with self._mutex:
            collection = self._open.get(name)
            if collection is None:
                folder = self.root / name
                if not (folder / "manifest.json").exists():
                    raise NotFound(f"collection: {name!r} does not exist")
                manifest = Collection.read_manifest(folder)
                embedder = None
                if manifest.model != NO_MODEL:
                    embedder = self.embedder(manifest.model_path or None, manifest.encoder)
                    if embedder.dimension != manifest.dimension:
                        raise FailedPrecondition(
                            f"model: {manifest.model} gives dimension {embedder.dimension}, but"
                            f" collection {name!r} holds vectors of dimension {manifest.dimension}")
                collection = Collection(folder, manifest, embedder, self.query_encoder(embedder))
                self._open[name] = collection
        if expect_model is not None:
            wanted = NO_MODEL if expect_model == NO_MODEL else resolve_model(expect_model)[0]
            if wanted != collection.manifest.model:
                raise FailedPrecondition(
                    f"model: collection {name!r} was built with {collection.manifest.model};"
                    f" it cannot be opened with {wanted}. Use another collection name or the same model.")
        return collection

    def get_or_create(self, name: str, **kwargs: object) -> Collection:
        if self.exists(name):
            model = kwargs.get("model")
            return self.get(name, expect_model=str(model) if model else None)
        return self.create(name, **kwargs)  # type: ignore[arg-type]

    def delete(self, name: str) -> None:
        validate_name(name)
        with self._mutex:
            folder = self.root / name
            if self.aliases.is_alias(name):
                raise FailedPrecondition(f"name: {name!r} is an alias; delete the alias, or the collection by its"
                                         f" own name ({self.aliases.resolve(name)!r})")
            if not (folder / "manifest.json").exists():
                raise NotFound(f"collection: {name!r} does not exist")
            # Its aliases go with it (as in Qdrant): an alias never points to nothing.
            for alias in self.aliases.of(name):
                self.aliases.delete(alias)
            collection = self._open.pop(name, None)
            # Rename first: a crash mid-delete leaves a folder that is no longer a collection.
            trash = self.root / f".deleted-{name}-{os.getpid()}"
            os.replace(folder, trash)
            if collection is not None:
                collection.destroy_handles()
            shutil.rmtree(trash, ignore_errors=True)

    def restore(self, file: Path, name: str, replace: bool = False) -> Collection:
        """A collection `name` from a snapshot file; with replace, in place of the collection of
        that name (its aliases keep pointing to the name)."""
        validate_name(name)
        with self._mutex:
            folder = self.root / name
            if self.aliases.is_alias(name):
                raise AlreadyExists(f"name: {name!r} is an alias (of {self.aliases.resolve(name)!r})")
            if folder.exists() and not replace:
                raise AlreadyExists(f"name: collection {name!r} already exists; restore with replace, or as another name")
            building = self.root / f".creating-{name}-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            try:
                snapshots.unpack(file, building, name)
                manifest = Collection.read_manifest(building)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            if folder.exists():
                old = self._open.pop(name, None)
                trash = self.root / f".deleted-{name}-{os.getpid()}"
                os.replace(folder, trash)
                if old is not None:
                    old.destroy_handles()
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(building, folder)
            fsync_path(self.root)
        return self.get(manifest.name)

    def embedder(self, model: str | None, encoder: str) -> Embedder:
        """The loaded model for collections of this folder (shared with other folders'
        collections of the same model and encoder)."""
        return load_embedder(model, encoder, cache_dir=self.root / MODEL_CACHE)

    def query_encoder(self, embedder: Embedder | None) -> QueryEncoder | None:
        if embedder is None:
            return None
        return self.query_encoder_factory(embedder) if self.query_encoder_factory else embedder.encode

    def close(self) -> None:
        with self._mutex:
            for collection in self._open.values():
                collection.close()
            self._open.clear()
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
