"""The neardex command: index, serve, search, ask, eval, keys."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from neardex.indexer.errors import NeardexError
from neardex.indexer.readers import FORMATS, FieldNames, Ignored, ReadError, count_documents, read_documents

DEFAULT_SERVER = "localhost:50051"
KEYS_FILE_ENV = "NEARDEX_API_KEYS_FILE"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("neardex").setLevel(logging.INFO)
    try:
        return int(args.run(args) or 0)
    except (NeardexError, ReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the client's errors, raised by commands that talk to a server
        from neardex.client import NeardexError as ClientError

        if isinstance(exc, ClientError):
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 2
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neardex-server")
    except PackageNotFoundError:
        return "unknown"


def _setting(name: str, what: str = "") -> str:
    """'(default: X; NEARDEX_NAME)' for a server setting, read from Settings itself."""
    from .settings import Settings

    default = Settings.model_fields[name].default
    shown = what or ("none" if default is None else default)
    return f"(default: {shown}; ${'NEARDEX_' + name.upper()})"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neardex", description="Embedding search service")
    parser.add_argument("--version", action="version", version=f"neardex {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index a document collection",
                       description="Read documents, cut them into model-token chunks, embed and store"
                                   " them; unchanged documents are skipped on a re-run.")
    p.add_argument("path", type=Path, help="a JSONL, CSV or TSV file, a BEIR folder, a folder of"
                                           " .txt/.md/.html files, or one such file")
    p.add_argument("--collection", required=True, help="collection to write (created when missing)")
    p.add_argument("--data-dir", type=Path, default=None, help=f"data folder {_setting('data_dir')}")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="send documents through a running server instead of writing --data-dir")
    add_connection_options(p)
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="input format (default: auto, from the file name or folder layout)")
    p.add_argument("--id-field", action="append", default=None, metavar="KEY",
                   help="JSONL/CSV key holding the id; repeatable, first present wins (default: id, then _id)")
    p.add_argument("--text-field", default="text", metavar="KEY", help="JSONL/CSV key holding the text (default: text)")
    p.add_argument("--title-field", default="title", metavar="KEY",
                   help="JSONL/CSV key holding the title, embedded with every chunk (default: title)")
    p.add_argument("--chunk-tokens", type=int, default=0, metavar="N",
                   help="chunk size in model tokens, new collections (default: the model's window, 254 for the bundled model)")
    p.add_argument("--overlap-tokens", type=int, default=-1, metavar="N",
                   help="tokens shared by consecutive chunks, new collections (default: 1/8 of the chunk size, at most 32)")
    p.add_argument("--model", default=None, metavar="FOLDER",
                   help="sentence-transformers model folder, new collections (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--index", default="flat", type=index_spec, metavar="KIND[:PARAMS]",
                   help="vector index of a new collection: flat, hnsw, ivfpq or auto, with parameters,"
                        " e.g. hnsw:m=32,ef_search=256 (default: flat)")
    p.add_argument("--encoder", default="", choices=("", "torch", "onnx-int8"),
                   help=f"encoder of a new collection {_setting('default_encoder')}")
    p.add_argument("--mode", default="", choices=("", "dense", "lexical", "hybrid"),
                   help="default search mode of a new collection (default: hybrid)")
    p.add_argument("--delete-missing", action="store_true", help="remove stored documents absent from PATH")
    p.add_argument("--skip-errors", action="store_true",
                   help="skip malformed records and unreadable files (each reported) instead of stopping")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N",
                   help="documents per write; each write is acknowledged whole (default: 256)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_index)

    p = sub.add_parser("serve", help="serve every collection of a data folder over gRPC",
                       description="Serve a data folder's collections over gRPC, with Prometheus metrics on"
                                   " their own port. Every option can also be set by its NEARDEX_* variable.")
    p.add_argument("--data-dir", type=Path, default=None, help=f"data folder {_setting('data_dir')}")
    p.add_argument("--host", default=None, help=f"address to listen on {_setting('host')}")
    p.add_argument("--port", type=port_number, default=None, help=f"gRPC port, 0 picks a free one {_setting('port')}")
    p.add_argument("--metrics-port", type=port_number, default=None,
                   help=f"Prometheus metrics port, 0 turns it off {_setting('metrics_port')}")
    p.add_argument("--http-port", type=int, default=None, metavar="PORT",
                   help="also serve every unary RPC as HTTP/JSON (the Connect protocol's unary shape) on"
                        f" this port; -1 for none {_setting('http_port', '-1, none')}")
    p.add_argument("--batch-max-size", type=positive_int, default=None, metavar="N",
                   help=f"texts per query model call; 1 turns micro-batching off {_setting('batch_max_size')}")
    p.add_argument("--max-concurrent-rpcs", type=positive_int, default=None, metavar="N",
                   help=f"calls held at once; more are refused with RESOURCE_EXHAUSTED {_setting('max_concurrent_rpcs')}")
    p.add_argument("--api-keys", type=Path, default=None, metavar="FILE",
                   help="require API keys listed in FILE, reloaded when it changes or on SIGHUP;"
                        f" see `neardex keys create` {_setting('api_keys_file', 'none: every call allowed')}")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                   help=f"serve TLS only, with this certificate chain {_setting('tls_cert')}")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM",
                   help=f"the certificate's private key {_setting('tls_key')}")
    p.add_argument("--tls-client-ca", type=Path, default=None, metavar="PEM",
                   help=f"also require client certificates signed by this CA: mutual TLS {_setting('tls_client_ca')}")
    p.set_defaults(run=cmd_serve)

    for name, help_text in (("search", "semantic search"), ("ask", "question-answering retrieval")):
        p = sub.add_parser(name, help=f"{help_text} against a running server")
        p.add_argument("collection", help="collection to search")
        p.add_argument("query", help="the question" if name == "ask" else "query text")
        k = 10 if name == "search" else 5
        p.add_argument("--k", type=positive_int, default=k, help=f"results to return (default: {k})")
        p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                       help="metadata condition: key=value, key>=n, key>n, key<=n, key<n (repeatable; all must hold)")
        p.add_argument("--mode", default=None, choices=("dense", "lexical", "hybrid"),
                       help="retrieval mode (default: the collection's)")
        p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"server (default: {DEFAULT_SERVER})")
        add_connection_options(p)
        p.add_argument("--json", action="store_true", help="print the whole result as JSON")
        p.set_defaults(run=cmd_search if name == "search" else cmd_ask)

    p = sub.add_parser("similar", help="documents like stored ones, from their vectors, against a running server")
    p.add_argument("collection", help="collection to search")
    p.add_argument("ids", nargs="+", metavar="ID", help="stored documents to find more of")
    p.add_argument("--negative", action="append", default=[], metavar="ID",
                   help="a stored document to move away from (repeatable)")
    p.add_argument("--k", type=positive_int, default=10, help="results to return (default: 10)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata condition, as for search (repeatable)")
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"server (default: {DEFAULT_SERVER})")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(run=cmd_similar)

    p = sub.add_parser("similarity", help="cosine similarity of texts, against a running server")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="two texts (their similarity), or more (every pair)")
    p.add_argument("--collection", default=None, help="use this collection's model (default: the server's default model)")
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"server (default: {DEFAULT_SERVER})")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")
    p.set_defaults(run=cmd_similarity)

    p = sub.add_parser("tokenize", help="the model's tokens of a text and where the chunker cuts it")
    p.add_argument("collection", help="collection whose model and chunking to use; - for the server's default model")
    p.add_argument("text", help="the text")
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"server (default: {DEFAULT_SERVER})")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(run=cmd_tokenize)

    p = sub.add_parser("snapshot", help="snapshots of collections: create, list, restore on a server; load a file")
    snap = p.add_subparsers(required=True, metavar="ACTION")
    s_create = snap.add_parser("create", help="a consistent snapshot of a collection, taken while writes go on")
    s_create.add_argument("collection")
    s_create.set_defaults(run=cmd_snapshot_create)
    s_list = snap.add_parser("list", help="the snapshots of a collection")
    s_list.add_argument("collection")
    s_list.set_defaults(run=cmd_snapshot_list)
    s_restore = snap.add_parser("restore", help="restore one of the server's snapshots")
    s_restore.add_argument("collection", help="the collection the snapshot was taken of")
    s_restore.add_argument("snapshot", help="the snapshot's name (see snapshot list)")
    s_restore.add_argument("--as", dest="target", default=None, metavar="NAME",
                           help="name of the restored collection (default: the collection itself, with --replace)")
    s_restore.add_argument("--replace", action="store_true", help="in place of an existing collection of that name")
    s_restore.set_defaults(run=cmd_snapshot_restore)
    for action in (s_create, s_list, s_restore):
        action.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                            help=f"server (default: {DEFAULT_SERVER})")
        add_connection_options(action)
    s_load = snap.add_parser("load", help="a snapshot file into a data folder (no server may hold it)")
    s_load.add_argument("file", type=Path, help="a .snapshot file (found in DATA_DIR/.snapshots/COLLECTION/)")
    s_load.add_argument("--collection", required=True, help="name of the collection it becomes")
    s_load.add_argument("--data-dir", type=Path, default=None, help=f"data folder {_setting('data_dir')}")
    s_load.add_argument("--replace", action="store_true", help="in place of an existing collection of that name")
    s_load.set_defaults(run=cmd_snapshot_load)

    p = sub.add_parser("alias", help="aliases of collections on a server: create (or switch), delete, list")
    alias = p.add_subparsers(required=True, metavar="ACTION")
    a_create = alias.add_parser("create", help="point an alias at a collection")
    a_create.add_argument("name")
    a_create.add_argument("collection")
    a_create.add_argument("--replace", action="store_true", help="switch an existing alias to the collection")
    a_create.set_defaults(run=cmd_alias_create)
    a_delete = alias.add_parser("delete", help="remove an alias (the collection stays)")
    a_delete.add_argument("name")
    a_delete.set_defaults(run=cmd_alias_delete)
    a_list = alias.add_parser("list", help="every alias and its collection")
    a_list.set_defaults(run=cmd_alias_list)
    for action in (a_create, a_delete, a_list):
        action.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                            help=f"server (default: {DEFAULT_SERVER})")
        add_connection_options(action)

    p = sub.add_parser("keys", help="create, list and revoke API keys in a keys file")
    keys = p.add_subparsers(required=True, metavar="ACTION")
    k = keys.add_parser("create", help="make a key, print it once and store only its hash")
    k.add_argument("--name", required=True, help="who the key is for; shown in refusals and the list")
    k.add_argument("--role", required=True, choices=("read", "write", "admin"))
    k.add_argument("--collections", default="", metavar="PATTERNS",
                   help="comma-separated collection names or globs the key may touch (default: all)")
    k.set_defaults(run=cmd_keys_create)
    k_list = keys.add_parser("list", help="names, roles and collections of the keys (never the keys)")
    k_list.set_defaults(run=cmd_keys_list)
    k_revoke = keys.add_parser("revoke", help="remove a key; a running server stops accepting it")
    k_revoke.add_argument("name")
    k_revoke.set_defaults(run=cmd_keys_revoke)
    for action in (k, k_list, k_revoke):
        action.add_argument("--file", type=Path, default=None,
                            help=f"the keys file (default: ${KEYS_FILE_ENV})")

    p = sub.add_parser("check", help="verify that a data folder's stores and indexes agree")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("--collection", default=None, help="check this collection only (default: all)")
    p.add_argument("--repair", action="store_true",
                   help="rebuild the lexical and vector indexes from the store where they disagree")
    p.add_argument("--json", action="store_true", help="one JSON report per collection")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("eval", help="retrieval quality on a BEIR folder")
    p.add_argument("beir_dir", type=Path, metavar="BEIR_DIR", help="corpus.jsonl, queries.jsonl and qrels/test.tsv")
    p.add_argument("--mode", default="hybrid", help="dense, lexical, hybrid or ask (default: hybrid)")
    p.add_argument("--compare", action="store_true", help="every mode, one table")
    p.add_argument("--k", type=positive_int, default=10, help="cut-off of nDCG and MRR (default: 10)")
    p.add_argument("--collection", default=None, help="reuse this collection of --data-dir instead of indexing")
    p.add_argument("--data-dir", type=Path, default=None, help="keep the index here (default: a temporary folder)")
    p.add_argument("--encoder", default="", choices=("", "torch", "onnx-int8"),
                   help=f"encoder {_setting('default_encoder')}")
    p.add_argument("--index", default="flat", type=index_spec, metavar="KIND[:PARAMS]",
                   help="vector index (default: flat)")
    p.add_argument("--json", action="store_true", help="one JSON line per mode")
    p.set_defaults(run=cmd_eval)
    return parser


# -- index ------------------------------------------------------------------------------------


def index_spec(text: str) -> Any:
    """KIND or KIND:NAME=N,NAME=N (e.g. hnsw:m=16,ef_search=256) as an IndexSpec."""
    from neardex.indexer.vector_index import IndexSpec

    kind, _, rest = text.partition(":")
    params: dict[str, int] = {}
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=N (a whole number)")
        params[name.strip()] = int(value)
    try:
        return IndexSpec.parse(kind, params)
    except NeardexError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _documents(args: argparse.Namespace, skipped: list[ReadError], ignored: list[Ignored]) -> Iterator[Any]:
    fields = FieldNames(id=tuple(args.id_field or ("id", "_id")), text=args.text_field,
                        title=args.title_field)

    def on_skip(err: ReadError) -> None:
        if isinstance(err, Ignored):
            ignored.append(err)
            return
        skipped.append(err)
        print(f"skipped: {err}", file=sys.stderr)

    return read_documents(args.path, args.format, fields, args.skip_errors, on_skip)


class _Progress:
    """Documents and chunks per second, from the first document written (not the model load), with
    a percentage and ETA when the input's size is known."""

    def __init__(self, quiet: bool, total: int | None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="doc", total=total, disable=quiet, dynamic_ncols=True, file=sys.stderr)
        self.chunks = 0
        self.started = time.perf_counter()

    def __call__(self, documents: int, chunks: int) -> None:
        self.chunks += chunks
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.chunks / elapsed:.1f} chunks/s", refresh=False)
        self.bar.update(documents)

    def close(self) -> None:
        self.bar.close()


