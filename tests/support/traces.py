"""Traces in tests and benchmarks: a traced server whose spans are kept in memory, the spans of one
trace as a tree (and printed with durations), and an OTLP trace receiver on a real port, the
collector's own gRPC service (opentelemetry-proto's TraceService), that keeps what it is sent.

`python -m tests.support.traces` serves the samples in a traced server, runs one hybrid search
through the client under a span of its own and prints the trace as a tree.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider that keeps every ended span in memory, at once (no batching)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@contextmanager
def traced_server(data_dir: Path, **settings: Any) -> Iterator[tuple[Any, int, InMemorySpanExporter]]:
    """A server created in process, tracing into memory: (server, gRPC port, exporter)."""
    from neardex.server.app import create_server
    from neardex.server.settings import Settings

    provider, exporter = memory_provider()
    server, port = create_server(Settings(data_dir=data_dir, host="127.0.0.1", port=0, metrics_port=0, **settings),
                                 tracer_provider=provider)
    try:
        yield server, port, exporter
    finally:
        server.stop(grace=1)


@dataclass
class Node:
    span: ReadableSpan
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def ms(self) -> float:
        return ((self.span.end_time or 0) - (self.span.start_time or 0)) / 1e6

    def find(self, name: str) -> list[Node]:
        """Every node named `name` below this one, depth first."""
        out = []
        for child in self.children:
            if child.name == name:
                out.append(child)
            out.extend(child.find(name))
        return out

    def names(self) -> list[str]:
        return [c.name for c in self.children]


def tree(spans: Sequence[ReadableSpan], root_name: str) -> Node:
    """The last span named `root_name` with every span below it, children in start order."""
    roots = [s for s in spans if s.name == root_name]
    assert roots, f"no span {root_name!r} among {sorted({s.name for s in spans})}"
    root = roots[-1]
    by_parent: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        if s.parent is not None and s.context.trace_id == root.context.trace_id:
            by_parent.setdefault(s.parent.span_id, []).append(s)

    def build(span: ReadableSpan) -> Node:
        kids = sorted(by_parent.get(span.context.span_id, []), key=lambda s: s.start_time or 0)
        return Node(span, [build(k) for k in kids])

    return build(root)


def render(node: Node, depth: int = 0, attributes: bool = True) -> str:
    """The tree, one span a line: its name, duration and attributes, indented by depth."""
    attrs = ""
    if attributes and node.span.attributes:
        attrs = "  " + " ".join(f"{k}={v}" for k, v in sorted(node.span.attributes.items())
                                if not k.startswith("rpc.service"))
    line = f"{'  ' * depth}{node.name:<{max(34 - 2 * depth, 1)}} {node.ms:8.2f} ms{attrs}"
    return "\n".join([line] + [render(c, depth + 1, attributes) for c in node.children])


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector on a real port, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []  # opentelemetry.proto.trace.v1.Span messages
        self.resources: list[Any] = []
        self._arrived = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's own name
        with self._arrived:
            for resource_spans in request.resource_spans:
                self.resources.append(resource_spans.resource)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
            self._arrived.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, name: str, timeout: float = 30.0) -> Any:
        """The first span named `name` to arrive."""
        with self._arrived:
            self._arrived.wait_for(lambda: any(s.name == name for s in self.spans), timeout)
            return next((s for s in self.spans if s.name == name), None)

    def stop(self) -> None:
        self._server.stop(grace=None)


def sample_documents() -> list[dict[str, Any]]:
    from neardex.indexer.ingest.readers import read_documents
    from tests.support.paths import SAMPLES

    return [{"id": d.id, "text": d.text, "title": d.title} for d in read_documents(SAMPLES)]


def main() -> None:
    import tempfile

    from neardex.client import Client

    # The caller's own tracer, apart from the server's: its span reaches the server only through
    # the call's metadata.
    caller_provider, caller_spans = memory_provider()
    caller = caller_provider.get_tracer("caller")
    with tempfile.TemporaryDirectory() as tmp, traced_server(Path(tmp)) as (_, port, server_spans):
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.create_collection("docs")
            client.upsert("docs", sample_documents())
            client.search("docs", "warm up the model", k=3, mode="hybrid")
            with caller.start_as_current_span("caller"):
                client.search("docs", "how do rivers shape valleys", k=5, mode="hybrid")
        spans = list(caller_spans.get_finished_spans()) + list(server_spans.get_finished_spans())
    print(render(tree(spans, "caller")))


if __name__ == "__main__":
    main()
