"""Exceptions raised by the neardex clients.

Every failure, whether reported by the server as a gRPC status or detected locally before a
request is sent, is a :class:`NeardexError`, so callers need one ``except`` clause and never
have to inspect ``grpc.RpcError`` themselves.
"""

from __future__ import annotations

from typing import Any

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NeardexError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unknown",
    "from_rpc_error",
    "status_code_of",
]


class NeardexError(Exception):
    """A failed neardex call; ``code`` is the gRPC status and ``details`` the server's message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str = "", *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        # Codes without a subclass of their own (UNIMPLEMENTED, ABORTED, ...) still keep the
        # exact status on the instance.
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}" if self.details else self.code.name

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only code would otherwise be lost when an error crosses a process boundary.
        return (type(self), (self.details,), {"code": self.code})


class InvalidArgument(NeardexError, ValueError):
    """The request was malformed; also raised locally, before sending, for bad arguments."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NeardexError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(NeardexError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(NeardexError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(NeardexError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(NeardexError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(NeardexError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(NeardexError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(NeardexError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(NeardexError):
    code = grpc.StatusCode.INTERNAL


class Cancelled(NeardexError):
    code = grpc.StatusCode.CANCELLED


class Unknown(NeardexError):
    code = grpc.StatusCode.UNKNOWN


_BY_CODE: dict[grpc.StatusCode, type[NeardexError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Internal,
        Cancelled,
        Unknown,
    )
}


def status_code_of(err: grpc.RpcError) -> grpc.StatusCode:
    """The status of a failed call; UNKNOWN for a bare ``grpc.RpcError`` that carries none."""
    code = getattr(err, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def from_rpc_error(err: grpc.RpcError) -> NeardexError:
    """Map a sync ``grpc.RpcError`` or a ``grpc.aio.AioRpcError`` to the matching exception."""
    code = status_code_of(err)
    details_fn = getattr(err, "details", None)
    details = details_fn() if callable(details_fn) else None
    cls = _BY_CODE.get(code, NeardexError)
    return cls(details or "", code=code)
