"""Collections over either store, for the suites that hold every promise of the collection API
on both: the data folder (SQLite + FAISS) and Milvus (milvus-lite here, in process). The
`stores` fixture (tests/conftest.py) gives one per store kind."""

from __future__ import annotations

import time
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


def wait_for_milvus_lite_indexes(uri: str, collection: str, timeout: float, poll: float) -> None:
    """Wait until every data file of a milvus-lite collection has its dense index file and none
    has grown for one poll: milvus-lite builds them in a background thread, searches a segment
    exactly until then, and a reload meanwhile reads an index half written."""
    partitions = Path(uri) / "collections" / collection / "partitions"
    stop, sizes = time.monotonic() + timeout, None
    while time.monotonic() < stop:
        data = {p.stem for p in partitions.glob("*/data/data_*.parquet")}
        found = {p.name.split(".")[0]: p.stat().st_size for p in partitions.glob("*/indexes/data_*.dense.*.idx")}
        if data and data <= set(found) and found == sizes:
            return
        sizes = found if data <= set(found) else None
        time.sleep(poll)
    raise TimeoutError(f"milvus-lite built no index for every segment in {timeout:.0f} s")
