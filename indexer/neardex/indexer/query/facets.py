"""Facets: the most frequent values of one metadata key, each with its number of documents.

A facet reads a key as a filter does (query/filters.py): a dotted path into nested metadata, whose
values are its scalar, or the scalar elements of its array; booleans, numbers and strings stay
apart (`true`, `1` and `"1"` are three values) and a whole number equals its float form (`2` and
`2.0` are one). A document counts once per distinct value it holds, so an array with a value twice
counts it once; null, objects and nested arrays are no values. Values come highest count first,
and equal counts in one fixed order (false, true, numbers ascending, strings by code point) on
every store, so that the same collection gives the same answer wherever it lives.

The stores count where their data is: the local store with one GROUP BY in SQLite, over its
metadata index for an indexed key (stores/local/sql_filters.py); the Milvus store, which has no
grouped count over JSON, by reading the matching documents' metadata a page at a time and counting
here (`Tally`), at most a bounded number of documents (the answer then says it is not exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from .filters import Condition, validate_condition, value_kind

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
# The order of kinds among values of equal count.
_KIND_ORDER = {"false": 0, "true": 1, "number": 2, "text": 3}


@dataclass(frozen=True)
class FacetValue:
    value: str | int | float | bool
    count: int


@dataclass(frozen=True)
class Facets:
    values: list[FacetValue]
    documents: int  # documents matching the filter, with or without the key
    exact: bool = True  # False: counted over part of the matching documents


def check_key(key: str, field: str = "key") -> str:
    """The key, or InvalidArgument naming `field`: a dotted path of names, as filters take."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{field}: give the metadata key to count the values of")
    validate_condition(field, key, Condition("exists", True))
    return key


def check_limit(limit: int, field: str = "limit") -> int:
    """The number of values to return: 0 means DEFAULT_LIMIT; at most MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"{field}: must be between 0 (the default, {DEFAULT_LIMIT}) and {MAX_LIMIT}, got {limit!r}")
    return limit or DEFAULT_LIMIT


def sort_key(kind: str, value: Any, count: int) -> tuple[int, int, Any]:
    """Where a value goes in the answer: highest count first, then the fixed order of values."""
    return -count, _KIND_ORDER[kind], 0 if kind in ("true", "false") else value


def values_of(metadata: dict[str, Any], key: str) -> dict[tuple[str, Any], Any]:
    """The distinct values a document holds under key, by (kind, value) as filters tell them apart."""
    value: Any = metadata
    for segment in key.split("."):
        value = value.get(segment) if isinstance(value, dict) else None
        if value is None:
            return {}
    found: dict[tuple[str, Any], Any] = {}
    for item in value if isinstance(value, list) else [value]:
        if item is None or isinstance(item, (dict, list)) or (isinstance(item, float) and not math.isfinite(item)):
            continue
        kind = value_kind(item)
        found.setdefault((kind, None if kind in ("true", "false") else item), item)
    return found


class Tally:
    """Counts values document by document, for a store that cannot count where its data is."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.documents = 0  # documents seen
        self._counts: dict[tuple[str, Any], int] = {}
        self._shown: dict[tuple[str, Any], Any] = {}

    def add(self, metadata: dict[str, Any]) -> None:
        self.documents += 1
        for tag, value in values_of(metadata, self.key).items():
            self._counts[tag] = self._counts.get(tag, 0) + 1
            self._shown.setdefault(tag, value)

    def top(self, limit: int) -> list[FacetValue]:
        ranked = sorted(self._counts.items(), key=lambda item: sort_key(item[0][0], item[0][1], item[1]))
        return [FacetValue(self._shown[tag], count) for tag, count in ranked[:limit]]
