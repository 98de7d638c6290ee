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

The store turns a filter into the set of chunk ids FAISS may return, so filtered search is exact
rather than a post-filter that can come back short. Keys listed as indexed in a collection are
answered from its `meta_values` table (one row per scalar or array element, indexed by key and
value) instead of a scan of every document's JSON.

A filter holds at most MAX_CONDITIONS conditions (a list of values counting one per value) and as
many sub-filters, nested at most MAX_DEPTH levels: every size the filter language accepts compiles
to SQL and to a Milvus expression whose depth does not grow with the number of values or
conditions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument

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


# -- SQL ----------------------------------------------------------------------------------------


def json_path(key: str) -> str:
    """The JSON path of a dotted key: a.b -> $."a"."b" (segments are validated names)."""
    return "$" + "".join(f'."{segment}"' for segment in key.split("."))


def _kind(value: Any) -> str:
    """How a filter value compares: booleans as themselves, numbers as numbers (2001 == 2001.0),
    strings as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "number" if isinstance(value, (int, float)) else "text"


def distinct_values(values: Iterable[Any]) -> list[Any]:
    """The values once each, as the stores tell them apart (`1` and `1.0` are one, `true` and `1`
    two)."""
    return list({(_kind(v), v): v for v in values}.values())


def _one_of(values: list[Any], type_col: str, value_col: str) -> tuple[str, list[Any]]:
    """SQL true when a JSON value (its json_type in type_col, its value in value_col) matches one
    of the (non-null) values: at most one clause per kind, whatever the number of values."""
    clauses: list[str] = [f"{type_col} = '{flag}'" for flag in ("true", "false")
                          if any(_kind(v) == flag for v in values)]
    params: list[Any] = []
    for kind, types in (("number", "('integer', 'real')"), ("text", "('text')")):
        same = [v for v in values if _kind(v) == kind]
        if len(same) == 1:
            clauses.append(f"{type_col} IN {types} AND {value_col} = ?")
            params.append(same[0])
        elif same:
            # One JSON parameter read as a table: a list of 1,000 values is neither 1,000
            # parameters nor 1,000 comparisons deep.
            clauses.append(f"{type_col} IN {types} AND {value_col} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(same))
    return " OR ".join(f"({c})" for c in clauses), params


def _value_tag(type_col: str, value_col: str) -> str:
    """A JSON value as one SQL value that tells values apart as filters do: numbers by their value,
    the rest by their type and value."""
    return (f"CASE WHEN {type_col} IN ('integer', 'real') THEN {value_col}"
            f" ELSE {type_col} || ':' || ifnull({value_col}, '') END")


# Up to this many clauses are joined by AND / OR, so that SQLite's planner sees each term (an
# indexed key's `id IN (...)` can drive the query); beyond, by a flat list: SQLite nests a chain one
# level per operator and refuses an expression deeper than 1,000, and its parser refuses about 100
# nested parentheses, so a balanced tree of thousands of clauses fails as well.
_CHAIN = 8


def _all_of(clauses: list[str]) -> str:
    """SQL true when every clause is; each clause is 0 or 1, never NULL (`0 NOT IN` relies on it)."""
    joined = " AND ".join(f"({c})" for c in clauses[:_CHAIN]) or "1"
    rest = clauses[_CHAIN:]
    return f"{joined} AND 0 NOT IN ({', '.join(rest)})" if rest else joined


def _any_of(clauses: list[str]) -> str:
    """SQL true when one clause is; each clause is 0 or 1, never NULL (`1 IN` relies on it)."""
    if len(clauses) <= _CHAIN:
        return " OR ".join(f"({c})" for c in clauses) or "0"
    return f"1 IN ({', '.join(clauses)})"


def _in_range(bounds: dict[str, Any], type_col: str, value_col: str) -> tuple[str, list[Any]]:
    numeric = not any(isinstance(b, str) for b in bounds.values())
    kinds = "('integer', 'real')" if numeric else "('text')"
    clauses = [f"{type_col} IN {kinds}"] + [f"{value_col} {RANGE_OPS[op]} ?" for op in bounds]
    return " AND ".join(clauses), list(bounds.values())


# A sub-filter this many levels down is read from a set of its own, defined once ahead of the
# query (a WITH clause), instead of being written inside its parent: SQLite's parser refuses about
# 100 nested parentheses, which 32 levels of filters written inline would pass.
_INLINE = 4


class SqlBuilder:
    """WHERE clauses over a documents table's JSON metadata column; keys in `indexed` are looked up
    in the meta_values table instead."""

    def __init__(self, table: str, column: str, id_column: str, indexed: Iterable[str] = ()) -> None:
        self.table = table
        self.column = column
        self.id_column = id_column
        self.indexed = set(indexed)
        self.sets: list[tuple[str, list[Any]]] = []  # (`name(id) AS (SELECT ...)`, its parameters)

    def build(self, flt: Filter) -> tuple[str, list[Any]]:
        """The whole filter. One nested deeper than _INLINE levels becomes one query over the
        table, which reads its deep sub-filters from the sets ahead of it."""
        sql, params = self.where(flt)
        if not self.sets:
            return sql, params
        sets = ", ".join(definition for definition, _ in self.sets)
        return (f"{self.id_column} IN (WITH {sets} SELECT {self.id_column} FROM {self.table} WHERE {sql})",
                [*(v for _, p in self.sets for v in p), *params])

    def where(self, flt: Filter, depth: int = 0) -> tuple[str, list[Any]]:
        """The filter as SQL that is 0 or 1, never NULL."""
        clauses: list[str] = []
        params: list[Any] = []
        for key, cond in flt.conditions.items():
            sql, p = self.condition(key, cond)
            clauses.append(sql)
            params += p
        for sub in flt.all:
            sql, p = self.sub(sub, depth + 1)
            clauses.append(sql)
            params += p
        if flt.any:
            parts = [self.sub(sub, depth + 1) for sub in flt.any]
            clauses.append(_any_of([sql for sql, _ in parts]))
            params += [v for _, p in parts for v in p]
        for sub in flt.not_:
            sql, p = self.sub(sub, depth + 1)
            clauses.append(f"NOT ({sql})")
            params += p
        return _all_of(clauses), params

    def sub(self, flt: Filter, depth: int) -> tuple[str, list[Any]]:
        """A sub-filter written in place, or, every _INLINE levels, as a set defined ahead."""
        sql, params = self.where(flt, depth)
        if depth % _INLINE:
            return sql, params
        name = f"filter_set_{len(self.sets)}"
        self.sets.append((f"{name}(id) AS (SELECT {self.id_column} FROM {self.table} WHERE {sql})", params))
        return f"{self.id_column} IN {name}", []

    def condition(self, key: str, cond: Condition) -> tuple[str, list[Any]]:
        if cond.op == "eq":
            if cond.value is None:  # the key holds null, or does not exist
                return f"COALESCE(json_type({self.column}, {self.path(key)}), 'null') = 'null'", []
            return self.matches(key, lambda t, v: _one_of([cond.value], t, v))
        if cond.op in ("in", "contains_any"):
            return self.matches(key, lambda t, v: _one_of(cond.value, t, v))
        if cond.op in ("ne", "not_in"):
            sql, params = self.condition(key, Condition("eq" if cond.op == "ne" else "in", cond.value))
            return f"NOT ({sql})", params
        if cond.op == "contains_all":
            return self.contains_all(key, distinct_values(cond.value))
        if cond.op == "range":
            return self.matches(key, lambda t, v: _in_range(cond.value, t, v))
        # exists
        sql = f"COALESCE(json_type({self.column}, {self.path(key)}), 'null') != 'null'"
        return (sql if cond.value else f"NOT ({sql})"), []

    @staticmethod
    def path(key: str) -> str:
        # The path is written into the SQL, not bound: its segments are validated names (no
        # quote can occur), and a literal path lets SQLite use an expression index on it.
        return f"'{json_path(key)}'"

    def matches(self, key: str, test: Callable[[str, str], tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
        """SQL true when the key's value passes `test`, or one element of its array does."""
        path = self.path(key)
        if key in self.indexed:
            sql, params = test("m.type", "m.value")
            return (f"{self.id_column} IN (SELECT m.doc_id FROM meta_values m WHERE m.key = ? AND ({sql}))",
                    [key, *params])
        whole, whole_params = test(f"json_type({self.column}, {path})", f"json_extract({self.column}, {path})")
        element, element_params = test("e.type", "e.value")
        # COALESCE: a missing key makes the comparisons NULL, and NOT NULL is NULL, not true.
        return (f"COALESCE(({whole}) OR (json_type({self.column}, {path}) = 'array' AND EXISTS"
                f" (SELECT 1 FROM json_each({self.column}, {path}) e WHERE {element})), 0)",
                [*whole_params, *element_params])

    def contains_all(self, key: str, values: list[Any]) -> tuple[str, list[Any]]:
        """SQL true when every one of the (distinct) values matches the key: as many distinct values
        of the key (itself, or its array's elements) match as there are values."""
        if key in self.indexed:
            test, params = _one_of(values, "m.type", "m.value")
            return (f"{self.id_column} IN (SELECT m.doc_id FROM meta_values m WHERE m.key = ? AND ({test})"
                    f" GROUP BY m.doc_id HAVING count(DISTINCT {_value_tag('m.type', 'm.value')}) = ?)",
                    [key, *params, len(values)])
        path = self.path(key)
        test, params = _one_of(values, "e.type", "e.value")
        # json_each of a scalar yields the scalar itself; of an object, its members (never a match).
        return (f"COALESCE(json_type({self.column}, {path}) != 'object' AND (SELECT count(DISTINCT"
                f" {_value_tag('e.type', 'e.value')}) FROM json_each({self.column}, {path}) e WHERE {test}) = ?, 0)",
                [*params, len(values)])


def to_sql(flt: Filter | None, table: str = "documents", column: str = "metadata", id_column: str = "id",
           indexed: Iterable[str] = ()) -> tuple[str, list[Any]]:
    """WHERE clause (without the keyword) and its parameters over a table's JSON metadata column."""
    return SqlBuilder(table, column, id_column, indexed).build(flt or Filter())


# -- meta_values rows ---------------------------------------------------------------------------


def index_rows(metadata: dict[str, Any], keys: Iterable[str]) -> list[tuple[str, str, Any]]:
    """(key, json type, value) rows of meta_values for one document's indexed keys: one per scalar
    value, one per scalar element of an array."""
    rows: list[tuple[str, str, Any]] = []
    for key in keys:
        value: Any = metadata
        for segment in key.split("."):
            value = value.get(segment) if isinstance(value, dict) else None
            if value is None:
                break
        for item in value if isinstance(value, list) else [value]:
            if item is None or isinstance(item, (dict, list)):
                continue
            kind = ("true" if item else "false") if isinstance(item, bool) else (
                "integer" if isinstance(item, int) else "real" if isinstance(item, float) else "text")
            rows.append((key, kind, item if kind in ("integer", "real", "text") else None))
    return rows
