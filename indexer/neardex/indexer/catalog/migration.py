"""Moving a collection to another store (the data folder <-> a Milvus instance) without embedding
anything again, while it goes on being served and written.

A migration copies what the collection holds (documents, chunks, vectors, metadata, expiry, the
stored hashes) in pages, with the same pieces a snapshot restore uses (stores/transfer.py: a
store's `pages`, the other store's `write`), into a new collection of its own name (the target)
made from the source's manifest: the same model, prompts, encoder, dimension, index spec and
analyzer. Then it catches up by comparing the two stores' listings of stored hashes (content and
metadata, as every write keeps them: retrieval/metadata_updates.py) and copying the documents
that differ, deleting those gone, in rounds until few differ. The local store's change log is no
document log to follow instead: it holds chunk ids, for the vector index's replay, and it is
trimmed at every index snapshot. A hash listing works the same on both stores, and it is also what
makes a migration stopped midway resumable: what was copied already compares equal and is
skipped, and nothing is written twice.

The switch: writes of the source are paused (the engine's write gate, `Collection.writes_paused`),
the last differences copied, the target's manifest given the source's settings of that moment,
and then, in one durable write of the aliases file, the name becomes an alias of the target, with
every alias that pointed at it; the source is renamed to its `keep_as` name and kept until its
user deletes it. A write that reaches the old collection object after that is refused as
UNAVAILABLE, which clients send again, to the target.

Crash safety comes from a small record in the data folder (`.migrations/NAME.json`, written
durably) holding the phase: `copying` (the target is being filled: running the migration again
goes on where it was; `abort` deletes the target) or `switching` (the source was caught up with
writes paused: whatever of the switch is not done yet is done by the next open of the folder, or
the next run). Callers of the name see the source until the aliases file is replaced, and the
target from then on: an alias is resolved before a collection of the same name, so a crash
between the alias and the rename still finds the target.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import FailedPrecondition
from ..files import write_durably
from ..layout import MIGRATIONS
from ..records import LOCAL_STORE
from ..stores import Store

COPYING = "copying"
SWITCHING = "switching"
# Writes stop for the last round once a round found at most this many documents to copy or delete
# (a few pages: the pause lasts that long), or after MAX_ROUNDS rounds whatever their size.
SMALL_ROUND = 1000
MAX_ROUNDS = 8


@dataclass(frozen=True)
class Record:
    """A migration under way, as its record file holds it."""

    name: str
    to: str
    target: str
    keep_as: str
    source_store: str
    phase: str = COPYING


@dataclass(frozen=True)
class Round:
    """One catch-up round: documents copied (written whole into the target) and deleted there."""

    copied: int
    deleted: int

    @property
    def size(self) -> int:
        return self.copied + self.deleted


def default_names(name: str, to: str) -> tuple[str, str]:
    """The target's and the kept source's names when none is given."""
    return f"{name}-{'local' if to == LOCAL_STORE else 'milvus'}", f"{name}-before-migrate"


def path_of(root: Path, name: str) -> Path:
    return root / MIGRATIONS / f"{name}.json"


def read(root: Path, name: str) -> Record | None:
    try:
        data = json.loads(path_of(root, name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"name: the migration record of {name!r} cannot be read ({exc})") from None
    return Record(**data)


def records(root: Path) -> list[Record]:
    folder = root / MIGRATIONS
    names = sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []
    return [r for r in (read(root, n) for n in names) if r is not None]


def write(root: Path, record: Record) -> None:
    write_durably(path_of(root, record.name), json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")


def remove(root: Path, name: str) -> None:
    path_of(root, name).unlink(missing_ok=True)


def catch_up(source: Store, target: Store) -> Round:
    """Make the target hold what the source holds now: the documents whose stored hash differs
    (or that it lacks) copied whole, in pages, with their vectors; those it holds and the source
    no longer does deleted. A first round into an empty target is the bulk copy."""
    held = target.all_hashes()
    wanted = source.all_hashes()
    differ = [doc_id for doc_id, digest in wanted.items() if held.get(doc_id) != digest]
    gone = [doc_id for doc_id in held if doc_id not in wanted]
    if gone:
        target.delete(gone, None)
    copied = 0
    for page in source.pages(None if not held else differ):
        if page.changed:
            target.write(page.changed, page.prepared, page.vectors)
            target.checkpoint_after_write()
            copied += len(page.changed)
    return Round(copied, len(gone))
