"""The names of what a data folder holds, in one place.

A data folder has one folder per collection (its manifest, and for the local store its SQLite
database and FAISS snapshots), the aliases file, the snapshot folder, the model cache and the
lock a serving process holds. Folders being built or thrown away carry a leading dot and a
prefix, so a crash leaves nothing a listing mistakes for a collection.
"""

from __future__ import annotations

MANIFEST = "manifest.json"  # in every collection's folder, whatever store holds its data
DATABASE = "docs.sqlite"  # the local store's documents, chunks, vectors, FTS5 table and change log
INDEX_FILES = "index-"  # the local store's FAISS snapshots: index-<seq>-<n>.faiss and files beside them
ALIASES = "aliases.json"
LOCK_FILE = ".neardex.lock"
SNAPSHOTS = ".snapshots"  # SNAPSHOTS/<collection>/<name>.snapshot
SNAPSHOT_SUFFIX = ".snapshot"
CREATING = ".creating-"  # a collection being created or restored, renamed into place when whole
DELETED = ".deleted-"  # a collection on its way out, removed after the rename
MIGRATIONS = ".migrations"  # MIGRATIONS/<collection>.json: a migration to another store under way, and its phase
