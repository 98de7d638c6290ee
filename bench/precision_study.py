"""Is the default CPU encoder lossless? The default precision against fp32 on msmarco-dl19-5k.

Both embed all 5,000 passages (title + text, as the pipeline does) and two query sets: the 43
judged queries, and 1,000+ queries made from the corpus itself (each passage's first sentence,
for every fifth passage). Reported, dense retrieval over each precision's own vectors:
- top-10 overlap with fp32 per query (mean, minimum, share of queries with all 10 alike),
- nDCG@10 on the judged queries, both, and a paired bootstrap 95% interval of the difference,
- cosine of each passage vector to its fp32 vector (mean, minimum),
- embedding speed of both and of stock SentenceTransformer.encode, same run (medians of --runs).

    .venv/bin/python bench/precision_study.py [--runs 3] [--sweep 8,16,32,64 --sweep-limit 800]

--sweep times both precisions at each texts-per-model-call size on the first --sweep-limit
passages (the choice behind embedder.BATCH), instead of the study. --profile shows where fp32
spends its time on those passages (the path a CPU without native bf16 takes): torch's operators
by self CPU time, and the share outside the model (tokenizing, pooling, Python).
"""

from __future__ import annotations

import argparse
import os
import re
import time

import numpy as np
from common import MSMARCO, cpu_flags, load_corpus, median, print_table, write_result

BOOTSTRAP = 10_000


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0][:300]


def sweep(args: argparse.Namespace, texts: list[str], models: dict[str, object]) -> None:
    from neardex.indexer.ingest.encoding import DocumentEncoder

    sizes = [int(x) for x in args.sweep.split(",")]
    rates: dict[tuple[str, int], list[float]] = {(p, b): [] for p in models for b in sizes}
    for _ in range(args.runs):
        for (precision, size), out in rates.items():
            encoder = DocumentEncoder(models[precision], 254, 32)  # type: ignore[arg-type]
            started = time.perf_counter()
            encoder.embed(texts, size)
            out.append(len(texts) / (time.perf_counter() - started))
    print_table(["precision", "texts per call", "passages/s"], [[p, b, median(v)] for (p, b), v in rates.items()])
    write_result("precision-sweep", {"cpu_flags": cpu_flags(), "rates": {f"{p} {b}": v for (p, b), v in rates.items()}})


def profile(texts: list[str], model: object) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from neardex.indexer.ingest.encoding import DocumentEncoder

    encoder = DocumentEncoder(model, 254, 32)  # type: ignore[arg-type]
    encoder.embed(texts[:32])
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        encoder.embed(texts)
        wall = time.perf_counter() - started
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    model_ms = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1000
    print(f"wall {wall * 1000:.0f} ms for {len(texts)} passages; torch operators {model_ms:.0f} ms"
          f" ({model_ms / (wall * 1000):.0%}); the rest is tokenizing, pooling and Python")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=int, default=5, help="a corpus query from every Nth passage")
    parser.add_argument("--sweep", default="", help="texts per model call to time, e.g. 8,16,32,64")
    parser.add_argument("--sweep-limit", type=int, default=800)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from neardex.indexer.embedding import embedder as emb
    from neardex.indexer.ingest.encoding import DocumentEncoder
    from neardex.server.evaluation import load_judged, ndcg_at

    docs = load_corpus()
    texts = [f"{d.title} {d.text}" if d.title else d.text for d in docs]
    ids = [d.id for d in docs]
    judged = load_judged(MSMARCO)
    judged_ids = list(judged.queries)
    corpus_queries = [first_sentence(d.text) for d in docs[:: args.every]]
    queries = [judged.queries[q] for q in judged_ids] + corpus_queries

    name, path = emb.resolve_model(None)
    os.environ[emb.PRECISION_ENV] = "fp32"
    fp32 = emb.TorchEmbedder(name, path, "cpu")
    os.environ.pop(emb.PRECISION_ENV)
    default = emb.TorchEmbedder(name, path, "cpu")
    stock = SentenceTransformer(str(path), device="cpu")
    print(f"CPU flags: {cpu_flags()}; default precision here: {default.precision}", flush=True)
    if args.profile:
        profile(texts[: args.sweep_limit], fp32)
        return
    if args.sweep:
        sweep(args, texts[: args.sweep_limit], {"fp32": fp32, default.precision: default})
        return

    speed: dict[str, list[float]] = {"stock SentenceTransformer.encode (fp32, batch 32)": [],
                                     "neardex fp32": [], f"neardex default ({default.precision})": []}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.runs):  # alternating, so drift in the machine's load hits all alike
        started = time.perf_counter()
        stock.encode(texts, normalize_embeddings=True)
        speed["stock SentenceTransformer.encode (fp32, batch 32)"].append(len(texts) / (time.perf_counter() - started))
        for label, model in (("neardex fp32", fp32), (f"neardex default ({default.precision})", default)):
            encoder = DocumentEncoder(model, 254, 32)
            started = time.perf_counter()
            vectors[label] = encoder.embed(texts)
            speed[label].append(len(texts) / (time.perf_counter() - started))
    full, fast = vectors["neardex fp32"], vectors[f"neardex default ({default.precision})"]
    q_full, q_fast = fp32.encode(queries), default.encode(queries)

    top_full = np.argsort(-(q_full @ full.T), axis=1)[:, :10]
    top_fast = np.argsort(-(q_fast @ fast.T), axis=1)[:, :10]
    overlap = np.array([len(set(a) & set(b)) / 10 for a, b in zip(top_full, top_fast)])
    cosines = np.sum(full * fast, axis=1)

    def ndcg(top: np.ndarray) -> np.ndarray:
        return np.array([ndcg_at([ids[i] for i in top[n]], judged.qrels[q]) for n, q in enumerate(judged_ids)])

    n_full, n_fast = ndcg(top_full[: len(judged_ids)]), ndcg(top_fast[: len(judged_ids)])
    diff = n_fast - n_full
    rng = np.random.default_rng(0)
    samples = diff[rng.integers(0, len(diff), (BOOTSTRAP, len(diff)))].mean(axis=1)
    low, high = np.percentile(samples, [2.5, 97.5])

    base = median(speed["stock SentenceTransformer.encode (fp32, batch 32)"])
    print_table(["encoder", "passages/s", "vs stock"], [[k, median(v), median(v) / base] for k, v in speed.items()])
    print(f"passage cosine to fp32: mean {cosines.mean():.5f}, min {cosines.min():.5f}")
    for label, part in (("judged", slice(0, len(judged_ids))), ("corpus", slice(len(judged_ids), None)),
                        ("all", slice(None))):
        o = overlap[part]
        print(f"top-10 overlap with fp32, {label} queries ({len(o)}): mean {o.mean():.4f}, min {o.min():.2f},"
              f" identical {np.mean(o == 1.0):.3f}")
    print(f"dense nDCG@10: fp32 {n_full.mean():.4f}, default {n_fast.mean():.4f}, difference {diff.mean():+.4f}"
          f" (paired bootstrap 95%: {low:+.4f} .. {high:+.4f})")
    write_result("precision-study", {
        "cpu_flags": cpu_flags(), "precision": default.precision, "speed": speed,
        "cosine_mean": float(cosines.mean()), "cosine_min": float(cosines.min()),
        "overlap_mean": float(overlap.mean()), "overlap_min": float(overlap.min()),
        "ndcg_fp32": float(n_full.mean()), "ndcg_default": float(n_fast.mean()),
        "ndcg_diff_ci95": [float(low), float(high)], "queries": len(queries)})


if __name__ == "__main__":
    main()
