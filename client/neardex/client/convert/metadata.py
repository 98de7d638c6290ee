"""Metadata <-> ``google.protobuf.Struct``: what JSON-like metadata can hold, checked before
sending so that nothing comes back changed (integers beyond 2**53, NaN, nested sets)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from ..errors import InvalidArgument
from .scalars import _is_int, _is_number

# Struct numbers are doubles: integers beyond this would come back silently changed.
_MAX_EXACT_INT = 2**53


def _to_value(value: Any, field: str) -> struct_pb2.Value:
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if _is_int(value):
        if abs(int(value)) > _MAX_EXACT_INT:
            raise InvalidArgument(
                f"{field}: integer {value} cannot be stored exactly (metadata numbers are "
                "doubles); store it as a string"
            )
        return struct_pb2.Value(number_value=float(value))
    if _is_number(value):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(f"{field}: metadata numbers must be finite, got {value!r}")
        return struct_pb2.Value(number_value=number)
    if isinstance(value, Mapping):
        return struct_pb2.Value(struct_value=metadata_to_struct(value, field))
    if isinstance(value, list | tuple):
        items = [_to_value(item, f"{field}[{i}]") for i, item in enumerate(value)]
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=items))
    raise InvalidArgument(
        f"{field}: metadata values must be JSON-like (str, number, bool, None, list, dict), "
        f"got {type(value).__name__}"
    )


def metadata_to_struct(metadata: Mapping[str, Any], field: str = "metadata") -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"{field}: keys must be strings, got {key!r}")
        struct.fields[key].CopyFrom(_to_value(value, f"{field}.{key}"))
    return struct


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        # The wire carries every number as a double: a whole one was sent as an int.
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _MAX_EXACT_INT else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_metadata(value.struct_value)
    if kind == "list_value":
        return [_from_value(item) for item in value.list_value.values]
    return None


def value_from_proto(value: struct_pb2.Value) -> Any:
    """A Struct value as plain Python (a group's value), whole numbers as ints."""
    return _from_value(value)


def struct_to_metadata(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _from_value(value) for key, value in struct.fields.items()}
