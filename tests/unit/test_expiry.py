"""Expiry on both stores: a document with `expires_at` (or written into a collection with a
`ttl_seconds`) is gone from every read the moment it expires, before any purge; the purge deletes
it through the ordinary delete (store rows, FAISS, FTS5, metadata index); it stays gone after the
collection reopens; `check` counts none of it; bad expiries and ttls are refused naming the field.

Expiries are a second or two ahead and the tests sleep just past them: no timing is asserted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from neardex.indexer.documents import Document
from neardex.indexer.errors import FailedPrecondition, InvalidArgument, NotFound
from neardex.indexer.layout import DATABASE
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval.answers import Answerer
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.retrieval.metadata_updates import MetadataUpdate
from neardex.indexer.stores.local import check
from tests.support.stores import Stores, ids

DOCS = [
    Document("paris", "Paris is the capital and largest city of France, on the Seine.", metadata={"topic": "city"}),
    Document("lyon", "Lyon is a French city at the confluence of the Rhone and the Saone.", metadata={"topic": "city"}),
    Document("seine", "The Seine flows through Paris into the English Channel at Le Havre.", metadata={"topic": "river"}),
    Document("bread", "Sourdough bread rises because wild yeast ferments the dough.", metadata={"topic": "food"}),
]
QUERY = "the capital city of France on the Seine"
LIFETIME = 1.5  # seconds


def expire_soon(doc: Document, seconds: float = LIFETIME) -> Document:
    return Document(doc.id, doc.text, doc.title, doc.metadata, expires_at=time.time() + seconds)


def wait_past(expires_at: float) -> None:
    time.sleep(max(0.0, expires_at - time.time()) + 0.2)


def every_read(col: Collection) -> dict[str, object]:
    """What each read of the engine finds of the collection, by the read's name."""
    topic = parse_filter({"topic": "city"})
    reads: dict[str, object] = {}
    for mode in ("dense", "lexical", "hybrid"):
        reads[mode] = ids(col.search(QUERY, k=4, mode=mode))
        reads[f"{mode} filtered"] = ids(col.search(QUERY, k=4, mode=mode, flt=topic))
        reads[f"{mode} page 2"] = ids(col.search(QUERY, k=1, mode=mode, offset=1))
    reads["hybrid diverse"] = ids(col.search(QUERY, k=4, mode="hybrid", diversity=0.5))
    reads["dense diverse"] = ids(col.search(QUERY, k=4, mode="dense", diversity=0.5))
    reads["batch"] = [ids(col.run(r)) for r in (col.request(QUERY, k=4), col.request("French city", k=4))]
    reads["grouped"] = ids(col.search(QUERY, k=4, mode="hybrid", group_by="metadata.topic", group_size=2))
    reads["similar"] = ids(col.similar(["lyon"], k=4))
    reads["ask"] = [a.passage.id for a in Answerer(col).ask("What is the capital of France?", k=4).answers]
    reads["get"] = [d.id for d in col.get([d.id for d in DOCS])[0]]
    reads["scroll"] = [d.id for d in col.scroll("", 10)]
    reads["scroll filtered"] = [d.id for d in col.scroll("", 10, topic)]
    reads["count"] = col.count()
    reads["count filtered"] = col.count(topic)
    reads["ids"] = sorted(col.all_ids())
    reads["documents"] = col.stats().documents
    reads["facet"] = {v.value: v.count for v in col.facet("topic").values}
    return reads


