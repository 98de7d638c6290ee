"""Collection snapshots: one file holding a consistent copy of a collection, taken while writes go on.

A snapshot is a tar of the files the store copies of itself (`Store.copy_to`: for the local
store the manifest, an online backup of its database and its newest index snapshot, consistent
while writes go on; for the Milvus store the local collection its rows make, so one file
restores into either store: stores/transfer.py). Here live the snapshot files' names, listing and
unpacking; restore builds the collection in a side folder and renames it into place, as
CreateCollection does.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArgument, NotFound
from ..files import replace_durably
from ..layout import DATABASE, INDEX_FILES, MANIFEST, SNAPSHOT_SUFFIX, SNAPSHOTS

if TYPE_CHECKING:
    from ..retrieval.engine import Collection

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}\.snapshot$")


@dataclass(frozen=True)
class SnapshotInfo:
    collection: str
    name: str
    path: Path
    bytes: int
    created: str


def folder_of(root: Path, collection: str) -> Path:
    return root / SNAPSHOTS / collection


def create(collection: Collection, root: Path) -> SnapshotInfo:
    """Write a snapshot of the collection into the data folder's snapshot folder."""
    folder = folder_of(root, collection.manifest.name)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    name = f"{collection.manifest.name}-{stamp}{SNAPSHOT_SUFFIX}"
    building = folder / f".{name}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        collection.store.copy_to(building)
        tmp = folder / f".{name}.tmp"
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(building.iterdir()):
                tar.add(path, arcname=path.name)
        replace_durably(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when this was its first snapshot
        raise
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
    return [_info(collection, p) for p in sorted(folder.glob(f"*{SNAPSHOT_SUFFIX}")) if _NAME.match(p.name)]


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
                        member.name in allowed or member.name.startswith(INDEX_FILES)):
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
