"""The neardex command, owned here in the client distribution, and every command that only talks to
a server: a user who installed ./proto and ./client alone (no torch, no FAISS) searches, asks,
reads and administers a server from the shell.

Commands come from the entry points of group ``neardex.commands``: each names a function
``register(subparsers, groups)`` that adds its commands (``groups`` holds the command groups other
distributions add to, such as ``snapshot``) and returns the exceptions its commands report as one
line. This distribution declares its own commands there; the server distribution declares the
commands that work on data folders (index, serve, eval, check, keys, snapshot load), so they join
in when it is installed, without this module knowing of them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from .errors import NeardexError
from .models import CollectionInfo, Tokenization
from .options import add_server_option, connect, positive_int

# The entry point group every distribution registers its commands in, and this module's own entry.
COMMANDS_GROUP = "neardex.commands"
OWN_COMMANDS = "neardex.client.cli:register"
# The registrations the distributions declare, for an install whose metadata predates the group
# (an editable install made before it existed): used only when the group is empty.
DECLARED = {"neardex.client": OWN_COMMANDS, "neardex.server": "neardex.server.cli:register"}

class UsageError(Exception):
    """A command-line argument that cannot work; reported as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser, clean_errors = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except NeardexError as exc:
        print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
        return 2
    except (UsageError, *clean_errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neardex-client")
    except PackageNotFoundError:
        return "unknown"


Register = Callable[[Any, dict[str, Any]], tuple[type[Exception], ...]]


def registrations() -> list[Register]:
    """Every ``neardex.commands`` entry point, this distribution's first (other distributions add
    to its command groups)."""
    found = sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: (ep.value != OWN_COMMANDS, ep.name))
    if found:
        return [ep.load() for ep in found]
    return [_load(target) for package, target in DECLARED.items() if importlib.util.find_spec(package)]


