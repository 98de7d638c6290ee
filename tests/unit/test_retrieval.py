"""Search modes, the lexical index's bookkeeping, fusion and question answering, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.ingest.chunker import sentence_spans
from neardex.indexer.query import analysis
from neardex.indexer.query.filters import parse_filter
from neardex.indexer.retrieval import fusion
from neardex.indexer.retrieval.answers import Answerer
from neardex.indexer.stores.local import fts

DOCS = [
    Document("apollo", "Apollo 11 launched from Florida on 16 July 1969. It landed on the Moon on 20 July 1969. "
             "Neil Armstrong was the first person to walk on the lunar surface.", "Apollo 11", {"kind": "space"}),
    Document("nile", "The Nile flows north through Egypt. It is about 6,650 km long. "
             "Its waters supported ancient Egyptian farming.", "Nile", {"kind": "geo"}),
    Document("zx", "The part number XJ-4471 identifies the replacement valve for model 9 pumps.", "", {"kind": "parts"}),
    Document("bread", "Sourdough rises because wild yeast ferments the dough. Bakers feed the starter daily.",
             "Sourdough", {"kind": "food"}),
]


@pytest.fixture
def col(tmp_path: Path):
    with Catalog(tmp_path / "data") as cat:
        c = cat.create("docs", default_mode="hybrid")
        c.upsert(DOCS)
        yield c


def test_every_mode_finds_the_obvious_answer(col) -> None:
    for mode in ("dense", "lexical", "hybrid"):
        result = col.search("when did Apollo 11 land on the Moon", k=2, mode=mode)
        assert result.mode == mode and result.hits[0].id == "apollo", mode
    assert col.search("when did Apollo 11 land", k=2).mode == "hybrid"  # the collection's default


def test_lexical_finds_exact_codes_dense_may_not_and_hits_name_their_retrievers(col) -> None:
    assert col.search("XJ-4471", k=1, mode="lexical").hits[0].id == "zx"
    hit = col.search("XJ-4471 valve", k=1, mode="hybrid").hits[0]
    assert hit.id == "zx"
    names = {r.retriever: r for r in hit.retrievers}
    assert set(names) == {"dense", "lexical"} and names["lexical"].rank == 1 and names["lexical"].score > 0


def test_timings_name_each_stage(col) -> None:
    timings = col.search("moon landing", k=2, mode="hybrid").timings_ms
    assert {"embed", "dense", "lexical", "fuse", "fetch", "total"} <= set(timings)


def test_lexical_index_stays_in_step_with_upserts_deletes_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Catalog(data) as cat:
        col = cat.create("docs")
        col.upsert(DOCS)
        col.upsert([Document("zx", "Completely different text about violins and orchestras.")])
        assert [h.id for h in col.search("XJ-4471", k=3, mode="lexical").hits] == []
        assert col.search("violins orchestras", k=1, mode="lexical").hits[0].id == "zx"
        col.delete(["bread"])
        assert col.search("sourdough yeast", k=3, mode="lexical").hits == []
    with Catalog(data) as cat:
        col = cat.get("docs")
        assert col.search("violins", k=1, mode="lexical").hits[0].id == "zx"
        fts_ids = {r[0] for r in col.store._db.execute(f"SELECT rowid FROM {fts.TABLE}")}
        assert fts_ids == col.store.chunk_ids()


def test_a_collection_without_lexical_index_gets_one_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Catalog(data) as cat:
        cat.create("docs").upsert(DOCS)
        cat.get("docs").store._db.execute(f"DROP TABLE {fts.TABLE}")
    with Catalog(data) as cat:
        col = cat.get("docs")
        assert col.search("XJ-4471", k=1, mode="lexical").hits[0].id == "zx"


def test_filters_apply_to_every_mode(col) -> None:
    expected = {"dense": ["nile"], "hybrid": ["nile"], "lexical": []}  # no geo text says "Apollo"
    for mode, ids in expected.items():
        hits = col.search("Moon landing Apollo", k=4, mode=mode, flt=parse_filter({"kind": "geo"})).hits
        assert [h.id for h in hits] == ids, mode


def test_bad_modes_and_queries(col) -> None:
    with pytest.raises(InvalidArgument, match="mode: unknown search mode 'fuzzy'"):
        col.search("moon", k=1, mode="fuzzy")
    with pytest.raises(InvalidArgument, match="query: lexical search needs query text"):
        col.search(vector=col.embedder.encode(["moon"])[0], k=1, mode="lexical")
    # A query of stop words alone keeps them rather than searching for nothing.
    assert col.search("the of and", k=3, mode="lexical").hits
    english = analysis.Analyzer("english")
    assert fts.match(english.query("!!! ???")) is None
    assert fts.match(english.query('the "moon" OR NEAR(x)')) == '"moon" OR "near" OR "x"'  # operators are words


def test_fusion_methods_rank_sensibly() -> None:
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    lex = [("b", 12.0), ("d", 3.0)]
    for method in (fusion.minmax_convex, fusion.tmm_convex, fusion.zscore_convex):
        fused = [f.key for f in method(dense, lex, 0.5)]
        assert fused[0] == "b" and set(fused) == {"a", "b", "c", "d"}, method
    assert [f.key for f in fusion.rrf(dense, lex)][0] == "b"
    assert [f.key for f in fusion.minmax_convex(dense, [], 0.7)] == ["a", "b", "c"]


def test_dense_weight_follows_the_models_vocabulary(col) -> None:
    english = fusion.dense_weight(col.embedder, col.analyze("when did the first crewed moon landing happen"))
    unseen = fusion.dense_weight(col.embedder, col.analyze("somoulituwaar beijuhevo kaalek baaheirihumou"))
    assert english > 0.4 and unseen < 0.1


def test_ask_marks_the_answering_sentence_with_true_offsets(col) -> None:
    result = Answerer(col).ask("On what date did Apollo 11 land on the Moon?", k=2)
    top = result.answers[0]
    assert top.passage.id == "apollo"
    assert top.passage.text[top.sentence_start : top.sentence_end] == top.sentence
    assert "20 July 1969" in top.sentence
    assert 0.0 <= top.confidence <= 1.0
    assert {"embed", "sentences", "rerank", "total"} <= set(result.timings_ms)
    nile = Answerer(col).ask("How long is the Nile?", k=1).answers[0]
    assert nile.sentence == "It is about 6,650 km long."


def test_ask_refuses_empty_and_overlong_questions(col) -> None:
    with pytest.raises(InvalidArgument, match="question: must not be empty"):
        Answerer(col).ask("  ", k=1)
    with pytest.raises(InvalidArgument, match="question: .* exceeds the model's window"):
        Answerer(col).ask("why " * 300, k=1)


def test_ask_reranks_with_a_cross_encoder(col, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from neardex.indexer.retrieval.request import Rerank
    from neardex.indexer.retrieval.rerank import passage
    from tests.support.models import cross_encoder

    # A cross-encoder built here from the bundled model's weights (its scoring head is untrained:
    # this checks the code path, not answer quality).
    folder = cross_encoder(tmp_path / "ce")
    ce = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    for answerer, rerank in ((Answerer(col), Rerank(str(folder))), (Answerer(col, Rerank(str(folder))), None)):
        answers = answerer.ask("How long is the Nile?", k=4, rerank=rerank).answers
        expected = ce.predict([("How long is the Nile?", passage(a.passage.title, a.passage.text)) for a in answers],
                              activation_fn=torch.nn.Sigmoid(), show_progress_bar=False)
        assert [a.confidence for a in answers] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
        for a in answers:
            assert a.passage.text[a.sentence_start : a.sentence_end] == a.sentence


def test_sentence_spans_cover_the_passage() -> None:
    text = DOCS[0].text
    spans = sentence_spans(text)
    assert len(spans) == 3 and text[spans[1][0] : spans[1][1]] == "It landed on the Moon on 20 July 1969."
