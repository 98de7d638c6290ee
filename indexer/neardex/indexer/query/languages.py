"""Which languages the lexical analyzer speaks, and which one a text is in.

A collection's analyzer is named by a language: a Snowball stemmer's language (PyStemmer's
algorithms, by name or ISO 639-1 code), `none` (folding only) or `auto` (each document, and each
query, analysed in the language it is detected to be in). Detection is py3langid's: a naive-Bayes
model of byte n-grams over 97 languages that loads in about a second into 140 MB and classifies a
question in 0.1 ms; on the XQuAD questions of seven languages it was right 90-99.9% of the time,
lingua's high-accuracy mode as often at 13 s and 1.3 GB. A query is short, so it is detected only
among the languages its collection's documents were found in, each weighted by its share of them:
a collection of one language analyses every query in that language, whatever a three-word query
resembles, and in a collection of English passages a few of which were taken for Latin, "exons
definition biology" is English.

The language names and stop-word lists are the libraries' own (PyStemmer's algorithms, the
`stop-words` package); only the ISO codes of the Snowball languages are written here, as the
detector speaks ISO codes and PyStemmer names.
"""

from __future__ import annotations

import functools
import lzma
import shutil
import threading
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..caches import derived_file
from ..errors import InvalidArgument

AUTO = "auto"
NONE = "none"
# Collections made before analyzers were chosen indexed English (FTS5's Porter), and are rebuilt
# in English when they open.
LEGACY = "english"
# New collections detect each document's language.
DEFAULT = AUTO

# ISO 639-1 codes of the languages Snowball has stemmers for (PyStemmer's names).
_SNOWBALL_CODES = {
    "arabic": "ar", "armenian": "hy", "basque": "eu", "catalan": "ca", "czech": "cs", "danish": "da",
    "dutch": "nl", "english": "en", "esperanto": "eo", "estonian": "et", "finnish": "fi", "french": "fr",
    "german": "de", "greek": "el", "hindi": "hi", "hungarian": "hu", "indonesian": "id", "irish": "ga",
    "italian": "it", "lithuanian": "lt", "nepali": "ne", "norwegian": "no", "persian": "fa", "polish": "pl",
    "portuguese": "pt", "romanian": "ro", "russian": "ru", "serbian": "sr", "sesotho": "st", "spanish": "es",
    "swedish": "sv", "tamil": "ta", "turkish": "tr", "yiddish": "yi",
}
# Codes the detector gives for a language Snowball knows under another code.
_CODE_ALIASES = {"nb": "no", "nn": "no"}
# A detection less sure than this is no detection: the text is analysed with folding only.
MIN_CONFIDENCE = 0.5
# Detection reads this much of a document: enough to be sure, and linear cost bounded.
DETECT_CHARS = 2000


@functools.cache
def stemmer_names() -> tuple[str, ...]:
    """Snowball languages this install can stem (its PyStemmer's, less the variant algorithms)."""
    import Stemmer

    return tuple(sorted(a for a in Stemmer.algorithms() if a not in ("porter", "dutch_porter")))


def supported() -> tuple[str, ...]:
    return (AUTO, NONE, *stemmer_names())


def check(language: str | None, field: str = "language") -> str:
    """The canonical name of an analyzer language (a Snowball name, `none` or `auto`), given by
    name or ISO code; InvalidArgument naming `field` and listing the supported ones otherwise."""
    name = (language or "").strip().lower()
    if name in supported():
        return name
    by_code = {code: n for n, code in _SNOWBALL_CODES.items() if n in stemmer_names()}
    code = _CODE_ALIASES.get(name, name)
    if code in by_code:
        return by_code[code]
    raise InvalidArgument(f"{field}: unknown language {language!r}; supported: {', '.join(supported())}"
                          " (or a Snowball language's ISO 639-1 code)")


def code_of(language: str) -> str | None:
    """The ISO code a canonical language name analyses as: None for `none`."""
    if language == NONE:
        return None
    return _SNOWBALL_CODES.get(language, language)


