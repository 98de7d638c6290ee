"""`auto`: the fastest encoder that measures equivalent to fp32 on this machine, chosen once.

The measurement runs for real (the bundled model, every candidate this CPU supports) on a small
slice of the shipped probes, so that it takes seconds; the thresholds are moved to show that an
encoder outside them is never chosen, whatever its speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.embedding import selection
from neardex.indexer.embedding.embedder import ENCODERS, cpu_flags
from neardex.indexer.embedding.loading import load_embedder
from neardex.indexer.embedding.sources import find_model

pytestmark = pytest.mark.slow  # three encoders measured, twice


@pytest.fixture
def small_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    probes = json.loads(selection.PROBES.read_text(encoding="utf-8"))
    small = tmp_path / "probes.json"
    small.write_text(json.dumps({"passages": probes["passages"][::6], "queries": probes["queries"][::4]}))
    monkeypatch.setattr(selection, "PROBES", small)
    return small


def test_the_fastest_equivalent_encoder_is_chosen(small_probes: Path, tmp_path: Path) -> None:
    source = find_model(None)
    choice = selection.measure(source, tmp_path / "cache", cpu_flags())
    by_name = {m.encoder: m for m in choice.measured}
    assert list(by_name) == selection.candidates(cpu_flags())
    for m in choice.measured:
        assert m.kept == (m.min_cosine >= selection.MIN_COSINE and m.mean_overlap >= selection.MIN_OVERLAP)
        assert m.passages_per_s > 0
    assert by_name["torch"].kept and by_name["onnx-fp32"].min_cosine > 0.9999
    assert choice.encoder == selection.pick(list(choice.measured))


def test_an_encoder_outside_the_bounds_is_never_chosen(small_probes: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "MIN_COSINE", 0.9999)  # only fp32 graphs stay this close
    choice = selection.measure(find_model(None), tmp_path / "cache", cpu_flags())
    assert choice.encoder in ("torch", "onnx-fp32")
    assert all(not m.kept for m in choice.measured if m.encoder == "onnx-int8")


def test_pick_and_candidates() -> None:
    m = selection.Measured
    assert selection.pick([m("torch", 30, 1, 1, True), m("onnx-int8", 90, 0.9, 0.5, False),
                           m("onnx-fp32", 40, 1, 1, True)]) == "onnx-fp32"
    assert selection.pick([]) == "torch"
    # torch's imports cost every start: it wins only by a margin.
    assert selection.pick([m("torch", 105, 1, 1, True), m("onnx-fp32", 100, 1, 1, True)]) == "onnx-fp32"
    assert selection.pick([m("torch", 130, 1, 1, True), m("onnx-fp32", 100, 1, 1, True)]) == "torch"
    assert "onnx-int8" not in selection.candidates({"sse4_2"})  # int8 only where it is fast
    assert "onnx-int8" in selection.candidates({"avx2"})
    # A choice is per CPU: other speed flags, another file.
    assert selection.choice_file(Path("c"), "k", {"avx2"}) != selection.choice_file(Path("c"), "k", {"avx2", "avx512_bf16"})


def test_a_new_collection_records_the_encoder_auto_chose(tmp_path: Path) -> None:
    """Against the machine's cached choice (`make test` runs `neardex models prepare` first)."""
    source = find_model(None)
    chosen = selection.choose(source, None)
    record = selection.choice_record(source, None)
    assert record is not None and record["encoder"] == chosen in ENCODERS
    assert load_embedder(None, "auto", device="cpu").encoder == chosen
    with Catalog(tmp_path / "data") as catalog:
        collection = catalog.create("docs", default_mode="dense")
        assert collection.manifest.encoder == chosen
        collection.upsert([Document("tea", "Tea leaves are withered, rolled and oxidised.")])
    with Catalog(tmp_path / "data") as catalog:
        assert catalog.get("docs").embedder.encoder == chosen
