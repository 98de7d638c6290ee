"""Fuzzing with fixed seeds against the real thing: every RPC against a real `neardex serve` (the
short form of `python -m tests.support.fuzz_requests`), and `neardex index` over a folder of junk
files, which indexes the good files whole and names each file it skips."""

from __future__ import annotations

import random
from pathlib import Path

from tests.support.fuzz_requests import run
from tests.support.processes import run_cli


def test_every_rpc_under_fuzzed_requests(tmp_path: Path) -> None:
    findings, alive, canary = run(600, 20261129, tmp_path)
    assert findings.problems == []
    assert alive and canary
    assert findings.requests == 600
    # The fuzzer got past validation as well as into it.
    assert findings.statuses["OK"] > 10 and findings.statuses["INVALID_ARGUMENT"] > 100


def test_indexing_a_folder_of_junk_indexes_the_good_files_whole(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(3)
    (corpus / "good.md").write_text("# Rivers\nThe Nile flows north into the Mediterranean.\n")
    (corpus / "binary.txt").write_bytes(bytes(rng.randrange(256) for _ in range(3000)))
    (corpus / "latin1.txt").write_bytes("Crème brûlée is a French dessert of custard and caramel.".encode("latin-1"))
    (corpus / "open.html").write_text("<p>Unclosed paragraph about the moon landing")
    (corpus / "empty.txt").write_text("   ")
    (corpus / "loop").symlink_to(corpus)
    (corpus / "dangling.md").symlink_to(corpus / "missing.md")
    data = tmp_path / "data"
    result = run_cli("index", str(corpus), "--collection", "docs", "--data-dir", str(data), "--quiet", "--skip-errors")
    assert "Traceback" not in result.stderr
    assert "indexed 3 documents" in result.stdout and "3 skipped" in result.stdout
    assert {line.split(": ", 2)[1].rsplit("/", 1)[-1] for line in result.stderr.splitlines()
            if line.startswith("skipped:")} == {"binary.txt", "empty.txt", "dangling.md"}
    assert run_cli("check", str(data)).stdout.startswith("ok: docs: 3 documents")
