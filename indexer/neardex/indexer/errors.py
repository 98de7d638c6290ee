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


class Overloaded(ResourceExhausted):
    """The server is at a load limit right now; the same request can succeed a moment later."""


class Unauthenticated(NeardexError):
    """The call carries no API key, or one the server does not know."""


class PermissionDenied(NeardexError):
    """The caller's key is known but its role or collections do not allow the call."""


class Unavailable(NeardexError):
    """A store the collection lives in (a Milvus instance) cannot be reached; a retry may succeed."""


class DeadlineExceeded(NeardexError):
    """The caller's deadline passed before the work was done; the rest of it is not started."""


class Cancelled(NeardexError):
    """The caller went away before the work was done; the rest of it is not started."""
