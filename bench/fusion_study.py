"""Fusion study: every fusion method and weight on one or more BEIR folders, in one table.

Each folder is indexed once into a persistent study folder (reused on later runs); then both
retrievers' rankings are taken once per query and each fusion is computed from the same lists.

    .venv/bin/python bench/fusion_study.py BEIR_DIR [BEIR_DIR ...] [--work /tmp/neardex-study]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/neardex-study"))
    parser.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()

    from neardex.indexer.catalog import Catalog
    from neardex.indexer.ingest.pipeline import index_documents
    from neardex.indexer.ingest.readers import read_beir
    from neardex.indexer.retrieval import fusion
    from neardex.server.evaluation import evaluate, load_judged

    methods: dict[str, fusion.Method | None] = {"dense": None, "lexical": None}
    methods["rrf k=60"] = lambda d, lx, w: fusion.rrf(d, lx, 60.0)
    for w in (0.3, 0.5, 0.6, 0.7, 0.8):
        methods[f"minmax a={w}"] = lambda d, lx, _w, w=w: fusion.minmax_convex(d, lx, w)
        methods[f"tmm a={w}"] = lambda d, lx, _w, w=w: fusion.tmm_convex(d, lx, w)
        methods[f"zscore a={w}"] = lambda d, lx, _w, w=w: fusion.zscore_convex(d, lx, w)
    for w in (0.5, 0.6, 0.7, 0.8, 0.9):
        methods[f"complete minmax a={w}"] = lambda d, lx, _w, w=w: fusion.minmax_convex(d, lx, w)
        methods[f"complete tmm a={w}"] = lambda d, lx, _w, w=w: fusion.tmm_convex(d, lx, w)
        methods[f"complete zscore a={w}"] = lambda d, lx, _w, w=w: fusion.zscore_convex(d, lx, w)
        methods[f"complete adaptive-minmax a0={w}"] = lambda d, lx, c, w=w: fusion.minmax_convex(d, lx, w * c)
        methods[f"complete adaptive-tmm a0={w}"] = lambda d, lx, c, w=w: fusion.tmm_convex(d, lx, w * c)
        methods[f"adaptive-minmax a0={w}"] = lambda d, lx, c, w=w: fusion.minmax_convex(d, lx, w * c)

    table: dict[str, dict[str, float]] = {}
    for folder in args.folders:
        judged = load_judged(folder)
        with Catalog(args.work) as catalog:
            name = folder.name.replace(".", "-")
            if catalog.exists(name):
                col = catalog.get(name)
            else:
                col = catalog.create(name, default_mode="dense")
                index_documents(col, read_beir(folder))
            vectors = col.embedder.encode(list(judged.queries.values()))
            cache = {}
            for text, vec in zip(judged.queries.values(), vectors):
                query = col.analyze(text)
                dense, lex = col.dense_candidates(vec, args.depth), col.lexical_candidates(query, args.depth)
                cache[text] = (dense, lex, fusion.vocabulary_coverage(col.embedder, query),
                               col.complete(query, vec, dense, lex))
            for label, method in methods.items():
                def run(text: str, label=label, method=method, cache=cache) -> list[str]:
                    dense, lexical, coverage, completed = cache[text]
                    if label == "dense":
                        return [c.doc_id for c in dense]
                    if label == "lexical":
                        return [c.doc_id for c in lexical]
                    if label.startswith("complete"):
                        dense, lexical = completed
                    return [c.doc_id for c in fusion.fuse_candidates(dense, lexical, coverage, method)]
                table.setdefault(label, {})[folder.name] = evaluate(judged, lambda texts, run=run: [run(t) for t in texts])["ndcg@10"]
    names = [f.name for f in args.folders]
    print_table(["method", *[f"{n} nDCG@10" for n in names]], [[m, *[v[n] for n in names]] for m, v in table.items()])
    write_result("fusion-study", {"ndcg@10": table})


if __name__ == "__main__":
    main()
