"""Cross-encoders for the rerank stage: found as embedding models are, loaded once per process.

A cross-encoder (sentence-transformers' CrossEncoder: a transformer with a one-label
sequence-classification head) reads a query and a passage together and scores the pair. It is
named like an embedding model (sources.find_model: a folder, or a Hugging Face id from the cache),
so the same messages say what is missing and how to bring it, and every error names the field
that named the model (`rerank.model` in a search). Its scores go through a sigmoid: one-label
cross-encoders differ in their default activation, and a probability (0 to 1) means the same for
every model and every query.

How a loaded cross-encoder is called is its holder's choice (a `RerankCalls`): straight to the
model in a library or CLI process, through the server's model scheduler in the server.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument, NeardexError
from .embedder import resolve_device
from .sources import ModelSource, find_model

# (query, passage) pairs in, one probability per pair out.
RerankCalls = Callable[[Sequence[tuple[str, str]]], np.ndarray]


class CrossEncoderModel:
    """A loaded cross-encoder: `score` gives each (query, passage) pair's probability."""

    def __init__(self, source: ModelSource, device: str) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self.name = source.name
        self.path = source.path
        self._model = CrossEncoder(str(source.path), device=device, local_files_only=True)
        self._sigmoid = torch.nn.Sigmoid()

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        scores = self._model.predict([tuple(p) for p in pairs], batch_size=len(pairs), activation_fn=self._sigmoid,
                                     show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(-1)


@functools.lru_cache(maxsize=4)
def _load(path: Path, name: str, revision: str, kind: str, device: str) -> CrossEncoderModel:
    return CrossEncoderModel(ModelSource(name, path, revision, kind), device)


_load_lock = threading.Lock()


def find_cross_encoder(model: str, field: str = "rerank.model") -> ModelSource:
    """The cross-encoder a folder or Hugging Face id names, found (not loaded): InvalidArgument
    (FailedPrecondition where a hub model is missing from the cache, as for embedding models)
    naming `field` when it cannot be found or its configuration is not a one-label cross-encoder."""
    try:
        source = find_model(model)
    except NeardexError as exc:
        raise type(exc)(f"{field}: {_reason(exc)}") from None
    if source.kind == "bundled":
        raise InvalidArgument(f"{field}: {model!r} is the bundled embedding model, not a cross-encoder; name a"
                              " folder or a Hugging Face id holding one (e.g. cross-encoder/ms-marco-MiniLM-L6-v2)")
    _check_head(source, field)
    return source


def load_cross_encoder(model: str, field: str = "rerank.model", device: str | None = "auto") -> CrossEncoderModel:
    """The cross-encoder `model` names (see find_cross_encoder), loaded once per process and
    device; one that fails to load is InvalidArgument naming `field` too."""
    source = find_cross_encoder(model, field)
    with _load_lock:
        try:
            return _load(source.path, source.name, source.revision, source.kind, resolve_device(device))
        except NeardexError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a broken folder raises, it is the request's model
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise InvalidArgument(f"{field}: {model!r} cannot be loaded as a cross-encoder ({reason})") from None


def _check_head(source: ModelSource, field: str) -> None:
    """Refuse, before loading anything, a model whose configuration says it has no one-label
    classification head: loading it would give a freshly initialised head, i.e. random scores."""
    try:
        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"{field}: {source.path} holds no config.json; a cross-encoder is a transformers"
                              " sequence-classification model") from None
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"{field}: {source.path / 'config.json'} cannot be read ({exc})") from None
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise InvalidArgument(f"{field}: {source.name} is not a cross-encoder (its architectures are"
                              f" {architectures or 'not given'}; a cross-encoder's is *ForSequenceClassification)")
    labels = len(config.get("id2label") or {}) or int(config.get("num_labels") or 1)
    if labels != 1:
        raise InvalidArgument(f"{field}: {source.name} scores {labels} labels; a reranker scores one (relevance)")


def _reason(exc: NeardexError) -> str:
    """An embedding-model error's text without its own field name."""
    text = str(exc)
    return text.removeprefix("model: ")
