"""Search modes and the number checks every request builder shares."""

from __future__ import annotations

import numbers
from typing import TypeGuard

from neardex.v1 import neardex_pb2 as pb

from ..errors import InvalidArgument

_MODES: dict[str, pb.SearchMode] = {
    "dense": pb.SEARCH_MODE_DENSE,
    "lexical": pb.SEARCH_MODE_LEXICAL,
    "hybrid": pb.SEARCH_MODE_HYBRID,
}
_MODE_NAMES: dict[int, str] = {int(v): k for k, v in _MODES.items()}

def mode_to_proto(mode: str | None, field: str = "mode") -> pb.SearchMode:
    if not mode:
        return pb.SEARCH_MODE_UNSPECIFIED
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        expected = ", ".join(repr(m) for m in _MODES)
        raise InvalidArgument(f"{field}: expected one of {expected} or None, got {mode!r}") from None


def mode_from_proto(mode: int) -> str:
    if mode == pb.SEARCH_MODE_UNSPECIFIED:
        return ""
    # A mode added by a newer server is reported rather than rejected.
    return _MODE_NAMES.get(mode, str(mode))


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[numbers.Integral]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_arg(field: str, value: object, *, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        raise InvalidArgument(f"{field}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _optional_int_arg(field: str, value: object, *, minimum: int) -> int:
    # 0 on the wire means "the server's or collection's setting".
    return 0 if value is None else _int_arg(field, value, minimum=minimum)
