"""Metadata filters: equality, membership and numeric ranges, evaluated by SQLite.

A filter maps metadata keys to conditions; a document matches when every condition holds. The
store turns a filter into the set of chunk ids FAISS may return, so filtered search is exact
rather than a post-filter that can come back short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument

_KEY = re.compile(r"^[A-Za-z0-9_.\-:]{1,128}$")
RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class Condition:
    op: str  # "eq", "in" or "range"
    value: Any  # a scalar, a list of scalars, or {op: number} for ranges


Filter = dict[str, Condition]
_PLAIN_KEY = re.compile(r"^[A-Za-z_]\w{0,63}$", re.ASCII)


def key_field(prefix: str, key: str) -> str:
    """How an error names a metadata key: `filter.year`, or `filter['odd key']` for a key that
    is no plain name (so control characters and huge keys arrive quoted and bounded)."""
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}"
    shown = key if len(key) <= 64 else key[:64] + "..."
    return f"{prefix}[{shown!r}]"


def parse_filter(spec: dict[str, Any] | None) -> Filter:
    """Plain-Python filter -> Filter: {"k": v} eq, {"k": [..]} in, {"k": {"gte": 1}} range,
    {"k": {"eq": v}} / {"k": {"in": [..]}} explicit forms."""
    result: Filter = {}
    for key, value in (spec or {}).items():
        field = key_field("filter", key)
        if isinstance(value, Condition):
            result[key] = value
        elif isinstance(value, dict):
            if set(value) == {"eq"}:
                result[key] = Condition("eq", value["eq"])
            elif set(value) == {"in"}:
                result[key] = Condition("in", list(value["in"]))
            else:
                result[key] = Condition("range", dict(value))
        elif isinstance(value, (list, tuple, set, frozenset)):
            result[key] = Condition("in", list(value))
        else:
            result[key] = Condition("eq", value)
        validate_condition(field, key, result[key])
    return result


def validate_condition(field: str, key: str, cond: Condition) -> None:
    if not _KEY.match(key):
        raise InvalidArgument(f"{field}: metadata key must match {_KEY.pattern}")
    scalar = (str, int, float, bool, type(None))
    if cond.op == "eq":
        if not isinstance(cond.value, scalar):
            raise InvalidArgument(f"{field}: equality needs a string, number, boolean or null")
    elif cond.op == "in":
        if not cond.value:
            raise InvalidArgument(f"{field}: 'in' needs at least one value")
        if not all(isinstance(v, scalar) and v is not None for v in cond.value):
            raise InvalidArgument(f"{field}: 'in' values must be strings, numbers or booleans")
    elif cond.op == "range":
        if not cond.value or set(cond.value) - set(RANGE_OPS):
            raise InvalidArgument(f"{field}: a range takes gt, gte, lt and lte, got {sorted(cond.value)}")
        for op, bound in cond.value.items():
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound:
                raise InvalidArgument(f"{field}.{op}: range bounds must be numbers")
    else:
        raise InvalidArgument(f"{field}: unknown condition {cond.op!r}")


def to_sql(flt: Filter, column: str = "metadata") -> tuple[str, list[Any]]:
    """WHERE clause (without the keyword) and its parameters over a JSON metadata column."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, cond in flt.items():
        # The key is bound as a parameter inside a quoted JSON path, so no key can inject SQL.
        expr = f"json_extract({column}, ?)"
        path = '$."' + key + '"'
        if cond.op == "eq":
            if cond.value is None:
                clauses.append(f"{expr} IS NULL")
                params.append(path)
            else:
                clauses.append(f"{expr} = ?")
                params += [path, cond.value]
        elif cond.op == "in":
            clauses.append(f"{expr} IN ({', '.join('?' * len(cond.value))})")
            params += [path, *cond.value]
        else:
            for op, bound in cond.value.items():
                clauses.append(f"{expr} {RANGE_OPS[op]} ?")
                params += [path, bound]
    return " AND ".join(clauses) or "1", params
