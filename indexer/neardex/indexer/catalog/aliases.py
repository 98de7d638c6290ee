"""Aliases: other names for collections, switched atomically.

Every request that names a collection may name an alias instead, so a service reads `docs` while
the collection behind it changes: index into `docs-v2`, then point `docs` at it in one step. The
aliases of a data folder live in its `aliases.json`, replaced durably on every change; the
in-memory map is swapped under a lock, so a request resolves the old target or the new one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import AlreadyExists, FailedPrecondition, NotFound
from ..files import write_durably
from ..layout import ALIASES


@dataclass(frozen=True)
class Alias:
    name: str
    collection: str


class Aliases:
    def __init__(self, root: Path) -> None:
        self.path = root / ALIASES
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except json.JSONDecodeError as exc:
            raise FailedPrecondition(f"aliases: {self.path} is not JSON ({exc})") from None
        self._map: dict[str, str] = dict(data.get("aliases", {})) if isinstance(data, dict) else {}

    def resolve(self, name: str) -> str:
        """The collection a name stands for: an alias's target, or the name itself."""
        return self._map.get(name, name)

    def is_alias(self, name: str) -> bool:
        return name in self._map

    def list(self, collection: str | None = None) -> list[Alias]:
        return [Alias(a, c) for a, c in sorted(self._map.items()) if collection is None or c == collection]

    def of(self, collection: str) -> list[str]:
        return [a for a, c in sorted(self._map.items()) if c == collection]

    def set(self, name: str, collection: str, replace: bool) -> Alias:
        """Point `name` at `collection` (the caller checked both names, that `collection` is a
        collection and that no collection is called `name`)."""
        with self._lock:
            if name in self._map and not replace:
                raise AlreadyExists(f"name: alias {name!r} exists (it points to {self._map[name]!r});"
                                    " switch it with replace")
            self._save({**self._map, name: collection})
        return Alias(name, collection)

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._map:
                raise NotFound(f"name: no alias {name!r}")
            self._save({a: c for a, c in self._map.items() if a != name})

    def move(self, name: str, collection: str) -> None:
        """Make `name` an alias of `collection`, and point every alias of `name` there too, in one
        durable write (a migration's switch: the name stops being a collection at the same moment;
        an alias is resolved before a collection of its name)."""
        with self._lock:
            self._save({**{a: collection if c == name else c for a, c in self._map.items()}, name: collection})

    def _save(self, new: dict[str, str]) -> None:
        write_durably(self.path, json.dumps({"aliases": new}, indent=2, sort_keys=True) + "\n")
        self._map = new
