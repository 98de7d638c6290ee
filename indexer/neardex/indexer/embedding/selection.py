"""Which encoder `auto` means on this machine: the fastest that measures equivalent to fp32 here.

Encoders differ by CPU: bf16 matrix products are fast only where the CPU computes bf16 natively,
int8 only where it has VNNI or at least AVX2, and ONNX Runtime's fused fp32 graph beats PyTorch
on some CPUs and not on others. So the choice is measured, not tabled: at the first use of a model
on a machine, every candidate this CPU supports encodes a probe set (paragraphs and questions
shipped in probes.json) beside the fp32 PyTorch reference. A candidate is kept when every probe's
vector stays within MIN_COSINE of its fp32 vector and the probe questions' top-10 passages agree
with fp32's on average within MIN_OVERLAP; the fastest kept wins, torch only by a margin for
the seconds its imports add to every start (torch, whose fp32 is the reference itself, is always
kept). The result is cached beside the ONNX builds, keyed by a hash
of the model's weights, the runtimes' versions and the CPU flags, so later processes read one
small file and never import torch to decide.

A collection records the encoder chosen when it was made, and every later write and query uses
that one, on whichever machine: each candidate runs on any CPU its runtime installs on, only
slower where the features are missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_durably
from .embedder import MIN_COSINE_TO_FP32, Embedder, TorchEmbedder, cpu_flags
from .sources import ModelSource

log = logging.getLogger("neardex.indexer")

# Bump when the measurement or the thresholds change: earlier choices are then measured again.
SELECTION_VERSION = 3
CANDIDATES = ("torch", "onnx-fp32", "onnx-int8")
# Kept only while every probe vector (passages and questions) is this close to fp32's: the bound
# every reduced precision meets (fp16 on a GPU, bf16 on a CPU) ...
MIN_COSINE = MIN_COSINE_TO_FP32
# ... and the probe questions' top-10 passages overlap fp32's by at least this on average. Both
# bounds are set by the study behind them (bench/encoder_study.py, ARCHITECTURE.md): bf16 (probe
# cosine 0.99999, overlap 0.996) moved nDCG@10 by less than 0.005 at 95%; int8 (probe cosine
# 0.989, overlap 0.948) did not, on msmarco or XQuAD.
MIN_OVERLAP = 0.98
TOP = 10
# torch must encode this much faster to be chosen over an ONNX encoder: it costs every process
# that loads it seconds of imports (5.7 s of a 6.5 s index of 20 passages), and on a CPU where
# the two are close (here 97.5 against 103.9 passages/s) noise alone would decide.
TORCH_START_MARGIN = 1.15
# The CPU features the candidates' speed depends on: the cache key holds those present.
SPEED_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
               "asimd", "asimddp", "sve", "bf16", "i8mm")
# Texts per model call while timing: the CPU default of embedder.BATCH.
TIMING_BATCH = 16
PROBES = Path(__file__).with_name("probes.json")


@dataclass(frozen=True)
class Measured:
    encoder: str
    passages_per_s: float
    min_cosine: float
    mean_overlap: float
    kept: bool


@dataclass(frozen=True)
class Choice:
    encoder: str
    measured: tuple[Measured, ...]
    cpu: str


def int8_supported(flags: set[str]) -> bool:
    """int8 products are fast with VNNI, AVX2 or an ARM dot product; elsewhere they are emulated."""
    return bool(flags & {"avx2", "avx512_vnni", "avx_vnni", "asimddp"})


def candidates(flags: set[str]) -> list[str]:
    return [c for c in CANDIDATES if c != "onnx-int8" or int8_supported(flags)]


def cpu_key(flags: set[str]) -> str:
    return f"{platform.machine()}:{','.join(f for f in SPEED_FLAGS if f in flags)}"


def choice_file(cache_dir: Path, weights_key: str, flags: set[str]) -> Path:
    digest = hashlib.sha256(f"v{SELECTION_VERSION};{weights_key};{cpu_key(flags)}".encode()).hexdigest()
    return cache_dir / f"encoder-choice-{digest[:24]}.json"


def choose(source: ModelSource, cache_dir: Path | None) -> str:
    """The encoder auto means for the model on this CPU, measured once and cached."""
    from .onnx_encoders import ModelSpec, UnsupportedModel, _file_lock, cache_dir_for

    cache_dir = cache_dir_for(cache_dir)
    try:
        spec = ModelSpec(source.name, source.path)
    except UnsupportedModel as exc:
        log.info("encoder auto for model %s: torch (%s)", source.name, exc)
        return "torch"
    flags = cpu_flags()
    file = choice_file(cache_dir, spec.cache_key(), flags)
    if not file.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(cache_dir / f"{file.name}.lock"):
            if not file.is_file():  # else measured by another process while this one waited
                choice = measure(source, cache_dir, flags)
                write_durably(file, json.dumps({**asdict(choice), "model": source.name}, indent=2))
    return str(json.loads(file.read_text(encoding="utf-8"))["encoder"])


def choice_record(source: ModelSource, cache_dir: Path | None) -> dict[str, Any] | None:
    """What was measured for the model on this CPU (the cached choice), None before `choose`."""
    from .onnx_encoders import ModelSpec, UnsupportedModel, cache_dir_for

    try:
        spec = ModelSpec(source.name, source.path)
    except UnsupportedModel:
        return None
    file = choice_file(cache_dir_for(cache_dir), spec.cache_key(), cpu_flags())
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def measure(source: ModelSource, cache_dir: Path, flags: set[str]) -> Choice:
    """Every candidate against fp32 PyTorch on the probes; the fastest one kept."""
    from .onnx_encoders import OnnxEmbedder

    name, path = source.name, source.path
    probes = json.loads(PROBES.read_text(encoding="utf-8"))
    passages, questions = list(probes["passages"]), list(probes["queries"])
    torch = TorchEmbedder(name, path, "cpu")
    # Where the torch candidate runs in fp32 (no native bf16) it is the reference itself.
    reference = torch if torch.precision == "fp32" else TorchEmbedder(name, path, "cpu", precision="fp32")
    ref_passages, ref_questions = reference.encode(passages), reference.encode(questions)
    ref_top = _top(ref_questions, ref_passages)
    measured: list[Measured] = []
    for encoder in candidates(flags):
        try:
            embedder: Embedder = (torch if encoder == "torch" else
                                  OnnxEmbedder(name, path, cache_dir, precision=encoder.removeprefix("onnx-")))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot load is not chosen
            log.warning("encoder auto: %s cannot run model %s here: %s", encoder, name, exc)
            continue
        rate, vectors = _timed(embedder, passages)
        asked = embedder.encode(questions)
        cosine = float(min(np.min(np.sum(vectors * ref_passages, axis=1)),
                           np.min(np.sum(asked * ref_questions, axis=1))))
        overlap = float(np.mean([len(set(a) & set(b)) / TOP
                                 for a, b in zip(_top(asked, vectors), ref_top, strict=True)]))
        kept = cosine >= MIN_COSINE and overlap >= MIN_OVERLAP
        measured.append(Measured(encoder, rate, cosine, overlap, kept))
    encoder = pick(measured)
    choice = Choice(encoder, tuple(measured), cpu_key(flags))
    log.info("encoder auto for model %s on this CPU (%s): %s; %s", name, choice.cpu, encoder,
             "; ".join(f"{m.encoder} {m.passages_per_s:.0f} passages/s, cosine >= {m.min_cosine:.4f},"
                       f" top-{TOP} overlap {m.mean_overlap:.3f}{'' if m.kept else ' (not equivalent)'}"
                       for m in measured))
    return choice


def pick(measured: list[Measured]) -> str:
    """The fastest encoder kept, torch counted TORCH_START_MARGIN slower; torch (fp32, the
    reference) when none was."""
    best = max((m for m in measured if m.kept),
               key=lambda m: m.passages_per_s / (TORCH_START_MARGIN if m.encoder == "torch" else 1.0),
               default=None)
    return best.encoder if best else "torch"


def _timed(embedder: Embedder, texts: list[str]) -> tuple[float, np.ndarray]:
    """Passages per second, the better of two runs after a warm-up call, and the vectors."""
    embedder.encode(texts[:TIMING_BATCH], TIMING_BATCH)
    best, vectors = float("inf"), np.zeros(0)
    for _ in range(2):
        started = time.perf_counter()
        vectors = embedder.encode(texts, TIMING_BATCH)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best, vectors


def _top(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ passages.T), axis=1, kind="stable")[:, :TOP]
