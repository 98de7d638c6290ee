"""Where and how precisely the model runs: --device auto|cpu|cuda[:N]; fp16 on a GPU and bf16 on
a CPU with native bf16, each only where it agrees with fp32.

These run on any machine: fp16 and bf16 are exercised on the CPU (torch runs both there, slowly
where the CPU lacks them), and a CUDA device that is absent must be refused by name, not replaced
by the CPU in silence. (The same refusals from `neardex index` and `neardex serve`:
tests/e2e/test_device_cli.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neardex.indexer.embedding import embedder as embedder_module
from neardex.indexer.embedding.embedder import (
    PRECISION_PROBES,
    TorchEmbedder,
    agrees_with_fp32,
    resolve_device,
    resolve_model,
)
from neardex.indexer.errors import FailedPrecondition, InvalidArgument
from neardex.indexer.ingest.readers import read_documents
from tests.support.paths import SAMPLES

HAS_CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_torch_sees_one_else_the_cpu() -> None:
    assert resolve_device("auto") == ("cuda:0" if HAS_CUDA else "cpu")
    assert resolve_device("") == resolve_device("auto")
    assert resolve_device("CPU") == "cpu"
    # An encoder that runs on the CPU only is put there by auto, and refused a GPU by name.
    assert resolve_device("auto", "onnx-int8") == "cpu"
    with pytest.raises(InvalidArgument, match="device: the onnx-int8 encoder runs on the CPU only"):
        resolve_device("cuda", "onnx-int8")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "cuda:-1"])
def test_an_unknown_device_is_refused_by_name(device: str) -> None:
    with pytest.raises(InvalidArgument, match=f"device: '{device}' is not auto, cpu, cuda or cuda:N"):
        resolve_device(device)


def test_a_cuda_device_that_is_not_there_is_refused() -> None:
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(FailedPrecondition, match=rf"device: {missing} asked for, but torch sees"):
        resolve_device(missing)


def test_fp16_agreement_is_a_bound_on_every_row() -> None:
    rng = np.random.default_rng(7)
    full = rng.normal(size=(5, 384)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    assert agrees_with_fp32(full, full.astype(np.float16))
    drifted = full.copy()
    drifted[3] = full[3] + 0.1 * rng.normal(size=384)  # one row off is enough to refuse
    drifted[3] /= np.linalg.norm(drifted[3])
    assert not agrees_with_fp32(full, drifted)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [f"{d.title} {d.text}" for d in read_documents(SAMPLES)][:12]


QUERIES = ["how do volcanoes form", "bread needs yeast to rise", "sorting algorithms compared"]


@pytest.fixture
def fp32_model(monkeypatch: pytest.MonkeyPatch) -> TorchEmbedder:
    monkeypatch.setenv(embedder_module.PRECISION_ENV, "fp32")
    name, path = resolve_model(None)
    model = TorchEmbedder(name, path, "cpu")
    assert model.precision == "fp32"
    return model


def top3(model: TorchEmbedder, passages: np.ndarray) -> np.ndarray:
    return np.argsort(-(model.encode(QUERIES) @ passages.T), axis=1)[:, :3]


@pytest.mark.slow  # fp16 and bf16 run slowly on a CPU without them
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_is_taken_where_it_agrees_and_ranks_as_fp32(
        fp32_model: TorchEmbedder, texts: list[str], precision: str) -> None:
    full = fp32_model.encode(texts)
    full_hits = top3(fp32_model, full)
    assert (fp32_model.try_half() if precision == "fp16" else fp32_model.try_bf16()) == precision
    if precision == "fp16":
        assert next(fp32_model.model.parameters()).dtype == torch.float16
    reduced = fp32_model.encode(texts)
    assert reduced.dtype == np.float32
    assert float(np.min(np.sum(full * reduced, axis=1))) >= embedder_module.MIN_COSINE_TO_FP32
    # What was written in one precision is found alike in the other.
    assert (top3(fp32_model, full) == full_hits).all()


@pytest.mark.slow  # fp16 and bf16 run slowly on a CPU without them
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_is_refused_where_it_drifts(
        fp32_model: TorchEmbedder, monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    monkeypatch.setattr(embedder_module, "MIN_COSINE_TO_FP32", 1.0001)  # no reduced vector passes
    before = fp32_model.encode(list(PRECISION_PROBES))
    assert (fp32_model.try_half() if precision == "fp16" else fp32_model.try_bf16()) == "fp32"
    assert next(fp32_model.model.parameters()).dtype == torch.float32
    # Back to the very same model: fp32 weights restored, autocast off.
    np.testing.assert_array_equal(fp32_model.encode(list(PRECISION_PROBES)), before)


def test_cpu_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedder_module.PRECISION_ENV, raising=False)
    name, path = resolve_model(None)
    native = bool(embedder_module.cpu_flags() & set(embedder_module.BF16_CPU_FLAGS))
    assert TorchEmbedder(name, path, "cpu").precision == ("bf16" if native else "fp32")
    # The flags decide, not the machine the test happens to run on.
    monkeypatch.setattr(embedder_module, "cpu_flags", lambda: {"avx2", "fma"})
    assert TorchEmbedder(name, path, "cpu").precision == "fp32"
    monkeypatch.setattr(embedder_module, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert TorchEmbedder(name, path, "cpu").precision == "bf16"
    monkeypatch.setenv(embedder_module.PRECISION_ENV, "fp32")
    assert TorchEmbedder(name, path, "cpu").precision == "fp32"
    monkeypatch.setenv(embedder_module.PRECISION_ENV, "int4")
    with pytest.raises(InvalidArgument, match="precision: NEARDEX_PRECISION='int4' is not one of"):
        TorchEmbedder(name, path, "cpu")
