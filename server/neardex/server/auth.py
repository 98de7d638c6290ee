"""API keys with roles and collection scopes: the keys file, and what each key may call.

The keys file holds a SHA-256 of each key, never the key: a copied file or backup gives nobody
access. A key is shown once, when `neardex keys create` makes it. The running server notices a
changed file by itself (its inode, size and modification time are compared on each call, a
`stat` of about a microsecond) and on SIGHUP, so creating or revoking a key needs no restart.

Roles are ordered (read < write < admin); each RPC needs the least role listed in
REQUIRED_ROLE. An RPC missing from that table needs admin, so a new RPC is closed until someone
decides who may call it. A key with collection patterns may only touch collections whose names
match one of them (shell-style globs, `team-*`), and ListCollections shows it only those.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neardex.indexer.catalog.migration import default_names
from neardex.indexer.errors import InvalidArgument, PermissionDenied, Unauthenticated
from neardex.indexer.files import write_durably

log = logging.getLogger("neardex.server")

ROLES = ("read", "write", "admin")
# A key of role `metrics` may only scrape the metrics port (as may an admin key); it calls no RPC.
METRICS_ROLE = "metrics"
KEY_ROLES = (*ROLES, METRICS_ROLE)
_RANK = {METRICS_ROLE: -1, **{role: rank for rank, role in enumerate(ROLES)}}

REQUIRED_ROLE: dict[str, str] = {
    "Search": "read",
    "BatchSearch": "read",
    "Ask": "read",
    "Get": "read",
    "Count": "read",
    "Facet": "read",
    "Scroll": "read",
    "Embed": "read",
    "SearchSimilar": "read",
    "Similarity": "read",
    "Tokenize": "read",
    "ListCollections": "read",
    "GetCollection": "read",
    "Upsert": "write",
    "UpsertStream": "write",
    "Delete": "write",
    "UpdateMetadata": "write",
    "CreateCollection": "admin",
    "DeleteCollection": "admin",
    "IndexMetadata": "admin",
    "UpdateCollection": "admin",
    "ListAliases": "read",
    "CreateAlias": "admin",
    "DeleteAlias": "admin",
    "ListSnapshots": "read",
    "CreateSnapshot": "admin",
    "DeleteSnapshot": "admin",
    "RestoreSnapshot": "admin",
    "MigrateCollection": "admin",
}

# RPCs that create, switch or delete an alias.
_CHANGES_ALIAS = frozenset({"CreateAlias", "DeleteAlias"})
# RPCs that name their collection in `name` rather than `collection`.
_NAMED_BY_NAME = frozenset({"CreateCollection", "GetCollection", "UpdateCollection", "DeleteCollection", "DeleteAlias"})
KEY_PREFIX = "ndx_"
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ApiKey:
    """One entry of the keys file: who a key is, what it may do, and the hash that finds it."""

    name: str
    role: str
    collections: tuple[str, ...] = ()  # empty: every collection
    sha256: str = ""
    created: str = ""

    def may_touch(self, collection: str) -> bool:
        return not self.collections or any(fnmatch.fnmatchcase(collection, p) for p in self.collections)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "collections": list(self.collections),
                "sha256": self.sha256, "created": self.created}

    def __repr__(self) -> str:
        scope = ",".join(self.collections) or "*"
        return f"ApiKey(name={self.name!r}, role={self.role!r}, collections={scope!r})"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_collections(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'docs,team-*' (or a list of the same) as a tuple of patterns; empty means every collection."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    patterns = tuple(p.strip() for p in items if p.strip())
    for pattern in patterns:
        if not re.fullmatch(r"[A-Za-z0-9_\-*?\[\]!]{1,64}", pattern):
            raise InvalidArgument(f"collections: {pattern!r} is not a collection name or glob pattern")
    return patterns


def _entry(data: Mapping[str, Any], where: str) -> ApiKey:
    try:
        name, role, digest = data["name"], data["role"], data["sha256"]
    except (KeyError, TypeError):
        raise InvalidArgument(f"{where}: needs name, role and sha256") from None
    if not isinstance(name, str) or not _KEY_NAME.match(name):
        raise InvalidArgument(f"{where}.name: {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    if role not in KEY_ROLES:
        raise InvalidArgument(f"{where}.role: {role!r} is not one of {', '.join(KEY_ROLES)}")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InvalidArgument(f"{where}.sha256: must be 64 lowercase hex digits")
    return ApiKey(name, role, parse_collections(data.get("collections") or ()), digest,
                  str(data.get("created", "")))


def read_keys(path: Path) -> list[ApiKey]:
    """The entries of a keys file; a missing file holds none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"api keys file {path}: not JSON ({exc})") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidArgument(f"api keys file {path}: expected {{\"keys\": [...]}}")
    keys = [_entry(e, f"api keys file {path}: keys[{i}]") for i, e in enumerate(entries)]
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key.name in seen:
            raise InvalidArgument(f"api keys file {path}: keys[{i}].name: duplicate name {key.name!r}")
        seen.add(key.name)
    return keys


