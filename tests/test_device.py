"""Where the model runs: --device auto|cpu|cuda[:N], and fp16 only where it agrees with fp32.

These run on any machine: fp16 is exercised on the CPU (torch runs the model in half precision
there too, slowly), and a CUDA device that is absent must be refused by name, not replaced by the
CPU in silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLES, run_cli

from neardex.indexer import embedder as embedder_module
from neardex.indexer.embedder import FP16_PROBES, TorchEmbedder, fp16_agrees, resolve_device, resolve_model
from neardex.indexer.errors import FailedPrecondition, InvalidArgument
from neardex.indexer.readers import read_documents

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


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_index_and_serve_refuse_a_missing_gpu_before_doing_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("index", str(SAMPLES), "--collection", "docs", "--data-dir", str(data),
                     "--device", "cuda", "--quiet", check=False)
    assert result.returncode != 0
    assert "device: cuda asked for, but torch sees 0 CUDA device(s)" in result.stderr
    assert not data.exists()
    result = run_cli("serve", "--data-dir", str(data), "--port", "0", "--metrics-port", "0",
                     "--device", "cuda:1", check=False, timeout=120)
    assert result.returncode != 0
    assert "device: cuda:1 asked for" in result.stderr


def test_index_device_is_for_local_embedding_only(tmp_path: Path) -> None:
    result = run_cli("index", str(SAMPLES), "--collection", "docs", "--server", "127.0.0.1:1",
                     "--device", "cpu", check=False)
    assert result.returncode != 0 and "--device: the model runs here only without --server" in result.stderr


def test_fp16_agreement_is_a_bound_on_every_row() -> None:
    rng = np.random.default_rng(7)
    full = rng.normal(size=(5, 384)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    assert fp16_agrees(full, full.astype(np.float16))
    drifted = full.copy()
    drifted[3] = full[3] + 0.1 * rng.normal(size=384)  # one row off is enough to refuse
    drifted[3] /= np.linalg.norm(drifted[3])
    assert not fp16_agrees(full, drifted)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [f"{d.title} {d.text}" for d in read_documents(SAMPLES)][:40]


def test_fp16_is_taken_where_it_agrees_and_ranks_as_fp32(texts: list[str]) -> None:
    name, path = resolve_model(None)
    model = TorchEmbedder(name, path, "cpu")
    full = model.encode(texts)
    queries = ["how do volcanoes form", "bread needs yeast to rise", "sorting algorithms compared"]
    full_hits = np.argsort(-(model.encode(queries) @ full.T), axis=1)[:, :3]
    assert model.try_half() == "fp16"
    assert next(model.model.parameters()).dtype == torch.float16
    half = model.encode(texts)
    assert half.dtype == np.float32
    assert float(np.min(np.sum(full * half, axis=1))) >= embedder_module.FP16_MIN_COSINE
    # What was written in one precision is found alike in the other.
    assert (np.argsort(-(model.encode(queries) @ full.T), axis=1)[:, :3] == full_hits).all()


def test_fp16_is_refused_where_it_drifts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedder_module, "FP16_MIN_COSINE", 1.0001)  # no half-precision vector passes
    name, path = resolve_model(None)
    model = TorchEmbedder(name, path, "cpu")
    before = model.encode(list(FP16_PROBES))
    assert model.try_half() == "fp32"
    assert next(model.model.parameters()).dtype == torch.float32
    np.testing.assert_allclose(model.encode(list(FP16_PROBES)), before, atol=1e-6)
