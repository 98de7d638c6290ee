"""Server factory: create_server(settings) -> (server, port), and serve() for the foreground."""

from __future__ import annotations

import faulthandler
import ipaddress
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from neardex.indexer.catalog import Catalog
from neardex.indexer.embedding.embedder import AUTO, Embedder, resolve_device
from neardex.indexer.embedding.rerankers import CrossEncoderModel, RerankCalls
from neardex.indexer.embedding.selection import choose
from neardex.indexer.embedding.sources import find_model
from neardex.indexer.errors import FailedPrecondition, InvalidArgument
from neardex.v1 import neardex_pb2_grpc

from . import metrics
from .auth import KeyStore
from .gate import SERVICE_NAME, SPARE_THREADS, CallPool, Gate
from .http import AsgiServer, HttpLimits, http_app, metrics_app
from .purge import Purger
from .scheduler import ModelScheduler
from .service import NeardexService
from .settings import Settings
from .tracing import Tracing, endpoint_of

log = logging.getLogger("neardex.server")

SIGNAL_CHECK_S = 0.2


@dataclass
class Server:
    """A started gRPC server over one data folder, with its metrics endpoint if any."""

    grpc_server: grpc.Server
    catalog: Catalog
    health: health.HealthServicer
    port: int
    schedulers: dict[int, ModelScheduler]  # filled as collections load their models
    keys: KeyStore | None = None
    metrics_server: Any = None
    http_server: Any = None
    http_port: int = 0
    pool: CallPool | None = None
    gate: Gate | None = None  # the one interceptor, for transports mounted beside gRPC
    servicer: Any = None
    purger: Purger | None = None
    tracing: Tracing | None = None  # traces on: its spans are flushed when the server stops

    def stop(self, grace: float | None = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        if self.purger is not None:
            self.purger.stop()
        if self.http_server is not None:
            self.http_server.stop()
        self.grpc_server.stop(grace).wait()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
        for scheduler in list(self.schedulers.values()):
            scheduler.close()
        # Closing snapshots every index, so the next start replays no change log; an index rebuild
        # under way may take longer than a stop should (the next start begins it again).
        self.catalog.close(rebuild_wait=grace)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.tracing is not None:
            self.tracing.shutdown()

    def wait_for_termination(self) -> None:
        self.grpc_server.wait_for_termination()


def create_server(settings: Settings, tracer_provider: Any = None) -> tuple[Server, int]:
    """The server, started. Traces go to `settings.otlp_endpoint` (or $OTEL_EXPORTER_OTLP_ENDPOINT)
    when one is set, or to `tracer_provider` (an OpenTelemetry TracerProvider) when given."""
    schedulers: dict[int, ModelScheduler] = {}
    schedulers_lock = threading.Lock()

    def model_calls(embedder: Embedder) -> ModelScheduler:
        # One scheduler per loaded model: queries first, and concurrent queries share its calls.
        # Called from any gRPC thread: two first calls at once must not start two schedulers.
        with schedulers_lock:
            if id(embedder) not in schedulers:
                if metrics.observe_embed not in getattr(embedder, "observers", []):
                    embedder.observers.append(metrics.observe_embed)  # type: ignore[attr-defined]
                schedulers[id(embedder)] = ModelScheduler(
                    embedder.encode, settings.batch_max_size, settings.batch_wait_ms / 1000.0,
                    settings.batch_max_queue, settings.document_batch_size)
            return schedulers[id(embedder)]

    def rerank_calls(model: CrossEncoderModel) -> RerankCalls:
        # A cross-encoder's calls take the same road as every model call: its own scheduler's
        # worker, concurrent searches' pairs sharing a call.
        with schedulers_lock:
            if id(model) not in schedulers:
                schedulers[id(model)] = ModelScheduler(
                    model.score, settings.batch_max_size, settings.batch_wait_ms / 1000.0,  # type: ignore[arg-type]
                    settings.batch_max_queue, settings.document_batch_size)
            return schedulers[id(model)].queries  # type: ignore[return-value]

    if settings.max_concurrent_rpcs < 1:
        raise InvalidArgument(f"max_concurrent_rpcs: must be at least 1, got {settings.max_concurrent_rpcs}")
    # Read before anything opens: a bad keys file or certificate stops the start with its reason.
    keys = KeyStore(settings.api_keys_file) if settings.api_keys_file else None
    credentials = server_credentials(settings)
    catalog = Catalog(settings.data_dir, default_encoder=settings.default_encoder,
                      model_calls=model_calls, milvus=settings.milvus, device=settings.device,
                      rerank_calls=rerank_calls)
    try:
        if settings.default_encoder == AUTO and resolve_device(settings.device, AUTO) == "cpu":
            # What auto means for the default model, measured now if this machine never did (once,
            # about a minute), so that no first request waits for it inside its deadline.
            choose(find_model(None), None)
        if settings.request_timeout_s <= 0:
            raise InvalidArgument(f"request_timeout_s: must be more than 0, got {settings.request_timeout_s}")
        pool = CallPool(settings.max_concurrent_rpcs, settings.request_timeout_s)
        endpoint = endpoint_of(settings.otlp_endpoint)
        tracing = (Tracing(tracer_provider) if tracer_provider is not None
                   else Tracing.export_to(endpoint) if endpoint else None)
        gate = Gate(pool, settings.max_concurrent_rpcs, keys, catalog.aliases.resolve, tracing)
        backstop = 8 * settings.max_concurrent_rpcs + 8 * SPARE_THREADS
        server = grpc.server(
            pool,
            interceptors=[gate],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # Two servers must not share a port: the second would silently take half the calls.
                ("grpc.so_reuseport", 0),
                # Calls open at once on one connection: the backstop below, so no connection takes
                # it all (clients in one process share a connection, so no tighter than that).
                ("grpc.max_concurrent_streams", backstop),
                # A connection with no call for this long is closed: idle sockets are not free.
                ("grpc.max_connection_idle_ms", int(settings.grpc_idle_timeout_s * 1000)),
            ],
            # A backstop above the gate's own limit: refusals are cheap but not free.
            maximum_concurrent_rpcs=backstop,
        )
        servicer = NeardexService(catalog, settings)
        neardex_pb2_grpc.add_NeardexServicer_to_server(servicer, server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{settings.host}:{settings.port}"
        # Checked with a plain socket first: gRPC's own failure is a core log line and a bare
        # RuntimeError, and says nothing a user can act on.
        ensure_free(settings.host, settings.port, "port", "--port / NEARDEX_PORT")
        if settings.metrics_port:
            ensure_free(settings.metrics_host or settings.host, settings.metrics_port, "metrics_port",
                        "--metrics-port / NEARDEX_METRICS_PORT, or 0 for none")
        try:
            port = (server.add_secure_port(address, credentials) if credentials is not None
                    else server.add_insecure_port(address))
        except RuntimeError:
            port = 0
        if port == 0:
            raise FailedPrecondition(
                f"port: cannot listen on {address}: the address is in use or not this machine's"
                " (choose another with --port / NEARDEX_PORT)")
        metrics_server = None
        if settings.metrics_port:
            host = settings.metrics_host or settings.host
            try:
                metrics_server = AsgiServer(metrics_app(keys), host, settings.metrics_port, edge_limits(settings))
            except OSError as exc:
                raise FailedPrecondition(
                    f"metrics_port: cannot listen on {host}:{settings.metrics_port}: {exc.strerror}"
                    " (choose another with --metrics-port / NEARDEX_METRICS_PORT, or 0 for none)") from None
        server.start()
        http_server = None
        if settings.http_port >= 0:
            http_server = start_http(servicer, gate, settings)
    except BaseException:
        catalog.close()
        raise
    http_port = http_server.port if http_server is not None else 0
    purger = Purger(catalog, settings.purge_interval_s).start()
    return Server(server, catalog, health_servicer, port, schedulers, keys, metrics_server, http_server,
                  http_port, pool, gate, servicer, purger, tracing), port


def edge_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(settings.max_message_bytes, settings.http_idle_timeout_s, settings.http_body_timeout_s,
                      settings.tls_handshake_timeout_s, settings.http_max_connections)


def start_http(servicer: NeardexService, gate: Gate, settings: Settings) -> AsgiServer:
    """The HTTP port (Connect, /openapi.json and the console), with the gRPC port's TLS and client
    certificates."""
    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = (str(settings.tls_cert), str(settings.tls_key),
               str(settings.tls_client_ca) if settings.tls_client_ca is not None else None)
    try:
        return AsgiServer(http_app(servicer, gate, settings.max_message_bytes, settings.console), settings.host,
                          settings.http_port, edge_limits(settings), tls)
    except OSError as exc:
        raise FailedPrecondition(
            f"http_port: cannot listen on {settings.host}:{settings.http_port}: {exc.strerror}"
            " (choose another with --http-port / NEARDEX_HTTP_PORT)") from None


def ensure_free(host: str, port: int, field: str, hint: str) -> None:
    """Refuse at once, naming the setting, when host:port cannot be listened on."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FailedPrecondition(f"host: cannot resolve {host!r}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise FailedPrecondition(
                    f"{field}: cannot listen on {host}:{port}: {exc.strerror} (choose another with {hint})") from None


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{field}: cannot read {path}: {exc.strerror}") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the gRPC port when a certificate is given; with a client CA, mutual TLS."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise InvalidArgument("tls_client_ca: client certificates need TLS: give tls_cert and tls_key too")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise InvalidArgument("tls_cert, tls_key: TLS needs both the certificate chain and its private key")
    chain = [(_read(settings.tls_key, "tls_key"), _read(settings.tls_cert, "tls_cert"))]
    if settings.tls_client_ca is None:
        return grpc.ssl_server_credentials(chain)
    return grpc.ssl_server_credentials(chain, root_certificates=_read(settings.tls_client_ca, "tls_client_ca"),
                                       require_client_auth=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, ready: Any = None) -> None:
    """Run in the foreground until SIGINT or SIGTERM, then drain and snapshot; SIGHUP reloads
    the API keys file; SIGUSR1 prints every thread's stack to stderr (what a stuck server is
    doing, without stopping it)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Set before the server starts: a stop asked for while it starts is a stop, once it has. The
    # handler takes no lock: it runs between any two bytecodes of the main thread, which may hold it.
    stops: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: stops.append(signum))
    server, port = create_server(settings)
    if server.keys is None and not _is_loopback(settings.host):
        log.warning("no API keys: anyone who can reach %s:%d may read, write and delete every"
                    " collection; start with --api-keys FILE (see `neardex keys create`)", settings.host, port)
    if server.keys is not None:
        keys = server.keys
        signal.signal(signal.SIGHUP, lambda *_: keys.reload())
    if ready is not None:
        ready(server, port)
    # Python runs signal handlers on the main thread only, and when the kernel hands a signal to
    # one of the server's other threads, a main thread asleep is not woken to run it: sleeping in
    # short steps bounds how late a SIGTERM is seen.
    while not stops:
        time.sleep(SIGNAL_CHECK_S)
    log.info("shutting down")
    server.stop()
