"""OpenTelemetry traces, opt-in: a span per RPC, whatever its transport, with a child per stage.

Off unless `--otlp-endpoint` / `NEARDEX_OTLP_ENDPOINT` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
names a collector (or a caller of `create_server` hands a tracer provider, as the tests do). Off,
this module is imported (the opentelemetry API, which is light) and nothing else happens: the gate
holds no `Tracing`, no span is made, and the SDK and its exporter are never imported.

On, the gate (gate.py) starts the call's span when the call arrives, continuing the caller's trace
from the W3C `traceparent` / `tracestate` in its gRPC metadata or HTTP headers, and ends it where
the call is counted (`Gate._record`), with its status code. The stages' spans come from the same
blocks that time the stages a search answers with (neardex.indexer.stages): this module is the
observer those blocks tell; the store's round trips (`store.retrieve`, `store.fetch`, ...) and the
model scheduler's queue wait and model call are reported the same way.

Attributes say what was asked and what came back (collection, mode, k, hit count, status), never
a query's text, a document's text or metadata, or a key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from neardex.indexer import stages
from neardex.indexer.errors import FailedPrecondition

log = logging.getLogger("neardex.server")

STANDARD_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
# The headers that carry a caller's trace context (W3C Trace Context).
TRACE_HEADERS = ("traceparent", "tracestate")
# gRPC codes that are the server's fault, as OpenTelemetry's semantic conventions mark server spans.
_SERVER_ERRORS = {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
_CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
          "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
          "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
          "DATA_LOSS": 15, "UNAUTHENTICATED": 16}


def endpoint_of(setting: str) -> str:
    """The collector traces go to: the setting, else the standard variable; "" for none."""
    return setting or os.environ.get(STANDARD_ENDPOINT, "")


class Tracing:
    """The server's tracer, and the observer its stages report to (stages.Observer)."""

    def __init__(self, provider: Any, owned: bool = False) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("neardex.server")
        self._owned = owned  # made here: shut down (flushed) with the server

    @classmethod
    def export_to(cls, endpoint: str) -> Tracing:
        """Spans batched to an OTLP gRPC collector at `endpoint` (`http://host:4317`); the SDK is
        imported here, only when traces are on."""
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise FailedPrecondition(
                f"otlp_endpoint: traces to {endpoint} need the OpenTelemetry SDK and OTLP exporter ({exc.name}"
                ' is missing): pip install "neardex-server[otlp]", or unset --otlp-endpoint /'
                " NEARDEX_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT") from None

        # service.name from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES when set, else neardex.
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "neardex")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("traces: OTLP to %s", endpoint)
        return cls(provider, owned=True)

    def shutdown(self) -> None:
        if self._owned:
            self.provider.shutdown()

    # -- the call's span ----------------------------------------------------------------------

    def start_call(self, method: str, metadata: Mapping[str, str]) -> Any:
        """The call's span, a child of the caller's span when its metadata carries one."""
        carrier = {k: metadata[k] for k in TRACE_HEADERS if k in metadata}
        parent = propagate.extract(carrier) if carrier else None
        full = method.lstrip("/")  # neardex.v1.Neardex/Search, as OpenTelemetry names RPC spans
        service, _, name = full.rpartition("/")
        return self.tracer.start_span(full, context=parent, kind=SpanKind.SERVER,
                                      attributes={"rpc.service": service, "rpc.method": name})

    @contextmanager
    def child(self, span: Any, name: str) -> Iterator[None]:
        """A span under the call's span, from a thread that has not made it current (the gate's
        checks before the handler runs)."""
        inner = self.tracer.start_span(name, context=trace.set_span_in_context(span))
        try:
            yield
        except BaseException as exc:
            _failed(inner, exc)
            raise
        finally:
            inner.end()

    @contextmanager
    def serving(self, span: Any) -> Iterator[None]:
        """Inside the block the call's span is current and the stages report to this tracer."""
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            with stages.observed(self):
                yield
        finally:
            otel_context.detach(token)

    @staticmethod
    def describe(span: Any, request: Any = None, response: Any = None) -> None:
        """What was asked and what came back, by field name: collection, k, mode, hit count."""
        if span is None or not span.is_recording():
            return
        if request is not None and hasattr(request, "DESCRIPTOR"):
            fields = request.DESCRIPTOR.fields_by_name
            if "collection" in fields and request.collection:
                span.set_attribute("neardex.collection", request.collection)
            elif "name" in fields and isinstance(request.name, str) and request.name:
                span.set_attribute("neardex.collection", request.name)
            if "top_k" in fields:
                span.set_attribute("neardex.k", request.top_k)
            if "mode" in fields and request.mode:
                span.set_attribute("neardex.mode", _mode(fields["mode"], request.mode))
            if "requests" in fields:
                span.set_attribute("neardex.searches", len(request.requests))
        if response is not None and hasattr(response, "DESCRIPTOR"):
            fields = response.DESCRIPTOR.fields_by_name
            if "hits" in fields:
                span.set_attribute("neardex.hits", len(response.hits))
            if "mode" in fields and response.mode:  # the mode that ran: the request's or the collection's
                span.set_attribute("neardex.mode", _mode(fields["mode"], response.mode))
            if "responses" in fields:
                span.set_attribute("neardex.hits", sum(len(r.hits) for r in response.responses))
            if "answers" in fields:
                span.set_attribute("neardex.hits", len(response.answers))

    @staticmethod
    def end_call(span: Any, code: str) -> None:
        span.set_attribute("rpc.grpc.status_code", _CODES.get(code, 2))
        span.set_attribute("neardex.status_code", code)
        if code in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()

    # -- stages.Observer ----------------------------------------------------------------------

    def enter(self, name: str) -> Any:
        span = self.tracer.start_span(name)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def exit(self, handle: Any, error: BaseException | None) -> None:
        span, token = handle
        otel_context.detach(token)
        if error is not None:
            _failed(span, error)
        span.end()

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any]) -> None:
        self.tracer.start_span(name, start_time=start_ns, attributes=dict(attributes)).end(end_time=end_ns)


def _mode(field: Any, value: int) -> str:
    """A SearchMode's name as the API spells it (SEARCH_MODE_HYBRID: hybrid)."""
    number = field.enum_type.values_by_number.get(value)
    return number.name.rsplit("_", 1)[-1].lower() if number is not None else str(value)


def _failed(span: Any, error: BaseException) -> None:
    # The error's type only: its message may quote what the caller sent.
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.set_attribute("error.type", type(error).__name__)
