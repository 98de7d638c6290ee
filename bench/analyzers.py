"""Analyzer study: the choices of query/analysis.py and query/languages.py, measured.

On the XQuAD languages (../shared/data/xquad), with BM25 in SQLite FTS5 over each paragraph's terms
(the engine's own lexical index, without chunking or a model, so every variant runs in seconds):

- segmentation of Chinese: character bigrams (the analyzer's), single characters, and ICU's
  dictionary word breaking when PyICU is installed;
- Latin, Greek and Cyrillic diacritics kept (the analyzer's) or folded, per language;
- the stop words of each language dropped from queries (the analyzer's) or kept;

and the language detectors on the same languages' paragraphs, questions, and questions cut to
three words: py3langid (the analyzer's), and lingua when installed.

    .venv/bin/python bench/analyzers.py [--detectors]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable

from common import ROOT, cpu_flags, print_table, write_result

XQUAD = ROOT.parent / "shared" / "data" / "xquad"
LANGUAGES = ("en", "de", "es", "ru", "zh", "el", "vi")


def load(lang: str) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    folder = XQUAD / lang
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").open(encoding="utf-8"))}
    qrels = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        qid, cid, _ = line.rstrip("\n").split("\t")
        qrels[qid] = cid  # one relevant paragraph per question
    return corpus, queries, qrels


def ndcg_at_10(lang: str, index_terms: Callable[[str], list[str]], query_terms: Callable[[str], list[str]]) -> float:
    """Mean nDCG@10 of BM25 (FTS5) over the paragraphs' terms; one relevant paragraph per question."""
    import math

    corpus, queries, qrels = load(lang)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'ascii')")
    db.executemany("INSERT INTO t (rowid, text) VALUES (?, ?)",
                   [(i, " ".join(index_terms(c["text"]))) for i, c in enumerate(corpus)])
    total = 0.0
    for qid, relevant in qrels.items():
        terms = [t for t in dict.fromkeys(query_terms(queries[qid])) if t]
        if not terms:
            continue
        expression = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        ranked = [corpus[r[0]]["_id"] for r in
                  db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 10", (expression,))]
        total += next((1 / math.log2(i + 2) for i, d in enumerate(ranked) if d == relevant), 0.0)
    return total / len(qrels)


def analyzer_variants() -> dict[str, dict[str, float]]:
    from neardex.indexer.query import analysis, languages
    from neardex.indexer.query.analysis import Analyzer

    auto = Analyzer("auto")

    def index(text: str) -> list[str]:
        return auto.index_text(text, auto.language_of(text)).split()

    def query(text: str) -> list[str]:
        return list(auto.query(text).terms)

    table: dict[str, dict[str, float]] = {"analyzer (auto)": {lang: ndcg_at_10(lang, index, query) for lang in LANGUAGES}}
    # Segmentation of Chinese.
    table["zh: single characters"] = {"zh": ndcg_at_10("zh", *[lambda t: [c for c in t if analysis.WORD.fullmatch(c)]] * 2)}
    try:
        import icu

        breaker = icu.BreakIterator.createWordInstance(icu.Locale.getRoot())

        def icu_words(text: str) -> list[str]:
            breaker.setText(text)
            out, start = [], breaker.first()
            for end in breaker:
                word, start = text[start:end], end
                if analysis.WORD.fullmatch(word):
                    out.append(word.casefold())
            return out

        table["zh: ICU word breaking"] = {"zh": ndcg_at_10("zh", icu_words, icu_words)}
    except ImportError:
        print("PyICU not installed: ICU word breaking not measured")
    # Diacritics folded in every language, and stop words kept in queries.
    folded, stops = analysis._FOLDED, languages.stop_words
    try:
        analysis._FOLDED = (None, *LANGUAGES)
        table["diacritics folded"] = {lang: ndcg_at_10(lang, index, query) for lang in LANGUAGES if lang != "zh"}
    finally:
        analysis._FOLDED = folded
    try:
        languages.stop_words = lambda code: frozenset()
        table["stop words kept in queries"] = {lang: ndcg_at_10(lang, index, query) for lang in LANGUAGES if lang != "zh"}
    finally:
        languages.stop_words = stops
    return table


def detectors() -> dict[str, dict[str, float]]:
    from neardex.indexer.query import languages

    sets: dict[str, dict[str, list[str]]] = {"paragraphs": {}, "questions": {}, "3-word questions": {}}
    for lang in LANGUAGES:
        corpus, queries, _ = load(lang)
        sets["paragraphs"][lang] = [c["text"] for c in corpus]
        sets["questions"][lang] = list(queries.values())
        # Chinese has no spaces: its first 6 characters stand for three words.
        sets["3-word questions"][lang] = [q[:6] if lang == "zh" else " ".join(q.split()[:3]) for q in queries.values()]
    found: dict[str, Callable[[str], str | None]] = {"py3langid": languages.detect}
    try:
        from lingua import LanguageDetectorBuilder

        lingua = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

        def by_lingua(text: str) -> str | None:
            result = lingua.detect_language_of(text)
            return result.iso_code_639_1.name.lower() if result else None

        found["lingua (high accuracy)"] = by_lingua
    except ImportError:
        print("lingua not installed: only py3langid measured")
    table: dict[str, dict[str, float]] = {}
    for name, detect in found.items():
        for label, texts in sets.items():
            started, count = time.perf_counter(), 0
            row = {}
            for lang, items in texts.items():
                row[lang] = sum(detect(t) == lang for t in items) / len(items)
                count += len(items)
            row["ms each"] = (time.perf_counter() - started) / count * 1000
            table[f"{name}: {label}"] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detectors", action="store_true", help="also measure the language detectors")
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}")
    table = analyzer_variants()
    columns = list(LANGUAGES)
    print_table(["lexical nDCG@10 (FTS5 over paragraphs)", *columns],
                [[name, *[row.get(c, float("nan")) for c in columns]] for name, row in table.items()])
    result = {"ndcg@10": table}
    if args.detectors:
        found = detectors()
        print_table(["detector: share right", *columns, "ms each"],
                    [[name, *[row.get(c, float("nan")) for c in [*columns, "ms each"]]] for name, row in found.items()])
        result["detection"] = found
    write_result("analyzers", result)


if __name__ == "__main__":
    main()
