"""The commands of the neardex command that work on data folders and model caches: index, serve,
eval, check, migrate, keys, snapshot load, models pull. The command itself, and every command that only
talks to a server, is the client distribution's (neardex.client.cli); this distribution's
``neardex.commands`` entry point, :func:`register`, adds these when it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neardex.client.options import add_connection_options, connect, positive_int
from neardex.indexer.embedding.embedder import AUTO, ENCODERS
from neardex.indexer.errors import NeardexError
from neardex.indexer.ingest.readers import (
    FORMATS,
    FieldNames,
    Ignored,
    ReadError,
    count_documents,
    read_documents,
)

KEYS_FILE_ENV = "NEARDEX_API_KEYS_FILE"
EVAL_MODES = ("dense", "lexical", "hybrid", "ask")


def register(sub: Any, groups: dict[str, Any]) -> tuple[type[Exception], ...]:
    """Add the data-folder commands to the neardex parser (``snapshot load`` to the ``snapshot``
    group); returns the exceptions they report as one clean line."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("neardex").setLevel(logging.INFO)
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
    p.add_argument("--model", default=None, metavar="FOLDER|ORG/NAME[@REV]",
                   help="sentence-transformers model of a new collection: a folder, or a Hugging Face id found in the"
                        " Hugging Face cache (downloaded when the network allows; see `neardex models pull`)"
                        " (default: the bundled all-MiniLM-L6-v2)")
    for side, example in (("query", "query: "), ("document", "passage: ")):
        p.add_argument(f"--{side}-prompt", default=None, metavar="TEXT",
                       help=f"text put before each {side} the model embeds, new collections, e.g. {example!r}; \"\" for"
                            f" none (default: the model's own {side} prompt, if it has one)")
    p.add_argument("--rerank", default=None, metavar="FOLDER|ORG/NAME[@REV]",
                   help="a cross-encoder reordering the best candidates of every search and question of a new"
                        " collection, unless a request names its own (default: none)")
    p.add_argument("--rerank-depth", type=int, default=0, metavar="N",
                   help="candidates that cross-encoder reads, at most 1000 (default: 50)")
    p.add_argument("--index", default="flat", type=index_spec, metavar="KIND[:PARAMS]",
                   help="vector index of a new collection: flat, hnsw, ivfpq or auto, with parameters,"
                        " e.g. hnsw:m=32,ef_search=256 (default: flat)")
    p.add_argument("--encoder", default="", choices=("", AUTO, *ENCODERS),
                   help=f"encoder of a new collection {_setting('default_encoder')}")
    p.add_argument("--mode", default="", choices=("", "dense", "lexical", "hybrid"),
                   help="default search mode of a new collection (default: hybrid)")
    _language_option(p, " of a new collection")
    p.add_argument("--ttl", type=seconds, default=None, metavar="SECONDS",
                   help="documents written without an expires_at field expire SECONDS after their write"
                        " (the collection's ttl, set on a new collection or changed on an existing one; 0: never)")
    _device_option(p, " here (not with --server)")
    p.add_argument("--store", default="", metavar="URI",
                   help="where a new collection's data lives: local (the data folder, default),"
                        " milvus://HOST:PORT, or a milvus-lite .db file")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="chunk and embed on Ray (an actor pool, one GPU per actor where the cluster has GPUs):"
                        " a local Ray without ADDRESS, or the cluster at ADDRESS (e.g. ray://head:10001)")
    p.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                   help="embedding actors with --ray (default: one per GPU, else one per two CPUs)")
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
    p.add_argument("--metrics-host", default=None, metavar="HOST",
                   help="address the metrics port listens on (default: --host); with --api-keys a scrape"
                        " needs a key of role metrics or admin")
    p.add_argument("--http-port", type=int, default=None, metavar="PORT",
                   help="also serve every RPC over HTTP (the Connect protocol: JSON or protobuf) on"
                        f" this port; -1 for none {_setting('http_port', '-1, none')}")
    p.add_argument("--console", action=argparse.BooleanOptionalAction, default=None,
                   help="the web console at / of the HTTP port: collections, search, ask, tokens, similarity"
                        f" and a map of the vectors, through the same API and keys {_setting('console', 'on')}")
    p.add_argument("--batch-max-size", type=positive_int, default=None, metavar="N",
                   help=f"texts per query model call; 1 turns micro-batching off {_setting('batch_max_size')}")
    _device_option(p)
    p.add_argument("--document-batch-size", type=positive_int, default=None, metavar="N",
                   help="texts of an upsert per model call; a search arriving during indexing waits for at most"
                        f" one such call {_setting('document_batch_size')}")
    p.add_argument("--max-concurrent-rpcs", type=positive_int, default=None, metavar="N",
                   help=f"calls held at once; more are refused with RESOURCE_EXHAUSTED {_setting('max_concurrent_rpcs')}")
    p.add_argument("--milvus", action="append", default=None, metavar="URI",
                   help="also serve the neardex collections of this Milvus instance (milvus://HOST:PORT,"
                        " or a milvus-lite .db file); repeatable (default: none; $NEARDEX_MILVUS as a JSON list)")
    p.add_argument("--allow-store", action="append", default=None, metavar="URI|FOLDER",
                   help="a store that CreateCollection requests may name besides the data folder and the --milvus"
                        " instances: milvus://HOST:PORT, a milvus-lite .db file, or a folder where .db files may be"
                        " made; repeatable (default: none; $NEARDEX_ALLOW_STORE as a JSON list)")
    p.add_argument("--model-dir", type=Path, default=None, metavar="FOLDER",
                   help="requests may name models in folders under this one, by path or relative to it"
                        f" {_setting('model_dir', 'none: the bundled model only')}")
    p.add_argument("--api-keys", type=Path, default=None, metavar="FILE",
                   help="require API keys listed in FILE, reloaded when it changes or on SIGHUP;"
                        f" see `neardex keys create` {_setting('api_keys_file', 'none: every call allowed')}")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                   help=f"serve TLS only, with this certificate chain {_setting('tls_cert')}")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM",
                   help=f"the certificate's private key {_setting('tls_key')}")
    p.add_argument("--tls-client-ca", type=Path, default=None, metavar="PEM",
                   help=f"also require client certificates signed by this CA: mutual TLS {_setting('tls_client_ca')}")
    p.add_argument("--otlp-endpoint", default=None, metavar="URL",
                   help="send OpenTelemetry traces (a span per call, a child per stage) to this OTLP gRPC"
                        " collector, e.g. http://localhost:4317"
                        f" {_setting('otlp_endpoint', 'none: $OTEL_EXPORTER_OTLP_ENDPOINT, else no traces')}")
    p.set_defaults(run=cmd_serve)

    s_load = groups["snapshot"].add_parser("load", help="a snapshot file into a data folder (no server may hold it)")
    s_load.add_argument("file", type=Path, help="a .snapshot file (found in DATA_DIR/.snapshots/COLLECTION/)")
    s_load.add_argument("--collection", required=True, help="name of the collection it becomes")
    s_load.add_argument("--data-dir", type=Path, default=None, help=f"data folder {_setting('data_dir')}")
    s_load.add_argument("--replace", action="store_true", help="in place of an existing collection of that name")
    s_load.add_argument("--store", default=None, metavar="local|URI",
                        help="where it is made: local, milvus://HOST:PORT or a milvus-lite .db file (default: the"
                             " store the snapshot was taken in); either store's snapshot loads into either")
    s_load.set_defaults(run=cmd_snapshot_load)

    p = sub.add_parser("migrate", help="move a collection to another store (local <-> Milvus) without re-embedding",
                       description="Copy a collection into another store (its documents, chunks, vectors,"
                                   " metadata, expiry and embedding contract; no model call) as a new collection,"
                                   " then make NAME (and its aliases) point at it; the source is kept under"
                                   " another name. Stopped midway, run it again to go on. A running server"
                                   " migrates with the MigrateCollection call instead.")
    p.add_argument("name", metavar="NAME", help="the collection to move")
    p.add_argument("--to", default="", metavar="local|URI",
                   help="where to: local (the data folder), milvus://HOST:PORT or a milvus-lite .db file")
    p.add_argument("--as", dest="target", default="", metavar="TARGET",
                   help="name of the new collection (default: NAME-milvus, or NAME-local)")
    p.add_argument("--keep-as", default="", metavar="OLD",
                   help="name the source is kept under (default: NAME-before-migrate)")
    p.add_argument("--data-dir", type=Path, default=None, help=f"data folder {_setting('data_dir')}")
    p.add_argument("--milvus", action="append", default=[], metavar="URI",
                   help="a Milvus instance whose collections the data folder's server serves (for a collection"
                        " not made from this folder); repeatable")
    p.add_argument("--abort", action="store_true",
                   help="stop a migration that is copying: delete its new collection, leave NAME as it was")
    p.set_defaults(run=cmd_migrate)

    p = sub.add_parser("models", help="models in the Hugging Face cache")
    models = p.add_subparsers(required=True, metavar="ACTION")
    m_pull = models.add_parser(
        "pull", help="download a Hugging Face model into the Hugging Face cache",
        description="Download a model (or bring its snapshot up to date) into the Hugging Face cache"
                    " (HF_HUB_CACHE, or HF_HOME/hub). For a machine without network, pull it on one with"
                    " network and copy the printed cache folder into the same place there.")
    m_pull.add_argument("model", metavar="ORG/NAME[@REV]", help="a Hugging Face id, optionally at a revision")
    m_pull.set_defaults(run=cmd_models_pull)
    m_prepare = models.add_parser(
        "prepare", help="build a model's ONNX encoders and choose the encoder auto means on this machine",
        description="Build the ONNX graphs of a model (needs torch once) and measure which encoder is the"
                    " fastest equivalent to fp32 on this CPU, caching both ($NEARDEX_MODEL_CACHE, else"
                    " ~/.cache/neardex), so that the first collection made here does not wait for it."
                    " Prints what was measured.")
    m_prepare.add_argument("--model", default=None, metavar="FOLDER|ORG/NAME[@REV]",
                           help="the model (default: the bundled all-MiniLM-L6-v2)")
    m_prepare.set_defaults(run=cmd_models_prepare)

    p = sub.add_parser("keys", help="create, list and revoke API keys in a keys file")
    keys = p.add_subparsers(required=True, metavar="ACTION")
    k = keys.add_parser("create", help="make a key, print it once and store only its hash")
    k.add_argument("--name", required=True, help="who the key is for; shown in refusals and the list")
    k.add_argument("--role", required=True, choices=("read", "write", "admin", "metrics"),
                   help="read < write < admin for RPCs; metrics: only the metrics port (Prometheus)")
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
                   help="rebuild the lexical and vector indexes from the store where they disagree (Milvus:"
                        " drop chunks of no document or of another version, rewrite chunks' metadata)")
    p.add_argument("--milvus", action="append", default=[], metavar="URI",
                   help="also check the neardex collections of this Milvus instance (milvus://HOST:PORT, or a"
                        " milvus-lite .db file); repeatable. Collections made here in Milvus are checked without it")
    p.add_argument("--json", action="store_true", help="one JSON report per collection")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("eval", help="retrieval quality on a BEIR folder")
    p.add_argument("beir_dir", type=Path, metavar="BEIR_DIR", help="corpus.jsonl, queries.jsonl and qrels/test.tsv")
    p.add_argument("--mode", default="hybrid", help="dense, lexical, hybrid or ask (default: hybrid)")
    p.add_argument("--compare", action="store_true", help="every mode, one table")
    p.add_argument("--k", type=positive_int, default=10, help="cut-off of nDCG and MRR (default: 10)")
    p.add_argument("--collection", default=None, help="reuse this collection of --data-dir instead of indexing")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="index into this folder (default: a temporary one); kept only under --collection")
    p.add_argument("--encoder", default="", choices=("", AUTO, *ENCODERS),
                   help=f"encoder {_setting('default_encoder')}")
    p.add_argument("--index", default="flat", type=index_spec, metavar="KIND[:PARAMS]",
                   help="vector index (default: flat)")
    p.add_argument("--store", default="", metavar="URI",
                   help="where the collection lives: local (default), milvus://HOST:PORT, a milvus-lite .db file,"
                        " or milvus-lite (a milvus-lite file in the data folder)")
    _device_option(p)
    _language_option(p)
    p.add_argument("--json", action="store_true", help="one JSON line per mode")
    p.set_defaults(run=cmd_eval)
    return NeardexError, ReadError


