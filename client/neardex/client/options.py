"""The options every command that talks to a server shares (where the server is, how to
authenticate, numbers that must be positive), and the client those options make. Both the
client's and the server's commands use them; neither command module imports the other.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

# Where commands find the server without --server.
SERVER_ENV = "NEARDEX_SERVER"
DEFAULT_SERVER = os.environ.get(SERVER_ENV) or "localhost:50051"


def add_server_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                   help=f"server (default: ${SERVER_ENV}, else localhost:50051; now {DEFAULT_SERVER})")
    add_connection_options(p)


def add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-key", default=None, help="API key sent with every call (default: $NEARDEX_API_KEY)")
    p.add_argument("--tls", action="store_true", default=None,
                   help="connect over TLS (default: on when $NEARDEX_TLS is 1 or a CA / client certificate is given)")
    p.add_argument("--ca-cert", type=Path, default=None, metavar="PEM",
                   help="CA that signed the server's certificate (default: $NEARDEX_CA_CERT, else the system's)")
    p.add_argument("--client-cert", type=Path, default=None, metavar="PEM",
                   help="client certificate for mutual TLS (default: $NEARDEX_CLIENT_CERT)")
    p.add_argument("--client-key", type=Path, default=None, metavar="PEM",
                   help="its private key (default: $NEARDEX_CLIENT_KEY)")


def connect(args: argparse.Namespace, timeout: float = 10.0) -> Any:
    """A client for --server with the connection options, flags over NEARDEX_* variables."""
    from neardex.client import Client

    def env_path(value: Path | None, name: str) -> Path | None:
        return value if value is not None else (Path(os.environ[name]) if os.environ.get(name) else None)

    tls = args.tls if args.tls is not None else os.environ.get("NEARDEX_TLS", "") in ("1", "true", "yes")
    return Client(args.server, timeout=timeout, api_key=args.api_key, tls=tls,
                  ca_cert=env_path(args.ca_cert, "NEARDEX_CA_CERT"),
                  client_cert=env_path(args.client_cert, "NEARDEX_CLIENT_CERT"),
                  client_key=env_path(args.client_key, "NEARDEX_CLIENT_KEY"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
