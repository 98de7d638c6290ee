"""Fixtures every tier may use (a real server on a real port, over the bundled model and real
FAISS, and a client of it), and the tier markers: each test is marked by the folder it lives in,
so `pytest -m unit` runs the unit tier. Helpers that are not fixtures live in tests/support."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import MilvusLite
from tests.support.stores import STORES, Stores

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[object, int]]:
    from neardex.server.app import create_server
    from neardex.server.settings import Settings

    srv, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0))
    yield srv, port
    srv.stop(grace=1)


@pytest.fixture
def client(server: tuple[object, int]) -> Iterator[object]:
    from neardex.client import Client

    with Client(f"127.0.0.1:{server[1]}", timeout=60) as c:
        yield c


@pytest.fixture
def milvus_lite(tmp_path: Path) -> Iterator[MilvusLite]:
    """A Milvus on a real port, in its own process, that a test may stop midway."""
    milvus = MilvusLite(tmp_path / "milvus")
    yield milvus
    milvus.stop()


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Collections in one store kind; each test using it runs once per kind."""
    made = Stores(request.param, tmp_path)
    yield made
    made.close()