def test_expired_documents_vanish_from_every_read_before_any_purge(stores: Stores) -> None:
    col = stores.create()
    # Found while its expiry is ahead (an hour: no test machine is that slow), with its expiry.
    paris = expire_soon(DOCS[0], 3600)
    col.upsert([paris, *DOCS[1:]])
    assert "paris" in ids(col.search(QUERY, k=4)) and col.count() == 4
    found, _ = col.get(["paris", "lyon"])
    assert found[0].expires_at == pytest.approx(paris.expires_at) and found[1].expires_at is None
    # Written again to expire in a moment.
    paris = expire_soon(DOCS[0])
    col.upsert([paris])
    wait_past(paris.expires_at)  # type: ignore[arg-type]
    after = every_read(col)
    for read, seen in after.items():
        flat = seen if isinstance(seen, list) and not any(isinstance(s, list) for s in seen) else (
            [i for part in seen for i in part] if isinstance(seen, list) else [])
        assert "paris" not in flat, read
    assert (after["count"], after["count filtered"], after["documents"]) == (3, 1, 3)
    assert after["facet"] == {"city": 1, "river": 1, "food": 1}
    stats = col.stats()
    assert (stats.documents, stats.chunks, stats.vectors) == (3, 3, 3)
    assert after["get"] == ["lyon", "seine", "bread"] and after["ids"] == ["bread", "lyon", "seine"]
    assert col.get(["paris"]) == ([], ["paris"])
    # Other documents still fill the pages and the k asked for.
    assert len(after["dense"]) == 3 and after["dense filtered"] == ["lyon"]  # type: ignore[arg-type]
    with pytest.raises(NotFound, match=r"^positive\[0\]: document 'paris' does not exist"):
        col.similar(["paris"])


def test_metadata_updates_skip_expired_documents_and_keep_expiries(stores: Stores) -> None:
    col = stores.create(indexed_keys=["topic"])
    later, soon = expire_soon(DOCS[0], 3600), expire_soon(DOCS[1])
    col.upsert([later, soon, *DOCS[2:]])
    wait_past(soon.expires_at)  # type: ignore[arg-type]
    tag = MetadataUpdate.check({"checked": True})
    # An expired document is as missing as one never written, by id and by filter.
    assert col.update_metadata(["paris", "lyon"], update=tag) == (1, ["lyon"])
    assert col.update_metadata(flt=parse_filter({"topic": "city"}), update=tag) == (1, [])
    assert col.count(parse_filter({"checked": True})) == 1
    # The rewritten document keeps its expiry, and a later upsert of the expired one is a new write.
    (paris,), _ = col.get(["paris"])
    assert paris.metadata == {"topic": "city", "checked": True}
    assert paris.expires_at == pytest.approx(later.expires_at)
    col.upsert([DOCS[1]])
    assert col.get(["lyon"])[0][0].metadata == {"topic": "city"}


def test_purge_deletes_expired_documents_everywhere(stores: Stores) -> None:
    col = stores.create(indexed_keys=["topic"])
    docs = [expire_soon(DOCS[0]), expire_soon(DOCS[1]), *DOCS[2:]]
    col.upsert(docs)
    wait_past(docs[1].expires_at)  # type: ignore[arg-type]
    assert col.purge_expired() == 2
    assert col.purge_expired() == 0
    assert col.count() == 2 and col.all_ids() == {"seine", "bread"}
    if stores.kind == "local":
        store = col.store
        db = sqlite3.connect(col.folder / DATABASE)
        try:
            assert db.execute("SELECT COUNT(*) FROM documents").fetchone() == (2,)
            assert db.execute("SELECT COUNT(*) FROM chunks").fetchone() == (2,)
            assert db.execute("SELECT COUNT(*) FROM meta_values WHERE doc_id IN ('paris', 'lyon')").fetchone() == (0,)
        finally:
            db.close()
        assert store.index.live == 2 and store.index_ids() == store.chunk_ids()  # type: ignore[attr-defined]
        assert check.check(col.folder).ok
    else:
        assert col.stats().chunks == 2
        rows = col.store.client.query(col.store.chunks, filter="", output_fields=["count(*)"])  # type: ignore[attr-defined]
        assert rows[0]["count(*)"] == 2


def test_expired_documents_stay_gone_after_reopening(stores: Stores) -> None:
    col = stores.create()
    paris = expire_soon(DOCS[0])
    col.upsert([paris, *DOCS[1:]])
    wait_past(paris.expires_at)  # type: ignore[arg-type]
    again = stores.reopen().get("docs")
    assert again.get(["paris"]) == ([], ["paris"]) and again.count() == 3
    assert "paris" not in ids(again.search(QUERY, k=4, mode="hybrid"))
    if stores.kind == "local":
        # Opening purged it: gone from the store's rows and from the index.
        assert again.store.index.live == 3  # type: ignore[attr-defined]
        db = sqlite3.connect(again.folder / DATABASE)
        try:
            assert db.execute("SELECT COUNT(*) FROM documents WHERE id = 'paris'").fetchone() == (0,)
        finally:
            db.close()


