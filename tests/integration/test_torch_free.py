"""A process that indexes and searches with an ONNX encoder never imports torch.

The ONNX encoders run on onnxruntime and tokenizers alone once their build is cached (the build
itself exports the model with torch, once per machine); `auto` reads its cached choice without
measuring again. Each child process below reports the modules it ended with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sentence_transformers", "transformers")

REPORT = f"""
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
COMMAND = """
import json, sys
from neardex.client.cli import main
sys.argv = ["neardex", *json.loads(sys.argv[1])]
code = main()
""" + REPORT
SEARCH = """
import json, sys
from neardex.indexer.catalog import Catalog
data, name, text = json.loads(sys.argv[1])
with Catalog(data) as catalog:
    code = catalog.get(name).search(text, k=1).hits[0].id
""" + REPORT


def child(code: str, args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def neardex(*args: str, env: dict[str, str]) -> dict:
    return child(COMMAND, list(args), env)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    # The machine's model cache, as every process of the suite uses it: `make test` prepares it.
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("encoder", ["onnx-int8", "onnx-fp32"])
def test_index_and_search_without_torch(encoder: str, env: dict[str, str], tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"id": "lava", "text": "Volcanoes erupt molten lava and ash."},
        {"id": "bread", "text": "Bakers knead dough and bake bread in ovens."}]) + "\n")
    data = str(tmp_path / "data")
    # The first use on a machine builds (torch is imported for the export, once) ...
    first = neardex("index", str(docs), "--collection", "first", "--data-dir", data, "--encoder", encoder, env=env)
    assert first["code"] == 0
    # ... every later process only opens the cached graphs.
    second = neardex("index", str(docs), "--collection", "docs", "--data-dir", data, "--encoder", encoder, env=env)
    assert second == {"code": 0, "loaded": []}
    found = child(SEARCH, [data, "docs", "where does bread come from"], env)
    assert found == {"code": "bread", "loaded": []}


def test_auto_reads_its_cached_choice_without_torch(env: dict[str, str], tmp_path: Path) -> None:
    prepared = subprocess.run([sys.executable, "-m", "neardex.client.cli", "models", "prepare"], env=env,
                              capture_output=True, text=True, timeout=900, check=True)
    chosen = prepared.stdout.strip().splitlines()[-1].split()[2]
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "text": "Tea leaves are withered, rolled and oxidised."}) + "\n")
    made = neardex("index", str(docs), "--collection", "c", "--data-dir", str(tmp_path / "data"), env=env)
    manifest = json.loads((tmp_path / "data" / "c" / "manifest.json").read_text())
    assert manifest["encoder"] == chosen
    # torch itself is the choice only where no ONNX encoder measured equivalent and faster.
    assert made["loaded"] == ([] if chosen.startswith("onnx-") else made["loaded"])
    assert made["code"] == 0


def test_without_onnxruntime_an_onnx_collection_runs_on_torch(env: dict[str, str], tmp_path: Path) -> None:
    """Every recorded encoder measured equivalent to fp32: where onnxruntime does not import,
    fp32 PyTorch stands in rather than the collection becoming unsearchable."""
    code = """
import sys
sys.modules["onnxruntime"] = None  # as if it were not installed
from neardex.indexer.embedding.loading import load_embedder
embedder = load_embedder(None, "onnx-fp32", device="cpu")
print(type(embedder).__name__, embedder.encode(["tea"]).shape)
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          check=True)
    assert done.stdout.split() == ["TorchEmbedder", "(1,", "384)"]
    assert "runs with the torch encoder instead" in done.stderr
