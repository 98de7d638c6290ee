"""Collections over either store, for the suites that hold every promise of the collection API
on both: the data folder (SQLite + FAISS) and Milvus (milvus-lite here, in process). The
`stores` fixture (tests/conftest.py) gives one per store kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.retrieval.engine import Collection

# milvus-lite starts a server process per module: the whole suite runs it, the fast tier does not.
STORES = ["local", pytest.param("milvus-lite", marks=pytest.mark.slow)]


class Stores:
    """Collections of one store kind; `reopen` gives a second catalog over the same data, as
    another process (a restarted server, or a second one) would see it."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.uri = "" if kind == "local" else str(root / "milvus.db")
        self.catalog = Catalog(root / "data")
        self._others: list[Catalog] = []

    def create(self, name: str = "docs", **kwargs: object) -> Collection:
        return self.catalog.create(name, store=self.uri, **kwargs)  # type: ignore[arg-type]

    def reopen(self) -> Catalog:
        if self.kind == "local":
            self.catalog.close()
            self.catalog = Catalog(self.root / "data")
            return self.catalog
        other = Catalog(self.root / f"other-{len(self._others)}", milvus=[self.uri])
        self._others.append(other)
        return other

    def close(self) -> None:
        for catalog in [self.catalog, *self._others]:
            catalog.close()


def ids(result: object) -> list[str]:
    """The ids of a search's hits, in order."""
    return [h.id for h in result.hits]  # type: ignore[attr-defined]
