"""Is an encoder equivalent to fp32 for retrieval? The statistical study behind `auto`'s choices.

Each BEIR folder is indexed twice through the real pipeline (chunking, prompts, the store), once
with fp32 PyTorch (NEARDEX_PRECISION=fp32) and once with the candidate encoder, and both answer
the same queries: the folder's judged queries, plus --corpus-queries made from the corpus itself
(the first sentence of evenly spaced passages). Reported per folder and search mode:
- nDCG@10 of both on the judged queries and a paired bootstrap 95% interval of the difference,
- top-10 overlap with fp32 per query (mean, minimum), over every query,
- indexing time of both (one run; the speed study is bench/indexing.py and bench/precision_study.py).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/encoder_study.py --encoder onnx-int8 \\
        --data ../shared/data/msmarco-dl19-5k:1000 --data ../shared/data/xquad/en:0
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cpu_flags, print_table, write_result

BOOTSTRAP = 10_000
MODES = ("dense", "hybrid")


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0][:300]


def rankings(collection: object, texts: list[str], mode: str) -> list[list[str]]:
    from neardex.server.cli import _ranking

    return _ranking(collection, mode, 10)(texts)


def study(folder: Path, corpus_queries: int, encoder: str, tmp: Path) -> list[dict]:
    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.indexer.ingest.readers import read_beir
    from neardex.server.evaluation import load_judged, ndcg_at

    judged = load_judged(folder)
    qids = list(judged.queries)
    docs = list(read_beir(folder))
    step = max(1, len(docs) // corpus_queries) if corpus_queries else 0
    made = [first_sentence(d.text) for d in docs[::step]][:corpus_queries] if step else []
    texts = [judged.queries[q] for q in qids] + [t for t in made if t]
    ranked: dict[str, dict[str, list[list[str]]]] = {}
    seconds: dict[str, float] = {}
    for label, name in (("fp32", "torch"), ("candidate", encoder)):
        if label == "fp32":
            os.environ["NEARDEX_PRECISION"] = "fp32"
        try:
            with Catalog(tmp / f"{folder.name}-{label}") as catalog:
                collection = catalog.create("study", encoder=name)
                started = time.perf_counter()
                index_documents(collection, docs)
                seconds[label] = time.perf_counter() - started
                ranked[label] = {mode: rankings(collection, texts, mode) for mode in MODES}
        finally:
            os.environ.pop("NEARDEX_PRECISION", None)
    rows = []
    rng = np.random.default_rng(0)
    for mode in MODES:
        full, cand = ranked["fp32"][mode], ranked["candidate"][mode]
        overlap = np.array([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(full, cand, strict=True)])
        n_full = np.array([ndcg_at(full[i], judged.qrels[q]) for i, q in enumerate(qids)])
        n_cand = np.array([ndcg_at(cand[i], judged.qrels[q]) for i, q in enumerate(qids)])
        diff = n_cand - n_full
        samples = diff[rng.integers(0, len(diff), (BOOTSTRAP, len(diff)))].mean(axis=1)
        low, high = np.percentile(samples, [2.5, 97.5])
        rows.append({"data": folder.name if folder.name != "en" else "xquad/en", "mode": mode,
                     "judged": len(qids), "queries": len(texts), "ndcg_fp32": float(n_full.mean()),
                     "ndcg_candidate": float(n_cand.mean()), "diff": float(diff.mean()),
                     "ci95": [float(low), float(high)], "within_0.005": bool(-0.005 <= low and high <= 0.005),
                     "overlap_mean": float(overlap.mean()), "overlap_min": float(overlap.min()),
                     "index_s_fp32": seconds["fp32"], "index_s_candidate": seconds["candidate"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="onnx-int8", help="the candidate (against fp32 torch)")
    parser.add_argument("--data", action="append", default=[],
                        help="BEIR folder[:corpus queries], repeatable (default: msmarco-dl19-5k:1000, xquad/en:0)")
    args = parser.parse_args()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    specs = args.data or [f"{shared / 'msmarco-dl19-5k'}:1000", f"{shared / 'xquad' / 'en'}:0"]
    print(f"CPU flags: {cpu_flags()}; candidate {args.encoder} against fp32 torch", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="encoder-study-") as tmp:
        for spec in specs:
            path, _, n = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "0")
            rows += study(Path(path), int(n), args.encoder, Path(tmp))
            print(f"done {path}", flush=True)
    print_table(["data", "mode", "judged/all queries", "nDCG fp32", f"nDCG {args.encoder}", "difference",
                 "95% interval", "overlap mean", "overlap min", "index s fp32/candidate"],
                [[r["data"], r["mode"], f"{r['judged']}/{r['queries']}", r["ndcg_fp32"], r["ndcg_candidate"],
                  f"{r['diff']:+.4f}", f"{r['ci95'][0]:+.4f} .. {r['ci95'][1]:+.4f}", r["overlap_mean"],
                  r["overlap_min"], f"{r['index_s_fp32']:.0f}/{r['index_s_candidate']:.0f}"] for r in rows])
    write_result(f"encoder-study-{args.encoder}", {"cpu_flags": cpu_flags(), "rows": rows})


if __name__ == "__main__":
    main()
