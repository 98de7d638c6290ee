"""Durable file replacement: write beside, fsync, rename, fsync the folder.

A rename is atomic, but without the fsyncs a crash can leave the new name pointing at a file whose
contents never reached the disk (or lose the rename itself). Every small file neardex replaces
(manifests, keys files, index snapshots) goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (which makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Move a fully written `tmp` over `path` so that a crash leaves one or the other, whole."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_durably(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    replace_durably(tmp, path)
