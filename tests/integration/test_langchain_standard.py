"""LangChain's own standard suite for vector stores (langchain-tests' VectorStoreIntegrationTests),
run against NeardexVectorStore over a real server on a real port: every test, sync and async. Each
test gets a new, empty collection of its own vectors sized for the suite's deterministic fake
embeddings (get_embeddings()), so the suite's expected orders hold; the store embeds with them and
searches by vector."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from langchain_tests.integration_tests.vectorstores import EMBEDDING_SIZE, VectorStoreIntegrationTests

from neardex.client import Client
from neardex.client.langchain import NeardexVectorStore


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from neardex.server.app import create_server
    from neardex.server.settings import Settings

    root: Path = tmp_path_factory.mktemp("langchain-standard")
    server, port = create_server(Settings(data_dir=root / "data", host="127.0.0.1", port=0, metrics_port=0))
    yield f"127.0.0.1:{port}"
    server.stop(grace=1)


class TestNeardexVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    async def vectorstore(self, address: str) -> AsyncIterator[NeardexVectorStore]:  # type: ignore[override]
        name = f"lc-{uuid.uuid4().hex[:12]}"
        with Client(address, timeout=60) as admin:
            admin.create_collection(name, model="none", dimension=EMBEDDING_SIZE)
            # From an address: the sync tests go through the store's Client, the async ones
            # through the AsyncClient it makes in the test's event loop.
            store = NeardexVectorStore(name, address=address, client_options={"timeout": 60},
                                       embedding=self.get_embeddings())
            try:
                yield store
            finally:
                await store.aclose()
                admin.delete_collection(name)


def test_langchain_tests_plugins_leave_sockets_alone(request: pytest.FixtureRequest) -> None:
    # langchain-tests installs pytest-socket; pyproject's addopts keeps it out, so no test of the
    # suite runs with its sockets disabled.
    manager = request.config.pluginmanager
    assert manager.is_blocked("socket") and not manager.has_plugin("socket")
