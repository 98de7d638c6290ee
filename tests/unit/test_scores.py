"""Scores a caller can threshold: the same scale in every mode and for every query.

Dense and hybrid hits score the cosine of the document's best chunk (hybrid orders by its fusion,
scores by the cosine); lexical hits score BM25 as a share of the most the query's words can reach.
On the samples' 80 judged questions, a threshold chosen on half of them keeps about the same share
of irrelevant hits above it on the other half plus 20 questions the samples cannot answer, in
every mode."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.ingest.pipeline import index_documents
from neardex.indexer.ingest.readers import read_dir
from tests.support.paths import ROOT

QA = ROOT / "samples" / "neardex-docs-qa"
# Questions the samples cannot answer: every hit is irrelevant. A per-query scale (min-max fusion
# puts every query's top hit at 1.0) lets their top hits through any threshold; a fixed one does not.
OFF_TOPIC = [
    "how do I change a flat bicycle tyre", "rules of the offside in football", "best time to plant tomatoes",
    "how to knit a wool scarf", "who won the 1998 world cup", "how do I file my income tax return",
    "what is the plot of Hamlet", "how to train a puppy to sit", "recommended tyre pressure for a car",
    "how to play a C major chord on guitar", "what is a good marathon training plan",
    "how do solar panels get installed on a roof", "symptoms of the common cold in children",
    "how to paint a bedroom wall", "what is the capital of Australia", "how does a mortgage work",
    "how to fold a paper airplane", "what do koalas eat", "how to get a stain out of a carpet",
    "how long to boil an egg",
]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with Catalog(tmp_path_factory.mktemp("scores")) as catalog:
        docs = catalog.create("docs")
        index_documents(docs, read_dir(ROOT / "samples" / "neardex-docs"))
        yield docs


def judged() -> tuple[list[tuple[str, str]], dict[str, set[str]]]:
    queries = [(q["_id"], q["text"]) for q in map(json.loads, (QA / "queries.jsonl").read_text().splitlines())]
    relevant: dict[str, set[str]] = {}
    for line in (QA / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(qid, set()).add(doc)
    return queries, relevant


def test_hybrid_scores_are_the_cosines_of_the_best_chunk(collection) -> None:
    query = "when did Apollo 11 land on the moon"
    vector = collection.encode_queries([query])[0]
    hybrid = collection.search(text=query, k=5, mode="hybrid").hits
    best = collection.best_chunks(vector, [h.id for h in hybrid])
    assert [h.score for h in hybrid] == pytest.approx([best[h.id].score for h in hybrid], abs=1e-6)
    assert hybrid[0].score < 0.99  # the top hit is no longer 1.0 by construction
    dense = collection.search(text=query, k=5, mode="dense").hits
    assert dense[0].score == pytest.approx(best[dense[0].id].score, abs=1e-5)


def test_lexical_scores_are_shares_of_the_best_possible(collection) -> None:
    for query in ("Apollo moon landing", "sourdough starter yeast", "penicillin mould Fleming"):
        scores = [h.score for h in collection.search(text=query, k=10, mode="lexical").hits]
        assert scores and all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)


@pytest.mark.slow  # 80 judged questions in three modes: the share of questions is the point
@pytest.mark.parametrize("mode", ["dense", "hybrid", "lexical"])
def test_a_threshold_chosen_on_half_the_questions_holds_on_the_other_half(collection, mode: str) -> None:
    queries, relevant = judged()
    queries += [(f"off{i}", text) for i, text in enumerate(OFF_TOPIC)]
    scored: list[tuple[int, float, bool]] = []  # (query number, score, relevant)
    for n, (qid, text) in enumerate(queries):
        for hit in collection.search(text=text, k=10, mode=mode).hits:
            scored.append((n, hit.score, hit.id in relevant.get(qid, set())))
    # The first half: every other judged question; the second: the rest and the unanswerable ones.
    halves = [[s for s in scored if s[0] % 2 == 0 and s[0] < 80],
              [s for s in scored if s[0] % 2 == 1 or s[0] >= 80]]
    # The threshold above which 80% of the first half's hits are relevant.
    first = sorted(halves[0], key=lambda s: -s[1])
    precision = np.cumsum([s[2] for s in first]) / np.arange(1, len(first) + 1)
    cut = max(i for i in range(len(first)) if precision[i] >= 0.8)
    threshold = first[cut][1]

    def irrelevant_share(half: list[tuple[int, float, bool]]) -> float:
        above = [s for s in half if s[1] >= threshold]
        return sum(not s[2] for s in above) / len(above)

    assert len([s for s in halves[1] if s[1] >= threshold]) >= 20  # the threshold keeps a real share
    assert abs(irrelevant_share(halves[0]) - irrelevant_share(halves[1])) <= 0.12
