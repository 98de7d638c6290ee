"""A data folder: every collection in it, and the lock that gives the folder one writer.

Two processes writing one folder would each keep their own FAISS cache and change log and corrupt
the other's view, so opening a folder takes an exclusive lock for the life of the process; a second
`neardex serve` or `neardex index --data-dir` on it is refused and told to send documents through
the server instead.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from ..embedding.embedder import AUTO, ENCODERS, DirectCalls, Embedder, ModelCalls, resolve_device
from ..embedding.loading import load_embedder
from ..embedding.rerankers import CrossEncoderModel, RerankCalls, find_cross_encoder, load_cross_encoder
from ..embedding.sources import ModelSource, Prompts, find_model, recorded_model
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NeardexError, NotFound
from ..expiry import check_ttl
from ..files import fsync_path, write_durably
from ..ingest.chunker import default_overlap
from ..ingest.encoding import text_window
from ..layout import CREATING, DELETED, LOCK_FILE, MANIFEST, MIGRATIONS, SNAPSHOTS
from ..query import languages
from ..query.filters import Condition, validate_condition
from ..records import LOCAL_STORE, MODES, NO_MODEL, IndexSpec, Manifest
from ..retrieval import rerank
from ..retrieval.engine import Collection
from ..retrieval.request import Rerank
from ..stores import Store, transfer
from ..stores.local import LocalStore
from ..stores.milvus import MilvusStore, catalog_manifest, catalog_names, is_milvus
from . import migration, snapshots
from .aliases import Alias, Aliases

log = logging.getLogger("neardex.catalog")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Dimensions a collection of its caller's own vectors may have.
MAX_DIMENSION = 8192

# The roads to a loaded model, e.g. the server's scheduler that serves queries first.
ModelCallsFactory = Callable[[Embedder], ModelCalls]
RerankCallsFactory = Callable[[CrossEncoderModel], RerankCalls]


def _direct(model: CrossEncoderModel) -> RerankCalls:
    return model.score


def validate_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(
            f"{field}: collection name {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return name


def validate_new_name(name: str, field: str = "name") -> str:
    """A name being given (a collection, an alias, a restore target): it may not start with '-',
    which every command line would read as an option. Names given before stay usable."""
    validate_name(name, field)
    if name.startswith("-"):
        raise InvalidArgument(f"{field}: collection name {name!r} may not start with '-'")
    return name


class DataDirLocked(FailedPrecondition):
    pass


@dataclasses.dataclass(frozen=True)
class Migrated:
    """A completed migration: the target (what the name now stands for), the source's new name,
    and what the rounds of this run copied and deleted."""

    collection: Collection
    kept_as: str
    copied: int
    deleted: int
    rounds: int


class Catalog:
    def __init__(self, root: Path | str, *, default_encoder: str = AUTO,
                 model_calls: ModelCallsFactory = DirectCalls, milvus: Sequence[str] = (),
                 device: str = "auto", rerank_calls: RerankCallsFactory = _direct) -> None:
        """milvus: Milvus instances whose neardex collections this catalog serves too (any number
        of servers can serve one instance's collections); device: where models run (auto, cpu,
        cuda, cuda:N)."""
        self.root = Path(root).expanduser().resolve()
        self.milvus = list(milvus)
        for uri in self.milvus:
            if not is_milvus(uri):
                raise InvalidArgument(f"milvus: {uri!r} is neither milvus://HOST:PORT nor a milvus-lite .db file")
        self.root.mkdir(parents=True, exist_ok=True)
        self.default_encoder = default_encoder
        self.model_calls = model_calls
        self.rerank_calls = rerank_calls
        # A named device that is not there stops the start; auto is resolved per encoder.
        self.device = device if device.strip().lower() == "auto" else resolve_device(device)
        self._lock_file = self._acquire_lock()
        self._open: dict[str, Collection] = {}
        self._mutex = threading.Lock()
        self._migrating: set[str] = set()  # collections a migration of this process is moving now
        self.aliases = Aliases(self.root)
        # Leftovers of a create, delete or snapshot that a crash interrupted: never collections.
        for leftover in [*self.root.glob(f"{CREATING}*"), *self.root.glob(f"{DELETED}*"),
                         *self.root.glob(f"{SNAPSHOTS}/*/.*"), *self.root.glob(f"{MIGRATIONS}/.*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        self._finish_migrations()

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
        """Every collection name, once: a name held both here and in a Milvus instance is the one
        held here (see _manifest)."""
        local = {p.name for p in self.root.iterdir()
                 if p.is_dir() and (p / MANIFEST).exists() and NAME.match(p.name)}
        return sorted(local | {name for uri in self.milvus for name in catalog_names(uri)})

    def exists(self, name: str) -> bool:
        """Whether the name is a collection, or an alias of one."""
        return self._manifest(self.aliases.resolve(validate_name(name))) is not None

    def _manifest(self, name: str) -> Manifest | None:
        """The manifest of a collection: in its folder here, or in a Milvus catalog (which is the
        authority for a Milvus-backed collection; its folder here only points there). A collection
        held here never waits on a Milvus instance it does not live in.

        A name held both here and in a Milvus instance (made here while the server was not pointed
        at that instance, or by another server) means the collection here, the one this folder
        made and can always reach: the other is not reachable by that name through this server
        until the one here is deleted. Between instances, the first in `--milvus` order wins.
        `create` refuses a name found in any of them."""
        folder = self.root / name
        if (folder / MANIFEST).exists():
            manifest = LocalStore.read_manifest(folder)
            if manifest.store == LOCAL_STORE:
                return manifest
            return catalog_manifest(manifest.store, name) or manifest
        for uri in self.milvus:
            found = catalog_manifest(uri, name)
            if found is not None:
                return found
        return None

    def _taken(self, name: str, store: str) -> bool:
        """Whether a collection of that name exists here, in a served Milvus instance, or in the
        store it is to be made in (an instance this catalog may not serve)."""
        return ((self.root / name).exists() or self._manifest(name) is not None
                or (store != LOCAL_STORE and store not in self.milvus and catalog_manifest(store, name) is not None))

    def set_alias(self, name: str, collection: str, replace: bool = False) -> Alias:
        validate_new_name(name)
        validate_name(collection, "collection")
        with self._mutex:
            if self._manifest(name) is not None:
                raise AlreadyExists(f"name: {name!r} is a collection; an alias needs a name of its own")
            if self.aliases.is_alias(collection):
                raise InvalidArgument(f"collection: {collection!r} is an alias; point at a collection")
            if self._manifest(collection) is None:
                raise NotFound(f"collection: {collection!r} does not exist")
            return self.aliases.set(name, collection, replace)

    def create(self, name: str, *, model: str | None = None, index: IndexSpec | None = None,
               chunk_tokens: int = 0, overlap_tokens: int = -1, default_mode: str = "",
               encoder: str = "", dimension: int = 0, indexed_keys: Sequence[str] = (),
               store: str = "", query_prompt: str | None = None,
               document_prompt: str | None = None, language: str = "",
               rerank: Rerank | None = None, ttl_seconds: int = 0) -> Collection:
        """model is the bundled model's name (or None), a folder, or a Hugging Face id
        (org/name[@revision]); NO_MODEL ("none") makes a collection of the caller's own vectors of
        `dimension`; filters on `indexed_keys` are answered from an index instead of a scan;
        `store` is where its data lives: this folder (the default) or a Milvus instance
        (milvus://HOST:PORT, or a milvus-lite .db file). The prompts go before each query and each
        document text; None takes the model's own (its config_sentence_transformers.json), ""
        none. `language` is its lexical analyzer's (default: auto). `rerank` is its searches'
        default rerank stage (a cross-encoder found now, recorded by its folder or id@revision). Documents
        written without an expiry expire `ttl_seconds` after their write (0: never)."""
        validate_new_name(name)
        rerank_model, rerank_depth = self._default_rerank(rerank)
        ttl_seconds = check_ttl(ttl_seconds)
        language = languages.check(language or languages.DEFAULT)
        store = store or LOCAL_STORE
        if store != LOCAL_STORE and not is_milvus(store):
            raise InvalidArgument(f"store: {store!r} is neither 'local', milvus://HOST:PORT nor a milvus-lite .db file")
        for i, key in enumerate(indexed_keys):
            validate_condition(f"indexed_keys[{i}]", key, Condition("exists", True))
        own_vectors = model == NO_MODEL
        encoder = NO_MODEL if own_vectors else encoder or self.default_encoder
        if not own_vectors and encoder != AUTO and encoder not in ENCODERS:
            raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {(AUTO, *ENCODERS)}")
        if own_vectors and not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidArgument(f"dimension: a collection without a model needs the dimension of its"
                                  f" vectors, 1 to {MAX_DIMENSION}; got {dimension}")
        if not own_vectors and dimension:
            raise InvalidArgument("dimension: comes from the model; give it only with model 'none'")
        for field, prompt in (("query_prompt", query_prompt), ("document_prompt", document_prompt)):
            if own_vectors and prompt:
                raise InvalidArgument(f"{field}: a collection without a model embeds nothing; give no prompt")
        default_mode = default_mode or ("dense" if own_vectors else "hybrid")
        if default_mode not in MODES:
            raise InvalidArgument(f"default_mode: unknown mode {default_mode!r}; expected one of {MODES}")
        with self._mutex:
            folder = self.root / name
            if self._taken(name, store):
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
                                                          default_mode, encoder, query_prompt, document_prompt)
            manifest = replace(manifest, indexed_keys=tuple(dict.fromkeys(indexed_keys)), store=store,
                               language=language, rerank_model=rerank_model, rerank_depth=rerank_depth,
                               ttl_seconds=ttl_seconds)
            # Its manifest is written aside and renamed into place: a crash leaves no half-made
            # collection. A Milvus-backed collection's folder holds only its manifest, pointing
            # to Milvus. Either store is opened once, where it will stay.
            building = self.root / f"{CREATING}{name}-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            made: Store | None = MilvusStore.create(manifest) if store != LOCAL_STORE else None
            building.mkdir()
            write_durably(building / MANIFEST, manifest.to_json())
            os.replace(building, folder)
            fsync_path(self.root)
            if made is None:
                try:  # the database and index are made by the first open, in place
                    made = LocalStore(folder, manifest)
                except BaseException:
                    self._discard(folder)
                    raise
            collection = Collection(made, embedder, self.calls(embedder), self.reranker)
            self._open[name] = collection
            return collection

    @staticmethod
    def _default_rerank(asked: Rerank | None) -> tuple[str, int]:
        """A collection's default rerank stage as its manifest records it: the cross-encoder
        (found now, so a missing one is refused at once) by its folder or id@revision, and the
        depth; ("", 0) for none."""
        if asked is None or asked.model in ("", rerank.OFF):
            if asked is not None and asked.depth:
                raise InvalidArgument("rerank.model: give the cross-encoder the depth is for")
            return "", 0
        rerank.check(asked)
        source = find_cross_encoder(asked.model)
        return source.reference or str(source.path), asked.depth

    @staticmethod
    def _store(folder: Path, manifest: Manifest) -> Store:
        return LocalStore(folder, manifest) if manifest.store == LOCAL_STORE else MilvusStore(manifest)

    def _model_manifest(self, name: str, model: str | None, index: IndexSpec | None, chunk_tokens: int,
                        overlap_tokens: int, default_mode: str, encoder: str, query_prompt: str | None,
                        document_prompt: str | None) -> tuple[Embedder, Manifest]:
        source = find_model(model)
        embedder = self.embedder(source, encoder)
        own = source.prompts()
        prompts = Prompts(own.query if query_prompt is None else query_prompt,
                          own.document if document_prompt is None else document_prompt)
        # The document prompt goes before every chunk: what it leaves of the window bounds them.
        window = text_window(embedder, prompts.document)
        prompt_note = f" less its document prompt's {embedder.max_seq_length - 2 - window} tokens" if prompts.document else ""
        if window < 8:
            raise InvalidArgument(f"document_prompt: leaves {window} tokens of the model's window for text; shorten it")
        if text_window(embedder, prompts.query) < 1:
            raise InvalidArgument("query_prompt: leaves no room in the model's window for a query; shorten it")
        chunk_tokens = chunk_tokens or window
        if not 8 <= chunk_tokens <= window:
            raise InvalidArgument(
                f"chunk_tokens: must be between 8 and the model's window of {window}{prompt_note},"
                f" got {chunk_tokens}")
        if overlap_tokens < 0:
            overlap_tokens = default_overlap(chunk_tokens)
        return embedder, Manifest(
            name=name,
            model=source.name,
            # Models found by name (the bundled one, whose folder differs per install, and hub
            # models, found in the cache by id and revision) record no path.
            model_path=source.model_path,
            dimension=embedder.dimension,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            index=index or IndexSpec.parse("flat"),
            # What auto chose on this machine: every later write and query uses the same.
            encoder=embedder.encoder,
            default_mode=default_mode,
            model_revision=source.revision,
            query_prompt=prompts.query,
            document_prompt=prompts.document,
        )

    def get(self, name: str, *, expect_model: str | None = None, query_prompt: str | None = None,
            document_prompt: str | None = None) -> Collection:
        """The collection of that name, or the one an alias of that name points to. Given a model
        or prompts, the collection must have been built with them (its contract), or it is refused
        with FailedPrecondition naming what differs."""
        validate_name(name)
        with self._mutex:  # resolved under the mutex: a migration's switch is one or the other
            name = self.aliases.resolve(name)
            collection = self._open.get(name)
            if collection is None:
                collection = self._load(name)
        check_contract(collection.manifest, expect_model, query_prompt, document_prompt)
        return collection

    def _load(self, name: str) -> Collection:
        """Open a collection (under the mutex) and keep it open."""
        manifest = self._manifest(name)
        if manifest is None:
            raise NotFound(f"collection: {name!r} does not exist")
        embedder = None
        if manifest.model != NO_MODEL:
            source = find_model(recorded_model(manifest))
            if manifest.model_revision and source.revision != manifest.model_revision:
                raise FailedPrecondition(
                    f"model: collection {name!r} was built with {manifest.model} at revision"
                    f" {manifest.model_revision}; {source.path} now holds revision {source.revision}."
                    " Put the model it was built with back, or index into a new collection")
            embedder = self.embedder(source, manifest.encoder)
            if embedder.dimension != manifest.dimension:
                raise FailedPrecondition(
                    f"model: {manifest.model} gives dimension {embedder.dimension}, but"
                    f" collection {name!r} holds vectors of dimension {manifest.dimension}")
        collection = Collection(self._store(self.root / name, manifest), embedder, self.calls(embedder),
                                self.reranker)
        self._open[name] = collection
        return collection

    def get_or_create(self, name: str, **kwargs: object) -> Collection:
        if self.exists(name):
            model, query_prompt, document_prompt = (kwargs.get(k) for k in ("model", "query_prompt", "document_prompt"))
            return self.get(name, expect_model=str(model) if model else None,
                            query_prompt=None if query_prompt is None else str(query_prompt),
                            document_prompt=None if document_prompt is None else str(document_prompt))
        return self.create(name, **kwargs)  # type: ignore[arg-type]

    def delete(self, name: str) -> None:
        """Delete a collection without opening it: one that cannot open (its store damaged or
        out of reach, its model gone) is deleted all the same."""
        validate_name(name)
        with self._mutex:
            folder = self.root / name
            if self.aliases.is_alias(name):
                raise FailedPrecondition(f"name: {name!r} is an alias; delete the alias, or the collection by its"
                                         f" own name ({self.aliases.resolve(name)!r})")
            here = (folder / MANIFEST).exists()
            manifest = self._recorded(folder) if here else self._manifest(name)
            if manifest is None and not here:
                raise NotFound(f"collection: {name!r} does not exist")
            # Its aliases go with it (as in Qdrant): an alias never points to nothing.
            for alias in self.aliases.of(name):
                self.aliases.delete(alias)
            collection = self._open.pop(name, None)
            if manifest is not None and manifest.store != LOCAL_STORE:  # its data lives in Milvus
                self._drop_milvus(manifest, pointer_here=here)
                collection = None
            if collection is not None:
                collection.destroy_handles()
            self._discard(folder)

    @staticmethod
    def _recorded(folder: Path) -> Manifest | None:
        """The manifest in a collection's folder, or None when it cannot be read (a damaged
        collection is deleted as a local one: its folder is all there is of it)."""
        try:
            return LocalStore.read_manifest(folder)
        except (OSError, NeardexError):
            return None

    @staticmethod
    def _drop_milvus(manifest: Manifest, pointer_here: bool) -> None:
        """Drop a collection's data in its Milvus instance. One made here is deleted here even
        while its instance is out of reach (its folder is what makes it a collection of this
        server); the data left there is logged."""
        try:
            MilvusStore.drop(manifest)
        except NeardexError as exc:
            if not pointer_here:
                raise
            log.warning("collection %s deleted here; its data in %s stays there: %s", manifest.name,
                        manifest.store, exc)

    def _discard(self, folder: Path) -> None:
        """Remove a collection's folder. Renamed first: a crash midway leaves a folder that is no
        longer a collection, and the next start clears it."""
        if folder.exists():
            trash = self.root / f"{DELETED}{folder.name}-{os.getpid()}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def restore(self, file: Path, name: str, replace: bool = False, store: str | None = None) -> Collection:
        """A collection `name` from a snapshot file; with replace, in place of the collection of
        that name (its aliases keep pointing to the name). `store`: where it is made (None: the
        store the snapshot was taken in; "local", or a Milvus instance). One file restores into
        either store (stores/transfer.py); into Milvus, the rows are copied in pages, without a
        model call, and a collection of that name must not exist (Milvus' collections are named
        after it: there is no making one aside and renaming it into place). A restore into Milvus
        stopped midway (a crash) leaves a collection holding part of the rows in the instance:
        delete it and restore again."""
        validate_name(name)
        with self._mutex:
            folder = self.root / name
            if self.aliases.is_alias(name):
                raise AlreadyExists(f"name: {name!r} is an alias (of {self.aliases.resolve(name)!r})")
            if folder.exists() and not replace:
                raise AlreadyExists(f"name: collection {name!r} already exists; restore with replace, or as another name")
            if not folder.exists() and self._manifest(name) is not None:  # in a Milvus instance
                raise AlreadyExists(f"name: collection {name!r} already exists in Milvus; restore as another name")
            building = self.root / f"{CREATING}{name}-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            try:
                snapshots.unpack(file, building, name)
                taken = LocalStore.read_manifest(building)
                target = store or taken.store or LOCAL_STORE
                if target != LOCAL_STORE and not is_milvus(target):
                    raise InvalidArgument(f"store: {target!r} is neither 'local', milvus://HOST:PORT nor a milvus-lite"
                                          " .db file")
                if target != LOCAL_STORE:
                    self._restore_into_milvus(building, taken, name, target, replacing=folder.exists())
                else:
                    write_durably(building / MANIFEST, dataclasses.replace(taken, store=LOCAL_STORE).to_json())
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            # The replaced collection waits aside until the restored one has opened: a snapshot
            # that cannot open leaves the folder as it found it.
            aside = self.root / f"{DELETED}{name}-{os.getpid()}-replaced"
            if folder.exists():
                old = self._open.pop(name, None)
                if old is not None:
                    old.destroy_handles()
                os.replace(folder, aside)
            os.replace(building, folder)
            try:
                collection = self._load(name)
            except BaseException:
                self._discard(folder)
                if aside.exists():
                    os.replace(aside, folder)
                raise
            finally:
                fsync_path(self.root)
            shutil.rmtree(aside, ignore_errors=True)
        return collection

    # -- migration to another store (catalog/migration.py) ------------------------------------

    def migrate(self, name: str, to: str = "", target: str = "", keep_as: str = "",
                progress: Callable[[str], None] | None = None) -> Migrated:
        """Move collection `name` into store `to` ("local", or a Milvus instance) without embedding
        anything: its rows are copied into a new collection `target` (default NAME-milvus or
        NAME-local) while it goes on serving and being written, caught up by stored hashes, and
        then, with its writes paused for the last round, `name` becomes an alias of the target
        (with the aliases that pointed at it) and the source is kept as `keep_as` (default
        NAME-before-migrate). A migration stopped midway goes on when run again (with the same
        names, or none); see catalog/migration.py."""
        validate_name(name)
        with self._mutex:
            if name in self._migrating:
                raise FailedPrecondition(f"name: collection {name!r} is being migrated by another call; wait for it")
            self._migrating.add(name)
        try:
            return self._migrate(name, to, target, keep_as, progress or (lambda line: None))
        finally:
            with self._mutex:
                self._migrating.discard(name)

    def _migrate(self, name: str, to: str, target: str, keep_as: str, say: Callable[[str], None]) -> Migrated:
        record = migration.read(self.root, name)
        if record is None and self.aliases.is_alias(name):
            # Run again after its switch (completed then, or by this open): done, nothing to copy.
            default_target, default_kept = migration.default_names(name, to or LOCAL_STORE)
            moved = self.manifest_of(name)
            if (moved is not None and to and moved.store == to
                    and self.aliases.resolve(name) == (target or default_target)):
                say(f"{name!r} names {moved.name!r} in {to} already")
                return Migrated(self.get(name), keep_as or default_kept, 0, 0, 0)
        if record is None:
            record = self._plan_migration(name, to, target, keep_as)
            migration.write(self.root, record)
        else:
            for field, given, recorded in (("to", to, record.to), ("target", target, record.target),
                                           ("keep_as", keep_as, record.keep_as)):
                if given and given != recorded:
                    raise FailedPrecondition(
                        f"{field}: a migration of {name!r} to {record.to} as {record.target!r} is under way; run it"
                        " again with its names (or none) to go on, or abort it")
            say(f"going on with the migration of {name!r} to {record.to} as {record.target!r}")
        if record.phase == migration.COPYING:
            source = self.get(name)
            made = self._migration_target(record, source.manifest)
            say(f"copying {name!r} into {record.target!r} in {record.to}")
            rounds, copied, deleted = 0, 0, 0
            while True:
                done = migration.catch_up(source.store, made.store)
                rounds, copied, deleted = rounds + 1, copied + done.copied, deleted + done.deleted
                say(f"round {rounds}: {done.copied} documents copied, {done.deleted} deleted")
                if done.size <= migration.SMALL_ROUND or rounds >= migration.MAX_ROUNDS:
                    break
            with source.writes_paused():
                done = migration.catch_up(source.store, made.store)
                rounds, copied, deleted = rounds + 1, copied + done.copied, deleted + done.deleted
                say(f"round {rounds}, writes paused: {done.copied} documents copied, {done.deleted} deleted")
                self._settle_target(made, source.manifest)
                record = replace(record, phase=migration.SWITCHING)
                migration.write(self.root, record)
                with self._mutex:
                    self._switch(record, source)
        else:
            rounds = copied = deleted = 0
            with self._mutex:
                self._switch(record, None)
        say(f"{name!r} now names {record.target!r} in {record.to}; the source is kept as {record.keep_as!r}")
        return Migrated(self.get(record.target), record.keep_as, copied, deleted, rounds)

    def abort_migration(self, name: str) -> str:
        """Stop a migration that is copying: its target is deleted and the source left as it was;
        returns the target's name. One that reached its switch cannot be stopped (it completes)."""
        record = migration.read(self.root, validate_name(name))
        if record is None:
            raise NotFound(f"name: no migration of {name!r} is under way")
        if record.phase != migration.COPYING:
            raise FailedPrecondition(f"name: the migration of {name!r} is switching; run it again to complete it")
        if self._manifest(record.target) is not None or (self.root / record.target).exists():
            self.delete(record.target)
        migration.remove(self.root, name)
        return record.target

    def _plan_migration(self, name: str, to: str, target: str, keep_as: str) -> migration.Record:
        """A new migration's record, every name and the store checked before anything is made."""
        with self._mutex:
            if self.aliases.is_alias(name):
                raise InvalidArgument(f"name: {name!r} is an alias (of {self.aliases.resolve(name)!r}); migrate the"
                                      " collection by its own name")
            manifest = self._manifest(name)
            if manifest is None:
                raise NotFound(f"collection: {name!r} does not exist")
            if not to:
                raise InvalidArgument(f"to: name the store to move {name!r} to: 'local', milvus://HOST:PORT or a"
                                      " milvus-lite .db file")
            if to != LOCAL_STORE and not is_milvus(to):
                raise InvalidArgument(f"to: {to!r} is neither 'local', milvus://HOST:PORT nor a milvus-lite .db file")
            if to == manifest.store:
                raise InvalidArgument(f"to: collection {name!r} lives in {to} already")
            default_target, default_kept = migration.default_names(name, to)
            target = validate_new_name(target or default_target, "target")
            keep_as = validate_new_name(keep_as or default_kept, "keep_as")
            if len({name, target, keep_as}) < 3:
                raise InvalidArgument(f"target: the target {target!r}, the kept source {keep_as!r} and the"
                                      f" collection {name!r} need three names")
            for field, other, store in (("target", target, to), ("keep_as", keep_as, manifest.store)):
                if self.aliases.is_alias(other):
                    raise AlreadyExists(f"{field}: {other!r} is an alias (of {self.aliases.resolve(other)!r})")
                if self._taken(other, store) or migration.read(self.root, other) is not None:
                    raise AlreadyExists(f"{field}: collection {other!r} already exists")
            return migration.Record(name, to, target, keep_as, manifest.store)

    def _migration_target(self, record: migration.Record, source: Manifest) -> Collection:
        """The migration's target, made from the source's manifest where a run before did not
        make it whole, and opened (made again where a crash stopped its making midway)."""
        made = dataclasses.replace(source, name=record.target, store=record.to, languages={})
        folder = self.root / record.target
        with self._mutex:
            if record.target in self._open:
                return self._open[record.target]
            if record.to != LOCAL_STORE and catalog_manifest(record.to, record.target) is None:
                MilvusStore.drop(made)  # what a create stopped midway left
                MilvusStore.create(made)
            if not (folder / MANIFEST).exists():
                # Written aside and renamed into place, as create does: a local store's database
                # is made by its first open; a Milvus one's folder holds its manifest only.
                building = self.root / f"{CREATING}{record.target}-{os.getpid()}"
                shutil.rmtree(building, ignore_errors=True)
                building.mkdir()
                write_durably(building / MANIFEST, made.to_json())
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(building, folder)
                fsync_path(self.root)
            return self._load(record.target)

    @staticmethod
    def _settle_target(made: Collection, source: Manifest) -> None:
        """The target's manifest given the source's settings of the switch (a ttl or indexed keys
        changed during the copy, the languages counted), its own name and store kept."""
        missing = [k for k in source.indexed_keys if k not in made.manifest.indexed_keys]
        if missing:
            made.store.index_metadata(missing)
        made.store.save_manifest(dataclasses.replace(
            source, name=made.manifest.name, store=made.manifest.store,
            indexed_keys=tuple(dict.fromkeys([*made.manifest.indexed_keys, *source.indexed_keys]))))

    def _switch(self, record: migration.Record, source: Collection | None) -> None:
        """The switch, under the mutex, each step skipped where it was done: the name (and its
        aliases) to the target in one write of the aliases file; the source refused further writes,
        closed and renamed to keep_as; the record removed. Run again after a crash, it finishes."""
        self.aliases.move(record.name, record.target)
        if source is not None:
            source.moved(record.target)
        old = self._open.pop(record.name, None)
        if old is not None:  # an index rebuild under way starts again when the kept copy opens
            old.close(rebuild_wait=0)
        folder, kept = self.root / record.name, self.root / record.keep_as
        if record.source_store != LOCAL_STORE:
            manifest = catalog_manifest(record.source_store, record.name)
            if manifest is not None:
                MilvusStore.rename(manifest, record.keep_as)
        if (folder / MANIFEST).exists() and not kept.exists():
            os.replace(folder, kept)
            fsync_path(self.root)
        if (kept / MANIFEST).exists():
            manifest = LocalStore.read_manifest(kept)
            if manifest.name != record.keep_as:
                write_durably(kept / MANIFEST, dataclasses.replace(manifest, name=record.keep_as).to_json())
        migration.remove(self.root, record.name)

    def _finish_migrations(self) -> None:
        """At open: complete every switch a crash interrupted; leave copying ones to be run again."""
        for record in migration.records(self.root):
            if record.phase != migration.SWITCHING:
                log.warning("collection %s: its migration to %s (as %s) stopped while copying; run `neardex"
                            " migrate %s` again to go on, or with --abort to drop the copy", record.name, record.to,
                            record.target, record.name)
                continue
            try:
                with self._mutex:
                    self._switch(record, None)
                log.info("collection %s: the interrupted switch of its migration to %s completed", record.name,
                         record.target)
            except Exception:  # noqa: BLE001 - the next open or run tries again; the rest of the folder serves
                log.exception("collection %s: completing its migration's switch failed", record.name)

    def manifest_of(self, name: str) -> Manifest | None:
        """The manifest of the collection of that name (an alias's collection), found as every
        open finds it (see _manifest), without opening it; None: there is none."""
        return self._manifest(self.aliases.resolve(validate_name(name)))

    def _restore_into_milvus(self, building: Path, taken: Manifest, name: str, uri: str, replacing: bool) -> None:
        """Fill a new Milvus collection from an unpacked snapshot, and leave in `building` only its
        manifest (pointing there), as a Milvus-backed collection's folder holds."""
        if replacing or self._manifest(name) is not None or catalog_manifest(uri, name) is not None:
            raise FailedPrecondition(f"name: restoring into Milvus makes collection {name!r} anew; delete the one"
                                     " of that name first, or restore as another name")
        manifest = dataclasses.replace(taken, name=name, store=uri)
        made = MilvusStore.create(dataclasses.replace(manifest, languages={}))
        try:
            for page in transfer.local_pages(building, manifest.dimension, time.time()):
                made.write(page.changed, page.prepared, page.vectors)
            made.save_manifest(manifest)  # its recorded languages, not those the copy counted again
        except BaseException:
            MilvusStore.drop(manifest)
            raise
        shutil.rmtree(building)
        building.mkdir()
        write_durably(building / MANIFEST, manifest.to_json())

    def embedder(self, model: str | ModelSource | None, encoder: str) -> Embedder:
        """The loaded model for collections of this folder (shared with other folders'
        collections of the same model and encoder)."""
        # Builds and auto's choices live in the machine's model cache, not the data folder: they
        # cost a torch import and a minute of measurement once per machine, not once per folder.
        return load_embedder(model, encoder, cache_dir=None, device=self.device)

    def calls(self, embedder: Embedder | None) -> ModelCalls | None:
        return self.model_calls(embedder) if embedder is not None else None

    def reranker(self, model: str, field: str = "rerank.model") -> RerankCalls:
        """The road to a cross-encoder (loaded once per process), as rerank_calls makes it."""
        return self.rerank_calls(load_cross_encoder(model, field, device=self.device))

    def purge_expired(self) -> dict[str, int]:
        """Purge the expired documents of every open collection (see Collection.purge_expired);
        returns how many each lost. One that fails is logged and the others go on."""
        with self._mutex:
            collections = dict(self._open)
        purged: dict[str, int] = {}
        for name, collection in collections.items():
            try:
                purged[name] = collection.purge_expired()
            except Exception:  # noqa: BLE001 - a purge is tried again at the next round
                log.exception("collection %s: purging expired documents failed", name)
        return purged

    def close(self, rebuild_wait: float | None = None) -> None:
        """Snapshot and close every open collection; each background index rebuild under way gets
        rebuild_wait seconds to end (None: as long as it takes), then starts again at the next open."""
        with self._mutex:
            for collection in self._open.values():
                collection.close(rebuild_wait)
            self._open.clear()
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_contract(manifest: Manifest, model: str | None = None, query_prompt: str | None = None,
                   document_prompt: str | None = None) -> None:
    """Refuse, with FailedPrecondition naming each difference, a model (its name, and its revision
    where the collection recorded one) or prompts other than those a collection was built with:
    vectors of another model, or made with other prompts, are not comparable with its own."""
    differences: list[tuple[str, str]] = []
    if model is not None:
        source = None if model == NO_MODEL else find_model(model)
        wanted = source.name if source else NO_MODEL
        if wanted != manifest.model:
            raise FailedPrecondition(
                f"model: collection {manifest.name!r} was built with {manifest.model};"
                f" it cannot be opened with {wanted}. Use another collection name or the same model.")
        if source is not None and manifest.model_revision and source.revision != manifest.model_revision:
            differences.append(("model_revision", f"{manifest.model} at revision {manifest.model_revision}, not"
                                                  f" {source.revision}"))
    for field, given, recorded in (("query_prompt", query_prompt, manifest.query_prompt),
                                   ("document_prompt", document_prompt, manifest.document_prompt)):
        if given is not None and given != recorded:
            differences.append((field, f"{field} {recorded!r}, not {given!r}"))
    if differences:
        raise FailedPrecondition(
            f"{differences[0][0]}: collection {manifest.name!r} was built with "
            + "; ".join(what for _, what in differences)
            + ". Use another collection name, or the model and prompts it was built with.")
