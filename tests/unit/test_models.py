"""Models by name and their prompts, offline: a Hugging Face id resolves from a cache folder made
here (HF_HUB_CACHE, HF_HOME), a missing one is one line saying how to bring it, a model's own
prompts (and a collection's) go before its queries and document texts and take room in its
window, and the contract a collection records (model, revision, prompts) refuses another; a
manifest written before the contract still opens. A tiny multilingual model made here (a
SentencePiece-style tokenizer) goes through chunking, the window check, search and Ask."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.client import cli
from neardex.indexer.catalog import Catalog
from neardex.indexer.documents import Document
from neardex.indexer.embedding.embedder import count_tokens, plain_tokenizer
from neardex.indexer.embedding.sources import (
    BUNDLED_REVISION,
    DEFAULT_MODEL,
    Prompts,
    find_model,
    model_prompts,
)
from neardex.indexer.errors import FailedPrecondition, InvalidArgument
from neardex.indexer.layout import MANIFEST
from neardex.indexer.retrieval.answers import Answerer
from tests.support.models import FIRST, SECOND, HubModel, hub_cache, tiny_multilingual_model

PROMPTS = {"query": "Represent this sentence for searching relevant passages: ", "passage": "passage: "}
NILE = Document("nile", "The Nile flows north through Egypt into the Mediterranean Sea.", "Nile")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubModel:
    """org/tiny-bge (the bundled model's files with bge-like prompts) in a cache folder that
    HF_HUB_CACHE points to, downloads off."""
    model = hub_cache(tmp_path / "hub", prompts=PROMPTS)
    monkeypatch.setenv("HF_HUB_CACHE", str(model.cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return model


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "data", device="cpu") as cat:
        yield cat


# -- names -----------------------------------------------------------------------------------


def test_a_hub_id_resolves_from_the_cache_offline_by_ref_or_commit(hub: HubModel, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source = find_model("org/tiny-bge")
    assert (source.kind, source.name, source.revision, source.path) == ("hub", "org/tiny-bge", FIRST, hub.snapshot)
    assert source.reference == f"org/tiny-bge@{FIRST}" and source.model_path == ""
    assert find_model(f"org/tiny-bge@{FIRST}").path == hub.snapshot
    second = hub_cache(hub.cache, revision=SECOND, ref="v2")
    assert find_model("org/tiny-bge@v2").path == second.snapshot
    assert find_model("org/tiny-bge").revision == FIRST  # main still points to the first
    # HF_HOME/hub where HF_HUB_CACHE is not set, read when resolving, not at import.
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    other = hub_cache(tmp_path / "home" / "hub", repo="other/model", revision=SECOND)
    assert find_model("other/model").path == other.snapshot


def test_the_bundled_model_and_folders_resolve_as_before(tmp_path: Path) -> None:
    bundled = find_model(None)
    assert (bundled.name, bundled.revision, bundled.reference, bundled.model_path) == (
        DEFAULT_MODEL, BUNDLED_REVISION, None, "")
    assert find_model(f"sentence-transformers/{DEFAULT_MODEL}").path == bundled.path
    folder = tmp_path / "e5-small"
    folder.symlink_to(bundled.path, target_is_directory=True)
    source = find_model(str(folder))
    assert (source.kind, source.name, source.model_path) == ("folder", bundled.path.name, str(bundled.path))
    assert source.revision.startswith("sha256:") and source.revision == find_model(str(folder)).revision
    with pytest.raises(InvalidArgument, match="neither the bundled"):
        find_model(str(tmp_path))  # a folder without a model


def test_a_missing_model_offline_is_one_line_naming_it_its_cache_and_the_pull(
        hub: HubModel, catalog: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        catalog.create("docs", model="BAAI/bge-small-en-v1.5@v1.0")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model: BAAI/bge-small-en-v1.5@v1.0 ")
    assert str(hub.cache) in message and "models--BAAI--bge-small-en-v1.5" in message
    assert "`neardex models pull BAAI/bge-small-en-v1.5@v1.0`" in message and "HF_HUB_OFFLINE" in message
    assert catalog.names() == []
    # The commands say it as one line too, and `models pull` refuses to download while offline.
    assert cli.main(["models", "pull", "BAAI/bge-small-en-v1.5"]) == 2
    assert cli.main(["models", "pull", "not-an-id"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "HF_HUB_OFFLINE is set" in lines[0] and "model: 'not-an-id'" in lines[1]


def test_prompts_follow_the_sentence_transformers_names(tmp_path: Path) -> None:
    def prompts_of(config: dict[str, object]) -> Prompts:
        (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(config))
        return model_prompts(tmp_path)

    assert prompts_of({"prompts": {"query": "query: ", "passage": "passage: "}}) == Prompts("query: ", "passage: ")
    assert prompts_of({"prompts": {"query": "q: ", "corpus": "c: ", "document": "d: "}}) == Prompts("q: ", "d: ")
    assert prompts_of({"prompts": {"query": "q: ", "all": "x: "}, "default_prompt_name": "all"}) == Prompts("q: ", "x: ")
    assert prompts_of({"__version__": {}}) == Prompts()
    (tmp_path / "config_sentence_transformers.json").unlink()
    assert model_prompts(tmp_path) == Prompts()


# -- prompts applied -------------------------------------------------------------------------


def test_a_models_prompts_go_before_its_queries_and_documents(hub: HubModel, catalog: Catalog) -> None:
    col = catalog.create("docs", model="org/tiny-bge")
    m = col.manifest
    assert (m.model, m.model_path, m.model_revision) == ("org/tiny-bge", "", FIRST)
    assert (m.query_prompt, m.document_prompt) == (PROMPTS["query"], PROMPTS["passage"])
    embedder = col.embedder
    query = "which way does the nile flow"
    vector = col.encode_queries([query])[0]
    np.testing.assert_allclose(vector, embedder.encode([PROMPTS["query"] + query])[0], atol=1e-5)
    assert float(vector @ embedder.encode([query])[0]) < 0.99
    col.upsert([NILE])
    stored = col.chunk_vectors(["nile"])["nile"][0]
    document = f"{NILE.title} {NILE.text}"
    np.testing.assert_allclose(stored, embedder.encode([PROMPTS["passage"] + document])[0], atol=1e-5)
    assert float(stored @ embedder.encode([document])[0]) < 0.99
    assert col.search(query, mode="dense").hits[0].id == "nile"
    # Reopened from its manifest alone: the same model, revision and prompts.
    catalog.close()
    with Catalog(catalog.root, device="cpu") as again:
        np.testing.assert_allclose(again.get("docs").encode_queries([query])[0], vector, atol=1e-5)


def test_a_collections_prompts_override_the_models(hub: HubModel, catalog: Catalog) -> None:
    col = catalog.create("docs", model="org/tiny-bge", query_prompt="", document_prompt="search_document: ")
    assert (col.manifest.query_prompt, col.manifest.document_prompt) == ("", "search_document: ")
    np.testing.assert_allclose(col.encode_queries(["a question"])[0], col.embedder.encode(["a question"])[0],
                               atol=1e-5)
    with pytest.raises(InvalidArgument, match="query_prompt: a collection without a model"):
        catalog.create("own", model="none", dimension=4, query_prompt="query: ")


def test_a_prompt_takes_room_in_the_window(catalog: Catalog) -> None:
    prompt = "Represent this long passage of text for retrieval by a search engine: "
    col = catalog.create("docs", document_prompt=prompt, query_prompt=prompt)
    embedder = col.embedder
    window = embedder.max_seq_length - 2
    prompt_tokens = count_tokens(embedder, prompt)
    assert col.manifest.chunk_tokens == window - prompt_tokens
    text = " ".join(f"Sentence number {i} says something about rivers and their deltas." for i in range(80))
    col.upsert([Document("long", text, "Rivers")])
    chunks, texts = col.prepare(Document("long", text, "Rivers"))
    assert len(chunks) > 3
    assert max(count_tokens(embedder, prompt + t) for t in texts) <= window
    # A query that fits alone but not after its prompt is refused, never truncated.
    words = "river " * (window - prompt_tokens + 2)
    assert count_tokens(embedder, words) <= window
    with pytest.raises(InvalidArgument, match="query: .* tokens with its prompt exceeds the model's window"):
        col.search(words)
    with pytest.raises(InvalidArgument, match="chunk_tokens: must be between 8 and the model's window of"):
        catalog.create("too-big", document_prompt=prompt, chunk_tokens=window)


# -- the contract ----------------------------------------------------------------------------


def test_the_contract_refuses_other_prompts_or_another_revision(hub: HubModel, catalog: Catalog) -> None:
    catalog.create("docs", model="org/tiny-bge")
    same = catalog.get_or_create("docs", model="org/tiny-bge", query_prompt=PROMPTS["query"])
    assert same.manifest.model_revision == FIRST
    with pytest.raises(FailedPrecondition, match="query_prompt: collection 'docs' was built with query_prompt"
                                                 " 'Represent .*', not 'query: '"):
        catalog.get_or_create("docs", query_prompt="query: ")
    with pytest.raises(FailedPrecondition, match="document_prompt: .*document_prompt 'passage: ', not ''"):
        catalog.get_or_create("docs", model="org/tiny-bge", document_prompt="")
    # The hub moves on: main now points to a second snapshot of the same name and dimension.
    hub_cache(hub.cache, revision=SECOND, prompts=PROMPTS)
    with pytest.raises(FailedPrecondition, match=f"model_revision: .*org/tiny-bge at revision {FIRST}, not {SECOND}"):
        catalog.get_or_create("docs", model="org/tiny-bge")
    assert catalog.get_or_create("docs", model=f"org/tiny-bge@{FIRST}").manifest.model_revision == FIRST
    # The collection itself keeps opening its own snapshot.
    catalog.close()
    with Catalog(catalog.root, device="cpu") as again:
        assert again.get("docs").embedder.path == hub.snapshot


def test_a_folder_of_the_same_name_or_changed_weights_is_another_model(tmp_path: Path, catalog: Catalog) -> None:
    bundled = find_model(None).path
    lookalike = tmp_path / "models" / DEFAULT_MODEL
    shutil.copytree(bundled, lookalike)
    catalog.create("bundled")
    # Same name, same dimension: refused by its revision, where names alone once let it in.
    with pytest.raises(FailedPrecondition, match=f"model_revision: .*{DEFAULT_MODEL} at revision bundled, not sha256:"):
        catalog.get_or_create("bundled", model=str(lookalike))
    catalog.create("folder", model=str(lookalike))
    catalog.close()
    weights = lookalike / "model.safetensors"
    with open(weights, "r+b") as fh:  # fine-tuned in place: same files, same sizes, other weights
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 1]))
    with Catalog(catalog.root, device="cpu") as again:
        with pytest.raises(FailedPrecondition, match=f"model: collection 'folder' was built with {DEFAULT_MODEL}"
                                                     " at revision sha256:.* now holds revision sha256:"):
            again.get("folder")
        assert again.get("bundled").manifest.model_revision == BUNDLED_REVISION


def test_a_manifest_without_the_contract_still_opens(tmp_path: Path, catalog: Catalog) -> None:
    catalog.create("old").upsert([NILE])
    catalog.close()
    path = tmp_path / "data" / "old" / MANIFEST
    data = json.loads(path.read_text())
    for key in ("model_revision", "query_prompt", "document_prompt"):
        del data[key]
    path.write_text(json.dumps(data))
    with Catalog(tmp_path / "data", device="cpu") as again:
        col = again.get_or_create("old", model=DEFAULT_MODEL)
        assert (col.manifest.model_revision, col.manifest.query_prompt, col.manifest.document_prompt) == ("", "", "")
        assert col.search("which way does the nile flow").hits[0].id == "nile"


# -- a multilingual model given by path --------------------------------------------------------


MULTILINGUAL = [
    Document("rhein", "Der Rhein entspringt in den Alpen. Er fließt durch die Schweiz, Deutschland und die"
                      " Niederlande. Bei Rotterdam mündet er in die Nordsee. " * 3, "Rhein"),
    Document("seine", "La Seine traverse Paris. Elle se jette dans la Manche près du Havre. " * 3, "Seine"),
    Document("volga", "Волга — самая длинная река Европы. Она впадает в Каспийское море. " * 3, "Волга"),
    Document("fuji", "富士山は日本で一番高い山である。静岡県と山梨県にまたがっている。" * 3, "富士山"),
]


def test_a_multilingual_model_by_path_chunks_checks_searches_and_answers(tmp_path: Path, catalog: Catalog) -> None:
    folder = tiny_multilingual_model(tmp_path / "tiny-ml")
    col = catalog.create("ml", model=str(folder), query_prompt="query: ", document_prompt="passage: ")
    embedder = col.embedder
    assert (col.manifest.model, embedder.max_seq_length) == ("tiny-ml", 48)
    assert col.manifest.model_revision.startswith("sha256:")
    window = embedder.max_seq_length - 2
    tokens = plain_tokenizer(embedder).encode("Der Rhein fließt", add_special_tokens=False).tokens
    assert tokens[0].startswith("\u2581")  # the model's own SentencePiece-style pieces, not WordPiece
    result = col.upsert(MULTILINGUAL)
    assert result.chunks > len(MULTILINGUAL)  # each text is longer than the tiny window
    for doc in MULTILINGUAL:
        chunks, texts = col.prepare(doc)
        # Each chunk, with its title and the document prompt, fits the window; it re-tokenizes
        # to the tokens the chunker counted.
        assert max(count_tokens(embedder, "passage: " + t) for t in texts) <= window
        assert all(count_tokens(embedder, c.text) == c.tokens for c in chunks)
        assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    assert {h.id for h in col.search("Rhein Nordsee", k=4).hits} <= {d.id for d in MULTILINGUAL}
    with pytest.raises(InvalidArgument, match="query: .* tokens with its prompt exceeds the model's window of 46"):
        col.search("Волга " * 60)
    answers = Answerer(col).ask("Wohin fließt der Rhein?", k=2).answers
    assert answers
    for answer in answers:
        assert answer.passage.text[answer.sentence_start:answer.sentence_end] == answer.sentence