def _language_option(p: argparse.ArgumentParser, whose: str = "") -> None:
    p.add_argument("--language", default="", metavar="LANG",
                   help=f"lexical analyzer's language{whose}: auto (each document and query in the language"
                        " detected; default), none (case and diacritic folding), or a Snowball language by name"
                        " or ISO code (english, german, de, ...)")


def _device_option(p: argparse.ArgumentParser, where: str = "") -> None:
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help=f"where the model runs{where}: auto, cpu, cuda or cuda:N"
                        f" {_setting('device', 'auto: a CUDA device when torch sees one')}")


def _setting(name: str, what: str = "") -> str:
    """'(default: X; NEARDEX_NAME)' for a server setting, read from Settings itself."""
    from .settings import Settings

    default = Settings.model_fields[name].default
    shown = what or ("none" if default is None else default)
    return f"(default: {shown}; ${'NEARDEX_' + name.upper()})"


def seconds(text: str) -> int:
    """A whole number of seconds, 0 or more (a ttl; 0 turns it off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def index_spec(text: str) -> Any:
    """KIND or KIND:NAME=N,NAME=N (e.g. hnsw:m=16,ef_search=256) as an IndexSpec."""
    from neardex.indexer.records import IndexSpec

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
    from neardex.indexer.ingest.pipeline import index_documents

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
    if args.ray is not None and args.server:
        raise NeardexError("--ray: embeds here and writes the data folder (or its Milvus store); with --server"
                           " the server embeds what it is sent. Give one of them")
    if args.ray_actors is not None and args.ray is None:
        raise NeardexError("--ray-actors: only with --ray")
    if args.device is not None and (args.server or args.ray is not None):
        raise NeardexError("--device: the model runs here only without --server and --ray (the server uses its"
                           " own --device; Ray actors use the GPU Ray gives them)")
    total = count_documents(args.path, args.format)
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(_remote_target(args) if args.server else _local_target(args))
        batch_size = args.batch_size
        if args.ray is not None:
            from neardex.indexer.ingest.ray_index import ROUND, RayIndexer

            ray = stack.enter_context(RayIndexer(target, args.ray or None, actors=args.ray_actors or 0,
                                                 write_batch=args.batch_size))
            if not args.quiet:
                print(f"embedding on {ray.describe()}", file=sys.stderr)
            # Ray jobs of ROUND documents, each written batch_size documents at a time.
            target, batch_size = ray, max(ROUND, args.batch_size)
        progress = _Progress(args.quiet, total)
        try:
            summary = index_documents(target, itertools.chain(first, documents), delete_missing=args.delete_missing,
                                      batch_size=batch_size, progress=progress)
        finally:
            progress.close()
    print(
        f"indexed {summary.documents} documents into {args.collection!r}:"
        f" {summary.upserted + summary.metadata_updated} written (embedded: {summary.upserted},"
        f" metadata updated: {summary.metadata_updated}), {summary.unchanged} unchanged, {summary.deleted} deleted, {summary.chunks} chunks,"
        f" {summary.tokens} tokens, {len(skipped)} skipped{_ignored_note(ignored)}, {summary.seconds:.1f} s"
        f" ({summary.documents / max(summary.seconds, 1e-9):.1f} documents/s)"
    )
    return 0


def _collection_options(args: argparse.Namespace) -> dict[str, Any]:
    from neardex.indexer.retrieval.request import Rerank

    return dict(model=args.model, index=args.index, chunk_tokens=args.chunk_tokens,
                overlap_tokens=args.overlap_tokens, default_mode=args.mode, encoder=args.encoder, store=args.store,
                language=args.language, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
                rerank=Rerank(args.rerank or "", args.rerank_depth) if args.rerank or args.rerank_depth else None,
                ttl_seconds=args.ttl or 0)


@contextlib.contextmanager
def _local_target(args: argparse.Namespace) -> Iterator[Any]:
    """The collection in --data-dir. A run that fails before its first write removes the
    collection it created, and the data folder too when it made it and left it empty."""
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.layout import LOCK_FILE

    from .settings import Settings

    data_dir = Path(args.data_dir or Settings().data_dir)
    made_dir = not data_dir.exists()
    try:
        settings = Settings()
        with Catalog(data_dir, default_encoder=settings.default_encoder, device=args.device or settings.device) as catalog:
            existed = catalog.exists(args.collection)
            collection = catalog.get_or_create(args.collection, **_collection_options(args))
            if args.ttl is not None and existed:
                collection.set_ttl(args.ttl)
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

        return self.client.upsert(self.collection, [
            WireDocument(id=d.id, text=d.text, title=d.title, metadata=d.metadata,
                         expires_at=None if d.expires_at is None else datetime.fromtimestamp(d.expires_at, timezone.utc))
            for d in documents], batch_size=max(len(documents), 1))

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
            default_mode=args.mode or None, encoder=args.encoder or None, store=args.store or None,
            language=args.language or None, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
            rerank={"model": args.rerank or "", "depth": args.rerank_depth} if args.rerank or args.rerank_depth else None,
            ttl_seconds=args.ttl, exist_ok=True)
        if args.ttl is not None:
            client.update_collection(args.collection, ttl_seconds=args.ttl)
        yield _RemoteTarget(client, args.collection)


def cmd_serve(args: argparse.Namespace) -> int:
    from neardex.indexer.embedding.embedder import resolve_device

    from .app import serve
    from .settings import Settings

    overrides = {k: v for k, v in {
        "data_dir": args.data_dir, "host": args.host, "port": args.port,
        "metrics_port": args.metrics_port, "metrics_host": args.metrics_host,
        "batch_max_size": args.batch_max_size, "http_port": args.http_port, "console": args.console,
        "max_concurrent_rpcs": args.max_concurrent_rpcs, "api_keys_file": args.api_keys,
        "tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls_client_ca": args.tls_client_ca,
        "milvus": args.milvus, "allow_store": args.allow_store, "model_dir": args.model_dir, "device": args.device,
        "document_batch_size": args.document_batch_size, "otlp_endpoint": args.otlp_endpoint,
    }.items() if v is not None}
    settings = Settings(**overrides)

    def ready(server: Any, port: int) -> None:
        try:
            names = server.catalog.names()
        except NeardexError as exc:  # a Milvus instance still starting: its collections come later
            print(f"collections not listed yet: {exc}", flush=True)
            names = []
        metrics = (f"http://{settings.metrics_host or settings.host}:{settings.metrics_port}/metrics"
                   if settings.metrics_port else "off")
        http = f"; HTTP/JSON: {settings.host}:{server.http_port}" if server.http_server is not None else ""
        if server.http_server is not None and settings.console:
            scheme = "https" if settings.tls_cert is not None else "http"
            http += f", console {scheme}://{settings.host}:{server.http_port}/"
        print(f"neardex serving {len(names)} collection(s) {names} from {settings.data_dir}"
              f" on {settings.host}:{port} (metrics: {metrics}{http}; models on {resolve_device(settings.device)})",
              flush=True)
        example = names[0] if names else "NAME"
        command = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "neardex" else "neardex"
        print(f"try: {command} search {example} \"your question\" --server {settings.host}:{port}", flush=True)

    serve(settings, ready)
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from neardex.indexer.embedding.sources import hub_cache, hub_folder_name, pull_model

    source = pull_model(args.model)
    prompts = source.prompts()
    print(f"{source.name} at revision {source.revision} in {source.path}")
    print(f"prompts: query {prompts.query!r}, document {prompts.document!r}")
    print(f"for a machine without network: copy {hub_cache() / hub_folder_name(source.name)} into its Hugging Face"
          " cache (HF_HUB_CACHE, or HF_HOME/hub)")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from neardex.indexer.embedding.selection import choice_record, choose
    from neardex.indexer.embedding.sources import find_model

    source = find_model(args.model)
    encoder = choose(source, None)
    record = choice_record(source, None)
    for m in (record or {}).get("measured", []):
        print(f"{m['encoder']:<10} {m['passages_per_s']:7.1f} passages/s  cosine to fp32 >= {m['min_cosine']:.4f}"
              f"  top-10 overlap {m['mean_overlap']:.3f}{'' if m['kept'] else '  (not equivalent)'}")
    print(f"auto means {encoder} for {source.name} on this machine ({(record or {}).get('cpu', 'unmeasured')})")
    return 0


def cmd_snapshot_load(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog

    from .settings import Settings

    if not args.file.is_file():
        raise NeardexError(f"file: {args.file} is not a file")
    with Catalog(args.data_dir or Settings().data_dir) as catalog:
        collection = catalog.restore(args.file, args.collection, replace=args.replace, store=args.store)
        stats = collection.stats()
    print(f"loaded {args.collection!r} from {args.file.name}: {stats.documents} documents")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog

    from .settings import Settings

    with Catalog(args.data_dir or Settings().data_dir, milvus=args.milvus) as catalog:
        if args.abort:
            dropped = catalog.abort_migration(args.name)
            print(f"migration of {args.name!r} aborted: {dropped!r} deleted")
            return 0
        done = catalog.migrate(args.name, args.to, args.target, args.keep_as, progress=print)
        stats = done.collection.stats()
    print(f"migrated {args.name!r}: {stats.documents} documents in {done.collection.manifest.name!r}"
          f" ({done.collection.manifest.store}), {done.rounds} rounds, {done.copied} copied, {done.deleted} deleted;"
          f" the source is kept as {done.kept_as!r}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from neardex.indexer.catalog import Catalog, validate_name
    from neardex.indexer.records import LOCAL_STORE
    from neardex.indexer.stores.local.check import Report, check
    from neardex.indexer.stores.milvus import check as milvus_check

    if not args.data_dir.is_dir():
        raise NeardexError(f"DATA_DIR: {args.data_dir} is not a folder")

    def checked(name: str) -> Report:
        folder = catalog.root / name
        try:
            manifest = catalog.manifest_of(name)
        except (OSError, ValueError, KeyError, TypeError, NeardexError):
            manifest = None  # a damaged manifest here: the local check reports it
        if manifest is None or manifest.store == LOCAL_STORE:
            return check(folder, repair=args.repair)
        return milvus_check.check(manifest, folder if folder.is_dir() else None, repair=args.repair)

    # The folder's lock: nothing writes while it is checked or repaired (a Milvus collection's
    # other servers may write: its findings are those of the moment).
    with Catalog(args.data_dir, milvus=args.milvus) as catalog:
        names = [validate_name(args.collection, "--collection")] if args.collection else catalog.names()
        if args.collection and not catalog.exists(args.collection):
            raise NeardexError(f"--collection: {args.collection!r} does not exist in {args.data_dir}")
        reports = [checked(name) for name in names]
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


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread while inside, so cleanups run as they do
    for Ctrl-C (the default action ends the process with no cleanup at all)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_eval(args: argparse.Namespace) -> int:
    """Index the BEIR folder into a collection and score its rankings. Without --collection the
    collection has a name of its own (eval-<random>), so runs sharing a Milvus instance or a data
    folder never collide, and it is removed when the run ends, however it ends (an error, Ctrl-C,
    SIGTERM). A collection named with --collection is reused, or made and kept once indexed whole."""
    import secrets

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.errors import InvalidArgument, NotFound
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.indexer.ingest.readers import read_beir
    from neardex.indexer.stores.milvus import is_milvus

    from .evaluation import evaluate, load_judged
    from .settings import Settings

    modes = list(EVAL_MODES) if args.compare else [args.mode]
    for mode in modes:
        if mode not in EVAL_MODES:
            raise InvalidArgument(f"--mode: unknown mode {mode!r}; expected one of {EVAL_MODES}")
    judged = load_judged(args.beir_dir)
    reports = []
    with tempfile.TemporaryDirectory(prefix="neardex-eval-") as tmp, _terminate_as_exit():
        root = Path(args.data_dir or tmp).expanduser().resolve()
        store = str(root / "milvus-lite.db") if args.store == "milvus-lite" else args.store
        # The instance is searched too, so that what a create cut short made there is found and removed.
        with Catalog(root, device=args.device or Settings().device,
                     milvus=[store] if store and is_milvus(store) else ()) as catalog:
            made = ""
            try:
                if args.collection and catalog.exists(args.collection):
                    collection = catalog.get(args.collection)
                else:
                    name = args.collection or f"eval-{secrets.token_hex(4)}"
                    # A name of our own is removed even when its create is cut short; the user's
                    # only once made here (another process may have made it meanwhile).
                    made = "" if args.collection else name
                    collection = catalog.create(name, encoder=args.encoder, index=args.index, store=store,
                                                language=args.language)
                    made = name
                    progress = _Progress(args.json, count_documents(args.beir_dir, "beir"))
                    index_documents(collection, read_beir(args.beir_dir), progress=progress)
                    progress.close()
                    if made == args.collection:
                        made = ""  # indexed whole: kept for the next run to reuse
                documents = collection.stats().documents
                for mode in modes:
                    scores = evaluate(judged, _ranking(collection, mode, args.k))
                    reports.append({**scores, "queries": len(judged.queries), "documents": documents,
                                    "mode": mode})
            finally:
                if made:
                    with contextlib.suppress(NotFound):  # a create cut short before it made anything
                        catalog.delete(made)
    if args.json:
        for report in reports:
            print(json.dumps(report))
        return 0
    print(f"{args.beir_dir.name}: {len(judged.queries)} judged queries, {reports[0]['documents']} documents")
    print(f"{'mode':<8} {'nDCG@10':>8} {'MRR@10':>8} {'R@100':>8}")
    for r in reports:
        print(f"{r['mode']:<8} {r['ndcg@10']:>8.4f} {r['mrr@10']:>8.4f} {r['recall@100']:>8.4f}")
    return 0


# Queries embedded per model call by eval: one call per query left a 1,190-question --compare
# running past 20 minutes on 2 cores.
EVAL_QUERY_BATCH = 64


def _ranking(collection: Any, mode: str, k: int) -> Any:
    """Document ids best first for every query text, at least 100 each (Recall@100 needs that
    many); the texts are embedded EVAL_QUERY_BATCH at a time."""
    depth = max(k, 100)

    def vectors(texts: list[str]) -> list[Any]:
        if mode == "lexical":
            return [None] * len(texts)
        for i, text in enumerate(texts):
            collection.check_query(text, f"queries[{i}]")
        return [v for start in range(0, len(texts), EVAL_QUERY_BATCH)
                for v in collection.encode_queries(texts[start:start + EVAL_QUERY_BATCH])]

    def search(text: str, vector: Any) -> list[str]:
        request = collection.request(text=text, k=depth, mode="" if mode == "ask" else mode, encoded=vector)
        return [h.id for h in collection.run(request).hits]

    if mode != "ask":
        return lambda texts: [search(t, v) for t, v in zip(texts, vectors(texts), strict=True)]
    from neardex.indexer.retrieval.answers import Answerer

    answerer = Answerer(collection)

    def ask(texts: list[str]) -> list[list[str]]:
        rankings = []
        for text, vector in zip(texts, vectors(texts), strict=True):
            # Ask reorders the head; the collection's default ranking continues below it.
            head = [a.passage.id for a in answerer.ask(text, k=k).answers]
            rankings.append(head + [d for d in search(text, vector) if d not in head])
        return rankings

    return ask
