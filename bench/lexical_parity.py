"""Do both stores rank the same lexically? msmarco in the data folder and in milvus-lite, compared.

The corpus is indexed once into a local collection (the real pipeline: chunks, the model, FTS5)
and its snapshot restored into milvus-lite and flushed (one sealed segment), so both hold the
same chunks, terms and vectors and only the stores' lexical search differs. Both answer the folder's judged queries and
--corpus-queries made from the corpus itself (the first sentence of evenly spaced passages, as
bench/encoder_study.py makes them). Reported, for lexical and hybrid search:
- top-10 overlap between the stores per query (mean, minimum), over every query,
- nDCG@10 of each store on the judged queries.

Then the causes: BM25 recomputed here from the terms the local index holds, once as FTS5 scores
(IDF ln((N - n + 0.5) / (n + 0.5)), at least 1e-6; k1 1.2, b 0.75) and once per change towards
what Milvus computes (Lucene's IDF ln(1 + (N - n + 0.5) / (n + 0.5)); milvus-lite's default k1
1.5), each variant's top-10 overlap with the FTS5 recomputation and its nDCG@10, so that each
difference is measured on its own; and how deep in the Lucene-IDF ranking FTS5's top 10 lies
(the Milvus store scores at least its RESCORED first candidates again).

--keep DIR keeps the collections (and the snapshot) there for the next run: the corpus is embedded
once; --fresh-milvus restores the Milvus collection again (after a change to the Milvus store).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lexical_parity.py --keep /tmp/parity [--corpus-queries 200]

To measure another version of the stores against the same collections, run the script with that
checkout's packages first on PYTHONPATH and --fresh-milvus.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import MSMARCO, cpu_flags, write_result
from encoder_study import first_sentence

MODES = ("lexical", "hybrid")
K = 10
# (label, Lucene's IDF, k1): the BM25 variants recomputed from the local index's terms.
VARIANTS = (("fts5", False, 1.2), ("lucene idf", True, 1.2), ("lucene idf, k1 1.5", True, 1.5))


def overlap(a: list[str], b: list[str]) -> float:
    """The share of the longer top-10 that the other holds (1 when both are empty)."""
    longer = max(len(a[:K]), len(b[:K]))
    return len(set(a[:K]) & set(b[:K])) / longer if longer else 1.0


def recomputed(local: object, texts: list[str]) -> dict[str, list[list[str]]]:
    """Each variant's document ranking for every query (every document holding a query term), scored over every chunk of the local
    index's FTS5 table (a document ranks by its best chunk, as the engine groups them)."""
    db = local.store._reader()  # type: ignore[attr-defined]
    doc_of = dict(db.execute("SELECT id, doc_id FROM chunks").fetchall())
    rows = db.execute("SELECT rowid, text FROM chunks_fts").fetchall()
    ids = [doc_of[r] for r, _ in rows]
    tfs = [Counter(text.split()) for _, text in rows]
    lengths = np.array([sum(tf.values()) for tf in tfs], dtype=np.float64)
    postings: dict[str, list[int]] = {}
    for row, tf in enumerate(tfs):
        for term in tf:
            postings.setdefault(term, []).append(row)
    n, avgdl = len(rows), float(lengths.mean())
    out: dict[str, list[list[str]]] = {label: [] for label, _, _ in VARIANTS}
    for text in texts:
        terms = local.analyze(text).terms  # type: ignore[attr-defined]
        for label, lucene, k1 in VARIANTS:
            scores = np.zeros(n)
            for term in terms:
                rows_with = postings.get(term, [])
                ratio = (n - len(rows_with) + 0.5) / (len(rows_with) + 0.5)
                idf = math.log(1 + ratio) if lucene else max(math.log(ratio), 1e-6)
                for row in rows_with:
                    tf = tfs[row][term]
                    scores[row] += idf * tf * (k1 + 1) / (tf + k1 * (0.25 + 0.75 * lengths[row] / avgdl))
            ranked: dict[str, None] = {}
            for row in np.argsort(-scores, kind="stable"):
                if scores[row] <= 0:
                    break
                ranked[ids[row]] = None
            out[label].append(list(ranked))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=MSMARCO, help="a BEIR folder")
    parser.add_argument("--corpus-queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="a folder to keep the collections in between runs")
    parser.add_argument("--fresh-milvus", action="store_true", help="restore the Milvus collection again")
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog, snapshots
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.indexer.ingest.readers import read_beir
    from neardex.server.cli import _ranking
    from neardex.server.evaluation import load_judged, ndcg_at

    judged = load_judged(args.data)
    docs = list(read_beir(args.data))
    step = max(1, len(docs) // args.corpus_queries) if args.corpus_queries else 0
    made = [t for t in (first_sentence(d.text) for d in docs[::step])][:args.corpus_queries] if step else []
    texts = list(judged.queries.values()) + [t for t in made if t]
    with tempfile.TemporaryDirectory(prefix="lexical-parity-") as tmp:
        root = (args.keep or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        uri = str(root / "milvus.db")
        with Catalog(root / "data", milvus=[uri]) as catalog:
            if not catalog.exists("local"):
                started = time.perf_counter()
                index_documents(catalog.create("local"), docs)
                print(f"indexed {len(docs)} passages into the data folder in {time.perf_counter() - started:.0f} s")
            local = catalog.get("local")
            if args.fresh_milvus and catalog.exists("milvus"):
                catalog.delete("milvus")
            if not catalog.exists("milvus"):
                found = snapshots.list_snapshots(catalog.root, "local")
                snapshot = found[-1].path if found else snapshots.create(local, catalog.root).path
                started = time.perf_counter()
                restored = catalog.restore(snapshot, "milvus", store=uri)
                # Sealed, as a Milvus collection past its first minutes is: milvus-lite then keeps
                # each segment's sparse index instead of rebuilding its memtable's every search.
                restored.store.client.flush(restored.store.chunks)
                print(f"restored into milvus-lite in {time.perf_counter() - started:.0f} s")
            milvus = catalog.get("milvus")
            ranked = {}
            for mode in MODES:
                for label, collection in (("local", local), ("milvus", milvus)):
                    started = time.perf_counter()
                    ranked[mode, label] = _ranking(collection, mode, K)(texts)
                    print(f"{mode} {label}: {len(texts)} queries in {time.perf_counter() - started:.1f} s")
            variants = recomputed(local, texts)

    qids = list(judged.queries)
    judged_n = len(qids)

    def ndcg(rankings: list[list[str]]) -> float:
        return float(np.mean([ndcg_at(r, judged.qrels[q]) for q, r in zip(qids, rankings)]))

    def overlaps(a: list[list[str]], b: list[list[str]]) -> dict[str, float]:
        every = [overlap(x, y) for x, y in zip(a, b)]
        return {"mean": float(np.mean(every)), "min": float(np.min(every)),
                "judged_mean": float(np.mean(every[:judged_n])), "judged_min": float(np.min(every[:judged_n]))}

    result: dict[str, object] = {"cpu_flags": cpu_flags(), "data": args.data.name, "judged_queries": judged_n,
                                 "corpus_queries": len(texts) - judged_n, "stores": {}, "variants": {}}
    print(f"CPU flags: {cpu_flags()}; {args.data.name}: {judged_n} judged + {len(texts) - judged_n} corpus queries")
    print(f"{'mode':<8} {'overlap mean':>12} {'min':>5} {'judged mean':>11} {'min':>5}"
          f" {'nDCG local':>10} {'nDCG milvus':>11} {'diff':>7}")
    for mode in MODES:
        o = overlaps(ranked[mode, "local"], ranked[mode, "milvus"])
        ndcgs = {label: ndcg(ranked[mode, label]) for label in ("local", "milvus")}
        result["stores"][mode] = {"overlap": o, "ndcg@10": ndcgs}  # type: ignore[index]
        print(f"{mode:<8} {o['mean']:>12.3f} {o['min']:>5.1f} {o['judged_mean']:>11.3f} {o['judged_min']:>5.1f}"
              f" {ndcgs['local']:>10.4f} {ndcgs['milvus']:>11.4f} {ndcgs['milvus'] - ndcgs['local']:>+7.4f}")
    print("lexical recomputed from the local index's terms:")
    print(f"{'variant':<20} {'vs fts5':>7} {'vs local':>8} {'vs milvus':>9} {'nDCG@10':>8}")
    for label, _, _ in VARIANTS:
        mine = variants[label]
        row = {"vs_fts5": overlaps(mine, variants["fts5"]), "vs_local": overlaps(mine, ranked["lexical", "local"]),
               "vs_milvus": overlaps(mine, ranked["lexical", "milvus"]), "ndcg@10": ndcg(mine)}
        result["variants"][label] = row  # type: ignore[index]
        print(f"{label:<20} {row['vs_fts5']['mean']:>7.3f} {row['vs_local']['mean']:>8.3f}"
              f" {row['vs_milvus']['mean']:>9.3f} {row['ndcg@10']:>8.4f}")
    # How deep Milvus' candidates must go for its re-scoring to hold FTS5's top 10 (MilvusStore's
    # RESCORED): the deepest place, in the Lucene-IDF ranking, of a document of FTS5's top 10.
    deepest = [max((lucene.index(d) + 1 for d in fts5[:K]), default=0)
               for fts5, lucene in zip(variants["fts5"], variants["lucene idf"])]
    result["candidate_depth"] = {"max": max(deepest), "p99": float(np.percentile(deepest, 99)),
                                 "median": float(np.median(deepest))}
    print(f"FTS5's top 10 lies within the Lucene-IDF ranking's first {max(deepest)} documents"
          f" (median {np.median(deepest):.0f}, 99th percentile {np.percentile(deepest, 99):.0f})")
    write_result("lexical-parity", result)


if __name__ == "__main__":
    main()
