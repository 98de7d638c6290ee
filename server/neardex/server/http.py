"""HTTP/JSON beside gRPC: every unary RPC in the Connect protocol's unary shape.

`POST /neardex.v1.Neardex/Search` with the request as JSON (protobuf's JSON mapping) answers the
response as JSON, or a Connect error (`{"code": "not_found", "message": ...}` with the matching
HTTP status). Nothing here implements an RPC: each call goes through the same gate (keys, limits,
deadlines, status codes, metrics) and the same servicer as a gRPC call, on the same thread pool,
so one limit counts both transports. `Authorization: Bearer KEY` (or `api-key: KEY`) carries the
key and `Connect-Timeout-Ms` the deadline. UpsertStream, a stream, is gRPC's only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format, message_factory

from neardex.v1 import neardex_pb2, neardex_pb2_grpc

from .gate import SERVICE_NAME, Gate

log = logging.getLogger("neardex.server")

SERVICE = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"]
# Connect's HTTP status for each code (connectrpc.com/docs/protocol#error-codes).
HTTP_STATUS = {
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "data_loss": 500, "unauthenticated": 401,
}


def connect_code(code: grpc.StatusCode) -> str:
    return "canceled" if code is grpc.StatusCode.CANCELLED else code.name.lower()


class _Aborted(Exception):
    pass


class HttpContext:
    """What the gate and the servicer ask of a gRPC call's context, for a call over HTTP."""

    def __init__(self, timeout_ms: float | None) -> None:
        self._expires = time.monotonic() + timeout_ms / 1000 if timeout_ms is not None else None
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: Sequence[tuple[str, str]] = ()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted(details)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailers = metadata

    def time_remaining(self) -> float | None:
        return None if self._expires is None else max(self._expires - time.monotonic(), 0.0)

    def is_active(self) -> bool:
        return True


@dataclass(frozen=True)
class _Details:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _Collector:
    """Stands in for a grpc.Server to collect the servicer's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)


class HttpGateway:
    def __init__(self, servicer: Any, gate: Gate, max_body_bytes: int) -> None:
        collector = _Collector()
        neardex_pb2_grpc.add_NeardexServicer_to_server(servicer, collector)
        self.handlers = collector.handlers
        self.gate = gate
        self.max_body_bytes = max_body_bytes
        self.messages = {m.name: (message_factory.GetMessageClass(m.input_type), m)
                         for m in SERVICE.methods}

    def call(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of one call."""
        prefix = f"/{SERVICE_NAME}/"
        method = path[len(prefix):] if path.startswith(prefix) else ""
        if method not in self.messages:
            return 404, {"code": "unimplemented", "message": f"path: no RPC {path!r}; POST /{SERVICE_NAME}/<Method>"}
        request_class, descriptor = self.messages[method]
        if descriptor.client_streaming or descriptor.server_streaming:
            return 501, {"code": "unimplemented", "message": f"{method}: a streaming RPC, served over gRPC only"}
        request = request_class()
        try:
            json_format.Parse(body or b"{}", request)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return 400, {"code": "invalid_argument", "message": f"request: not a valid {request_class.__name__}: {exc}"}
        try:
            timeout = float(headers["connect-timeout-ms"]) if "connect-timeout-ms" in headers else None
        except ValueError:
            return 400, {"code": "invalid_argument", "message": "connect-timeout-ms: not a number of milliseconds"}
        metadata = tuple((k, v) for k, v in headers.items() if k in ("authorization", "api-key"))
        context = HttpContext(timeout)
        call_context = contextvars.Context()
        handler = call_context.run(self.gate.intercept_service, lambda _: self.handlers[method],
                                   _Details(f"/{SERVICE_NAME}/{method}", metadata))
        try:
            response = self.gate.pool.submit(call_context.run, handler.unary_unary, request, context).result()
        except _Aborted:
            assert context.code is not None
            code = connect_code(context.code)
            error: dict[str, Any] = {"code": code, "message": context.details}
            if context.trailers:
                error["details"] = [{"type": "neardex.v1.RetryAfter", "value": dict(context.trailers)}]
            return HTTP_STATUS.get(code, 500), error
        return 200, json_format.MessageToDict(response)


def serve_http(gateway: HttpGateway, host: str, port: int, tls: ssl.SSLContext | None) -> ThreadingHTTPServer:
    """Start the HTTP/JSON listener in a thread of its own; the caller shuts it down."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("content-length") or 0)
            if length > gateway.max_body_bytes:
                return self._reply(429, {"code": "resource_exhausted",
                                         "message": f"request: {length} bytes; the limit is {gateway.max_body_bytes}"})
            body = self.rfile.read(length)
            kind = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                return self._reply(415, {"code": "invalid_argument",
                                         "message": f"content-type: {kind or 'none'}; send application/json"})
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = gateway.call(self.path, body, headers)
            self._reply(status, payload)

        def do_GET(self) -> None:  # noqa: N802
            self._reply(405, {"code": "unimplemented", "message": "method: POST a JSON request"})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # calls are counted in the metrics; request lines would carry no key, but no need

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="http-json", daemon=True).start()
    return server
