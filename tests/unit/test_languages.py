"""The lexical analyzer in every language: stemming per language changes recall the expected way,
scripts without spaces are segmented, detection falls back instead of failing, a change of
language rebuilds the lexical index while the old one answers, and both stores index and look up
the same terms."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.layout import DATABASE
from neardex.indexer.query import languages
from neardex.indexer.query.analysis import Analyzer
from neardex.indexer.retrieval.engine import Collection
from neardex.indexer.stores.local import fts
from tests.support.paths import DATA

XQUAD = DATA / "xquad"
SEVEN = ("en", "de", "es", "ru", "zh", "el", "vi")


def lexical_ids(col: Collection, query: str, k: int = 10) -> list[str]:
    return [h.id for h in col.search(query, k=k, mode="lexical").hits]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "data") as cat:
        yield cat


# -- the analyzer alone -------------------------------------------------------------------------


def test_a_german_plural_meets_its_singular_only_with_a_german_stemmer() -> None:
    german, english, none = Analyzer("german"), Analyzer("english"), Analyzer("none")
    assert german.query("Häuser").terms == german.query("Haus").terms == ("haus",)
    assert english.query("Häuser").terms != english.query("Haus").terms
    assert none.query("Häuser").terms == ("hauser",)  # folded, not stemmed


def test_languages_are_named_by_snowball_name_or_iso_code_and_unknown_ones_are_refused() -> None:
    assert languages.check("DE") == languages.check("german") == "german"
    assert languages.check("auto") == "auto" and languages.check("none") == "none"
    with pytest.raises(InvalidArgument, match=r"language: unknown language 'klingon'; supported: auto, none, .*german"):
        languages.check("klingon")


def test_scripts_without_spaces_become_overlapping_bigrams_with_true_offsets() -> None:
    analyzer = Analyzer("auto")
    for text in ("北京是首都", "東京に行きました", "ภาษาไทยง่าย", "서울에서 만나요"):
        tokens = analyzer.tokens(text, analyzer.language_of(text))
        assert tokens and all(len(t.term) <= 2 for t in tokens), text
        assert all(text[t.start:t.end] == t.text for t in tokens), text
    tokens = analyzer.tokens("iPhone手机2024年", None)
    assert [t.term for t in tokens] == ["iphone", "手机", "2024", "年"]


def test_marks_stay_inside_their_words() -> None:
    # A Devanagari vowel sign is a mark, not a separator: the word is one term.
    assert Analyzer("none").query("हिन्दी भाषा").terms == ("हिन्दी", "भाषा")


def test_undetectable_text_is_folded_never_refused() -> None:
    analyzer = Analyzer("auto")
    for text in ("12345 678", "🙂🙂", "", "   "):
        assert analyzer.language_of(text) is None
        analyzer.query(text)  # no error
    assert analyzer.query("Café 42").terms[-1] == "42"


def test_a_query_is_detected_among_the_collections_languages() -> None:
    analyzer = Analyzer("auto")
    # Alone, two words may look like anything; among German and Chinese they are German.
    assert analyzer.query("Häuser bauen", {"de": 10, "zh": 10}).language == "de"
    assert analyzer.query("北京的首都", {"de": 10, "zh": 10}).language == "zh"
    assert analyzer.query("anything at all", {"de": 3}).language == "de"
    # Each language weighs by its share of the documents: a few passages taken for Latin do not
    # make a short English query Latin.
    query = "exons definition biology"
    assert analyzer.query(query, {"en": 1, "la": 1}).language == "la"
    assert analyzer.query(query, {"en": 995, "la": 5}).language == "en"


# -- collections ----------------------------------------------------------------------------------


def test_auto_finds_each_documents_language_and_stems_it(catalog: Catalog) -> None:
    col = catalog.create("mixed")
    assert col.manifest.language == "auto"
    col.upsert([
        Document("haus", "Das Haus am See wurde vor hundert Jahren gebaut und steht noch immer."),
        Document("casa", "Las casas del pueblo fueron construidas con piedra de la montaña."),
        Document("dom", "Этот дом был построен сто лет назад на берегу реки."),
        Document("capital", "北京是中华人民共和国的首都，也是全国的政治中心。"),
        Document("moon", "The astronauts landed on the moon and walked on its surface."),
    ])
    assert set(col.manifest.languages) == {"de", "es", "ru", "zh", "en"}
    assert lexical_ids(col, "Häuser", 1) == ["haus"]
    assert lexical_ids(col, "casa", 1) == ["casa"]
    assert lexical_ids(col, "дома", 1) == ["dom"]
    assert lexical_ids(col, "首都在哪里", 1) == ["capital"]
    assert lexical_ids(col, "landing", 1) == ["moon"]


def test_an_english_collection_misses_what_a_german_one_finds(catalog: Catalog) -> None:
    docs = [Document("haus", "Das Haus ist alt."), Document("baum", "Der Baum ist hoch.")]
    english, german = catalog.create("en", language="english"), catalog.create("de", language="de")
    for col in (english, german):
        col.upsert(docs)
    assert lexical_ids(english, "Häuser") == []
    assert lexical_ids(german, "Häuser") == ["haus"]


def test_an_unknown_language_is_refused_and_nothing_is_made(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument, match="language: unknown language 'xx'"):
        catalog.create("bad", language="xx")
    assert not catalog.exists("bad")


def test_changing_the_language_rebuilds_the_lexical_index_and_keeps_writes(catalog: Catalog) -> None:
    col = catalog.create("docs", language="english")
    col.upsert([Document(f"d{i}", f"Das Haus Nummer {i} steht im Dorf.") for i in range(50)])
    assert lexical_ids(col, "Häuser") == []
    col.set_language("german")
    assert col.manifest.language == "german"
    col.upsert([Document("new", "Häuser aus Holz halten lange.")])
    col.delete(["d0"])
    col.store.wait_for_lexical_rebuild(60)
    assert col.store.analyzer.language == "german"
    found = lexical_ids(col, "Häuser", 100)
    assert len(found) == 50 and "new" in found and "d0" not in found
    with pytest.raises(InvalidArgument, match="language: unknown language"):
        col.set_language("nope")


def test_a_collection_from_before_analyzers_is_migrated_and_answers_meanwhile(tmp_path: Path) -> None:
    with Catalog(tmp_path / "data") as cat:
        col = cat.create("old", language="english")
        col.upsert([Document("moon", "Astronauts landed on the Moon."), Document("nile", "The Nile flows north.")])
    # What an older neardex left: a manifest without a language, FTS5's Porter table of raw text.
    folder = tmp_path / "data" / "old"
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("language", "languages"):
        manifest.pop(key)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    db = sqlite3.connect(folder / DATABASE)
    db.execute(f"DROP TABLE {fts.TABLE}")
    db.execute("DROP TABLE lexical_state")
    db.execute(f"CREATE VIRTUAL TABLE {fts.TABLE} USING fts5(text, tokenize = '{fts.LEGACY_TOKENIZE}')")
    db.executemany(f"INSERT INTO {fts.TABLE} (rowid, text) SELECT c.id, d.text FROM chunks c JOIN documents d"
                   " ON d.id = c.doc_id WHERE d.id = ?", [("moon",), ("nile",)])
    db.commit()
    db.close()
    with Catalog(tmp_path / "data") as cat:
        col = cat.get("old")
        assert col.manifest.language == "english"
        assert lexical_ids(col, "landing") == ["moon"]  # legacy table or rebuilt: found either way
        col.store.wait_for_lexical_rebuild(60)
        assert not fts.is_legacy(col.store._reader())
        assert lexical_ids(col, "landing") == ["moon"] and lexical_ids(col, "flowing") == ["nile"]


# -- both stores, seven languages -----------------------------------------------------------------


def xquad_sample(per_language: int = 20, questions: int = 8) -> tuple[list[Document], list[str]]:
    docs, queries = [], []
    for lang in SEVEN:
        with open(XQUAD / lang / "corpus.jsonl", encoding="utf-8") as f:
            for line in list(f)[:per_language]:
                row = json.loads(line)
                docs.append(Document(f"{lang}-{row['_id']}", row["text"], row.get("title", ""),
                                     vector=list(np.random.default_rng(len(docs)).standard_normal(4))))
        with open(XQUAD / lang / "queries.jsonl", encoding="utf-8") as f:
            queries += [json.loads(line)["text"] for line in list(f)[: questions * 5 : 5]]
    return docs, queries


@pytest.mark.slow
@pytest.mark.skipif(not XQUAD.exists(), reason="needs ../shared/data/xquad")
def test_both_stores_index_and_look_up_the_same_terms_in_seven_languages(tmp_path: Path) -> None:
    pytest.importorskip("pymilvus")
    docs, queries = xquad_sample()
    with Catalog(tmp_path / "data") as cat:
        local = cat.create("local", model="none", dimension=4)
        milvus = cat.create("milvus", model="none", dimension=4, store=str(tmp_path / "milvus.db"))
        for col in (local, milvus):
            col.upsert(docs)
        assert set(local.manifest.languages) == set(milvus.manifest.languages) >= set(SEVEN)
        for query in queries:
            assert local.analyze(query) == milvus.analyze(query), query
            # Every chunk holding a query term, and no other, on both: the same terms were indexed.
            assert set(lexical_ids(local, query, 200)) == set(lexical_ids(milvus, query, 200)), query
        # Each question finds its own language's paragraphs first.
        for query, lang in zip(queries, [lang for lang in SEVEN for _ in range(8)]):
            assert lexical_ids(local, query, 1)[0].startswith(lang), query
