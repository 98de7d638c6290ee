"""int8 recipes beside the default dynamic one: static quantization with a calibration set.

The default onnx-int8 encoder quantizes activations dynamically (a scale per call). Static
quantization fixes every activation scale from a calibration set instead (here the shipped probe
passages, never the evaluation data), with per-channel int8 weights, in ONNX Runtime's QDQ and
QOperator formats, with MinMax or Percentile calibration. Each recipe is compared with the fp32
graph on --limit msmarco passages and the probe questions: per-passage cosine (mean, minimum),
top-10 overlap of 200 corpus-made queries, and passages per second, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_recipes.py [--limit 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cpu_flags, load_corpus, print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--calibration", type=int, default=120, help="probe passages to calibrate on")
    args = parser.parse_args()

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from neardex.indexer.embedding import selection
    from neardex.indexer.embedding.onnx_encoders import GRAPHS, OnnxEmbedder, _session
    from neardex.indexer.embedding.sources import find_model

    source = find_model(None)
    fp32 = OnnxEmbedder(source.name, source.path, None, precision="fp32")
    int8 = OnnxEmbedder(source.name, source.path, None, precision="int8")
    docs = load_corpus(limit=args.limit)
    texts = [d.text for d in docs]
    queries = [re.split(r"(?<=[.!?])\s", t, maxsplit=1)[0][:300] for t in texts[:: max(1, len(texts) // 200)]]
    probes = json.loads(selection.PROBES.read_text(encoding="utf-8"))["passages"][: args.calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(probes)

        def get_next(self) -> dict | None:
            text = next(self.items, None)
            if text is None:
                return None
            enc = fp32._backend.encode(text, add_special_tokens=True)
            ids = np.array([enc.ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            return {n: feed[n] for n in fp32._inputs}

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="int8-recipes-"))
    recipes = {}
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):
        for method in (CalibrationMethod.MinMax, CalibrationMethod.Percentile):
            out = tmp / f"static-{fmt.name}-{method.name}.onnx"
            try:
                quantize_static(str(fp32.model_dir / GRAPHS["fp32"]), str(out), Reader(), quant_format=fmt,
                                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                op_types_to_quantize=["MatMul"], calibrate_method=method,
                                extra_options={"MatMulConstBOnly": True})
            except Exception as exc:  # noqa: BLE001 - a recipe the quantizer refuses is reported as such
                print(f"static {fmt.name} {method.name}: refused ({exc})")
                continue
            recipes[f"static {fmt.name} {method.name}"] = out

    reference = fp32.encode(texts)
    ref_q = fp32.encode(queries)
    ref_top = np.argsort(-(ref_q @ reference.T), axis=1)[:, :10]
    rows, results = [], {}

    def measure(label: str, embedder: OnnxEmbedder) -> None:
        embedder.encode(texts[:16])
        started = time.perf_counter()
        vectors = embedder.encode(texts)
        rate = len(texts) / (time.perf_counter() - started)
        q = embedder.encode(queries)
        top = np.argsort(-(q @ vectors.T), axis=1)[:, :10]
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top, strict=True)]))
        cos = (vectors * reference).sum(axis=1)
        rows.append([label, rate, float(cos.mean()), float(cos.min()), overlap])
        results[label] = {"passages_per_s": rate, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                          "overlap": overlap}

    measure("fp32 (reference)", fp32)
    measure("dynamic (onnx-int8)", int8)
    for label, path in recipes.items():
        static = OnnxEmbedder(source.name, source.path, None, precision="fp32")
        static.session = _session(path, static.threads)
        measure(label, static)  # static scales: batches do not change a text's vector
    print(f"CPU flags: {cpu_flags()}; {len(texts)} passages, {len(queries)} corpus-made queries")
    print_table(["recipe", "passages/s", "cosine mean", "cosine min", "top-10 overlap"], rows)
    write_result("int8-recipes", {"cpu_flags": cpu_flags(), "results": results})


if __name__ == "__main__":
    main()
