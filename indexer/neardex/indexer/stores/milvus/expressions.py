"""Metadata as Milvus stores it, and filters as Milvus boolean expressions over it.

Milvus compares `true == 1`, and an order comparison of unlike types is unknown (so `not` of it is
unknown too): booleans are written as reserved strings, and ranges read a copy of the metadata's
scalars by path, so that every leaf is false, never unknown, where a key is missing and negations
stay two-valued, as the filter language (query/filters.py) defines them. Strings are quoted by
Milvus' grammar, lists go to `json_contains_any` / `json_contains_all` whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InvalidArgument
from ...query.filters import RANGE_OPS, Condition, Filter, distinct_values


def quote(value: str) -> str:
    """A string literal of Milvus' expression grammar, which takes every character but `"`, `\\`
    and line breaks as it is, and knows no `\\u` escapes (JSON's quoting is refused for control
    characters)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


# Milvus compares JSON booleans equal to numbers (true == 1); neardex keeps them apart, so the
# store writes a boolean as a string of its own ("\ue000true") and reads it back as a boolean.
# Strings starting with that private-use character are refused on write.
_BOOL = "\ue000"


def encode_metadata(value: Any, field: str) -> Any:
    if isinstance(value, bool):
        return _BOOL + ("true" if value else "false")
    if isinstance(value, str) and value.startswith(_BOOL):
        raise InvalidArgument(f"{field}: strings starting with U+E000 are reserved by the Milvus store")
    if isinstance(value, dict):
        return {k: encode_metadata(v, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [encode_metadata(v, f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def decode_metadata(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_BOOL):
        return value == _BOOL + "true"
    if isinstance(value, dict):
        return {k: decode_metadata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_metadata(v) for v in value]
    return value


def scalars(metadata: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The numbers and the strings of a document's metadata by dotted path, for ranges (arrays
    and booleans are not ordered by a range; a key that has a dot of its own is left out)."""
    numbers: dict[str, float] = {}
    strings: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if "." not in key:
                    walk(inner, f"{path}.{key}" if path else key)
        elif isinstance(value, str):
            strings[path] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            numbers[path] = value

    walk(metadata, "")
    return numbers, strings


# A document's metadata as Milvus holds it: as given (booleans encoded), and its scalars by path.
METADATA_FIELDS = ("meta", "nums", "strs")


def filterable(metadata: dict[str, Any], field: str) -> dict[str, Any]:
    numbers, strings = scalars(metadata)
    return {"meta": encode_metadata(metadata, field), "nums": numbers, "strs": strings}


def _literal(value: Any) -> str:
    if isinstance(value, bool | str):
        return quote(encode_metadata(value, "filter"))
    # Never a bare function argument (where Milvus' grammar would want a negative number in
    # parentheses): numbers are compared, or are elements of a list.
    return repr(value)


def _list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def meta_path(key: str) -> str:
    """A dotted metadata key as a Milvus path into the `meta` JSON field."""
    return "meta" + "".join(f"[{quote(segment)}]" for segment in key.split("."))



def to_expr(flt: Filter | None) -> str:
    """A filter as a Milvus boolean expression over the `meta` JSON field (see filters.py for
    the semantics; every leaf is written so that a missing key makes it false, never unknown)."""
    return _expr(flt) if flt else ""


def _expr(flt: Filter) -> str:
    parts = [_condition(k, c) for k, c in flt.conditions.items()]
    parts += [_expr(sub) for sub in flt.all]
    if flt.any:
        parts.append(" or ".join(f"({_expr(sub)})" for sub in flt.any))
    parts += [f"not ({_expr(sub)})" for sub in flt.not_]
    return " and ".join(f"({p})" for p in parts) or "true"  # an empty filter holds for all


def _condition(key: str, cond: Condition) -> str:
    path = meta_path(key)
    if cond.op == "eq" and cond.value is None:
        return f"{path} is null"
    if cond.op in ("eq", "in", "contains_any"):
        # An array holding one of the values (one function call for the whole list), or a
        # scalar equal to one: Milvus takes no `in` on a JSON path.
        values = distinct_values(cond.value if cond.op != "eq" else [cond.value])
        scalar = " or ".join(f"{path} == {_literal(v)}" for v in values)
        return f"exists {path} and (json_contains_any({path}, {_list(values)}) or {scalar})"
    if cond.op in ("ne", "not_in"):
        return f"not ({_condition(key, Condition('eq' if cond.op == 'ne' else 'in', cond.value))})"
    if cond.op == "contains_all":
        values = distinct_values(cond.value)
        # A scalar holds every value only when there is one.
        scalar = f" or {path} == {_literal(values[0])}" if len(values) == 1 else ""
        return f"exists {path} and (json_contains_all({path}, {_list(values)}){scalar})"
    if cond.op == "range":
        # Over the scalar copy of the key (numbers or strings): Milvus leaves an order comparison
        # of unlike types unknown, and `not` of unknown is unknown, where it must be true.
        field = "strs" if any(isinstance(v, str) for v in cond.value.values()) else "nums"
        shadow = f"{field}[{quote(key)}]"
        bounds = " and ".join(f"{shadow} {RANGE_OPS[op]} {_literal(v)}" for op, v in cond.value.items())
        return f"exists {shadow} and {bounds}"
    return f"exists {path}" if cond.value else f"not exists {path}"
