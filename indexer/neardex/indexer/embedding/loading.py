"""Loading a model once per process: which encoder, on which device, from which folder.

Kept apart from the encoders themselves so that each encoder module imports only the shared
pieces (embedder.py) and nothing imports back. A process that loads an ONNX encoder from a cached
build imports neither torch nor sentence-transformers (tests/unit/test_torch_free.py).
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

from ..errors import InvalidArgument
from .embedder import AUTO, ENCODERS, Embedder, TorchEmbedder, resolve_device
from .sources import ModelSource, find_model

log = logging.getLogger("neardex.indexer")


@functools.lru_cache(maxsize=8)
def _load(path: Path, name: str, encoder: str, cache_dir: Path | None, device: str) -> Embedder:
    if encoder == "torch":
        return TorchEmbedder(name, path, device)
    if encoder.startswith("onnx-"):
        try:
            import onnxruntime  # noqa: F401 - onnx_encoders imports it only when a session opens

            from .onnx_encoders import OnnxEmbedder
        except ImportError as exc:
            # Every encoder a collection records was measured equivalent to fp32 where it was
            # chosen, so fp32 PyTorch can stand in for one whose runtime is not installed here.
            log.warning("encoder %s needs onnxruntime, which does not import here (%s): model %s"
                        " runs with the torch encoder instead", encoder, exc, name)
            return TorchEmbedder(name, path, device)
        return OnnxEmbedder(name, path, cache_dir, precision=encoder.removeprefix("onnx-"))
    raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {(AUTO, *ENCODERS)}")


_load_lock = threading.Lock()


def load_embedder(model: str | ModelSource | None = None, encoder: str = AUTO,
                  cache_dir: Path | None = None, device: str | None = "auto") -> Embedder:
    """The model (a name, path or Hugging Face id, or a model already found), loaded once per
    process and device; `encoder` one of ENCODERS, or AUTO for the fastest that measures
    equivalent to fp32 on this machine (selection.py; the loaded embedder's `encoder` says which);
    cache_dir is where the ONNX encoders keep their builds and auto its choices; device is auto,
    cpu, cuda or cuda:N."""
    source = model if isinstance(model, ModelSource) else find_model(model)
    name, path = source.name, source.path
    if encoder != AUTO and encoder not in ENCODERS:
        raise InvalidArgument(f"encoder: unknown encoder {encoder!r}; expected one of {(AUTO, *ENCODERS)}")
    device = resolve_device(device, encoder)
    if encoder == AUTO:
        # A GPU runs the torch encoder (fp16 where it measures equivalent); a CPU, the measured choice.
        from .selection import choose

        encoder = "torch" if device != "cpu" else choose(source, cache_dir)
    with _load_lock:
        # The torch encoder builds nothing: one copy serves every cache folder.
        return _load(path, name, encoder, cache_dir if encoder != "torch" else None, device)
