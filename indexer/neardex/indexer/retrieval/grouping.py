"""Grouped search: the best documents per distinct value of a metadata key (one answer per source
URL), and how deep the ranking goes to fill the groups.

- `group_by` is `metadata.<path>`, the path spelled as filters spell it (`metadata.source`,
  `metadata.address.city`); `group_size` (1 to MAX_GROUP_SIZE) documents per group.
- A document's group is the value its key holds: a string, a number or a boolean, told apart as
  filters tell them apart (`1` and `1.0` are one value, `true` and `1` two). A list puts the
  document in a group per element, the filters' rule for arrays (a document matches each of its
  elements), so it can be a hit of several groups. A document without the key, or with null or an
  object there, is in no group and left out; the search adds `exists` on the key to its filter so
  that the retrieval does not spend its depth on them. A key no matching document has gives no
  groups: collections have no schema to tell a misspelt key from one not written yet.
- `top_k` and `offset` count groups. Groups come in the order of their best hit in the ungrouped
  ranking, and each group's hits in ranking order; a grouped search is the ungrouped ranking
  (with that `exists` condition), grouped.
- Groups need a deeper ranking than their hits: it starts at FIRST_DEPTH_FACTOR x (offset + top_k)
  x group_size documents and grows 4 times at a time until the page's groups are all full (or
  the ranking holds no more documents), at most MAX_DEPTH documents: a page's last groups can be
  short, or missing, where the best documents of more than MAX_DEPTH share few values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import InvalidArgument
from ..query.filters import Condition, Filter, validate_condition, value_kind

PREFIX = "metadata."
MAX_GROUP_SIZE = 100
# Documents a grouped search ranks at most (the server's default max_top_k).
MAX_DEPTH = 1000
FIRST_DEPTH_FACTOR = 4
# Documents ranked at least: a few values holding most of the top documents is the usual case.
MIN_DEPTH = 50

T = TypeVar("T")


@dataclass(frozen=True)
class Grouped(Generic[T]):
    value: Any
    members: list[T]


def key_path(group_by: str, field: str = "group_by") -> str:
    """The metadata path of a `metadata.<path>` group_by; InvalidArgument naming `field` otherwise."""
    if not isinstance(group_by, str) or not group_by.startswith(PREFIX) or len(group_by) == len(PREFIX):
        raise InvalidArgument(f"{field}: expected metadata.<key> (a dotted path into the documents' metadata,"
                              f" as filters name keys), got {group_by!r}")
    path = group_by[len(PREFIX):]
    validate_condition(field, path, Condition("exists", True))
    return path


def check_size(group_size: int, grouped: bool, field: str = "group_size") -> int:
    """The group size (0 means the default, 1); refused out of [0, MAX_GROUP_SIZE], or without a
    group_by to apply to."""
    if not grouped:
        if group_size:
            raise InvalidArgument(f"{field}: needs group_by (the metadata key the hits are grouped by)")
        return 0
    if not 0 <= group_size <= MAX_GROUP_SIZE:
        raise InvalidArgument(f"{field}: must be between 1 and {MAX_GROUP_SIZE}, got {group_size}")
    return group_size or 1


def with_key(flt: Filter | None, path: str) -> Filter:
    """The search's filter, and the key holding a value: documents in no group are not retrieved."""
    return Filter({path: Condition("exists", True)}, all=(flt,) if flt else ())


def values(metadata: dict[str, Any], path: str) -> list[Any]:
    """The groups a document's metadata puts it in (see the module's docstring)."""
    value: Any = metadata
    for segment in path.split("."):
        if not isinstance(value, dict) or segment not in value:
            return []
        value = value[segment]
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, (str, int, float, bool))]


def group(ranked: Sequence[T], metadata: Callable[[T], dict[str, Any] | None], path: str,
          size: int) -> list[Grouped[T]]:
    """Every group of ranked (best first), in the order of its best member, with its first `size`
    members in ranking order."""
    groups: dict[tuple[str, Any], Grouped[T]] = {}
    for item in ranked:
        found = metadata(item)
        if found is None:
            continue
        for value in values(found, path):
            key = (value_kind(value), value)
            if key not in groups:
                groups[key] = Grouped(value, [])
            members = groups[key].members
            if len(members) < size and item not in members:
                members.append(item)
    return list(groups.values())


def first_depth(reach: int, size: int) -> int:
    return min(MAX_DEPTH, max(MIN_DEPTH, FIRST_DEPTH_FACTOR * reach * size))


def filled(groups: list[Grouped[Any]], reach: int, size: int) -> bool:
    """Whether a deeper ranking would leave the page's groups as they are: it has its groups, and
    each is full (a deeper document can only add a group after them)."""
    return len(groups) >= reach and all(len(g.members) >= size for g in groups[:reach])
