"""The server's background purge of expired documents.

Reads leave an expired document out from the moment it expires (the store compares its stored
expiry with the clock), so nothing waits for this thread: it only gives the space back, deleting
through each store's ordinary delete so the vector index, the lexical index, the change log and
the metadata index stay in step. Collections also purge as they open.
"""

from __future__ import annotations

import logging
import threading

from neardex.indexer.catalog import Catalog

log = logging.getLogger("neardex.server")


class Purger:
    """Every `interval_s` seconds, purge the open collections of a catalog, until stopped."""

    def __init__(self, catalog: Catalog, interval_s: float) -> None:
        self.catalog = catalog
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="purge-expired", daemon=True)

    def start(self) -> Purger:
        if self.interval_s > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            purged = {name: n for name, n in self.catalog.purge_expired().items() if n}
            if purged:
                log.info("purged expired documents: %s", purged)

    def stop(self) -> None:
        """Stop and wait for a purge under way (it is one store transaction per collection)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
