"""The evaluation metrics worked by hand, and the reading of judged queries (only judged ones
count; grades are kept where there are any)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neardex.server.evaluation import load_judged, mrr_at, ndcg_at, recall_at


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