def _load(target: str) -> Register:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def build_parser(
    commands: Sequence[Register] | None = None,
) -> tuple[argparse.ArgumentParser, tuple[type[Exception], ...]]:
    """The parser with the commands of ``commands`` (default: every registration), and the
    exceptions the commands report as one clean line."""
    parser = argparse.ArgumentParser(prog="neardex", description="Embedding search service")
    parser.add_argument("--version", action="version", version=f"neardex {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    groups: dict[str, Any] = {}
    clean: tuple[type[Exception], ...] = ()
    for register_commands in registrations() if commands is None else commands:
        clean += register_commands(sub, groups)
    return parser, clean


def register(sub: Any, groups: dict[str, Any]) -> tuple[type[Exception], ...]:
    """The commands that talk to a server (the ``neardex.commands`` entry point of this
    distribution); creates the ``snapshot`` group."""
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
        if name == "search":
            p.add_argument("--offset", type=int, default=0, metavar="N", help="hits to skip: the next page (default: 0)")
            p.add_argument("--diversity", type=float, default=0.0, metavar="X",
                           help="maximal marginal relevance, 0 (off, default) to 1: fewer near-copies among the hits")
            p.add_argument("--group-by", default=None, metavar="metadata.KEY",
                           help="group the hits by a metadata key (--k and --offset then count groups)")
            p.add_argument("--group-size", type=int, default=None, metavar="N",
                           help="documents per group with --group-by (default: 1)")
            p.add_argument("--chunks", type=int, default=None, metavar="N",
                           help="each hit's N best matching chunks, to see what matched (at most 16)")
        p.add_argument("--rerank", default=None, metavar="MODEL",
                       help="a cross-encoder (a folder or Hugging Face id the server may load) reordering the best"
                            " candidates; 'none' turns the collection's default off (default: the collection's)")
        p.add_argument("--rerank-depth", type=int, default=0, metavar="N",
                       help="candidates the cross-encoder reads, at most 1000 (default: 50)")
        add_server_option(p)
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
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(run=cmd_similar)

    p = sub.add_parser("similarity", help="cosine similarity of texts, against a running server")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="two texts (their similarity), or more (every pair)")
    p.add_argument("--collection", default=None, help="use this collection's model (default: the server's default model)")
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")
    p.set_defaults(run=cmd_similarity)

    p = sub.add_parser("tokenize", help="the model's subword tokens of a text beside the lexical analyzer's terms,"
                                        " and where the chunker cuts it")
    p.add_argument("collection", help="collection whose model, chunking and analyzer to use; - for the server's"
                                      " default model and the auto analyzer")
    p.add_argument("text", help="the text")
    p.add_argument("--language", default=None, metavar="LANG",
                   help="show the terms of this analyzer language instead of the collection's")
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(run=cmd_tokenize)

    p = sub.add_parser("snapshot", help="snapshots of collections: create, list and restore on a server")
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
    s_restore.add_argument("--store", default=None, metavar="local|URI",
                           help="where it is made: local, or a Milvus instance the server may use (default: the store"
                                " the snapshot was taken in)")
    s_restore.set_defaults(run=cmd_snapshot_restore)
    for action in (s_create, s_list, s_restore):
        add_server_option(action)
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
        add_server_option(action)

    p = sub.add_parser("collections", help="the collections of a server, or one collection's details")
    p.add_argument("name", nargs="?", default=None, help="one collection (or alias) to describe")
    p.add_argument("--language", default=None, metavar="LANG",
                   help="change the collection's lexical analyzer (auto, none, or a Snowball language by name or"
                        " ISO code); its lexical index is rebuilt in the background")
    p.add_argument("--ttl", type=int, default=None, metavar="SECONDS",
                   help="change the collection's ttl: documents written from now on without an expiry expire"
                        " SECONDS after their write (0: never; stored documents keep theirs)")
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_collections)

    p = sub.add_parser("get", help="stored documents by id")
    p.add_argument("collection")
    p.add_argument("ids", nargs="+", metavar="ID")
    add_server_option(p)
    p.set_defaults(run=cmd_get)

    p = sub.add_parser("count", help="how many documents match a filter (all without one)")
    p.add_argument("collection")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata condition, as for search (repeatable)")
    add_server_option(p)
    p.set_defaults(run=cmd_count)

    p = sub.add_parser("facet", help="the most frequent values of a metadata key, with their document counts")
    p.add_argument("collection")
    p.add_argument("key", help="metadata key, a dotted path for nested metadata (address.city)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="count only documents matching this condition, as for search (repeatable)")
    p.add_argument("--limit", type=positive_int, default=10, metavar="N", help="values to show (default: 10)")
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(run=cmd_facet)
    p = sub.add_parser("update-metadata", help="change stored documents' metadata without embedding anything")
    p.add_argument("collection")
    p.add_argument("--ids", action="append", default=[], metavar="ID,ID",
                   help="the documents to change, comma-separated (repeatable)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="or those matching a metadata condition, as for search, or a JSON filter object"
                        " (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_",
                   help="give a key (a dotted path reaches inside objects) a value, read as JSON where it"
                        " parses, else as a string (repeatable)")
    p.add_argument("--unset", action="append", default=[], metavar="KEY", help="remove a key (repeatable)")
    p.add_argument("--replace", action="store_true", help="the metadata becomes exactly the --set keys")
    add_server_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_update_metadata)

    groups["snapshot"] = snap
    return ()


