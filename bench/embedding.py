"""Embedding throughput and fidelity: stock SentenceTransformer fp32 vs the ONNX encoders.

Both encode the same passages (title + text) in the same process, alternating (the order flips
every run), several runs; the table reports medians. Fidelity is the cosine between each ONNX
vector and the stock fp32 vector of the same passage. The ONNX graphs are built (or loaded from
the cache) before any timing; their build or load time is reported on its own.

    .venv/bin/python bench/embedding.py [--runs 3] [--limit N] [--precision int8|fp32] [--fresh-cache]
        [--profile] [--onnx precision=fp32,threads=1,spinning=0,batch=32,tokens=8192 ...] [--threads-study]

--onnx adds a variant to the alternation (repeatable; the default variant, of --precision, always
runs; precision=fp32 or int8 in a variant picks its graph).
--profile prints, for one pass of the default variant, where the time goes: ONNX Runtime's
per-op-type kernel time (SessionOptions.enable_profiling) and the time spent outside the session
(tokenizing, padding, pooling). --threads-study times session.run on fixed shapes for each
intra-op thread count and spinning setting.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Timer, load_corpus, median, print_table, write_result


def parse_variant(text: str) -> dict[str, Any]:
    allowed = {"precision", "threads", "spinning", "batch", "tokens"}
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in allowed:
            raise SystemExit(f"--onnx: unknown setting {key!r}; expected {sorted(allowed)}")
        out[key] = value if key == "precision" else int(value)
    return out


def label(variant: dict[str, Any], defaults: dict[str, Any]) -> str:
    merged = {**defaults, **variant}
    return (f"onnx-{merged['precision']} (threads={merged['threads']}, spin={merged['spinning']},"
            f" batch={merged['batch']}, tokens={merged['tokens']})")


def profile_pass(embedder: Any, texts: list[str], batch: int) -> dict[str, Any]:
    from neardex.indexer.embedding.onnx_encoders import GRAPHS, _session

    session = embedder.session
    embedder.session = _session(embedder.model_dir / GRAPHS[embedder.precision], embedder.threads, profile=True)
    try:
        with Timer() as tok:
            embedder._backend.encode_batch(texts, add_special_tokens=True)
        with Timer() as total:
            embedder.encode(texts, batch_size=batch)
        trace = embedder.session.end_profiling()
    finally:
        embedder.session = session
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    ops: collections.Counter[str] = collections.Counter()
    run_us = 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            ops[event["args"]["op_name"]] += event["dur"]
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            run_us += event["dur"]
    kernels = sum(ops.values())
    outside = total.seconds - run_us / 1e6
    print(f"\nprofile of one pass ({len(texts)} passages, batch {batch}):"
          f" encode {total.seconds:.2f} s, inside session.run {run_us / 1e6:.2f} s,"
          f" outside {outside:.2f} s (tokenizing alone {tok.seconds:.2f} s)")
    rows = [[op, us / 1e6, 100 * us / kernels, 100 * us / 1e6 / total.seconds]
            for op, us in ops.most_common()]
    rows.append(["(outside session: tokenize, pad, pool)", outside, "", 100 * outside / total.seconds])
    print_table(["op type", "seconds", "% of kernel time", "% of encode time"], rows)
    return {"encode_seconds": total.seconds, "session_seconds": run_us / 1e6,
            "tokenize_seconds": tok.seconds,
            "op_seconds": {op: us / 1e6 for op, us in ops.most_common()}}


def threads_study(model_path: Path, rounds: int = 5) -> list[dict[str, Any]]:
    """session.run on fixed shapes for every thread count and spinning setting, alternating."""
    from neardex.indexer.embedding.onnx_encoders import _session

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    configs = [(t, s) for t in sorted({1, cpus}) for s in (True, False)]
    sessions = {c: _session(model_path, c[0], spinning=c[1]) for c in configs}
    rng = np.random.default_rng(0)
    results = []
    print("\nstatic shapes, ms per session.run (median of alternating rounds):")
    headers = ["batch x seq", *(f"threads={t} spin={int(s)}" for t, s in configs)]
    rows = []
    for batch, seq in ((1, 16), (8, 64), (32, 64), (32, 128), (64, 128), (16, 256)):
        feed = {"input_ids": rng.integers(1000, 20000, (batch, seq), dtype=np.int64),
                "attention_mask": np.ones((batch, seq), np.int64),
                "token_type_ids": np.zeros((batch, seq), np.int64)}
        times: dict[tuple[int, bool], list[float]] = {c: [] for c in configs}
        for c in configs:  # warm-up
            sessions[c].run(None, feed)
        for r in range(rounds):
            for c in configs[r % len(configs):] + configs[:r % len(configs)]:
                started = time.perf_counter()
                sessions[c].run(None, feed)
                times[c].append(time.perf_counter() - started)
        ms = {c: 1000 * statistics.median(v) for c, v in times.items()}
        rows.append([f"{batch} x {seq}", *(ms[c] for c in configs)])
        results.append({"batch": batch, "seq": seq,
                        "ms": {f"threads={t},spinning={int(s)}": ms[(t, s)] for t, s in configs}})
    print_table(headers, rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    parser.add_argument("--onnx", action="append", default=[], type=parse_variant,
                        help="extra variant, e.g. precision=fp32,threads=1,spinning=0,batch=32,tokens=8192")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="build the int8 model into a new temporary cache (times the build)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--threads-study", action="store_true")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from neardex.indexer.embedding.embedder import resolve_model
    from neardex.indexer.embedding.onnx_encoders import (
        DEFAULT_MAX_BATCH_TOKENS,
        GRAPHS,
        OnnxEmbedder,
        default_threads,
    )

    docs = load_corpus(limit=args.limit)
    texts = [f"{d.title} {d.text}" if d.title else d.text for d in docs]
    name, path = resolve_model(None)
    tmp = tempfile.TemporaryDirectory() if args.fresh_cache else None
    cache_dir = Path(tmp.name) if tmp else None

    with Timer() as load:
        default = OnnxEmbedder(name, path, cache_dir, precision=args.precision)
    print(f"onnx graphs: {'built' if default.built else 'loaded from cache'} in {load.seconds:.1f} s"
          f" ({default.model_dir})", flush=True)
    defaults = {"precision": args.precision, "threads": default.threads, "spinning": 0, "batch": 64,
                "tokens": DEFAULT_MAX_BATCH_TOKENS}
    variants: dict[str, tuple[Any, int]] = {label({}, defaults): (default, 64)}
    for v in args.onnx:
        merged = {**defaults, **v}
        emb = OnnxEmbedder(name, path, cache_dir, precision=merged["precision"], threads=merged["threads"],
                               spinning=bool(merged["spinning"]), max_batch_tokens=merged["tokens"])
        variants[label(v, defaults)] = (emb, merged["batch"])

    stock = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    methods: dict[str, Any] = {
        "SentenceTransformer.encode fp32 (batch 64)":
            lambda batch: stock.encode(batch, batch_size=64, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False),
    }
    for key, (emb, size) in variants.items():
        methods[key] = lambda batch, emb=emb, size=size: emb.encode(batch, batch_size=size)
    for run in methods.values():  # warm-up
        run(texts[:64])

    names = list(methods)
    seconds: dict[str, list[float]] = {k: [] for k in names}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.runs):
        order = names if r % 2 == 0 else names[::-1]
        for key in order:
            with Timer() as t:
                outputs[key] = np.asarray(methods[key](texts), dtype=np.float32)
            seconds[key].append(t.seconds)
        print(f"run {r + 1}: " + ", ".join(f"{k.split(' (')[0]} {seconds[k][-1]:.1f} s" for k in order),
              flush=True)

    n = len(texts)
    base = names[0]
    reference = outputs[base]
    rows, results = [], []
    for key in names:
        cos = (outputs[key] * reference).sum(axis=1)
        speedup = median(seconds[base]) / median(seconds[key])
        rows.append([key, n / median(seconds[key]), median(seconds[key]), speedup,
                     float(cos.mean()), float(cos.min())])
        results.append({"method": key, "seconds": seconds[key],
                        "passages_per_second": n / median(seconds[key]), "speedup": speedup,
                        "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())})
    print()
    print_table(["method", "passages/s", "median s", "speed-up", "mean cos", "min cos"], rows)
    data: dict[str, Any] = {
        "passages": n, "runs": args.runs, "cpus": default_threads(), "methods": results,
        "onnx_model": str(default.model_dir), "onnx_built": default.built,
        "onnx_load_seconds": load.seconds, "onnx_manifest": default.manifest,
        "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.profile:
        data["profile"] = profile_pass(default, texts, 64)
    if args.threads_study:
        data["threads_study"] = threads_study(default.model_dir / GRAPHS[args.precision])
    write_result("embedding", data)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