def _ignored_note(ignored: list[Ignored]) -> str:
    if not ignored:
        return ""
    kinds = Counter(Path(e.path).suffix.lower() or "(none)" for e in ignored)
    return f", {len(ignored)} files ignored ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})"


def cmd_index(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import validate_name
    from neardex.indexer.pipeline import index_documents

    validate_name(args.collection, "--collection")
    skipped: list[ReadError] = []
    ignored: list[Ignored] = []
    documents = _documents(args, skipped, ignored)
    # The first batch is read before anything is created: input that fails at once, or holds no
    # documents, leaves no empty collection behind.
    first = list(itertools.islice(documents, args.batch_size))
    if not first:
        raise NeardexError(f"{args.path}: no documents to index ({len(skipped)} skipped{_ignored_note(ignored)});"
                           f" nothing was written")
    total = count_documents(args.path, args.format)
    with (_remote_target(args) if args.server else _local_target(args)) as target:
        progress = _Progress(args.quiet, total)
        try:
            summary = index_documents(target, itertools.chain(first, documents), delete_missing=args.delete_missing,
                                      batch_size=args.batch_size, progress=progress)
        finally:
            progress.close()
    print(
        f"indexed {summary.documents} documents into {args.collection!r}: {summary.upserted} written,"
        f" {summary.unchanged} unchanged, {summary.deleted} deleted, {summary.chunks} chunks,"
        f" {summary.tokens} tokens, {len(skipped)} skipped{_ignored_note(ignored)}, {summary.seconds:.1f} s"
        f" ({summary.documents / max(summary.seconds, 1e-9):.1f} documents/s)"
    )
    return 0


def _collection_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(model=args.model, index=args.index, chunk_tokens=args.chunk_tokens,
                overlap_tokens=args.overlap_tokens, default_mode=args.mode, encoder=args.encoder)


@contextlib.contextmanager
def _local_target(args: argparse.Namespace) -> Iterator[Any]:
    """The collection in --data-dir. A run that fails before its first write removes the
    collection it created, and the data folder too when it made it and left it empty."""
    from neardex.indexer.catalog import LOCK_FILE, Catalog

    from .settings import Settings

    data_dir = Path(args.data_dir or Settings().data_dir)
    made_dir = not data_dir.exists()
    try:
        with Catalog(data_dir, default_encoder=Settings().default_encoder) as catalog:
            existed = catalog.exists(args.collection)
            collection = catalog.get_or_create(args.collection, **_collection_options(args))
            try:
                yield collection
            except BaseException:
                if not existed and collection.stats().documents == 0:
                    catalog.delete(args.collection)
                raise
    finally:
        if made_dir and data_dir.is_dir() and {p.name for p in data_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(data_dir, ignore_errors=True)


class _RemoteTarget:
    """A collection behind a server, written through the client."""

    def __init__(self, client: Any, collection: str) -> None:
        self.client = client
        self.collection = collection

    def upsert(self, documents: Sequence[Any]) -> Any:
        from neardex.client import Document as WireDocument

        return self.client.upsert(self.collection, [WireDocument(id=d.id, text=d.text, title=d.title,
                                                                 metadata=d.metadata) for d in documents],
                                  batch_size=max(len(documents), 1))

    def all_ids(self) -> set[str]:
        pages = self.client.scroll_all(self.collection, page_size=1000, text=False, metadata=False)
        return {d.id for d in pages}

    def delete(self, ids: Sequence[str]) -> int:
        return int(self.client.delete(self.collection, list(ids))) if ids else 0

    def checkpoint(self) -> None:
        """The server snapshots on its own schedule."""


@contextlib.contextmanager
def _remote_target(args: argparse.Namespace) -> Iterator[_RemoteTarget]:
    with connect(args, timeout=600) as client:
        client.create_collection(
            args.collection, model=args.model, index={"kind": args.index.kind, **args.index.params},
            chunk_tokens=args.chunk_tokens or None,
            overlap_tokens=args.overlap_tokens if args.overlap_tokens >= 0 else None,
            default_mode=args.mode or None, encoder=args.encoder or None, exist_ok=True)
        yield _RemoteTarget(client, args.collection)


# -- serve ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import serve
    from .settings import Settings

    overrides = {k: v for k, v in {
        "data_dir": args.data_dir, "host": args.host, "port": args.port,
        "metrics_port": args.metrics_port, "batch_max_size": args.batch_max_size, "http_port": args.http_port,
        "max_concurrent_rpcs": args.max_concurrent_rpcs, "api_keys_file": args.api_keys,
        "tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls_client_ca": args.tls_client_ca,
    }.items() if v is not None}
    settings = Settings(**overrides)

    def ready(server: Any, port: int) -> None:
        names = server.catalog.names()
        metrics = f"http://{settings.host}:{settings.metrics_port}/metrics" if settings.metrics_port else "off"
        http = f"; HTTP/JSON: {settings.host}:{server.http_port}" if server.http_server is not None else ""
        print(f"neardex serving {len(names)} collection(s) {names} from {settings.data_dir}"
              f" on {settings.host}:{port} (metrics: {metrics}{http})", flush=True)
        example = names[0] if names else "NAME"
        command = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "neardex" else "neardex"
        print(f"try: {command} search {example} \"your question\" --server {settings.host}:{port}", flush=True)

    serve(settings, ready)
    return 0


# -- snapshots and aliases --------------------------------------------------------------------


def cmd_snapshot_create(args: argparse.Namespace) -> int:
    with connect(args, timeout=3600) as client:
        snapshot = client.create_snapshot(args.collection)
    print(f"{snapshot.name} {snapshot.bytes} bytes")
    return 0


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for snapshot in client.snapshots(args.collection):
            print(f"{snapshot.name}\t{snapshot.bytes}\t{snapshot.created}")
    return 0


def cmd_snapshot_restore(args: argparse.Namespace) -> int:
    with connect(args, timeout=3600) as client:
        info = client.restore_snapshot(args.collection, args.snapshot, target=args.target, replace=args.replace)
    print(f"restored {info.name!r}: {info.documents} documents")
    return 0


def cmd_snapshot_load(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog

    from .settings import Settings

    if not args.file.is_file():
        raise NeardexError(f"file: {args.file} is not a file")
    with Catalog(args.data_dir or Settings().data_dir) as catalog:
        collection = catalog.restore(args.file, args.collection, replace=args.replace)
        stats = collection.stats()
    print(f"loaded {args.collection!r} from {args.file.name}: {stats.documents} documents")
    return 0


def cmd_alias_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        alias = client.create_alias(args.name, args.collection, replace=args.replace)
    print(f"{alias.name} -> {alias.collection}")
    return 0


def cmd_alias_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.delete_alias(args.name)
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for alias in client.aliases():
            print(f"{alias.name} -> {alias.collection}")
    return 0


# -- check ------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog, validate_name
    from neardex.indexer.check import check

    if not args.data_dir.is_dir():
        raise NeardexError(f"DATA_DIR: {args.data_dir} is not a folder")
    # The folder's lock: nothing writes while it is checked or repaired.
    with Catalog(args.data_dir) as catalog:
        names = [validate_name(args.collection, "--collection")] if args.collection else catalog.names()
        if args.collection and not catalog.exists(args.collection):
            raise NeardexError(f"--collection: {args.collection!r} does not exist in {args.data_dir}")
        reports = [check(catalog.root / name, repair=args.repair) for name in names]
    for report in reports:
        if args.json:
            print(report.to_json())
            continue
        for line in report.repaired:
            print(f"{report.collection}: repaired: {line}")
        for line in report.problems:
            print(f"{report.collection}: {line}")
        if report.ok:
            print(f"ok: {report.summary()}")
    if not reports and not args.json:
        print(f"ok: no collections in {args.data_dir}")
    return 0 if all(r.ok for r in reports) else 1


# -- talking to a server ----------------------------------------------------------------------


def add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-key", default=None, help="API key sent with every call (default: $NEARDEX_API_KEY)")
    p.add_argument("--tls", action="store_true", default=None,
                   help="connect over TLS (default: on when $NEARDEX_TLS is 1 or a CA / client certificate is given)")
    p.add_argument("--ca-cert", type=Path, default=None, metavar="PEM",
                   help="CA that signed the server's certificate (default: $NEARDEX_CA_CERT, else the system's)")
    p.add_argument("--client-cert", type=Path, default=None, metavar="PEM",
                   help="client certificate for mutual TLS (default: $NEARDEX_CLIENT_CERT)")
    p.add_argument("--client-key", type=Path, default=None, metavar="PEM",
                   help="its private key (default: $NEARDEX_CLIENT_KEY)")


def connect(args: argparse.Namespace, timeout: float = 10.0) -> Any:
    """A client for --server with the connection options, flags over NEARDEX_* variables."""
    from neardex.client import Client

    def env_path(value: Path | None, name: str) -> Path | None:
        return value if value is not None else (Path(os.environ[name]) if os.environ.get(name) else None)

    tls = args.tls if args.tls is not None else os.environ.get("NEARDEX_TLS", "") in ("1", "true", "yes")
    return Client(args.server, timeout=timeout, api_key=args.api_key, tls=tls,
                  ca_cert=env_path(args.ca_cert, "NEARDEX_CA_CERT"),
                  client_cert=env_path(args.client_cert, "NEARDEX_CLIENT_CERT"),
                  client_key=env_path(args.client_key, "NEARDEX_CLIENT_KEY"))


# -- keys -------------------------------------------------------------------------------------


def _keys_file(args: argparse.Namespace) -> Path:
    path = args.file or (Path(os.environ[KEYS_FILE_ENV]) if os.environ.get(KEYS_FILE_ENV) else None)
    if path is None:
        raise NeardexError(f"--file: name the keys file (or set {KEYS_FILE_ENV})")
    return Path(path)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from .auth import create_key

    path = _keys_file(args)
    key = create_key(path, args.name, args.role, args.collections)
    print(f"created key {args.name!r} (role {args.role}) in {path}; it is shown once, store it now:",
          file=sys.stderr)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from .auth import read_keys

    keys = read_keys(_keys_file(args))
    for key in keys:
        print(f"{key.name}\t{key.role}\t{','.join(key.collections) or '*'}\t{key.created}")
    if not keys:
        print("no keys", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from .auth import revoke_key

    path = _keys_file(args)
    revoke_key(path, args.name)
    print(f"revoked key {args.name!r} in {path}", file=sys.stderr)
    return 0


# -- search and ask ---------------------------------------------------------------------------


def parse_filters(items: Sequence[str]) -> dict[str, Any]:
    """key=value (value read as JSON where it parses, else a string), key>=n, key>n, key<=n, key<n."""
    result: dict[str, Any] = {}
    for item in items:
        for op, name in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in item:
                key, raw = item.split(op, 1)
                key = key.strip()
                if not key:
                    raise NeardexError(f"--filter: {item!r} has no key before {op!r}")
                if name is None:
                    try:
                        result[key] = json.loads(raw)
                    except json.JSONDecodeError:
                        result[key] = raw
                else:
                    result.setdefault(key, {})[name] = _number(raw, item, op)
                break
        else:
            raise NeardexError(f"--filter: {item!r} is not KEY=VALUE, KEY>=N, KEY>N, KEY<=N or KEY<N")
    return result


def _number(raw: str, item: str, op: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise NeardexError(f"--filter: {item!r}: {op} needs a number after it, got {raw.strip()!r}")
    return value


def cmd_search(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.search(args.collection, args.query, k=args.k,
                               filter=parse_filters(args.filter) or None, mode=args.mode)
    return _print_hits(result, args.json)


def cmd_similar(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.similar(args.collection, args.ids, negative=args.negative or None, k=args.k,
                                filter=parse_filters(args.filter) or None)
    return _print_hits(result, args.json)


def _print_hits(result: Any, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
        return 0
    for rank, hit in enumerate(result.hits, 1):
        title = f" {hit.title}" if hit.title else ""
        print(f"{rank:>3}. {hit.score:.3f} {hit.id}{title}")
        print(f"     {_snippet(hit.text)}")
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    print(f"({len(result.hits)} hits; {timings})")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.ask(args.collection, args.query, k=args.k,
                            filter=parse_filters(args.filter) or None, mode=args.mode)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    for rank, answer in enumerate(result.answers, 1):
        print(f"{rank:>3}. {answer.confidence:.3f} {answer.passage.id}")
        print(f"     answer: {answer.sentence}")
        print(f"     passage: {_snippet(answer.passage.text)}")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    with connect(args) as client:
        matrix = client.similarity(args.texts, collection=args.collection)
    if args.json:
        print(json.dumps(matrix))
    elif len(args.texts) == 2:
        print(f"{matrix[0][1]:.4f}")
    else:
        for i, row in enumerate(matrix):
            print(f"{i:>3}. " + " ".join(f"{v:6.3f}" for v in row) + f"  {_snippet(args.texts[i], 60)}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.tokenize(args.text, collection=None if args.collection == "-" else args.collection)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(result.readable())
    fit = "fits" if result.fits else "does not fit"
    print(f"{result.count} tokens ({result.model}); {fit} one model call of {result.window} tokens;"
          f" {len(result.chunks)} chunk(s):")
    for chunk in result.chunks:
        print(f"  chunk {chunk.index}: characters {chunk.start}-{chunk.end}, {chunk.tokens} tokens:"
              f" {_snippet(args.text[chunk.start:chunk.end], 100)}")
    return 0


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- eval -------------------------------------------------------------------------------------


EVAL_MODES = ("dense", "lexical", "hybrid", "ask")


def cmd_eval(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.errors import InvalidArgument
    from neardex.indexer.pipeline import index_documents
    from neardex.indexer.readers import read_beir

    from .evaluation import evaluate, load_judged

    modes = list(EVAL_MODES) if args.compare else [args.mode]
    for mode in modes:
        if mode not in EVAL_MODES:
            raise InvalidArgument(f"--mode: unknown mode {mode!r}; expected one of {EVAL_MODES}")
    judged = load_judged(args.beir_dir)
    reports = []
    with tempfile.TemporaryDirectory(prefix="neardex-eval-") as tmp:
        with Catalog(args.data_dir or Path(tmp)) as catalog:
            if args.collection and catalog.exists(args.collection):
                collection = catalog.get(args.collection)
            else:
                collection = catalog.create(args.collection or "eval", encoder=args.encoder,
                                            index=args.index)
                progress = _Progress(args.json, count_documents(args.beir_dir, "beir"))
                index_documents(collection, read_beir(args.beir_dir), progress=progress)
                progress.close()
            documents = collection.stats().documents
            for mode in modes:
                scores = evaluate(judged, _ranking(collection, mode, args.k))
                reports.append({**scores, "queries": len(judged.queries), "documents": documents,
                                "mode": mode})
    if args.json:
        for report in reports:
            print(json.dumps(report))
        return 0
    print(f"{args.beir_dir.name}: {len(judged.queries)} judged queries, {reports[0]['documents']} documents")
    print(f"{'mode':<8} {'nDCG@10':>8} {'MRR@10':>8} {'R@100':>8}")
    for r in reports:
        print(f"{r['mode']:<8} {r['ndcg@10']:>8.4f} {r['mrr@10']:>8.4f} {r['recall@100']:>8.4f}")
    return 0


def _ranking(collection: Any, mode: str, k: int) -> Any:
    """Document ids best first, at least 100 of them (Recall@100 needs that many)."""
    depth = max(k, 100)
    if mode != "ask":
        return lambda text: [h.id for h in collection.search(text=text, k=depth, mode=mode).hits]
    from neardex.indexer.answers import Answerer

    answerer = Answerer(collection)

    def ask(text: str) -> list[str]:
        # Ask reorders the head; the collection's default ranking continues below it.
        head = [a.passage.id for a in answerer.ask(text, k=k).answers]
        tail = [h.id for h in collection.search(text=text, k=depth).hits if h.id not in head]
        return head + tail

    return ask


if __name__ == "__main__":
    sys.exit(main())
