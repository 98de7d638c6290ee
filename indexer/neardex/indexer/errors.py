"""The one exception hierarchy of neardex's domain.

The server maps each class to a gRPC status code in one place (neardex.server.errors); the client
maps status codes back to its own classes of the same names.
"""

from __future__ import annotations


class NeardexError(Exception):
    """Base of every error neardex raises on purpose."""


class InvalidArgument(NeardexError):
    """A request field is malformed; the message names the field."""


class NotFound(NeardexError):
    """A collection or document does not exist."""


class AlreadyExists(NeardexError):
    """A collection of that name exists already."""


class FailedPrecondition(NeardexError):
    """The stored state refuses the operation (another writer holds the folder, model mismatch)."""


class ResourceExhausted(NeardexError):
    """A request exceeds a server limit."""
