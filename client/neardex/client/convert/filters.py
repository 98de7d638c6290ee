"""Metadata filters, from the dict a caller writes (``{"year": {"gte": 2000}}``, ``$and``/``$or``/
``$not``) to the ``Filter`` message, each mistake named by its path (``filter.year.gte``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import struct_pb2

from neardex.v1 import neardex_pb2 as pb

from ..errors import InvalidArgument
from .metadata import _to_value
from .scalars import _is_number

_RANGE_OPS = ("gt", "gte", "lt", "lte")


def _scalar_value(value: Any, field: str) -> struct_pb2.Value:
    if value is not None and not isinstance(value, str | bool) and not _is_number(value):
        raise InvalidArgument(f"{field}: expected a str, number, bool or None, got {type(value).__name__}")
    return _to_value(value, field)


def _values(values: Any, field: str, op: str) -> struct_pb2.ListValue:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidArgument(f"{field}: {op!r} expects a list of values, got {values!r}")
    items = [_scalar_value(v, f"{field}[{i}]") for i, v in enumerate(values)]
    if not items:
        raise InvalidArgument(f"{field}: {op!r} needs at least one value")
    return struct_pb2.ListValue(values=items)


_LIST_OPS = ("in", "not_in", "contains_any", "contains_all")
FILTER_OPS = ("eq", "ne", *_LIST_OPS, "exists", *_RANGE_OPS)


def _operator_condition(ops: Mapping[Any, Any], field: str) -> pb.Condition:
    keys = set(ops)
    if len(keys) == 1 and keys <= {"eq", "ne"}:
        op = next(iter(keys))
        return pb.Condition(**{op: _scalar_value(ops[op], f"{field}.{op}")})
    if len(keys) == 1 and keys <= set(_LIST_OPS):
        op = next(iter(keys))
        return pb.Condition(**{op: _values(ops[op], f"{field}.{op}", op)})
    if keys == {"exists"}:
        if not isinstance(ops["exists"], bool):
            raise InvalidArgument(f"{field}.exists: expected True or False, got {ops['exists']!r}")
        return pb.Condition(exists=ops["exists"])
    unknown = sorted(map(repr, keys.difference(_RANGE_OPS)))
    if unknown or not keys:
        raise InvalidArgument(
            f"{field}: expected one of {', '.join(FILTER_OPS[:-4])} or range bounds "
            f"{', '.join(_RANGE_OPS)}; got " + (", ".join(unknown) if unknown else "no operator")
        )
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for op in _RANGE_OPS:
        if op in ops:
            bound = ops[op]
            if isinstance(bound, str):
                texts[f"{op}_text"] = bound
            elif _is_number(bound) and math.isfinite(float(bound)):
                numbers[op] = float(bound)
            else:
                raise InvalidArgument(f"{field}.{op}: expected a number or a string, got {bound!r}")
    if numbers and texts:
        raise InvalidArgument(f"{field}: range bounds are all numbers or all strings")
    return pb.Condition(range=pb.Range(**numbers, **texts))


_COMBINATORS = {"$and": "all", "$or": "any", "$not": "none"}


def filter_to_proto(filter: Mapping[str, Any] | None, field: str = "filter", depth: int = 0) -> pb.Filter | None:
    """``{"lang": "en"}`` is equality (an array holding "en" matches too), a list/tuple/set is
    membership, and a dict names the operator: ``eq``, ``ne``, ``in``, ``not_in``,
    ``contains_any``, ``contains_all``, ``exists`` (True/False), or range bounds
    ``gt``/``gte``/``lt``/``lte`` (numbers, or strings such as ISO dates). Keys are dotted paths
    into nested metadata. Every condition must hold; ``"$and": [...]``, ``"$or": [...]`` and
    ``"$not": {...}`` (or a list: none may match) combine filters to any depth."""
    if not filter:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidArgument(f"{field}: expected a dict, got {type(filter).__name__}")
    if depth > 32:
        raise InvalidArgument(f"{field}: nested deeper than 32 levels")
    message = pb.Filter()
    for key, spec in filter.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"{field}: keys must be non-empty strings, got {key!r}")
        where = f"{field}.{key}"
        if key in _COMBINATORS:
            subs = spec if isinstance(spec, list | tuple) else [spec]
            target = getattr(message, _COMBINATORS[key])
            for i, sub in enumerate(subs):
                built = filter_to_proto(sub, f"{where}[{i}]", depth + 1)
                if built is None:
                    raise InvalidArgument(f"{where}[{i}]: an empty filter")
                target.add().CopyFrom(built)
        elif isinstance(spec, Mapping):
            message.conditions[key].CopyFrom(_operator_condition(spec, where))
        elif isinstance(spec, list | tuple | set | frozenset):
            message.conditions[key].CopyFrom(pb.Condition(**{"in": _values(spec, where, "in")}))
        else:
            message.conditions[key].CopyFrom(pb.Condition(eq=_scalar_value(spec, where)))
    return message
