"""Server factory: create_server(settings) -> (server, port), and serve() for the foreground."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from neardex.indexer.catalog import Catalog
from neardex.indexer.embedder import Embedder
from neardex.v1 import neardex_pb2, neardex_pb2_grpc

from . import metrics
from .batcher import QueryBatcher
from .service import NeardexService
from .settings import Settings

log = logging.getLogger("neardex.server")
SERVICE_NAME = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"].full_name


@dataclass
class Server:
    """A started gRPC server over one data folder, with its metrics endpoint if any."""

    grpc_server: grpc.Server
    catalog: Catalog
    health: health.HealthServicer
    port: int
    batchers: dict[int, QueryBatcher]  # filled as collections load their models
    metrics_server: Any = None

    def stop(self, grace: float | None = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait()
        for batcher in list(self.batchers.values()):
            batcher.close()
        # Closing snapshots every index, so the next start replays no change log.
        self.catalog.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()

    def wait_for_termination(self) -> None:
        self.grpc_server.wait_for_termination()


def create_server(settings: Settings) -> tuple[Server, int]:
    batchers: dict[int, QueryBatcher] = {}

    def query_encoder(embedder: Embedder) -> Any:
        # One queue per loaded model: concurrent queries share its model calls.
        if id(embedder) not in batchers:
            if metrics.observe_embed not in getattr(embedder, "observers", []):
                embedder.observers.append(metrics.observe_embed)  # type: ignore[attr-defined]
            batchers[id(embedder)] = QueryBatcher(embedder.encode, settings.batch_max_size,
                                                  settings.batch_wait_ms / 1000.0)
        return batchers[id(embedder)].encode

    catalog = Catalog(settings.data_dir, default_encoder=settings.default_encoder,
                      query_encoder_factory=query_encoder)
    try:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers),
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
            ],
        )
        neardex_pb2_grpc.add_NeardexServicer_to_server(NeardexService(catalog, settings), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        if port == 0:
            raise OSError(f"port: cannot listen on {settings.host}:{settings.port}")
        metrics_server = None
        if settings.metrics_port:
            metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
        server.start()
    except BaseException:
        catalog.close()
        raise
    return Server(server, catalog, health_servicer, port, batchers, metrics_server), port


def serve(settings: Settings, ready: Any = None) -> None:
    """Run in the foreground until SIGINT or SIGTERM, then drain and snapshot."""
    server, port = create_server(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready(server, port)
    stop.wait()
    log.info("shutting down")
    server.stop()
