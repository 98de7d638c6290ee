"""Retrieval quality on real judgments, through `neardex eval` as a user runs it. (The metrics and
the reading of judgments in process: tests/unit/test_eval_metrics.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.paths import MSMARCO, ROOT
from tests.support.processes import run_cli

QA = ROOT / "samples" / "neardex-docs-qa"


def first_questions(folder: Path, n: int) -> Path:
    """The QA sample with its first n questions: every mode's report, Ask's included (which embeds
    every sentence of 20 passages per question), at a tenth of the time."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text((QA / "corpus.jsonl").read_text())
    queries = (QA / "queries.jsonl").read_text().splitlines()[:n]
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    kept = {json.loads(q)["_id"] for q in queries}
    header, *rows = (QA / "qrels" / "test.tsv").read_text().splitlines()
    (folder / "qrels" / "test.tsv").write_text("\n".join([header, *(r for r in rows if r.split("\t")[0] in kept)]) + "\n")
    return folder


def test_eval_output_formats(tmp_path: Path) -> None:
    qa = first_questions(tmp_path / "qa", 8)
    lines = run_cli("eval", str(qa), "--compare", "--json").stdout.strip().splitlines()
    reports = [json.loads(line) for line in lines]
    assert [r["mode"] for r in reports] == ["dense", "lexical", "hybrid", "ask"]
    for r in reports:
        assert set(r) == {"ndcg@10", "mrr@10", "recall@100", "queries", "documents", "mode"}
        assert r["queries"] == 8 and r["documents"] == 40 and 0.5 < r["ndcg@10"] <= 1
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
