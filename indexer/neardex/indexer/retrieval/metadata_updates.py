"""Metadata changed without embedding: an update of stored documents' metadata, and the split of
a write batch into documents to embed, documents whose metadata alone changed, and unchanged ones.

Metadata shapes no chunk and no vector (the model sees the title and the text; the lexical index
reads the same), nor does an expiry, so a change of metadata or expiry alone rewrites the
metadata, the expiry, their index rows and the stored hash, and nothing else. The decision is made here, once for both stores; each store
applies it in one write of its own (`Store.update_metadata`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..documents import Document, rehashed, split_hash
from ..errors import InvalidArgument
from ..query.filters import Condition, key_field, validate_condition
from ..stores import MetadataEdit, Store


@dataclass(frozen=True)
class MetadataUpdate:
    """Keys to set and keys to remove, by dotted path (as filters name them), or (replace) the
    whole metadata. Checked once by `check`; `apply` never fails."""

    set: dict[str, Any]
    unset: tuple[str, ...] = ()
    replace: bool = False

    @staticmethod
    def check(set_: dict[str, Any] | None, unset: Sequence[str] = (), replace: bool = False) -> MetadataUpdate:
        """The update, or InvalidArgument naming the field: a key is a dotted path of plain names
        (in `set` too, unless replace, where `set` is the metadata as it will be stored); a key is
        not both set and unset (nor one inside the other). Values are checked by the collection
        that applies the update, as an upsert's metadata is (`Collection.update_metadata`)."""
        values = dict(set_ or {})
        unset = tuple(unset)
        if replace:
            if unset:
                raise InvalidArgument("unset: with replace the metadata becomes exactly `set`; leave unset empty")
            return MetadataUpdate(values, (), True)
        if not values and not unset:
            raise InvalidArgument("set: give keys to set or to unset (or replace the metadata)")
        # Every path a set key passes through, to the key: a clash is found in one look-up per
        # path of an unset key, whatever the number of keys.
        inside: dict[str, str] = {}
        for key in values:
            validate_condition(key_field("set", key), key, Condition("exists", True))
            for path in _paths(key):
                inside.setdefault(path, key)
        for i, key in enumerate(unset):
            validate_condition(f"unset[{i}]", key, Condition("exists", True))
            clash = inside.get(key) or next((p for p in _paths(key) if p in values), None)
            if clash is not None:
                raise InvalidArgument(f"unset[{i}]: {key!r} is also set ({clash!r}); a key is set or unset, not both")
        return MetadataUpdate(values, unset, False)

    def apply(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata after the update: unset paths removed (a path not there is no change), set
        paths given their value whole, objects made along a path where a key is missing or holds
        something else."""
        if self.replace:
            return copy.deepcopy(self.set)
        out = copy.deepcopy(metadata)
        for path in self.unset:
            *parents, last = path.split(".")
            node: Any = out
            for name in parents:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
        for path, value in self.set.items():
            *parents, last = path.split(".")
            node = out
            for name in parents:
                if not isinstance(node.get(name), dict):
                    node[name] = {}
                node = node[name]
            node[last] = copy.deepcopy(value)
        return out

    def edit(self) -> MetadataEdit:
        """Each document's metadata updated; its expiry kept."""
        def edited(doc_id: str, metadata: dict[str, Any], stored: str,
                   expires_at: float | None) -> tuple[dict[str, Any], str, float | None]:
            new = self.apply(metadata)
            return new, rehashed(stored, new, expires_at), expires_at

        return edited


def _paths(key: str) -> list[str]:
    """A dotted key and every path it passes through: "a.b.c" -> "a", "a.b", "a.b.c"."""
    names = key.split(".")
    return [".".join(names[:j]) for j in range(1, len(names) + 1)]


@dataclass
class Split:
    """A batch by what it changes: `changed` documents (with their stored hashes) are embedded and
    written whole; `metadata_only` ones (with the stored hash the split was made against) have
    their metadata rewritten; the rest are unchanged."""

    changed: list[tuple[Document, str]] = field(default_factory=list)
    metadata_only: list[tuple[Document, str]] = field(default_factory=list)


def split(documents: Sequence[Document], store: Store, text_decides: bool) -> Split:
    """Compare each document with its stored hash. Rows written before the hashes were split hold
    one hash of title, text and metadata: equal to the document's `legacy_hash`, the document is
    unchanged; otherwise (and for rows whose metadata was updated since, whose content hash is not
    known) the stored title and text are read and compared, where they are all the content is
    (`text_decides`: a collection with a model; without one the document's own vector is content
    too, and such a document is written whole, which embeds nothing)."""
    out = Split()
    stored = store.hashes([d.id for d in documents])
    undecided: list[tuple[Document, str]] = []
    for doc in documents:
        old = stored.get(doc.id)
        digest = doc.stored_hash()
        parts = split_hash(old) if old is not None else None
        if old is None:
            out.changed.append((doc, digest))
        elif parts is not None and parts[0] == doc.content_hash():
            if parts[1] != doc.metadata_hash():
                out.metadata_only.append((doc, old))
        elif parts is not None and parts[0]:
            out.changed.append((doc, digest))
        elif parts is None and doc.expires_at is None and old == doc.legacy_hash():  # no expiry then
            continue
        else:
            undecided.append((doc, old))
    if undecided and text_decides:
        found, _ = store.get([d.id for d, _ in undecided])
        texts = {d.id: (d.title, d.text) for d in found}
        for doc, old in undecided:
            if texts.get(doc.id) != (doc.title, doc.text):
                out.changed.append((doc, doc.stored_hash()))
            elif split_hash(old) != ("", doc.metadata_hash()):
                out.metadata_only.append((doc, old))
    else:
        out.changed += [(doc, doc.stored_hash()) for doc, _ in undecided]
    return out


def rewrite_edit(documents: list[tuple[Document, str]]) -> MetadataEdit:
    """The edit a re-upsert's metadata-only documents make: each one's metadata and expiry become
    the new one's, and the stored hash the new document's whole (content known) where the row is
    still the one the split compared with, else the row's content hash with the new metadata hash."""
    by_id = {doc.id: (doc, old) for doc, old in documents}

    def edited(doc_id: str, metadata: dict[str, Any], stored: str,
               expires_at: float | None) -> tuple[dict[str, Any], str, float | None]:
        doc, old = by_id[doc_id]
        digest = doc.stored_hash() if stored == old else rehashed(stored, doc.metadata, doc.expires_at)
        return doc.metadata, digest, doc.expires_at

    return edited