def test_a_collection_ttl_counts_from_each_write(stores: Stores) -> None:
    col = stores.create(ttl_seconds=2)
    assert col.manifest.ttl_seconds == 2
    written = time.time()
    col.upsert(DOCS)
    expires = {d.id: d.expires_at for d in col.get([d.id for d in DOCS])[0]}
    assert all(written + 2 <= e <= time.time() + 2 for e in expires.values())  # type: ignore[operator]
    # A rewrite of the same content is a write: its lifetime starts again, and as no chunk or
    # vector depends on the expiry, it is a metadata-only write that embeds nothing.
    time.sleep(0.5)
    chunks = sorted(c.chunk_id for c in col.store.fetch(documents=["paris"]))
    renewal = col.upsert(DOCS[:1])
    assert (renewal.upserted, renewal.metadata_updated, renewal.chunks) == (0, 1, 0)
    assert sorted(c.chunk_id for c in col.store.fetch(documents=["paris"])) == chunks
    renewed = col.get(["paris"])[0][0].expires_at
    assert renewed > expires["paris"]  # type: ignore[operator]
    # An explicit expiry wins over the ttl; a ttl of 0 writes documents that never expire.
    far = time.time() + 3600
    col.upsert([Document("seine", DOCS[2].text, metadata=DOCS[2].metadata, expires_at=far)])
    col.set_ttl(0)
    col.upsert([Document("lyon", DOCS[1].text + " ", metadata=DOCS[1].metadata)])
    wait_past(max(renewed, *expires.values()))  # type: ignore[arg-type]
    assert sorted(col.all_ids()) == ["lyon", "seine"]
    assert col.get(["seine"])[0][0].expires_at == pytest.approx(far)
    # The new expiry reached what searches read (Milvus keeps it on each chunk row too).
    assert sorted(ids(col.search(QUERY, k=4, mode="dense"))) == ["lyon", "seine"]
    assert stores.reopen().get("docs").manifest.ttl_seconds == 0


def test_rewriting_without_expiry_keeps_the_document(stores: Stores) -> None:
    col = stores.create()
    col.upsert([expire_soon(DOCS[0])])
    # The same content, now with no expiry: not skipped as unchanged, stored as never expiring.
    assert col.upsert(DOCS[:1]).metadata_updated == 1
    assert col.upsert(DOCS[:1]).unchanged == 1
    wait_past(time.time() + LIFETIME)
    assert col.get(["paris"])[0][0].expires_at is None and col.count() == 1


def test_bad_expiries_and_ttls_are_refused_naming_the_field(stores: Stores) -> None:
    col = stores.create()
    now = time.time()
    for bad, says in ((now - 10, "is in the past"), (float("nan"), "not a finite time"),
                      (float("inf"), "not a finite time"), (1e13, "after 9999-12-31")):
        with pytest.raises(InvalidArgument, match=rf"^documents\[1\]\.expires_at: .*{says}"):
            col.upsert([DOCS[0], Document("x", "text", expires_at=bad)])
    assert col.count() == 0  # nothing of a refused batch is written
    with pytest.raises(InvalidArgument, match=r"^ttl_seconds: must not be negative"):
        stores.create("other", ttl_seconds=-1)
    with pytest.raises(InvalidArgument, match=r"^ttl_seconds: at most"):
        col.set_ttl(10**12)
    with pytest.raises(InvalidArgument, match=r"^ttl_seconds: must not be negative"):
        col.set_ttl(-5)


def test_local_reads_pay_nothing_until_something_expires(tmp_path: Path) -> None:
    stores = Stores("local", tmp_path)
    try:
        col = stores.create()
        col.upsert([*DOCS[1:], expire_soon(DOCS[0], 3600)])
        # No allowed-id selection while no stored expiry has passed: the plain FAISS search.
        assert col.store.restrict(None) is None  # type: ignore[attr-defined]
        soon = expire_soon(DOCS[0])
        col.upsert([soon])
        wait_past(soon.expires_at)  # type: ignore[arg-type]
        allowed = col.store.restrict(None)  # type: ignore[attr-defined]
        assert allowed is not None and len(allowed) == 3
        # Unpurged expired rows are no finding, and the counts leave them out.
        report = check.check(col.folder)
        assert report.ok, report.problems
        assert (report.documents, report.chunks, report.vectors, report.lexical_rows) == (3, 3, 3, 3)
        col.purge_expired()
        assert col.store.restrict(None) is None  # type: ignore[attr-defined]
    finally:
        stores.close()


