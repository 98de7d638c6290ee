"""grpc.health.v1, decoded by hand so the client needs no grpcio-health-checking."""

from __future__ import annotations

from ..errors import Internal

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
# HealthCheckRequest{service: ""} encodes to zero bytes: the server's overall health.
HEALTH_CHECK_REQUEST = b""
_SERVING = 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def health_serving(payload: bytes) -> bool:
    """Whether a HealthCheckResponse says SERVING (field 1, a varint enum, 1 == SERVING)."""
    try:
        return _health_status(payload) == _SERVING
    except ValueError as exc:
        raise Internal(f"malformed health check response: {exc}") from None


def _health_status(payload: bytes) -> int:
    status = 0
    pos = 0
    while pos < len(payload):
        key, pos = _read_varint(payload, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(payload, pos)
            if number == 1:
                status = value
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = _read_varint(payload, pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(payload):
            raise ValueError("truncated message")
    return status
