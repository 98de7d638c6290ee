"""The chunker against the bundled model's own tokenizer: bounds, coverage, boundaries."""

from __future__ import annotations

import random

import pytest

from neardex.indexer.embedding.loading import load_embedder
from neardex.indexer.errors import InvalidArgument
from neardex.indexer.ingest.chunker import Chunker, sentence_spans


@pytest.fixture(scope="module")
def tokenizer():
    return load_embedder(encoder="torch").tokenizer  # transformers' own, the reference


@pytest.fixture(scope="module")
def plain(tokenizer):
    from neardex.indexer.embedding.embedder import plain_tokenizer

    return plain_tokenizer(load_embedder())


def _long_text(sentences: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    words = (
        "neural search engines rank passages by embedding similarity while lexical models count"
        " overlapping terms; tokenization splits unfamiliar words like photosynthesizing,"
        " antidisestablishmentarianism or Zürich into subword pieces"
    ).split()
    out = []
    for _ in range(sentences):
        n = rng.randint(4, 40)
        out.append(" ".join(rng.choice(words) for _ in range(n)).capitalize() + rng.choice([".", "!", "?"]))
    return " ".join(out)


def test_every_token_of_a_long_document_lands_in_a_chunk(tokenizer, plain) -> None:
    text = _long_text(400)
    chunker = Chunker(plain, max_tokens=64, overlap_tokens=8)
    chunks = chunker.chunks(text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    assert len(enc["input_ids"]) > 64 * 20  # long enough to need many chunks
    for start, end in enc["offset_mapping"]:
        assert any(c.start <= start and end <= c.end for c in chunks), f"token at {start}:{end} lost"


def test_chunks_fit_the_budget_and_match_their_offsets(tokenizer, plain) -> None:
    text = _long_text(200, seed=3)
    chunker = Chunker(plain, max_tokens=50, overlap_tokens=10)
    chunks = chunker.chunks(text)
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text == text[chunk.start : chunk.end]
        retokenized = len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"])
        assert retokenized == chunk.tokens <= 50


def test_cuts_prefer_sentence_boundaries(plain) -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i} in a few plain words." for i in range(60))
    chunks = Chunker(plain, max_tokens=60, overlap_tokens=0).chunks(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.startswith("Sentence number")
        assert chunk.text.endswith(".")


def test_overlap_repeats_the_tail_of_the_previous_chunk(plain) -> None:
    text = _long_text(100, seed=11)
    chunks = Chunker(plain, max_tokens=64, overlap_tokens=16).chunks(text)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start < prev.end, "consecutive chunks share no text"
        assert nxt.start > prev.start


def test_never_cuts_inside_a_word(plain) -> None:
    text = "photosynthesizing " * 300
    chunks = Chunker(plain, max_tokens=40, overlap_tokens=5).chunks(text)
    for chunk in chunks:
        assert chunk.text.split() == ["photosynthesizing"] * len(chunk.text.split())


def test_short_text_is_one_chunk_and_empty_text_none(plain) -> None:
    chunker = Chunker(plain, max_tokens=64, overlap_tokens=8)
    [only] = chunker.chunks("  A short note.  ")
    assert only.text == "A short note."
    assert chunker.chunks("   ") == []


def test_settings_are_validated(plain) -> None:
    with pytest.raises(InvalidArgument, match="chunk_tokens"):
        Chunker(plain, max_tokens=2, overlap_tokens=0)
    with pytest.raises(InvalidArgument, match="overlap_tokens"):
        Chunker(plain, max_tokens=64, overlap_tokens=40)


def test_sentence_spans() -> None:
    text = 'He said "Stop." Then left!  Why?\n\nNew paragraph without end'
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == ['He said "Stop."', "Then left!", "Why?", "New paragraph without end"]


def test_chinese_and_japanese_sentences_end_at_their_own_punctuation() -> None:
    text = "富士山は高い。静岡県にある！本当？ Yes. 「東京」です。"
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == ["富士山は高い。", "静岡県にある！", "本当？", "Yes.", "「東京」です。"]


def test_a_tokenizer_that_marks_words_after_a_space_is_counted_alone(plain) -> None:
    """Byte-level BPE (RoBERTa) writes a word after a space as "Ġword": a chunk's first word alone
    is other tokens than in the whole, so each chunk is counted alone and kept in its budget."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    from neardex.indexer.ingest.chunker import words_alone_as_in_text

    text = _long_text(120)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.post_processor = processors.ByteLevel(trim_offsets=True)  # as RoBERTa's: offsets leave the space out
    bpe.train_from_iterator([text], trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    assert not words_alone_as_in_text(bpe) and words_alone_as_in_text(plain)
    chunker = Chunker(bpe, max_tokens=48, overlap_tokens=6)
    chunks = chunker.chunks(text)
    assert len(chunks) > 10
    for chunk in chunks:
        assert len(bpe.encode(chunk.text, add_special_tokens=False).ids) == chunk.tokens <= 48