def parse_values(items: Sequence[str], option: str) -> dict[str, Any]:
    """KEY=VALUE pairs, each value read as JSON where it parses, else as a string."""
    result: dict[str, Any] = {}
    for item in items:
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"{option}: {item!r} is not KEY=VALUE")
        try:
            result[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            result[key.strip()] = raw
    return result


def parse_filters(items: Sequence[str]) -> dict[str, Any]:
    """key=value (value read as JSON where it parses, else a string), key>=n, key>n, key<=n, key<n,
    or a JSON filter object ({"$or": [...]}) merged whole."""
    result: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):  # a filter object whole, as the client takes it
            try:
                found = json.loads(item)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--filter: {item!r} is not a JSON object ({exc})") from None
            if not isinstance(found, dict):
                raise UsageError(f"--filter: {item!r} is not a JSON object")
            result.update(found)
            continue
        for op, name in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in item:
                key, raw = item.split(op, 1)
                key = key.strip()
                if not key:
                    raise UsageError(f"--filter: {item!r} has no key before {op!r}")
                if name is None:
                    try:
                        result[key] = json.loads(raw)
                    except json.JSONDecodeError:
                        result[key] = raw
                else:
                    result.setdefault(key, {})[name] = _number(raw, item, op)
                break
        else:
            raise UsageError(f"--filter: {item!r} is not KEY=VALUE, KEY>=N, KEY>N, KEY<=N or KEY<N")
    return result


def _number(raw: str, item: str, op: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"--filter: {item!r}: {op} needs a number after it, got {raw.strip()!r}")
    return value