def stemmer_for(code: str | None) -> Any:
    """This thread's PyStemmer stemmer for the language, or None where Snowball has none. English
    is Snowball's (Porter2), not Porter's original that FTS5 has: the original stems "anthropology"
    and "anthropological" apart. A stemmer is not thread-safe, so each thread has its own."""
    if code is None:
        return None
    name = {c: n for n, c in _SNOWBALL_CODES.items()}.get(_CODE_ALIASES.get(code, code))
    if name is None or name not in stemmer_names():
        return None
    stemmers = _local.__dict__.setdefault("stemmers", {})
    if name not in stemmers:
        import Stemmer

        stemmers[name] = Stemmer.Stemmer(name)
    return stemmers[name]


_local = threading.local()


# The English stop-word list of the Snowball project (also used by NLTK and bm25s): English
# collections keep the list they were indexed with.
_ENGLISH_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with you your yours
yourself yourselves
""".split())


@functools.cache
def stop_words(code: str | None) -> frozenset[str]:
    """The language's stop words, single words only, casefolded; empty where none are known."""
    if code is None:
        return frozenset()
    if code == "en":
        return _ENGLISH_STOPWORDS
    from stop_words import LANGUAGE_MAPPING, StopWordError, get_stop_words

    code = {"no": "nb"}.get(code, code)
    if code not in LANGUAGE_MAPPING:
        return frozenset()
    try:
        words = get_stop_words(code)
    except StopWordError:
        return frozenset()
    return frozenset(w.casefold() for w in words if w and " " not in w)


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    # py3langid ships its model xz-compressed: unpacking it took 0.4 s of every indexing process.
    # Unpacked once into the machine's cache, it loads in a quarter of that; a model of another
    # layout (a newer py3langid) is read the packaged way.
    packed = Path(MODEL_DIR) / MODEL_FILE
    stat = packed.stat()
    unpacked = derived_file(f"langid-{stat.st_size}-{stat.st_mtime_ns}.npz", lambda tmp: _unpack(packed, tmp))
    if unpacked is not None:
        try:
            with np.load(unpacked, allow_pickle=False) as data:
                return LanguageIdentifier(
                    np.asarray(data["ptc"]), np.asarray(data["pc"]), data["classes"].tolist(),
                    _stdlib_array(data["nextmove"]), data["out_feat"].tolist(), norm_probs=True,
                    tk_row=_stdlib_array(data["nextmove_row"]))
        except (KeyError, OSError, ValueError):
            pass
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _unpack(packed: Path, out: Path) -> None:
    with lzma.open(packed) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)


def _stdlib_array(values: np.ndarray) -> array:
    """An unsigned integer array as the stdlib array py3langid's tokenizer indexes fastest."""
    out = array({2: "H", 4: "I", 8: "L"}[values.dtype.itemsize])
    out.frombytes(memoryview(np.ascontiguousarray(values)).cast("B"))
    return out


_detect_lock = threading.Lock()


def detect(text: str, among: Mapping[str, int] | None = None) -> str | None:
    """The ISO code of the language `text` is most likely in, or None when no language is likely
    enough (too little text, digits, an unknown script). `among` (language: documents) restricts
    the choice to those languages, each weighted by its share: the detector's probability is a
    likelihood, the collection's make-up the prior."""
    text = text[:DETECT_CHARS]
    if not any(c.isalpha() for c in text):
        return None
    if among is not None and len(among) == 1:
        return next(iter(among))
    with _detect_lock:  # the identifier's arrays are shared; a call is a fraction of a millisecond
        ranked = [(_CODE_ALIASES.get(code, code), p) for code, p in _identifier().rank(text)]
    if among:
        total = sum(among.values()) or 1
        ranked = sorted(((code, p * among[code] / total) for code, p in ranked if code in among),
                        key=lambda pair: -pair[1])
        evidence = sum(p for _, p in ranked)
        ranked = [(code, p / evidence) for code, p in ranked] if evidence > 0 else []
    if not ranked or ranked[0][1] < MIN_CONFIDENCE:
        return None
    return ranked[0][0]
