"""Retrieval quality on a BEIR-layout folder: nDCG@10 (graded), MRR@10 and Recall@100."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from neardex.indexer.errors import InvalidArgument

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Judged:
    queries: dict[str, str]  # query id -> text, judged queries only
    qrels: Qrels
    graded: bool  # scores go beyond 0/1, so "relevant" means >= 2 (TREC DL convention)

    @property
    def relevant_at(self) -> int:
        return 2 if self.graded else 1


def load_judged(folder: Path, split: str = "test") -> Judged:
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise InvalidArgument(f"beir_dir: {qrels_path} is missing (BEIR layout: qrels/{split}.tsv)")
    qrels: Qrels = {}
    with qrels_path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or not row[2].lstrip("-").isdigit():
                continue  # header line or blank
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if str(record["_id"]) in qrels:
                    queries[str(record["_id"])] = record["text"]
    graded = max((s for judged in qrels.values() for s in judged.values()), default=1) > 1
    return Judged(queries, {q: qrels[q] for q in queries}, graded)


def ndcg_at(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** judged.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(judged.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def mrr_at(ranked: Sequence[str], judged: dict[str, int], relevant_at: int, k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) >= relevant_at:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(ranked: Sequence[str], judged: dict[str, int], relevant_at: int, k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g >= relevant_at}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def evaluate(judged: Judged, rank: Callable[[list[str]], list[list[str]]]) -> dict[str, float]:
    """Mean metrics over the judged queries; rank answers all their texts at once (so they can be
    embedded in batches), each with document ids best first (>= 100)."""
    totals = {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    rankings = rank(list(judged.queries.values()))
    for (qid, _), ranked in zip(judged.queries.items(), rankings, strict=True):
        grades = judged.qrels[qid]
        totals["ndcg@10"] += ndcg_at(ranked, grades)
        totals["mrr@10"] += mrr_at(ranked, grades, judged.relevant_at)
        totals["recall@100"] += recall_at(ranked, grades, judged.relevant_at)
    n = max(len(judged.queries), 1)
    return {name: value / n for name, value in totals.items()}
