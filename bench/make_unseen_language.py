"""Make a judged BEIR folder in a "language" the bundled model never saw, from an English one.

Every word is replaced, consistently across corpus and queries, by a pseudo-word built from
syllables chosen by a hash of the word. Word boundaries, word frequencies and the judgments stay,
so BM25 keeps most of its strength, while the model's English subword vocabulary no longer
covers the text: the situation of a collection in a language the model was not trained on.

    .venv/bin/python bench/make_unseen_language.py SRC_BEIR_DIR DEST_DIR
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ONSETS = ["k", "t", "m", "n", "s", "v", "r", "l", "z", "d", "g", "h", "p", "b", "j", "w"]
_VOWELS = ["a", "e", "i", "o", "u", "aa", "ei", "ou"]


def pseudo_word(word: str) -> str:
    digest = hashlib.blake2b(word.lower().encode("utf-8"), digest_size=16).digest()
    syllables = 1 + min(4, (len(word) + 1) // 3)
    out = []
    for i in range(syllables):
        out.append(_ONSETS[digest[2 * i] % len(_ONSETS)] + _VOWELS[digest[2 * i + 1] % len(_VOWELS)])
    if digest[15] % 3 == 0:
        out.append(_ONSETS[digest[14] % len(_ONSETS)])
    return "".join(out)


def translate(text: str) -> str:
    return _WORD.sub(lambda m: pseudo_word(m.group(0)), text)


def convert_jsonl(src: Path, dest: Path, fields: tuple[str, ...]) -> None:
    with src.open(encoding="utf-8") as fin, dest.open("w", encoding="utf-8") as fout:
        for line in fin:
            if not line.strip():
                continue
            record = json.loads(line)
            for field in fields:
                if isinstance(record.get(field), str):
                    record[field] = translate(record[field])
            fout.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    convert_jsonl(src / "corpus.jsonl", dest / "corpus.jsonl", ("title", "text"))
    convert_jsonl(src / "queries.jsonl", dest / "queries.jsonl", ("text",))
    shutil.copytree(src / "qrels", dest / "qrels", dirs_exist_ok=True)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
