"""Collections with prompts and other models over a real gRPC server: CreateCollection's prompts
(unset: the model's own; "": none) are recorded and shown in CollectionInfo with the model's
revision, the query prompt goes before Embed's and Search's texts, and a multilingual model from
the operator's model folder tokenizes (Tokenize), chunks, searches and answers with its own
tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neardex.client import Client, Document
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support.models import tiny_multilingual_model

TEXTS = [
    Document(id="rhein", title="Rhein", text="Der Rhein entspringt in den Alpen. Er mündet bei Rotterdam in die"
                                             " Nordsee. Er fließt durch die Schweiz und Deutschland."),
    Document(id="fuji", title="富士山", text="富士山は日本で一番高い山である。静岡県と山梨県にまたがっている。" * 2),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    models = tmp_path / "models"
    tiny_multilingual_model(models / "tiny-ml")
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          model_dir=models))
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            yield c
    finally:
        server.stop(grace=1)


def test_create_collection_records_and_applies_prompts(client: Client) -> None:
    info = client.create_collection("e5", query_prompt="query: ", document_prompt="passage: ")
    assert (info.model, info.model_revision, info.query_prompt, info.document_prompt) == (
        "all-MiniLM-L6-v2", "bundled", "query: ", "passage: ")
    plain = client.create_collection("plain")  # the bundled model has no prompts of its own
    assert (plain.query_prompt, plain.document_prompt, plain.model_revision) == ("", "", "bundled")
    again = client.create_collection("e5", query_prompt="other: ", exist_ok=True)
    assert again.query_prompt == "query: "  # an existing collection comes back as it is
    assert {c.name: c.query_prompt for c in client.collections()} == {"e5": "query: ", "plain": ""}

    # The query prompt goes before the texts of a collection's queries, on the server.
    prompted = np.array(client.embed(["which way does the nile flow"], collection="e5")[0])
    by_hand = np.array(client.embed(["query: which way does the nile flow"], collection="plain")[0])
    bare = np.array(client.embed(["which way does the nile flow"], collection="plain")[0])
    assert float(prompted @ by_hand) > 0.9999 and float(prompted @ bare) < 0.99
    client.upsert("e5", [Document(id="nile", title="Nile", text="The Nile flows north into the Mediterranean.")])
    assert client.search("e5", "which way does the nile flow", k=1).hits[0].id == "nile"


def test_a_multilingual_model_from_the_model_folder_end_to_end(client: Client) -> None:
    info = client.create_collection("ml", model="tiny-ml", query_prompt="query: ", document_prompt="")
    assert (info.model, info.query_prompt, info.document_prompt) == ("tiny-ml", "query: ", "")
    assert info.model_revision.startswith("sha256:") and info.chunk_tokens == 46
    result = client.upsert("ml", TEXTS)
    assert result.chunks > len(TEXTS)
    tokens = client.tokenize("Der Rhein fließt", collection="ml")
    assert tokens.model == "tiny-ml" and tokens.tokens[0].token.startswith("\u2581")
    japanese = client.tokenize(TEXTS[1].text, collection="ml")
    assert not japanese.fits and len(japanese.chunks) > 1
    assert {h.id for h in client.search("ml", "Rhein Nordsee", k=2).hits} == {"rhein", "fuji"}
    answers = client.ask("ml", "Wohin fließt der Rhein?", k=2).answers
    assert answers and all(a.passage.text[a.sentence_start:a.sentence_end] == a.sentence for a in answers)
