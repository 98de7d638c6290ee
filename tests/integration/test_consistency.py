"""A search during writes sees each document at one version, whole, in every mode: never a mix
of two versions' chunks, and never neither version (the moment between the store's commit and the
vector index's update)."""

from __future__ import annotations

import threading
import time

import pytest

from neardex.client import Client

SENTENCES = 12


def version_text(v: int) -> str:
    return " ".join(f"Lighthouse log v{v} entry {i}: the keeper trimmed the lamp on the rocky shore."
                    for i in range(SENTENCES))


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_changing_document_is_always_found_at_one_version(client: Client, mode: str) -> None:
    # Small chunks: each version is many chunks, so a half-applied write would show.
    client.create_collection("docs", chunk_tokens=24, overlap_tokens=0)
    client.upsert("docs", [{"id": "lh", "text": version_text(0), "metadata": {"v": 0}},
                           {"id": "other", "text": "Sourdough bread rises because wild yeast ferments the dough."}])
    query_vector = client.embed(["keeper trimmed the lamp on the rocky shore"])[0]
    stop = threading.Event()
    errors: list[str] = []
    searches = [0]

    writes = [0]

    def writer() -> None:
        try:
            while not stop.is_set():
                writes[0] += 1
                client.upsert("docs", [{"id": "lh", "text": version_text(writes[0]), "metadata": {"v": writes[0]}}])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(f"writer: {exc}")

    def reader() -> None:
        while not stop.is_set():
            query = query_vector if mode == "dense" else "keeper trimmed the lamp on the rocky shore"
            hits = [h for h in client.search("docs", query, k=2, mode=mode) if h.id == "lh"]
            searches[0] += 1
            if len(hits) != 1:
                errors.append(f"{len(hits)} hits for the document")
                continue
            v = int(hits[0].metadata["v"])
            if f" v{v} " not in f" {hits[0].text}":
                errors.append(f"chunk text of another version than metadata v={v}: {hits[0].text[:60]!r}")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    # At least 8 s, and on a loaded machine until enough writes and searches have interleaved.
    started = time.monotonic()
    while time.monotonic() - started < 8 or (
            (searches[0] <= 50 or writes[0] <= 20) and time.monotonic() - started < 120):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert searches[0] > 50 and writes[0] > 20
    assert errors == [], f"{len(errors)} of {searches[0]} searches: {errors[:5]}"
