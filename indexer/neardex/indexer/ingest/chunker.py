"""Cut text into chunks of at most N model tokens, on sentence boundaries where possible.

Counting uses the model's own fast tokenizer, so a chunk the chunker accepts is a chunk the
encoder sees whole: nothing is truncated at embedding time. Cuts fall between words where they
can. A chunk cut inside a word (text without spaces: Chinese, Japanese), or cut by a tokenizer
that writes a word differently after a space than alone (byte-level BPE's "Ġ"), can tokenize
longer alone than in the whole: such a chunk is counted again alone and cut shorter if it does.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..documents import Chunk
from ..errors import InvalidArgument

# A sentence ends at . ! ? (optionally followed by closing quotes or brackets) before whitespace,
# at a full stop, exclamation or question mark of Chinese and Japanese (no space follows them), or
# at a blank line. Good enough for prose; anything else still falls back to word boundaries.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+|(?<=[\u3002\uff01\uff1f\uff61])\s*|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of text, whitespace between them excluded."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if text[start:end].strip():
            spans.append(_strip_span(text, start, end))
        start = match.end()
    if text[start:].strip():
        spans.append(_strip_span(text, start, len(text)))
    return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass(frozen=True)
class _Tokens:
    starts: list[int]  # character offset where each token starts
    ends: list[int]
    cuttable: list[bool]  # a chunk may begin at token i (it starts a new word)


def default_overlap(chunk_tokens: int) -> int:
    """Tokens consecutive chunks share when a collection does not say: an eighth, at most 32."""
    return min(32, chunk_tokens // 8)


# Words whose tokens alone and inside a text tell whether a tokenizer writes a word differently
# after a space.
_PROBE = "the quick brown fox, 42 jumps; Überall déjà-vu Москва 東京 naïve"


def words_alone_as_in_text(tokenizer: Any) -> bool:
    """Whether each word of _PROBE, as the text of its tokens' span, tokenizes alone into the
    tokens it has inside the text: then a chunk cut between words is its tokens in the whole (true
    of WordPiece and SentencePiece's "▁"; false of byte-level BPE with trimmed offsets, whose "Ġ"
    marks a word after a space)."""
    whole = tokenizer.encode(_PROBE, add_special_tokens=False)
    words: dict[int, list[int]] = {}
    for i, word in enumerate(whole.word_ids):
        if word is not None:
            words.setdefault(word, []).append(i)
    for tokens in words.values():
        span = _PROBE[whole.offsets[tokens[0]][0] : whole.offsets[tokens[-1]][1]]
        if tokenizer.encode(span, add_special_tokens=False).ids != [whole.ids[i] for i in tokens]:
            return False
    return True


class Chunker:
    """Splits document text into overlapping token-bounded chunks."""

    def __init__(self, tokenizer: Any, max_tokens: int, overlap_tokens: int) -> None:
        """tokenizer: a raw `tokenizers.Tokenizer` without padding or truncation
        (embedder.plain_tokenizer gives the model's own)."""
        if max_tokens < 8:
            raise InvalidArgument(f"chunk_tokens: must be at least 8, got {max_tokens}")
        if not 0 <= overlap_tokens < max_tokens // 2:
            raise InvalidArgument(
                f"overlap_tokens: must be between 0 and half of chunk_tokens ({max_tokens // 2}),"
                f" got {overlap_tokens}"
            )
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._words_alone_as_in_text = words_alone_as_in_text(tokenizer)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _tokens(self, text: str) -> _Tokens:
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        offsets = enc.offsets
        words = enc.word_ids
        cuttable = [i == 0 or words[i] != words[i - 1] or words[i] is None for i in range(len(words))]
        return _Tokens([s for s, _ in offsets], [e for _, e in offsets], cuttable)

    def chunks(self, text: str, max_tokens: int | None = None) -> list[Chunk]:
        return list(self._iter_chunks(text, max_tokens or self.max_tokens))

    def _iter_chunks(self, text: str, budget: int) -> Iterator[Chunk]:
        toks = self._tokens(text)
        n = len(toks.starts)
        if n == 0:
            return
        # Token indices at which a sentence begins: the preferred places to cut.
        sentence_starts = sorted(
            {bisect.bisect_left(toks.starts, s) for s, _ in sentence_spans(text)} - {0, n}
        )
        overlap = min(self.overlap_tokens, budget // 2 - 1) if self.overlap_tokens else 0
        start, index = 0, 0
        while start < n:
            end = n if n - start <= budget else self._cut(toks, sentence_starts, start, budget)
            # Between words, with a tokenizer that writes a word alone as it does after a space,
            # the chunk alone is the tokens it has in the whole; else it is counted.
            between_words = toks.cuttable[start] and (end == n or toks.cuttable[end])
            tokens = (end - start if between_words and self._words_alone_as_in_text
                      else self.count(text[toks.starts[start] : toks.ends[end - 1]]))
            while tokens > budget and end - start > 1:  # longer alone than in the whole: cut shorter
                end = max(start + 1, end - (tokens - budget))
                tokens = self.count(text[toks.starts[start] : toks.ends[end - 1]])
            yield Chunk(
                index=index,
                text=text[toks.starts[start] : toks.ends[end - 1]],
                start=toks.starts[start],
                end=toks.ends[end - 1],
                tokens=tokens,
            )
            if end == n:
                return
            index += 1
            start = self._next_start(toks, sentence_starts, start, end, overlap)

    @staticmethod
    def _cut(toks: _Tokens, sentence_starts: list[int], start: int, budget: int) -> int:
        """End (exclusive) of the chunk that begins at start: the last sentence start that keeps
        the chunk at least half full, else the last word start, else the hard token limit."""
        limit = start + budget
        i = bisect.bisect_right(sentence_starts, limit) - 1
        if i >= 0 and sentence_starts[i] > start + budget // 2:
            return sentence_starts[i]
        for end in range(limit, start + budget // 2, -1):
            if toks.cuttable[end]:
                return end
        return limit  # a single "word" longer than half a chunk: cut inside it

    @staticmethod
    def _next_start(
        toks: _Tokens, sentence_starts: list[int], start: int, end: int, overlap: int
    ) -> int:
        if overlap == 0:
            return end
        lo = max(end - overlap, start + 1)
        # Prefer to begin the overlap at a sentence start, then at a word start.
        i = bisect.bisect_left(sentence_starts, lo)
        if i < len(sentence_starts) and sentence_starts[i] < end:
            return sentence_starts[i]
        for candidate in range(lo, end):
            if toks.cuttable[candidate]:
                return candidate
        return end
