"""The lexical analyzer: what BM25 indexes of a text, and what it looks up for a query.

One implementation for every store: a chunk's text becomes a string of terms (`Analyzer.index_text`)
that the local store's FTS5 table and the Milvus store's BM25 field both index as written, split at
spaces only, and a query becomes the same terms (`Analyzer.query`). A term is made of a word thus:

- words are runs of letters, marks and digits (marks included, so an Indic or Thai word is not cut
  at its vowel signs), taken from the text as written so that every term has character offsets;
- text in scripts written without spaces between words (Unicode's line-break classes for
  ideographs, kana, Hangul and the complex-context scripts of South-East Asia) becomes overlapping
  character bigrams, as Lucene's CJK analyzer does: on xquad/zh they gave a lexical nDCG@10 of
  0.964 against 0.962 for ICU's dictionary word breaking and 0.941 for single characters
  (bench/analyzers.py), and they serve any such script, with a dictionary or without;
- other words are NFKC-normalized, casefolded, dropped if a stop word of their language (unless
  the query is nothing else; the index keeps them) and stemmed by their language's Snowball stemmer. A language keeps
  its diacritics, as Lucene's language analyzers do (in Vietnamese they tell words apart: folding
  them cost 0.031 nDCG@10 on xquad/vi and at most 0.001 in de, el, es, ru); text analysed with no
  language (`none`, or a language not detected) and English text have them folded, so that "café"
  meets "cafe".

A query is analysed once (`Analyzer.query`, linear in its length) into a `Query` that every lexical
read of either store takes. Its distinct terms are capped (NEARDEX_MAX_QUERY_TERMS): the work of an
OR query and of its score scale grows with its terms, and a text of a few megabytes is hundreds of
thousands of them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import regex

from .. import deadline
from ..errors import InvalidArgument
from . import languages
from .languages import AUTO, NONE

WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
# Characters of scripts written without spaces between words, by Unicode's line-break classes:
# ideographs (ID), small kana and the prolonged sound mark (CJ), Hangul (H2, H3, JL, JV, JT) and
# the complex-context scripts (SA: Thai, Lao, Khmer, Myanmar, Tai Tham, ...).
SPACELESS = regex.compile(r"[\p{lb=ID}\p{lb=CJ}\p{lb=H2}\p{lb=H3}\p{lb=JL}\p{lb=JV}\p{lb=JT}\p{lb=SA}]+")
# Distinct terms a query may have after analysis; a server setting (NEARDEX_MAX_QUERY_TERMS).
DEFAULT_MAX_QUERY_TERMS = 1024
_COMBINING_DIACRITICS = regex.compile(r"[\u0300-\u036f]")
# Analysed with diacritics folded: no language, and English (as FTS5's tokenizer did before
# analyzers were chosen; English writes few, and mostly in borrowed words).
_FOLDED = (None, "en")


@dataclass(frozen=True)
class Token:
    """A word (or a bigram of a script without spaces) as the analyzer saw it."""

    text: str  # as written
    start: int  # character offsets in the analysed text
    end: int
    term: str  # what the index holds for it
    stop: bool = False  # a stop word: not indexed


@dataclass(frozen=True)
class Query:
    """A query text analysed once: its distinct index terms, stop words dropped."""

    terms: tuple[str, ...]
    # Every word as the text has it, in order, repeats and stop words included (hybrid search
    # weighs the retrievers by how many of them the model knows).
    found: tuple[str, ...] = ()
    # Its distinct casefolded words, stop words dropped: what a collection indexed before
    # analyzers were chosen (FTS5's own Porter tokenizer) looks up until its index is rebuilt.
    words: tuple[str, ...] = ()
    # The ISO code of the language it was analysed as; empty for folding only.
    language: str = ""


def fold(word: str) -> str:
    """Combining diacritics removed (Latin, Greek and Cyrillic accents; not the vowel signs of
    Indic scripts, which are letters there)."""
    decomposed = unicodedata.normalize("NFD", word)
    if decomposed.isascii():
        return decomposed
    return unicodedata.normalize("NFC", _COMBINING_DIACRITICS.sub("", decomposed))


def _bigrams(run: str, offset: int) -> Iterable[tuple[str, int, int]]:
    if len(run) == 1:
        yield run, offset, offset + 1
    for i in range(len(run) - 1):
        yield run[i : i + 2], offset + i, offset + i + 2


def _pieces(text: str) -> Iterable[tuple[str, int, int, bool]]:
    """(piece, start, end, spaceless) for every word of the text, a word mixing scripts split where
    a script without spaces begins or ends."""
    for match in WORD.finditer(text):
        word, base = match.group(), match.start()
        at = 0
        for run in SPACELESS.finditer(word):
            if run.start() > at:
                yield word[at : run.start()], base + at, base + run.start(), False
            yield run.group(), base + run.start(), base + run.end(), True
            at = run.end()
        if at < len(word):
            yield word[at:], base + at, base + len(word), False


class Analyzer:
    """A collection's lexical analysis: its language (`auto`, `none` or a Snowball language) and,
    under `auto`, the languages its documents were found in (queries are detected among them)."""

    def __init__(self, language: str = languages.DEFAULT) -> None:
        self.language = languages.check(language)

    def __repr__(self) -> str:
        return f"Analyzer({self.language!r})"

    def language_of(self, text: str, among: Mapping[str, int] | None = None) -> str | None:
        """The ISO code the text is analysed as: the collection's language, or under `auto` the
        detected one (None: folding only)."""
        if self.language == AUTO:
            return languages.detect(text, among)
        return languages.code_of(self.language)

    def tokens(self, text: str, code: str | None) -> list[Token]:
        """Every word of the text as analysed in language `code`, with offsets."""
        stemmer = languages.stemmer_for(code)
        stops = languages.stop_words(code)
        out: list[Token] = []
        plain: list[int] = []  # positions of words to stem
        for piece, start, end, spaceless in _pieces(text):
            if spaceless:
                out += [Token(bigram, s, e, unicodedata.normalize("NFKC", bigram).casefold())
                        for bigram, s, e in _bigrams(piece, start)]
                continue
            word = unicodedata.normalize("NFKC", piece).casefold()
            stop = word in stops
            plain.append(len(out))
            out.append(Token(piece, start, end, word, stop))
        if plain:
            words = [out[i].term for i in plain]
            stems = stemmer.stemWords(words) if stemmer is not None else words
            finish = fold if code in _FOLDED else str
            for i, stem in zip(plain, stems):
                # A stemmer may stem a word to nothing (Porter's "s"): the word stands for itself.
                out[i] = Token(out[i].text, out[i].start, out[i].end, finish(stem or out[i].term), out[i].stop)
        return out

    def index_text(self, text: str, code: str | None) -> str:
        """The terms of a text as the index holds them, separated by spaces. Stop words are kept:
        only queries drop them (to stay short), and a query of nothing else still finds them."""
        return " ".join(t.term for t in self.tokens(text, code) if t.term)

    def documents(self, documents: Iterable[tuple[str, str, Sequence[str]]]) -> tuple[list[list[str]], Counter[str]]:
        """Chunk texts as the index holds them, each document's in the language of its title and
        text: given (title, text, its chunk texts), each one's index texts and how many documents
        each language (ISO code) was found in."""
        out: list[list[str]] = []
        found: Counter[str] = Counter()
        for title, text, texts in documents:
            # Detection reads the head of the text only: a long document is not copied whole.
            code = self.language_of(f"{title}\n{text[:languages.DETECT_CHARS]}")
            if code is not None:
                found[code] += 1
            out.append([self.index_text(t, code) for t in texts])
        return out, found

    def query(self, text: str, among: Mapping[str, int] | None = None,
              max_terms: int = DEFAULT_MAX_QUERY_TERMS, field: str = "query") -> Query:
        """The query's terms, stop words dropped (kept when there is nothing else), analysed in
        the language detected among `among` (see languages.detect). InvalidArgument naming
        `field` past max_terms distinct terms: each distinct spelling is analysed once, and the
        analysis stops at the first term past the limit, so a text of megabytes costs one regex
        pass, not an analysis of every word."""
        code = self.language_of(text, among)
        found = tuple(WORD.findall(text))
        kept: dict[str, None] = {}
        stops: dict[str, None] = {}
        words: dict[str, None] = {}
        for i, spelling in enumerate(dict.fromkeys(found)):
            if i % 1000 == 999:
                deadline.check("query analysis")
            for token in self.tokens(spelling, code):
                (stops if token.stop else kept)[token.term] = None
                if not token.stop and not SPACELESS.fullmatch(token.text):
                    words[unicodedata.normalize("NFKC", token.text).casefold()] = None
            if len(kept) > max_terms:
                raise InvalidArgument(f"{field}: more than {max_terms} terms after analysis; the limit is {max_terms}"
                                      " (NEARDEX_MAX_QUERY_TERMS)")
        terms = tuple(kept or stops)
        if len(terms) > max_terms:
            raise InvalidArgument(f"{field}: more than {max_terms} terms after analysis; the limit is {max_terms}"
                                  " (NEARDEX_MAX_QUERY_TERMS)")
        return Query(terms, found, tuple(words) or tuple(stops), code or "")


def none_analyzer() -> Analyzer:
    return Analyzer(NONE)
