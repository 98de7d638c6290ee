"""Retrieval quality on real judgments, through `neardex eval` as a user runs it. (The metrics and
the reading of judgments in process: tests/unit/test_eval_metrics.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import MSMARCO, NEARDEX, ROOT
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


def milvus_collections(db: Path) -> tuple[list[str], list[str]]:
    """The Milvus collections a milvus-lite file holds, and the names in its neardex catalog."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))
    try:
        held = sorted(client.list_collections())
        if "neardex_catalog" not in held:
            return held, []
        client.load_collection("neardex_catalog")
        return held, [r["name"] for r in client.query("neardex_catalog", filter="", output_fields=["name"],
                                                       limit=100)]
    finally:
        client.close()


def test_eval_twice_on_one_milvus_leaves_nothing_behind(tmp_path: Path) -> None:
    qa = first_questions(tmp_path / "qa", 4)
    db = tmp_path / "milvus.db"
    for _ in range(2):  # the second once failed: the first left its collection 'eval' there
        report = json.loads(run_cli("eval", str(qa), "--store", str(db), "--mode", "lexical", "--json").stdout)
        assert report["documents"] == 40 and report["ndcg@10"] > 0.5
    # The catalog stays (other servers may be creating in it), empty; nothing else remains.
    assert milvus_collections(db) == (["neardex_catalog"], [])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_eval_removes_what_it_made(tmp_path: Path, sig: signal.Signals) -> None:
    """Stopped while it indexes or scores, an evaluation removes its collection: from the Milvus
    instance and from the data folder."""
    data, db = tmp_path / "data", tmp_path / "milvus.db"
    proc = subprocess.Popen([str(NEARDEX), "eval", str(QA), "--store", str(db), "--data-dir", str(data),
                             "--mode", "hybrid", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A runner started in the background passes SIGINT on ignored, and an
                            # ignored SIGINT is kept by Python: the eval must hear it as from a terminal.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not any(data.glob("eval-*")):  # its pointer is written once its Milvus collections exist
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)  # a loaded 2-core machine takes its time to clean up
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), (out, err)
    assert not out.strip()
    assert [p.name for p in data.iterdir() if not p.name.startswith(".")] == []
    assert milvus_collections(db) == (["neardex_catalog"], [])


def test_eval_keeps_a_collection_named_for_reuse(tmp_path: Path) -> None:
    qa = first_questions(tmp_path / "qa", 4)
    data = tmp_path / "data"
    first = json.loads(run_cli("eval", str(qa), "--data-dir", str(data), "--collection", "kept", "--mode", "lexical",
                               "--json").stdout)
    assert (data / "kept" / "manifest.json").exists()
    again = json.loads(run_cli("eval", str(qa), "--data-dir", str(data), "--collection", "kept", "--mode", "lexical",
                               "--json").stdout)
    assert again == first
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == ["kept"]
