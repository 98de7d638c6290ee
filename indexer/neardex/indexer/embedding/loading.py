"""Loading a model once per process: which encoder, on which device, from which folder.

Kept apart from the encoders themselves so that each encoder module imports only the shared
pieces (embedder.py) and nothing imports back.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from ..errors import InvalidArgument
from .embedder import ENCODERS, Embedder, TorchEmbedder, resolve_device
from .sources import ModelSource, find_model


@functools.lru_cache(maxsize=8)
def _load(path: Path, name: str, encoder: str, cache_dir: Path | None, device: str) -> Embedder:
    if encoder == "torch":
        return TorchEmbedder(name, path, device)
    if encoder == "onnx-int8":
        from .onnx_int8 import OnnxInt8Embedder  # onnxruntime loads only when asked for

        return OnnxInt8Embedder(name, path, cache_dir)
    raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {ENCODERS}")


_load_lock = threading.Lock()


def load_embedder(model: str | ModelSource | None = None, encoder: str = "torch",
                  cache_dir: Path | None = None, device: str | None = "auto") -> Embedder:
    """The model (a name, path or Hugging Face id, or a model already found), loaded once per
    process and device; cache_dir is where an encoder built from the model's weights (onnx-int8)
    keeps its build; device is auto, cpu, cuda or cuda:N."""
    source = model if isinstance(model, ModelSource) else find_model(model)
    name, path = source.name, source.path
    if encoder not in ENCODERS:
        raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {ENCODERS}")
    device = resolve_device(device, encoder)
    with _load_lock:
        # The torch encoder builds nothing: one copy serves every cache folder.
        return _load(path, name, encoder, cache_dir if encoder != "torch" else None, device)
