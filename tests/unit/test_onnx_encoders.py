"""The ONNX encoders (onnx-int8, onnx-fp32) against the fp32 PyTorch one, on the real bundled model.

One build is shared by the module (about 15 s); the rebuild test makes one more.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.embedding.embedder import TorchEmbedder, resolve_model
from neardex.indexer.embedding.onnx_encoders import (
    GRAPHS,
    ModelSpec,
    OnnxEmbedder,
    TextTooLong,
    UnsupportedModel,
    _pool,
)
from neardex.indexer.errors import InvalidArgument

pytestmark = pytest.mark.slow  # an int8 build of the model, and two more

T = TypeVar("T")

TEXTS = [
    "hello",
    "What is the capital of France?",
    "how long to boil an egg",
    "Paris is the capital and most populous city of France.",
    "The mitochondria is the powerhouse of the cell.",
    "SELECT name FROM users WHERE id = 42;",
    "def add(a, b):\n    return a + b",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "¿Dónde está la biblioteca?",
    "3.14159 2.71828 1.41421",
    "!!! ??? ...",
    "COVID-19 vaccines reduce the risk of severe illness.",
    "The Treaty of Versailles was signed in 1919, ending World War I.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A black hole is a region of spacetime where gravity is so strong that nothing can escape.",
    "kubectl get pods --all-namespaces -o wide",
    "The quick brown fox jumps over the lazy dog.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Shakespeare wrote Hamlet around 1600.",
    "cheap flights to new york in december",
    "symptoms of vitamin D deficiency",
    "The stock market fell sharply after the announcement of higher interest rates.",
    "Neural networks are trained with stochastic gradient descent and backpropagation.",
    "I love this song so much!!! 😍🎶",
    "e = mc^2",
    "The Great Wall of China is visible from low Earth orbit only under ideal conditions.",
    "how do I reset my password",
    "Mount Everest is 8,849 metres tall.",
    "An apple a day keeps the doctor away.",
    "The patient presented with acute chest pain radiating to the left arm.",
    "Bake at 180°C for 25 minutes until golden brown.",
    "The Amazon rainforest produces a significant share of the world's oxygen, though most of"
    " it is consumed again by the forest's own respiration.",
    "Rust's borrow checker enforces memory safety without a garbage collector.",
    "best hiking trails near seattle",
    "The Fahrenheit scale was proposed in 1724 by the physicist Daniel Gabriel Fahrenheit.",
    "Quantum entanglement links the states of particles regardless of distance.",
    "Call me Ishmael.",
    "Tax returns are due on April 15 in the United States.",
    "A haiku has three lines of five, seven and five syllables.",
    "The Industrial Revolution began in Britain in the late 18th century and spread to Europe"
    " and North America, transforming manufacturing, transport and agriculture. " * 2,
    "GDP",
    "ok",
    "Monotonic increasing: a function that never decreases as its argument grows.",
    "The Beatles released Abbey Road in 1969.",
    "mixed CASE Text With Capitals",
    "    leading and trailing spaces    ",
    "line one\nline two\n\nline four",
    "In machine learning, overfitting happens when a model learns noise in the training data"
    " instead of the underlying pattern, so it performs poorly on new data. Regularization,"
    " dropout and early stopping are common remedies. " * 3,
    "Honey never spoils.",
]


@pytest.fixture(scope="module")
def model() -> tuple[str, Path]:
    return resolve_model(None)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture(scope="module")
def int8(model: tuple[str, Path], cache_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(*model, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def torch_embedder(model: tuple[str, Path]) -> TorchEmbedder:
    return TorchEmbedder(*model)


def test_attributes(int8: OnnxEmbedder, torch_embedder: TorchEmbedder) -> None:
    assert int8.encoder == "onnx-int8"
    assert int8.name == torch_embedder.name
    assert int8.dimension == torch_embedder.dimension == 384
    assert int8.max_seq_length == torch_embedder.max_seq_length == 256
    assert int8.tokenizer.backend_tokenizer.encode("hello world").ids == torch_embedder.tokenizer("hello world")["input_ids"]
    assert int8.manifest["fusions"].get("Attention") == 6  # the fused graph, not the naive one


def test_matches_torch(int8: OnnxEmbedder, torch_embedder: TorchEmbedder) -> None:
    assert len(TEXTS) == 50
    got = int8.encode(TEXTS)
    want = torch_embedder.encode(TEXTS)
    assert got.shape == (50, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * want).sum(axis=1)
    assert cos.mean() >= 0.99, cos
    assert cos.min() >= 0.95, cos


def test_order_preserved_for_mixed_lengths(int8: OnnxEmbedder,
                                           torch_embedder: TorchEmbedder) -> None:
    texts = TEXTS[::-1][:24]  # short and long interleaved: sorting moves them across batches
    want = torch_embedder.encode(texts)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = np.empty_like(want)
    shuffled[perm] = int8.encode([texts[i] for i in perm], batch_size=4)
    runs = {
        "as given": int8.encode(texts, batch_size=4),
        "shuffled": shuffled,
        "one by one": np.stack([int8.encode([t])[0] for t in texts]),
    }
    for label, got in runs.items():
        sims = got @ want.T
        assert (sims.argmax(axis=1) == np.arange(len(texts))).all(), label  # row i is text i
        assert np.diag(sims).min() >= 0.95, (label, np.diag(sims))


def test_too_long_text_raises(int8: OnnxEmbedder) -> None:
    long_text = " ".join(["word"] * 300)
    with pytest.raises(TextTooLong) as info:
        int8.encode(["short", long_text])
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidArgument)
    assert "302 tokens" in str(info.value) and "256" in str(info.value)
    # exactly the window fits: 254 tokens plus [CLS] and [SEP]
    assert int8.encode([" ".join(["word"] * 254)]).shape == (1, 384)


def test_observers_called(int8: OnnxEmbedder) -> None:
    calls: list[tuple[int, float]] = []
    int8.observers.append(lambda n, s: calls.append((n, s)))
    try:
        int8.encode(["one", "two", "three"])
        assert int8.encode([]).shape == (0, 384)
    finally:
        int8.observers.clear()
    assert len(calls) == 1 and calls[0][0] == 3 and calls[0][1] > 0


def _concurrently(call: Callable[[], T], threads: int) -> list[T]:
    """The results of `threads` calls started together (a failed call leaves no result)."""
    results: list[T] = []
    running = [threading.Thread(target=lambda: results.append(call())) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return results


def test_thread_safe(int8: OnnxEmbedder) -> None:
    want = int8.encode(TEXTS[:8])
    results = _concurrently(lambda: int8.encode(TEXTS[:8]), 4)
    assert len(results) == 4
    for got in results:
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_cache_reused(model: tuple[str, Path], cache_dir: Path, int8: OnnxEmbedder) -> None:
    onnx_file = int8.model_dir / GRAPHS["int8"]
    mtime = onnx_file.stat().st_mtime_ns
    again = OnnxEmbedder(*model, cache_dir=cache_dir)
    assert not again.built
    assert again.model_dir == int8.model_dir
    assert onnx_file.stat().st_mtime_ns == mtime
    assert [p.name for p in cache_dir.iterdir() if p.is_dir()] == [int8.model_dir.name]
    np.testing.assert_allclose(again.encode(TEXTS[:5]), int8.encode(TEXTS[:5]), atol=1e-6)


def test_rebuilt_when_model_changes(model: tuple[str, Path], cache_dir: Path,
                                    int8: OnnxEmbedder, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "model-copy"
    shutil.copytree(model[1], copy)
    same = OnnxEmbedder("model-copy", copy, cache_dir=cache_dir)
    assert not same.built  # the key is the weights' content, not the folder's path or name
    assert same.model_dir == int8.model_dir

    weights = load_file(str(copy / "model.safetensors"))
    key = next(k for k in weights if k.endswith("layer.5.output.dense.bias"))
    signs = torch.randint(0, 2, weights[key].shape, generator=torch.Generator().manual_seed(0))
    weights[key] = weights[key] + 0.1 * (2 * signs - 1)  # not uniform: LayerNorm undoes a shift
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})

    # Two builders at once: one builds, the other waits for it and loads the result.
    built = _concurrently(lambda: OnnxEmbedder("model-copy", copy, cache_dir=cache_dir), 2)
    assert len(built) == 2
    assert sorted(e.built for e in built) == [False, True]
    changed = built[0]
    assert changed.model_dir == built[1].model_dir != same.model_dir
    assert json.loads((changed.model_dir / "manifest.json").read_text())["model"] == "model-copy"
    assert not [p for p in cache_dir.iterdir() if ".build-" in p.name]  # no leftovers

    before, after = same.encode(TEXTS[:10]), changed.encode(TEXTS[:10])
    assert np.abs(before - after).max() > 1e-3  # really the new weights
    assert (before * after).sum(axis=1).min() > 0.9  # and still the same model, nearly


def test_unsupported_models_refused(model: tuple[str, Path], tmp_path: Path) -> None:
    def folder(model_type: str, pooling: dict[str, bool]) -> Path:
        path = tmp_path / f"{model_type}-{len(list(tmp_path.iterdir()))}"
        (path / "1_Pooling").mkdir(parents=True)
        for name in ("config.json", "modules.json", "sentence_bert_config.json"):
            shutil.copy(model[1] / name, path / name)
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
        (path / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 384, **pooling}))
        return path

    mean = {"pooling_mode_mean_tokens": True}
    with pytest.raises(UnsupportedModel, match="gpt2"):
        OnnxEmbedder("decoder-model", folder("gpt2", mean))
    with pytest.raises(UnsupportedModel, match="odd-pooling.*weightedmean"):
        OnnxEmbedder("odd-pooling", folder("bert", {"pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(UnsupportedModel, match="two-poolings.*cls \\+ mean"):
        OnnxEmbedder("two-poolings", folder("bert", {"pooling_mode": ["cls", "mean"]}))
    with pytest.raises(UnsupportedModel, match="no-weights.*no weights"):
        OnnxEmbedder("no-weights", folder("bert", mean), cache_dir=tmp_path / "cache")


def test_pooling_configs_and_modes(model: tuple[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "cls-model"
    shutil.copytree(model[1], path, ignore=shutil.ignore_patterns("*.safetensors"))
    for config, mode in (({"pooling_mode": "cls", "embedding_dimension": 384}, "cls"),  # ST 6
                         ({"pooling_mode_max_tokens": True}, "max"),  # legacy booleans
                         ({"word_embedding_dimension": 384}, "mean")):  # none set: mean
        (path / "1_Pooling" / "config.json").write_text(json.dumps(config))
        assert ModelSpec("cls-model", path).pooling == mode

    hidden = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 10
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(_pool(hidden, mask, "cls"), unit(hidden[:, 0]), rtol=1e-6)
    want_mean = unit(np.stack([hidden[0, :2].mean(0), hidden[1].mean(0)]))
    np.testing.assert_allclose(_pool(hidden, mask, "mean"), want_mean, rtol=1e-6)
    np.testing.assert_allclose(_pool(hidden, mask, "mean_sqrt_len_tokens"), want_mean, rtol=1e-6)
    want_max = unit(np.stack([hidden[0, :2].max(0), hidden[1].max(0)]))
    np.testing.assert_allclose(_pool(hidden, mask, "max"), want_max, rtol=1e-6)


def test_a_collection_records_its_encoder_and_builds_in_the_model_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARDEX_MODEL_CACHE", str(tmp_path / "models"))
    data = tmp_path / "data"
    with Catalog(data) as catalog:
        collection = catalog.create("docs", encoder="onnx-int8", default_mode="dense")
        collection.upsert([Document("lava", "Volcanoes erupt molten lava and ash."),
                           Document("bread", "Bakers knead dough and bake bread in ovens.")])
        assert collection.search("where does bread come from", k=1).hits[0].id == "bread"
    builds = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    assert [p.name for p in builds] == [collection.embedder.model_dir.name]
    assert not (data / ".models").exists()
    with Catalog(data) as catalog:
        reopened = catalog.get("docs")
        assert reopened.manifest.encoder == "onnx-int8"
        assert reopened.embedder.model_dir == builds[0]
        assert reopened.search("molten rock from a mountain", k=1).hits[0].id == "lava"


def test_fp32_graph_matches_torch(model: tuple[str, Path], cache_dir: Path, int8: OnnxEmbedder,
                                  torch_embedder: TorchEmbedder) -> None:
    fp32 = OnnxEmbedder(*model, cache_dir=cache_dir, precision="fp32")
    assert (fp32.encoder, fp32.model_dir, fp32.built) == ("onnx-fp32", int8.model_dir, False)
    got, want = fp32.encode(TEXTS), torch_embedder.encode(TEXTS)
    assert (got * want).sum(axis=1).min() > 0.9999
    with pytest.raises(InvalidArgument, match="precision"):
        OnnxEmbedder(*model, cache_dir=cache_dir, precision="fp16")
