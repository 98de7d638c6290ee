"""Metadata filters: a tree of conditions over dotted key paths, evaluated by SQLite.

A filter holds conditions on keys (all must hold), and sub-filters: `all` (each must match),
`any` (at least one must match, when there are any) and `not_` (none may match), to any depth.
A key is a dotted path into nested metadata (`address.city`).

One rule makes every condition agree on arrays: a value *matches* a key when the key holds that
value, or holds an array with that value among its elements. `eq` is that match; `in` and
`contains_any` match any of their values, `contains_all` every one; `ne` and `not_in` are their
negations (so a document without the key satisfies them). `range` compares numbers with numbers
and strings with strings (ISO dates order correctly as strings); an array matches when one of its
elements is in range. `exists` asks whether the key holds a value other than null. Booleans match
only booleans and numbers only numbers (`1` is not `true`), and whole numbers equal their float
form (`2001 == 2001.0`).

Each store compiles a filter in its own language (stores/local/sql_filters.py: SQL;
stores/milvus: a Milvus expression) into the set of chunks a search may return, so filtered
search is exact rather than a post-filter that can come back short.

A filter holds at most MAX_CONDITIONS conditions (a list of values counting one per value) and as
many sub-filters, nested at most MAX_DEPTH levels: every size the filter language accepts compiles
to SQL and to a Milvus expression whose depth does not grow with the number of values or
conditions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument

_SEGMENT = re.compile(r"^[A-Za-z0-9_\-:]{1,128}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_]\w{0,63}$", re.ASCII)
RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Operators that take a list of values.
LIST_OPS = ("in", "not_in", "contains_any", "contains_all")
# Operators of a condition, as the client's dict form and the wire name them.
OPS = ("eq", "ne", "in", "not_in", "range", "exists", "contains_any", "contains_all")
MAX_DEPTH = 32
MAX_VALUES = 1000
MAX_CONDITIONS = 4096
SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Condition:
    op: str  # one of OPS
    value: Any  # a scalar; a list of scalars; {op: bound} for range; a bool for exists


@dataclass(frozen=True)
class Filter:
    conditions: dict[str, Condition] = field(default_factory=dict)
    all: tuple[Filter, ...] = ()
    any: tuple[Filter, ...] = ()
    not_: tuple[Filter, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions or self.all or self.any or self.not_)


def key_field(prefix: str, key: str) -> str:
    """How an error names a metadata key: `filter.year`, or `filter['odd key']` for a key that
    is no plain name (so control characters and huge keys arrive quoted and bounded)."""
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}"
    shown = key if len(key) <= 64 else key[:64] + "..."
    return f"{prefix}[{shown!r}]"


def parse_filter(spec: dict[str, Any] | Filter | None, field_name: str = "filter") -> Filter:
    """Plain-Python form -> Filter. `{"k": v}` is eq, `{"k": [..]}` in, `{"k": {"gte": 1}}` range,
    `{"k": {"op": v}}` any operator; `{"$and": [...], "$or": [...], "$not": {...}}` combine."""
    flt = spec if isinstance(spec, Filter) else _parse(spec or {}, field_name, 0)
    validate_filter(flt, field_name)
    return flt


def _parse(spec: Any, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{where}: expected a dict of conditions")
    conditions: dict[str, Condition] = {}
    subs: dict[str, list[Filter]] = {"$and": [], "$or": [], "$not": []}
    for key, value in spec.items():
        if key in subs:
            items = value if isinstance(value, list) else [value]
            subs[key] = [_parse(v, f"{where}.{key}[{i}]", depth + 1) for i, v in enumerate(items)]
            continue
        if not isinstance(key, str):
            raise InvalidArgument(f"{where}: keys must be strings, got {key!r}")
        conditions[key] = _condition(value, key_field(where, key))
    return Filter(conditions, tuple(subs["$and"]), tuple(subs["$or"]), tuple(subs["$not"]))


def _condition(value: Any, where: str) -> Condition:
    if isinstance(value, Condition):
        return value
    if isinstance(value, dict):
        ops = set(value)
        if ops and ops <= set(RANGE_OPS):
            return Condition("range", dict(value))
        if len(ops) == 1 and next(iter(ops)) in OPS:
            op = next(iter(ops))
            return Condition(op, list(value[op]) if op in LIST_OPS
                             and isinstance(value[op], (list, tuple, set, frozenset)) else value[op])
        raise InvalidArgument(f"{where}: expected one operator of {', '.join(OPS)} or range bounds"
                              f" {', '.join(RANGE_OPS)}, got {sorted(map(str, ops))}")
    if isinstance(value, (list, tuple, set, frozenset)):
        return Condition("in", list(value))
    return Condition("eq", value)


def validate_filter(flt: Filter, where: str = "filter") -> None:
    _validate_tree(flt, where, 0)
    check_size(flt, where)


def _validate_tree(flt: Filter, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{where}: nested deeper than {MAX_DEPTH} levels")
    for key, cond in flt.conditions.items():
        validate_condition(key_field(where, key), key, cond)
    for name, subs in (("all", flt.all), ("any", flt.any), ("not", flt.not_)):
        for i, sub in enumerate(subs):
            _validate_tree(sub, f"{where}.{name}[{i}]", depth + 1)


def check_size(flt: Filter, where: str = "filter") -> None:
    """Refuse a filter of more than MAX_CONDITIONS conditions (a list counting one per value) or
    more than MAX_CONDITIONS sub-filters: the work of compiling and evaluating it is bounded."""
    conditions = sub_filters = 0
    pending = [flt]
    while pending:
        node = pending.pop()
        conditions += sum(len(c.value) if c.op in LIST_OPS else 1 for c in node.conditions.values())
        subs = (*node.all, *node.any, *node.not_)
        sub_filters += len(subs)
        pending += subs
    for count, what in ((conditions, "conditions (a list counts one per value)"), (sub_filters, "sub-filters")):
        if count > MAX_CONDITIONS:
            raise InvalidArgument(f"{where}: {count} {what}; a filter holds at most {MAX_CONDITIONS}")


def _scalar(value: Any) -> bool:
    return isinstance(value, SCALAR) and not (isinstance(value, float) and not math.isfinite(value))


def validate_condition(where: str, key: str, cond: Condition) -> None:
    segments = key.split(".")
    if not all(_SEGMENT.match(s) for s in segments):
        raise InvalidArgument(f"{where}: a key is a dotted path of names of A-Z, a-z, 0-9, '_', '-', ':'")
    if cond.op in ("eq", "ne"):
        if not _scalar(cond.value):
            raise InvalidArgument(f"{where}: {cond.op} needs a string, a finite number, a boolean or null")
    elif cond.op in LIST_OPS:
        if not isinstance(cond.value, list) or not cond.value:
            raise InvalidArgument(f"{where}: {cond.op} needs a list of at least one value")
        if len(cond.value) > MAX_VALUES:
            raise InvalidArgument(f"{where}: {cond.op} takes at most {MAX_VALUES} values, got {len(cond.value)}")
        if not all(_scalar(v) and v is not None for v in cond.value):
            raise InvalidArgument(f"{where}: {cond.op} values must be strings, finite numbers or booleans")
    elif cond.op == "range":
        if not isinstance(cond.value, dict) or not cond.value or set(cond.value) - set(RANGE_OPS):
            raise InvalidArgument(f"{where}: a range takes gt, gte, lt and lte")
        bounds = list(cond.value.values())
        numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        strings = all(isinstance(b, str) for b in bounds)
        if not (numbers or strings):
            raise InvalidArgument(f"{where}: range bounds must all be finite numbers, or all strings")
    elif cond.op == "exists":
        if not isinstance(cond.value, bool):
            raise InvalidArgument(f"{where}: exists takes true or false")
    else:
        raise InvalidArgument(f"{where}: unknown condition {cond.op!r}")



def value_kind(value: Any) -> str:
    """How a filter value compares: booleans as themselves, numbers as numbers (2001 == 2001.0),
    strings as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "number" if isinstance(value, (int, float)) else "text"


def distinct_values(values: Iterable[Any]) -> list[Any]:
    """The values once each, as the stores tell them apart (`1` and `1.0` are one, `true` and `1`
    two)."""
    return list({(value_kind(v), v): v for v in values}.values())