def write_keys(path: Path, keys: Iterable[ApiKey]) -> None:
    """Write-then-rename, readable by the owner only: a server reading it never sees half a file."""
    body = json.dumps({"version": FORMAT_VERSION, "keys": [k.to_json() for k in keys]}, indent=2)
    write_durably(path, body + "\n", mode=0o600)


def create_key(path: Path, name: str, role: str, collections: str | Sequence[str] | None = None) -> str:
    """Append a new key's entry to the file; returns the key itself, which is stored nowhere."""
    keys = read_keys(path)
    if any(k.name == name for k in keys):
        raise InvalidArgument(f"name: a key named {name!r} exists already in {path}; revoke it first")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = _entry({"name": name, "role": role, "collections": list(parse_collections(collections)),
                    "sha256": hash_key(key), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                   "key")
    write_keys(path, [*keys, entry])
    return key


def revoke_key(path: Path, name: str) -> None:
    keys = read_keys(path)
    if not any(k.name == name for k in keys):
        raise InvalidArgument(f"name: no key named {name!r} in {path}")
    write_keys(path, [k for k in keys if k.name != name])


class KeyStore:
    """The keys of one file, reloaded when the file changes. A file that fails to parse on reload
    leaves the previous keys in force (and says so in the log): a typo must not lock every caller
    out, nor let everyone in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: list[ApiKey] = read_keys(path)
        self._stamp = self._stat()
        if not self._keys:
            log.warning("api keys file %s holds no keys yet: every call is refused until one is"
                        " created (neardex keys create --name NAME --role read --file %s)", path, path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload(self) -> None:
        with self._lock:
            stamp = self._stat()
            try:
                keys = read_keys(self.path)
            except InvalidArgument as exc:
                log.error("%s; keeping the %d keys loaded before", exc, len(self._keys))
                self._stamp = stamp
                return
            self._keys, self._stamp = keys, stamp
        log.info("api keys reloaded from %s: %d keys", self.path, len(keys))

    def authenticate(self, presented: str | None) -> ApiKey:
        if self._stat() != self._stamp:
            self.reload()
        if not presented:
            raise Unauthenticated(
                "no API key: send gRPC metadata 'authorization: Bearer KEY' or 'api-key: KEY'")
        digest = hash_key(presented)
        found = None
        # Every entry is compared, in constant time each: the time taken says nothing about
        # how close a guess came.
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key
        if found is None:
            raise Unauthenticated("unknown API key")
        return found


def presented_key(metadata: Mapping[str, str]) -> str | None:
    """The key a call carries: `authorization: Bearer KEY`, or `api-key: KEY` as Qdrant's clients
    send it."""
    auth = metadata.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return metadata.get("api-key", "").strip() or None


def collections_of(method: str, request: Any) -> list[str]:
    """The collection names a request touches; empty when it touches none (ListCollections,
    Embed with the server's default model)."""
    if method in _NAMED_BY_NAME:
        return [request.name]
    if method == "BatchSearch":
        return [r.collection for r in request.requests]
    if method == "CreateAlias":
        return [request.name, request.collection]
    if method == "RestoreSnapshot":
        return [request.collection, request.target or request.collection]
    if method == "MigrateCollection":  # the collection and the two names it makes
        target, kept = default_names(request.name, request.to)
        return [request.name, request.target or target, request.keep_as or kept]
    name = getattr(request, "collection", "")
    return [name] if name else []


def authorize(key: ApiKey, method: str, request: Any, resolve: Callable[[str], str] = lambda name: name) -> None:
    """Refuse a call the key's role or collections do not allow. A name is judged by the
    collection it stands for (`resolve` follows aliases): an alias opens nothing its target does
    not, and switching an alias needs its old and its new target in scope."""
    require_role(key, method)
    for name in collections_of(method, request):
        # An alias's own name must be in scope to change it, and its target to reach the data.
        judged = (name, resolve(name)) if method in _CHANGES_ALIAS else (resolve(name),)
        if not all(key.may_touch(n) for n in judged):
            # Only the name the caller sent: an alias's target may be outside what the key may see.
            raise PermissionDenied(
                f"key {key.name!r} may not call {method} on collection {name!r}: it is limited to"
                f" {', '.join(key.collections)}")


def require_role(key: ApiKey, method: str) -> None:
    """Refuse a method the key's role does not reach; needs no request, so it runs before a call
    is admitted."""
    needed = REQUIRED_ROLE.get(method, "admin")
    if _RANK[key.role] < _RANK[needed]:
        raise PermissionDenied(f"key {key.name!r} (role {key.role}) may not call {method}: it needs role {needed}")


def visible(key: ApiKey, method: str, response: Any) -> Any:
    """The response as the key may see it: a scoped key lists only its own collections."""
    if method == "ListCollections" and key.collections:
        kept = [c for c in response.collections if key.may_touch(c.name)]
        del response.collections[:]
        response.collections.extend(kept)
    if method == "ListAliases" and key.collections:
        aliases = [a for a in response.aliases if key.may_touch(a.collection)]
        del response.aliases[:]
        response.aliases.extend(aliases)
    return response


def may_scrape(key: ApiKey) -> bool:
    """Metrics name every collection: only keys meant for scraping, and admins, may read them."""
    return key.role in (METRICS_ROLE, "admin") and not key.collections
