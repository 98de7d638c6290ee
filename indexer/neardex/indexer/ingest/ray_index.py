"""`neardex index --ray`: documents chunked and embedded on a Ray cluster, written by the collection.

The driver reads the documents and checks each round of them with the collection's own `plan`, so
unchanged documents are skipped exactly as in a plain run. Ray Data spreads the changed ones over
an actor pool: each actor loads the collection's model once (on a GPU of its own when the cluster
has GPUs) and cuts and embeds with the same DocumentEncoder a plain run uses. Embedded documents
stream back to the driver, which writes them through the collection's store in write batches,
each durable when written: an interrupted run keeps what it wrote, and a re-run skips it.

Without an address a local Ray is started; with one the driver joins that cluster, whose nodes
need neardex (with the model) installed in the same Python version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..documents import Chunk, Document
from ..embedding.loading import load_embedder
from ..embedding.sources import Prompts, recorded_model
from ..errors import FailedPrecondition, InvalidArgument
from ..ingest.encoding import DocumentEncoder, Prepared
from ..records import Manifest, UpsertResult

if TYPE_CHECKING:
    from ..retrieval.engine import Collection  # annotations only: retrieval is the layer above

# Documents per Ray Data job: bounds what the driver holds at once; the actor pool (and each
# actor's model load) is started once per round.
ROUND = 20_000


class _EmbedActor:
    """One model per actor, on the GPU Ray gave it or on its share of CPUs."""

    def __init__(self, manifest_json: str, cpus: int) -> None:
        import ray
        import torch

        manifest = Manifest.from_json(manifest_json)
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, cpus))
        embedder = load_embedder(recorded_model(manifest), manifest.encoder, device=device)
        self.encoder = DocumentEncoder(embedder, manifest.chunk_tokens, manifest.overlap_tokens,
                                       prompts=Prompts.of(manifest))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        docs = [Document(str(i), str(text), str(title)) for i, text, title in
                zip(batch["i"], batch["text"], batch["title"])]
        # Ray hands batch_size documents per call; the model takes them in its own call size.
        prepared, vectors = self.encoder.encode(docs)
        spans, texts, blobs, row = [], [], [], 0
        for chunks, chunk_texts in prepared:
            spans.append(json.dumps([[c.index, c.start, c.end, c.tokens] for c in chunks]))
            texts.append(json.dumps(chunk_texts))
            blobs.append(vectors[row:row + len(chunks)].astype(np.float32).tobytes())
            row += len(chunks)
        return {"i": batch["i"], "spans": np.array(spans, dtype=object), "texts": np.array(texts, dtype=object),
                "vectors": np.array(blobs, dtype=object)}


class RayIndexer:
    """A pipeline target (see pipeline.Target) that embeds on Ray: `upsert` takes a round of
    documents and writes them `write_batch` at a time."""

    def __init__(self, collection: Collection, address: str | None = None, *, actors: int = 0,
                 write_batch: int = 256, embed_batch: int = 64) -> None:
        if not collection.has_model:
            raise InvalidArgument(f"--ray: collection {collection.manifest.name!r} has no model; its documents"
                                  " bring their vectors, there is nothing to embed")
        try:
            import ray
        except ImportError:
            raise FailedPrecondition("--ray: Ray is not installed; pip install 'neardex-server[ray]'") from None
        self.collection = collection
        self.write_batch = write_batch
        self.embed_batch = embed_batch
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FailedPrecondition(f"--ray: cannot {'join ' + address if address else 'start Ray'}: {exc}") from None
        # Progress is the summary line's and neardex's own bar; Ray Data's would interleave with it.
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        # One actor per GPU; without GPUs, actors of two CPUs each (the model's own threads
        # use them better than more, smaller actors).
        self.actors = actors or (self.gpus or max(1, cpus // 2))
        self.cpus_per_actor = 0 if self.gpus else max(1, cpus // self.actors)

    def describe(self) -> str:
        where = f"{self.gpus} GPUs" if self.gpus else f"{self.cpus_per_actor} CPUs each"
        return f"{self.actors} Ray actors ({where})"

    # -- pipeline.Target ----------------------------------------------------------------------

    def upsert(self, documents: Sequence[Document]) -> UpsertResult:
        plan = self.collection.plan(documents)
        # Metadata alone changed: written here, nothing embedded (those deleted meanwhile go whole).
        plan.changed += self.collection.rewrite_metadata(plan)
        total = UpsertResult(unchanged=len(documents) - len(plan.changed) - len(plan.metadata_only),
                             ids=[d.id for d in documents], metadata_updated=len(plan.metadata_only))
        pending: list[tuple[int, Prepared, np.ndarray]] = []
        for item in self._embedded([d for d, _ in plan.changed]):
            pending.append(item)
            if len(pending) >= self.write_batch:
                total = self._write(plan.changed, pending, total)
                pending = []
        if pending:
            total = self._write(plan.changed, pending, total)
        return total

    def all_ids(self) -> set[str]:
        return self.collection.all_ids()

    def delete(self, ids: Sequence[str]) -> int:
        return self.collection.delete(ids)

    def checkpoint(self) -> None:
        self.collection.checkpoint()

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()

    # -- the Ray job --------------------------------------------------------------------------

    def _embedded(self, docs: list[Document]) -> Iterator[tuple[int, Prepared, np.ndarray]]:
        """(position in docs, chunks and texts, vectors) of each document, as actors finish them."""
        if not docs:
            return
        ray = self._ray
        items = [{"i": i, "text": d.text, "title": d.title} for i, d in enumerate(docs)]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // self.embed_batch,
                                                                              self.actors * 8)))
        embedded = dataset.map_batches(
            _EmbedActor, batch_size=self.embed_batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            fn_constructor_kwargs={"manifest_json": self.collection.manifest.to_json(),
                                   "cpus": self.cpus_per_actor},
            num_gpus=1 if self.gpus else 0, num_cpus=self.cpus_per_actor or None)
        dimension = self.collection.manifest.dimension
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            for i, spans, texts, blob in zip(batch["i"], batch["spans"], batch["texts"], batch["vectors"]):
                doc = docs[int(i)]
                chunks = [Chunk(index, doc.text[start:end], start, end, tokens)
                          for index, start, end, tokens in json.loads(spans)]
                vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(chunks), dimension)
                yield int(i), (chunks, json.loads(texts)), vectors

    def _write(self, changed: list[tuple[Document, str]], items: list[tuple[int, Prepared, np.ndarray]],
               total: UpsertResult) -> UpsertResult:
        items.sort(key=lambda item: item[0])
        prepared = [p for _, p, _ in items]
        self.collection.commit([changed[i] for i, _, _ in items], prepared,
                               np.concatenate([v for _, _, v in items]))
        return UpsertResult(upserted=total.upserted + len(items), unchanged=total.unchanged,
                            chunks=total.chunks + sum(len(c) for c, _ in prepared), ids=total.ids,
                            tokens=total.tokens + sum(c.tokens for chunks, _ in prepared for c in chunks),
                            metadata_updated=total.metadata_updated)

    def __enter__(self) -> RayIndexer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
