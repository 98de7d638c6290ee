"""Collection snapshots: one file holding a consistent copy of a collection, taken while writes go on.

A snapshot is a tar of the manifest, an online backup of the SQLite store (SQLite's backup API
copies one committed state, whatever is written meanwhile) and the newest index snapshot with the
change log inside the store. Checkpoints are held off while it is taken, so the copied index
snapshot is never newer than the backup and the backup's log still holds every change after it:
restoring loads that index and replays the log, as any collection opens. Restore builds the
collection in a side folder and renames it into place, as CreateCollection does.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import index_cache
from .errors import FailedPrecondition, InvalidArgument, NotFound
from .files import replace_durably
from .stores.local import LocalStore
from .vector_index import companions

if TYPE_CHECKING:
    from .collection import Collection

FOLDER = ".snapshots"
SUFFIX = ".snapshot"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}\.snapshot$")
DATABASE = "docs.sqlite"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SnapshotInfo:
    collection: str
    name: str
    path: Path
    bytes: int
    created: str


def folder_of(root: Path, collection: str) -> Path:
    return root / FOLDER / collection


def create(collection: Collection, root: Path) -> SnapshotInfo:
    """Write a snapshot of the collection into the data folder's snapshot folder."""
    store = collection.store
    if not isinstance(store, LocalStore):
        raise FailedPrecondition(f"collection: {collection.manifest.name!r} lives in {collection.manifest.store};"
                                 " snapshot it with Milvus' own backup tool (milvus-backup)")
    folder = folder_of(root, collection.manifest.name)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    name = f"{collection.manifest.name}-{stamp}{SUFFIX}"
    building = folder / f".{name}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        with store.checkpoints_held():
            found = index_cache.snapshots(collection.folder)
            if found:
                _, newest = found[-1]
                for path in (newest, *companions(newest)):
                    if path.exists():
                        shutil.copy2(path, building / path.name)
            source = sqlite3.connect(collection.folder / DATABASE, timeout=30)
            target = sqlite3.connect(building / DATABASE)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            (building / MANIFEST).write_text(collection.manifest.to_json())
        tmp = folder / f".{name}.tmp"
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(building.iterdir()):
                tar.add(path, arcname=path.name)
        replace_durably(tmp, folder / name)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return _info(collection.manifest.name, folder / name)


def _info(collection: str, path: Path) -> SnapshotInfo:
    stat = path.stat()
    return SnapshotInfo(collection, path.name, path, stat.st_size,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stat.st_mtime)))


def list_snapshots(root: Path, collection: str) -> list[SnapshotInfo]:
    folder = folder_of(root, collection)
    if not folder.is_dir():
        return []
    return [_info(collection, p) for p in sorted(folder.glob(f"*{SUFFIX}")) if _NAME.match(p.name)]


def path_of(root: Path, collection: str, name: str, field: str = "snapshot") -> Path:
    if not _NAME.match(name):
        raise InvalidArgument(f"{field}: {name!r} is not a snapshot name (as ListSnapshots gives them)")
    path = folder_of(root, collection) / name
    if not path.is_file():
        raise NotFound(f"{field}: collection {collection!r} has no snapshot {name!r}")
    return path


def delete(root: Path, collection: str, name: str) -> None:
    path_of(root, collection, name).unlink()


def unpack(file: Path, into: Path, name: str) -> None:
    """Extract a snapshot file into a new folder `into`, as a collection called `name`."""
    try:
        with tarfile.open(file) as tar:
            members = tar.getmembers()
            allowed = {MANIFEST, DATABASE}
            for member in members:
                if not member.isfile() or "/" in member.name or not (
                        member.name in allowed or member.name.startswith("index-")):
                    raise InvalidArgument(f"snapshot: {file.name} holds {member.name!r}, which no snapshot holds")
            if not {MANIFEST, DATABASE} <= {m.name for m in members}:
                raise InvalidArgument(f"snapshot: {file.name} lacks its manifest or its store")
            into.mkdir(parents=True)
            tar.extractall(into, filter="data")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"snapshot: {file} is not a snapshot file ({exc})") from None
    try:
        manifest = json.loads((into / MANIFEST).read_text())
        manifest["name"] = name
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"snapshot: {file.name} holds a damaged manifest ({exc})") from None
    (into / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
