"""The Chroma user's side of bench/chroma_compare.py, run by a Python that has chromadb and stock
sentence-transformers (never the project's venv, which has no chromadb): it embeds each query the
way a Chroma user does, in the caller, and asks a Chroma server for the nearest passages over
HTTP.

It imports nothing from neardex, so the caller is what a Chroma user runs. It speaks JSON lines:
the first line on stdin says which server, model and passages (a JSONL file of id, text, title);
the passages are embedded with the same model and added (not timed), then a "ready" line answers.
Each later line is {"query": TEXT}; the answer holds the milliseconds of the embed, of the query
round trip and of both, measured here so the pipe to the bench costs neither side anything, and
the ids found. End of input ends it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def answer(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> None:
    import chromadb
    from sentence_transformers import SentenceTransformer

    setup = json.loads(sys.stdin.readline())
    model = SentenceTransformer(setup["model"])
    client = chromadb.HttpClient(host=setup["host"], port=setup["port"],
                                 settings=chromadb.Settings(anonymized_telemetry=False))
    # No embedding function: vectors come from the caller's own model, as in this path's users.
    collection = client.create_collection(setup["collection"], embedding_function=None,
                                          configuration={"hnsw": {"space": "cosine"}})
    with open(setup["passages"]) as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    # neardex embeds a title with its passage; msmarco's are empty, and the same text goes here.
    texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in docs]
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    batch = client.get_max_batch_size()
    for i in range(0, len(docs), batch):
        collection.add(ids=[d["id"] for d in docs[i:i + batch]], documents=[d["text"] for d in docs[i:i + batch]],
                       embeddings=vectors[i:i + batch].tolist())
    answer({"ready": collection.count(), "add_s": time.perf_counter() - started,
            "space": collection.configuration.get("hnsw", {}).get("space"),
            "versions": {"chromadb": chromadb.__version__, "sentence_transformers": _version("sentence_transformers"),
                         "torch": _version("torch")}})
    for line in sys.stdin:
        if not line.strip():
            continue
        query = json.loads(line)["query"]
        t0 = time.perf_counter()
        vector = model.encode(query, normalize_embeddings=True)
        t1 = time.perf_counter()
        result = collection.query(query_embeddings=[vector.tolist()], n_results=setup["k"])
        t2 = time.perf_counter()
        answer({"embed_ms": (t1 - t0) * 1000, "query_ms": (t2 - t1) * 1000, "ms": (t2 - t0) * 1000,
                "ids": result["ids"][0]})


def _version(module: str) -> str:
    return str(getattr(__import__(module), "__version__", "?"))


if __name__ == "__main__":
    main()
