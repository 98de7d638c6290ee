"""The caller's trace continues into the server: every call carries the current W3C trace context
(`traceparent`, `tracestate`) in its metadata when OpenTelemetry is installed and a span is
current. The client does not depend on OpenTelemetry: without it, calls carry the metadata they
always did.

The API is imported on the first call, not with the client, so importing the client costs nothing
more where OpenTelemetry is installed but unused.
"""

from __future__ import annotations

from typing import Any

Metadata = tuple[tuple[str, str], ...]

_inject: Any = None  # opentelemetry.propagate.inject once looked for; False where it is missing


def with_trace(metadata: Metadata) -> Metadata:
    """`metadata` and the current trace context, if any."""
    global _inject
    if _inject is None:
        _inject = _find_inject()
    if _inject is False:
        return metadata
    carrier: dict[str, str] = {}
    _inject(carrier)
    return metadata + tuple(carrier.items()) if carrier else metadata


def _find_inject() -> Any:
    try:
        from opentelemetry.propagate import inject
    except ImportError:
        return False
    return inject
