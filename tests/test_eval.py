"""Retrieval quality on real judgments, through `neardex eval` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MSMARCO, ROOT, run_cli

from neardex.server.evaluation import load_judged, mrr_at, ndcg_at, recall_at

QA = ROOT / "samples" / "neardex-docs-qa"


def test_metrics_by_hand() -> None:
    judged = {"a": 3, "b": 1, "c": 2}
    assert ndcg_at(["a", "c", "b"], judged) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], judged) < ndcg_at(["a", "x"], judged)
    assert mrr_at(["x", "b", "c"], judged, relevant_at=2) == pytest.approx(1 / 3)
    assert recall_at(["a", "x"], judged, relevant_at=2) == pytest.approx(0.5)


def test_judged_queries_and_grading(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n')
    judged = load_judged(tmp_path)
    assert list(judged.queries) == ["q1"] and not judged.graded and judged.relevant_at == 1


def test_eval_output_formats() -> None:
    lines = run_cli("eval", str(QA), "--compare", "--json").stdout.strip().splitlines()
    reports = [json.loads(line) for line in lines]
    assert [r["mode"] for r in reports] == ["dense", "lexical", "hybrid", "ask"]
    for r in reports:
        assert set(r) == {"ndcg@10", "mrr@10", "recall@100", "queries", "documents", "mode"}
        assert r["queries"] == 80 and r["documents"] == 40 and 0.5 < r["ndcg@10"] <= 1
    table = run_cli("eval", str(QA), "--mode", "lexical").stdout
    assert "nDCG@10" in table and "lexical" in table
    bad = run_cli("eval", str(QA), "--mode", "fuzzy", check=False)
    assert bad.returncode != 0 and "--mode" in bad.stderr


@pytest.mark.skipif(not MSMARCO.exists(), reason="shared msmarco-dl19-5k data not present")
def test_every_mode_on_msmarco_meets_its_reference() -> None:
    out = run_cli("eval", str(MSMARCO), "--compare", "--json", timeout=1800).stdout
    reports = {r["mode"]: r for r in map(json.loads, out.strip().splitlines())}
    assert all(r["queries"] == 43 and r["documents"] == 5000 for r in reports.values())
    assert abs(reports["dense"]["ndcg@10"] - 0.704) <= 0.01  # exact search, bundled model
    assert reports["hybrid"]["ndcg@10"] >= 0.72  # the default mode beats both retrievers
    assert reports["hybrid"]["ndcg@10"] > reports["lexical"]["ndcg@10"]
    assert reports["ask"]["mrr@10"] >= reports["hybrid"]["mrr@10"]
