"""Helpers shared by the benchmarks: data location, timing statistics, result files."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
MSMARCO = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k"
RESULTS = ROOT / "bench" / "results"


def load_corpus(folder: Path = MSMARCO, limit: int | None = None) -> list[Any]:
    from neardex.indexer.ingest.readers import read_beir

    docs = list(read_beir(folder))
    return docs[:limit] if limit else docs


def load_queries(folder: Path = MSMARCO) -> list[str]:
    with (folder / "queries.jsonl").open() as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def cpu_flags() -> str:
    """The CPU features speed depends on, as /proc/cpuinfo lists them (give them with every figure)."""
    from neardex.indexer.embedding.embedder import (
        cpu_flags as read_cpu_flags,  # the reader the encoder chooses by
    )

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
    have = read_cpu_flags()
    if not have:
        return "unknown"
    return " ".join(f for f in wanted if f in have) or "none of " + ", ".join(wanted)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"argv": sys.argv, **data}, indent=2))
    print(f"wrote {path}")
    return path