def cmd_search(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.search(args.collection, args.query, k=args.k,
                               filter=parse_filters(args.filter) or None, mode=args.mode,
                               offset=args.offset, diversity=args.diversity, group_by=args.group_by,
                               group_size=args.group_size, chunks_per_document=args.chunks,
                               rerank=_rerank(args))
    return _print_hits(result, args.json)


def _rerank(args: argparse.Namespace) -> dict[str, Any] | None:
    """--rerank and --rerank-depth as the client takes them; a depth alone is for the
    collection's default model."""
    if args.rerank is None and not args.rerank_depth:
        return None
    return {"model": args.rerank or "", "depth": args.rerank_depth}


def cmd_similar(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.similar(args.collection, args.ids, negative=args.negative or None, k=args.k,
                                filter=parse_filters(args.filter) or None)
    return _print_hits(result, args.json)


def _print_hits(result: Any, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
        return 0
    starts = {}  # a grouped result's hits come group after group: a heading before each
    at = 0
    for group in getattr(result, "groups", []):
        starts[at] = group.value
        at += len(group.hits)
    for rank, hit in enumerate(result.hits, 1):
        if rank - 1 in starts:
            print(f"[{json.dumps(starts[rank - 1])}]")
        title = f" {hit.title}" if hit.title else ""
        rerank = next((f" (rerank {r.score:.3f})" for r in hit.retrievers if r.retriever == "rerank"), "")
        print(f"{rank:>3}. {hit.score:.3f}{rerank} {hit.id}{title}")
        print(f"     {_snippet(hit.text)}")
        for chunk in hit.chunks:
            print(f"     {chunk.score:.3f} [{chunk.start}:{chunk.end}] {_snippet(chunk.text)}")
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    print(f"({len(result.hits)} hits; {timings})")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.ask(args.collection, args.query, k=args.k,
                            filter=parse_filters(args.filter) or None, mode=args.mode, rerank=_rerank(args))
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
        result = client.tokenize(args.text, collection=None if args.collection == "-" else args.collection,
                                 language=args.language)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(f"model ({len(result.tokens)} subword tokens): {result.readable()}")
    language = f", {result.language}" if result.analyzer == "auto" and result.language else ""
    print(f"lexical ({result.analyzer}{language}; {len(result.terms)} words, [stop words]): {result.readable_terms()}")
    _side_by_side(args.text, result)
    fit = "fits" if result.fits else "does not fit"
    print(f"{result.count} tokens ({result.model}); {fit} one model call of {result.window} tokens;"
          f" {len(result.chunks)} chunk(s):")
    for chunk in result.chunks:
        print(f"  chunk {chunk.index}: characters {chunk.start}-{chunk.end}, {chunk.tokens} tokens:"
              f" {_snippet(args.text[chunk.start:chunk.end], 100)}")
    return 0


def _side_by_side(text: str, result: Tokenization) -> None:
    """Each word of the text with the subword pieces the model reads of it and the term lexical
    search indexes for it, aligned by character offsets."""
    rows = [(w.start, w.end, w.text, w.term + (" (stop)" if w.stop else "")) for w in result.terms]
    if not rows:
        return
    print("  word             subword tokens                 lexical term")
    for start, end, word, term in rows[:60]:
        pieces = " ".join(t.token for t in result.tokens if t.start < end and t.end > start)
        print(f"  {word[:16]:16} {pieces[:30]:30} {term}")
    if len(rows) > 60:
        print(f"  ... {len(rows) - 60} more words")


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


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
        info = client.restore_snapshot(args.collection, args.snapshot, target=args.target, replace=args.replace,
                                       store=args.store)
    print(f"restored {info.name!r}: {info.documents} documents")
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


def cmd_collections(args: argparse.Namespace) -> int:
    for flag, value in (("--language", args.language), ("--ttl", args.ttl)):
        if value is not None and not args.name:
            raise SystemExit(f"neardex collections: {flag} needs the collection's name")
    with connect(args) as client:
        if args.language is not None or args.ttl is not None:
            client.update_collection(args.name, language=args.language, ttl_seconds=args.ttl)
        infos = [client.info(args.name)] if args.name else client.collections()
    if args.json:
        print(json.dumps([i.model_dump() for i in infos], indent=2))
        return 0
    for info in infos:
        aliases = f" (aliases: {', '.join(info.aliases)})" if info.aliases else ""
        if info.state != "ready":
            print(f"{info.name}{aliases}: {info.state}: {info.reason}")
            continue
        prompts = (f", query prompt {info.query_prompt!r}, document prompt {info.document_prompt!r}"
                   if info.query_prompt or info.document_prompt else "")
        rerank = (f", rerank {info.rerank.model} (depth {info.rerank.depth or 50})" if info.rerank else "")
        print(f"{info.name}{aliases}: {info.documents} documents, {info.chunks} chunks, {info.index_kind} index,"
              f" model {info.model}{prompts}{rerank}, default mode {info.default_mode}, language {_language(info)}"
              + (f", ttl {info.ttl_seconds} s" if info.ttl_seconds else ""))
    return 0


def _language(info: CollectionInfo) -> str:
    found = ", ".join(f"{code} {count}" for code, count in sorted(info.languages.items(), key=lambda kv: -kv[1]))
    shown = info.language + (f" (documents found in: {found})" if found else "")
    if info.lexical_language and info.lexical_language != info.language:
        shown += f", rebuilding from {info.lexical_language}"
    return shown


def cmd_get(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.get(args.collection, args.ids)
    print(result.model_dump_json(indent=2))
    return 0 if not result.missing else 1


def cmd_count(args: argparse.Namespace) -> int:
    with connect(args) as client:
        print(client.count(args.collection, filter=parse_filters(args.filter) or None))
    return 0


def cmd_facet(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = client.facet(args.collection, args.key, filter=parse_filters(args.filter) or None, limit=args.limit)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    # Values as JSON, so that "1", 1 and true read apart.
    shown = [json.dumps(v.value, ensure_ascii=False) for v in result.values]
    width = max((len(s) for s in shown), default=5)
    print(f"{'value':<{width}}  documents")
    for text, value in zip(shown, result.values):
        print(f"{text:<{width}}  {value.count}")
    partial = "" if result.exact else ", counted over part of them"
    plural = "" if len(result.values) == 1 else "s"
    print(f"({len(result.values)} value{plural}; {result.documents} documents matched{partial})")
def cmd_update_metadata(args: argparse.Namespace) -> int:
    ids = [i.strip() for item in args.ids for i in item.split(",") if i.strip()]
    flt = parse_filters(args.filter)
    if bool(ids) == bool(flt):
        raise UsageError("--ids, --filter: give the documents by --ids or by --filter (one of them)")
    with connect(args) as client:
        result = client.update_metadata(args.collection, ids if ids else None, filter=flt or None,
                                        set=parse_values(args.set_, "--set"), unset=args.unset,
                                        replace=args.replace)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(f"updated {result.updated} documents" + (f"; missing: {', '.join(result.missing)}"
                                                         if result.missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
