"""Metadata filters as SQL over the local store's JSON metadata column and its meta_values table.

A filter (query/filters.py) compiles to one WHERE clause whose depth does not grow with the number
of values or conditions: values of a kind collapse into one IN list, long AND/OR chains are
nested in bounded groups. Keys listed as indexed in a collection are answered from its
`meta_values` table (one row per scalar or array element, indexed by key and value) instead of a
scan of every document's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from ...query.filters import RANGE_OPS, Condition, Filter, distinct_values, value_kind


def json_path(key: str) -> str:
    """The JSON path of a dotted key: a.b -> $."a"."b" (segments are validated names)."""
    return "$" + "".join(f'."{segment}"' for segment in key.split("."))


def _one_of(values: list[Any], type_col: str, value_col: str) -> tuple[str, list[Any]]:
    """SQL true when a JSON value (its json_type in type_col, its value in value_col) matches one
    of the (non-null) values: at most one clause per kind, whatever the number of values."""
    clauses: list[str] = [f"{type_col} = '{flag}'" for flag in ("true", "false")
                          if any(value_kind(v) == flag for v in values)]
    params: list[Any] = []
    for kind, types in (("number", "('integer', 'real')"), ("text", "('text')")):
        same = [v for v in values if value_kind(v) == kind]
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


# -- facets ----------------------------------------------------------------------------------------


def facet_sql(key: str, where: str, params: list[Any], filtered: bool, indexed: bool,
              limit: int) -> tuple[str, list[Any]]:
    """One query for the `limit` most frequent values of key among the documents `d` that `where`
    admits (each once, in a set `allowed` when `filtered`), as rows (kind, value, documents), and
    first a row (NULL, NULL, the number of documents admitted): one statement, so one snapshot.

    An indexed key is read from the meta_values_facets index alone, in its (key, type, value)
    order, so strings and booleans are counted as they stream by; numbers are grouped by value
    across their two types (2 == 2.0). Any other key is read from each document's JSON: json_each
    yields a scalar as itself and an array's elements (an object's members are no values of the
    key; nulls and nested arrays and objects are left out, as meta_values leaves them out)."""
    scope = " AND doc_id IN allowed" if filtered else ""
    if indexed:
        rows = ("SELECT type AS kind, value, count(DISTINCT doc_id) AS n FROM meta_values INDEXED BY"
                f" meta_values_facets WHERE key = ? AND type NOT IN ('integer', 'real'){scope} GROUP BY type, value"
                " UNION ALL SELECT 'number', value, count(DISTINCT doc_id) FROM meta_values INDEXED BY"
                f" meta_values_facets WHERE key = ? AND type IN ('integer', 'real'){scope} GROUP BY value")
        row_params: list[Any] = [key, key]
    else:
        path = f"'{json_path(key)}'"
        rows = ("SELECT CASE WHEN e.type IN ('integer', 'real') THEN 'number' ELSE e.type END AS kind,"
                " CASE WHEN e.type IN ('true', 'false') THEN NULL ELSE e.value END AS value,"
                f" count(DISTINCT d.id) AS n FROM documents d, json_each(d.metadata, {path}) e"
                f" WHERE json_type(d.metadata, {path}) != 'object'"
                f" AND e.type IN ('true', 'false', 'integer', 'real', 'text'){scope.replace('doc_id', 'd.id')}"
                " GROUP BY kind, value")
        row_params = []
    total = "SELECT count(*) FROM allowed" if filtered else "SELECT count(*) FROM documents"
    return (f"WITH allowed(id) AS (SELECT d.id FROM documents d WHERE {where})"
            f" SELECT NULL, NULL, ({total}) UNION ALL SELECT * FROM (SELECT kind, value, n FROM ({rows})"
            " ORDER BY n DESC, CASE kind WHEN 'false' THEN 0 WHEN 'true' THEN 1 WHEN 'number' THEN 2 ELSE 3 END,"
            " value LIMIT ?)", [*params, *row_params, limit])


def json_value(kind: str, value: Any) -> Any:
    """A value of a facet row as Python: a boolean from its kind, the rest as stored."""
    return kind == "true" if kind in ("true", "false") else value
