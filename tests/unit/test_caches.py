"""The machine's model cache: derived files made once, whole, and the language identifier read
from its unpacked model with the same answers as py3langid's own loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from neardex.indexer.caches import derived_file, machine_cache
from neardex.indexer.query import languages


def test_a_derived_file_is_made_once_and_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARDEX_MODEL_CACHE", str(tmp_path / "cache"))
    assert machine_cache() == tmp_path / "cache"
    made: list[Path] = []

    def make(out: Path) -> None:
        made.append(out)
        out.write_text("derived")

    first = derived_file("thing.txt", make)
    again = derived_file("thing.txt", make)
    assert first == again == tmp_path / "cache" / "thing.txt"
    assert len(made) == 1 and first.read_text() == "derived"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["thing.txt"]  # no leftovers

    def fail(out: Path) -> None:
        out.write_text("half")
        raise OSError("disk full")

    assert derived_file("broken.txt", fail) is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["thing.txt"]


def test_the_unpacked_language_model_answers_as_py3langid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    monkeypatch.setenv("NEARDEX_MODEL_CACHE", str(tmp_path / "cache"))
    languages._identifier.cache_clear()
    try:
        ours = languages._identifier()
        assert list((tmp_path / "cache").glob("langid-*.npz"))
        reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        for text in ("The quick brown fox jumps over the lazy dog.", "Der Vertrag tritt am 1. Januar in Kraft.",
                     "東京は日本の首都です。", "Фотосинтез превращает энергию света", "El río Nilo atraviesa once países",
                     "tl;dr ok", "1 2 3"):
            assert ours.classify(text) == reference.classify(text)
    finally:
        languages._identifier.cache_clear()
