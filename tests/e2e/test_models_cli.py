"""`neardex index --model ORG/NAME` as a user runs it on a machine without network: a model in the
Hugging Face cache (HF_HUB_CACHE) is used with its own prompts unless --query-prompt or
--document-prompt say otherwise, a missing one is one line naming the cache and the pull command
(and leaves nothing behind), and indexing again with other prompts is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.models import FIRST, hub_cache
from tests.support.processes import run_cli


def test_index_by_hub_id_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = hub_cache(tmp_path / "hub", prompts={"query": "query: ", "passage": "passage: "})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub.cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": str(i), "text": text}) for i, text in enumerate(
        ["The Nile flows north into the Mediterranean.", "Mount Fuji is the highest mountain in Japan."])))
    data = tmp_path / "data"

    missing = run_cli("index", str(docs), "--collection", "docs", "--data-dir", str(data), "--quiet",
                      "--model", "BAAI/bge-small-en-v1.5", check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1 and str(hub.cache) in missing.stderr
    assert "`neardex models pull BAAI/bge-small-en-v1.5`" in missing.stderr
    assert not data.exists()

    run_cli("index", str(docs), "--collection", "docs", "--data-dir", str(data), "--quiet",
            "--model", "org/tiny-bge", "--document-prompt", "")
    manifest = json.loads((data / "docs" / "manifest.json").read_text())
    assert (manifest["model"], manifest["model_path"], manifest["model_revision"]) == ("org/tiny-bge", "", FIRST)
    assert (manifest["query_prompt"], manifest["document_prompt"]) == ("query: ", "")

    refused = run_cli("index", str(docs), "--collection", "docs", "--data-dir", str(data), "--quiet",
                      "--query-prompt", "search: ", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "query_prompt: collection 'docs' was built with query_prompt 'query: ', not 'search: '" in refused.stderr
