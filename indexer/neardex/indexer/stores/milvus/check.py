"""Does a Milvus collection agree with itself and with the catalog? Its documents against its chunks.

Milvus derives the BM25 vectors itself, in each chunk's own row, so what can disagree is what
neardex writes in several steps: a document's row, its chunks (new ones inserted before the old
ones are deleted, metadata rewritten on the chunks before the row), the catalog's row and a
server's pointer to it. `check` verifies that every chunk's document exists and every document
has one whole set of chunks (indexes 0..n-1, each holding its document's text between its
offsets and its title), that each chunk carries its document's metadata and expiry, that every
vector is finite (and of unit length in a collection whose model makes them), and that the
catalog's manifest and the pointer in the data folder agree.

`repair` re-derives what needs no model: it deletes chunks whose document is gone, chunks of
another version of their document (left by a write that stopped between inserting the new
chunks and deleting the old) and copies of one chunk, rewrites the chunks' metadata and expiry
from their document's row, writes a catalog row missing from the pointer, and a pointer from the
catalog. A document without a whole set of chunks, or with a damaged vector, needs the model: it
stays reported (upsert it again).

Expired documents not purged yet are no finding and the counts leave them out, as in the local
check (stores/local/check.py, whose Report this one fills).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import NeardexError
from ...files import write_durably
from ...layout import MANIFEST
from ...records import NO_MODEL, Manifest
from ..local.check import Report, _ids
from . import CATALOG, MilvusStore, _milvus_name, catalog_manifest, client_for
from .expressions import METADATA_FIELDS

# How far a model's vector may be from unit length (float32 rounding is far below it).
UNIT_TOLERANCE = 1e-3
# The manifest's fields a pointer and the catalog's row must agree on.
AGREED = ("name", "store", "model", "model_revision", "dimension", "encoder")
# Chunks deleted or rewritten per request, and documents read with their chunks at a time.
_BATCH = 1000
PAGE = 200


@dataclass
class _Findings:
    orphans: set[int] = field(default_factory=set)
    stale: set[int] = field(default_factory=set)
    copies: set[int] = field(default_factory=set)
    incomplete: set[str] = field(default_factory=set)
    empty: set[str] = field(default_factory=set)
    unlike: dict[int, str] = field(default_factory=dict)  # chunk: its document, whose metadata it lacks
    bad_vectors: set[int] = field(default_factory=set)
    not_unit: set[int] = field(default_factory=set)
    catalog_missing: bool = False
    pointer_differs: list[str] = field(default_factory=list)


def check(manifest: Manifest, folder: Path | None = None, repair: bool = False) -> Report:
    """Check one Milvus collection (`folder`: its pointer in a data folder, where it has one);
    with repair, fix what needs no model and check again."""
    report = Report(manifest.name)
    found = _check(manifest, folder, report)
    if repair and found is not None and report.problems:
        repaired = _repair(manifest, folder, found)
        if repaired:
            again = Report(manifest.name, repaired=repaired)
            _check(manifest, folder, again)
            return again
    return report


def _check(manifest: Manifest, folder: Path | None, report: Report) -> _Findings | None:
    found = _Findings()
    try:
        client = client_for(manifest.store)
        recorded = catalog_manifest(manifest.store, manifest.name)
    except NeardexError as exc:
        report.problems.append(f"store: {manifest.store} cannot be reached: {exc}")
        return None
    if recorded is None:
        found.catalog_missing = True
        report.problems.append(f"catalog: {manifest.store}'s {CATALOG} holds no row for {manifest.name!r}")
    else:
        manifest = recorded
    pointer = _pointer(folder)
    if pointer is not None and recorded is not None:
        found.pointer_differs = [f for f in AGREED if getattr(pointer, f) != getattr(recorded, f)]
        if found.pointer_differs:
            report.problems.append(f"catalog: the data folder's manifest differs from the catalog's in"
                                   f" {', '.join(found.pointer_differs)}")
    parts = [_milvus_name(manifest.name, p) for p in ("chunks", "docs")]
    if not all(client.has_collection(p) for p in parts):
        report.problems.append(f"store: {manifest.store} lacks {' or '.join(p for p in parts if not client.has_collection(p))}")
        return found if found.catalog_missing or found.pointer_differs else None
    store = MilvusStore(manifest)
    dense = next(f for f in client.describe_collection(store.chunks)["fields"] if f["name"] == "dense")
    dimension = int(dense.get("params", {}).get("dim", manifest.dimension))
    if dimension != manifest.dimension:
        report.problems.append(f"store: vectors of dimension {dimension}, the manifest says {manifest.dimension}")
    meta_fields = [*METADATA_FIELDS, *store._expiry_field()]
    now = time.time()
    # Ids alone for the whole collection; texts and vectors a page of documents at a time.
    expiry = {r["doc_id"]: r.get("expires_at") or 0.0 for r in store._iterate(store.docs, "", store._expiry_field())}
    live_docs = {d for d, e in expiry.items() if not 0 < e <= now}
    found.orphans = {int(r["pk"]) for r in store._iterate(store.chunks, "", ["pk", "doc_id"], key="pk")
                     if r["doc_id"] not in expiry}
    unit = manifest.model != NO_MODEL
    chunks = vectors = 0
    doc_ids = sorted(expiry)
    for start in range(0, len(doc_ids), PAGE):
        docs = {r["doc_id"]: r for r in store._query_in(store.docs, "doc_id", doc_ids[start:start + PAGE],
                                                         ["doc_id", "title", "text", *meta_fields])}
        # Each document's chunks that hold its text: (index, start, end) -> chunk ids.
        held: dict[str, dict[tuple[int, int, int], list[int]]] = defaultdict(lambda: defaultdict(list))
        for row in store._query_in(store.chunks, "doc_id", list(docs), [
                "pk", "doc_id", "idx", "start", "end", "title", "text", "dense", *meta_fields]):
            pk, doc = int(row["pk"]), docs[row["doc_id"]]
            if row["title"] != doc["title"] or row["text"] != doc["text"][row["start"]:row["end"]]:
                found.stale.add(pk)
                continue
            held[row["doc_id"]][(int(row["idx"]), int(row["start"]), int(row["end"]))].append(pk)
            if any(row.get(f) != doc.get(f) for f in meta_fields):
                found.unlike[pk] = row["doc_id"]
            vector = np.asarray(row["dense"], dtype=np.float64)
            if not np.isfinite(vector).all():
                found.bad_vectors.add(pk)
            elif unit and abs(math.sqrt(float(vector @ vector)) - 1.0) > UNIT_TOLERANCE:
                found.not_unit.add(pk)
        for doc_id in docs:
            spans = held.get(doc_id)
            if not spans:
                found.empty.add(doc_id)
                continue
            found.copies.update(pk for pks in spans.values() for pk in sorted(pks)[:-1])  # the newest one kept
            if sorted(i for i, _, _ in spans) != list(range(len(spans))):
                found.incomplete.add(doc_id)
            if doc_id in live_docs:
                chunks += len(spans)
                vectors += sum(1 for pks in spans.values() if max(pks) not in found.bad_vectors)
    report.documents, report.chunks, report.vectors = len(live_docs), chunks, vectors
    # Milvus makes each chunk's BM25 vector from its terms in the chunk's own row.
    report.lexical_rows = chunks
    for ids, what in ((found.orphans, "chunks whose document is gone"),
                      (found.stale, "chunks of another version of their document"),
                      (found.copies, "chunks stored twice"),
                      (set(found.unlike), "chunks whose metadata or expiry differs from their document's")):
        if ids:
            report.problems.append(f"store: {len(ids)} {what}: {_ids(ids)}")
    for names, what in ((found.empty, "documents without chunks (upsert them again)"),
                        (found.incomplete, "documents missing some of their chunks (upsert them again)")):
        if names:
            report.problems.append(f"store: {len(names)} {what}: {_ids(names)}")
    if found.bad_vectors:
        report.problems.append(f"store: {len(found.bad_vectors)} chunks whose vector is not finite (upsert their"
                               f" documents again): {_ids(found.bad_vectors)}")
    if found.not_unit:
        report.problems.append(f"store: {len(found.not_unit)} chunks whose vector is not of unit length (upsert"
                               f" their documents again): {_ids(found.not_unit)}")
    return found


def _pointer(folder: Path | None) -> Manifest | None:
    if folder is None or not (folder / MANIFEST).exists():
        return None
    try:
        return Manifest.from_json((folder / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError, NeardexError):
        return None


def _repair(manifest: Manifest, folder: Path | None, found: _Findings) -> list[str]:
    done: list[str] = []
    client = client_for(manifest.store)
    pointer = _pointer(folder)
    if found.catalog_missing and pointer is not None:
        client.upsert(CATALOG, [{"name": pointer.name, "manifest": pointer.to_json(), "unused": [0.0, 0.0]}])
        done.append(f"catalog: row written from {folder / MANIFEST}")  # type: ignore[operator]
    recorded = catalog_manifest(manifest.store, manifest.name)
    if found.pointer_differs and folder is not None and recorded is not None:
        write_durably(folder / MANIFEST, replace(recorded).to_json())
        done.append("catalog: the data folder's manifest rewritten from the catalog's")
    if recorded is None or not client.has_collection(_milvus_name(recorded.name, "chunks")):
        return done
    store = MilvusStore(recorded)
    for ids, what in ((found.orphans, "chunks whose document is gone"),
                      (found.stale, "chunks of another version of their document"),
                      (found.copies, "copies of chunks")):
        pks = sorted(ids)
        for start in range(0, len(pks), _BATCH):
            client.delete(store.chunks, filter=f"pk in {pks[start:start + _BATCH]}")
        if pks:
            done.append(f"store: deleted {len(pks)} {what}")
    unlike = {pk: d for pk, d in found.unlike.items() if pk not in found.copies}
    if unlike:
        fields = [*METADATA_FIELDS, *store._expiry_field()]
        rows = {r["doc_id"]: r for r in store._query_in(store.docs, "doc_id", sorted(set(unlike.values())),
                                                           ["doc_id", *fields])}
        updates = [{"pk": pk, **{f: rows[d][f] for f in fields}} for pk, d in sorted(unlike.items()) if d in rows]
        for start in range(0, len(updates), _BATCH):
            client.upsert(store.chunks, updates[start:start + _BATCH], partial_update=True)
        done.append(f"store: rewrote the metadata of {len(updates)} chunks from their documents")
    return done