def test_local_databases_made_before_expiry_gain_the_column(tmp_path: Path) -> None:
    stores = Stores("local", tmp_path)
    col = stores.create()
    col.upsert(DOCS)
    folder = col.folder
    stores.catalog.close()
    db = sqlite3.connect(folder / DATABASE)
    db.execute("DROP INDEX documents_expires")
    db.execute("ALTER TABLE documents DROP COLUMN expires_at")
    db.commit()
    db.close()
    assert check.check(folder).ok  # a database without the column checks as before
    try:
        col = stores.reopen().get("docs")
        assert col.count() == 4
        soon = expire_soon(DOCS[0])
        col.upsert([soon])
        wait_past(soon.expires_at)  # type: ignore[arg-type]
        assert col.count() == 3 and col.get(["paris"])[1] == ["paris"]
    finally:
        stores.close()


@pytest.mark.slow
def test_milvus_collections_made_before_expiry_refuse_it(tmp_path: Path) -> None:
    stores = Stores("milvus-lite", tmp_path)
    try:
        col = stores.create()
        col.upsert(DOCS)
        # As a collection whose rows have no expires_at field opens (Milvus cannot add one).
        col.store.can_expire = False  # type: ignore[attr-defined]
        assert col.count() == 4 and col.purge_expired() == 0
        with pytest.raises(FailedPrecondition, match=r"^documents\[0\]\.expires_at: .*never expire"):
            col.upsert([expire_soon(DOCS[0], 60)])
        with pytest.raises(FailedPrecondition, match=r"^ttl_seconds: "):
            col.set_ttl(60)
    finally:
        stores.close()


def test_records_carry_their_expiry_and_bad_ones_name_the_line(tmp_path: Path) -> None:
    from neardex.indexer.ingest.readers import FieldNames, ReadError, read_documents

    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "x", "expires_at": 4102444800}\n'
                    '{"id": "b", "text": "y", "expires_at": "2100-01-01T00:00:00Z"}\n'
                    '{"id": "c", "text": "z", "expires_at": "2100-01-01T01:00:00+01:00", "tag": 1}\n'
                    '{"id": "d", "text": "w"}\n')
    docs = list(read_documents(path, "jsonl", FieldNames()))
    assert [d.expires_at for d in docs] == [4102444800.0, 4102444800.0, 4102444800.0, None]
    assert docs[2].metadata == {"tag": 1}  # the expiry is not metadata
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "expires_at": "next tuesday"}\n')
    with pytest.raises(ReadError, match=r"docs\.jsonl:2: expires_at: 'next tuesday' is neither"):
        list(read_documents(path, "jsonl", FieldNames()))


def test_neardex_index_ttl_and_a_record_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neardex.client import cli
    from neardex.indexer.catalog import Catalog

    path = tmp_path / "docs.jsonl"
    soon = time.time() + 600
    path.write_text(f'{{"id": "a", "text": "Paris is the capital of France.", "expires_at": {soon}}}\n'
                    '{"id": "b", "text": "Lyon is a French city."}\n')
    data = tmp_path / "data"
    assert cli.main(["index", str(path), "--collection", "docs", "--data-dir", str(data), "--ttl", "3600",
                     "--quiet"]) == 0
    with Catalog(data) as catalog:
        col = catalog.get("docs")
        assert col.manifest.ttl_seconds == 3600
        found = {d.id: d.expires_at for d in col.get(["a", "b"])[0]}
        assert found["a"] == pytest.approx(soon) and found["b"] > time.time() + 3500  # type: ignore[operator]
    # --ttl 0 on an existing collection turns the default off for later writes.
    assert cli.main(["index", str(path), "--collection", "docs", "--data-dir", str(data), "--ttl", "0",
                     "--quiet"]) == 0
    with Catalog(data) as catalog:
        assert catalog.get("docs").manifest.ttl_seconds == 0
    with pytest.raises(SystemExit):
        cli.main(["index", str(path), "--collection", "docs", "--data-dir", str(data), "--ttl", "-1"])
    assert "--ttl: must not be negative" in capsys.readouterr().err
