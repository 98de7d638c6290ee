"""Text -> unit-length float32 vectors with a sentence-transformers model.

One loaded model serves every collection that names it (load_embedder caches by model path and
encoder), because a server with many collections of the same model must not hold many copies.
Which model a name means, and its prompts, is sources.py's; a collection's prompts go before its
texts here, in PromptedCalls, the one road from a collection to its model.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument

# DEFAULT_MODEL, is_bundled and resolve_model are re-exported: callers found them here before
# sources.py held them.
from .sources import DEFAULT_MODEL as DEFAULT_MODEL
from .sources import Prompts
from .sources import is_bundled as is_bundled
from .sources import resolve_model as resolve_model

# Models load from the folder sources.py found (local_files_only): a download happens there, where
# the network and HF_HUB_OFFLINE allow it, never inside a load.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Weight-loading progress bars are noise in a server log and in `neardex index` output.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# What a collection records: the runtime and precision its vectors came from.
ENCODERS = ("torch", "onnx-fp32", "onnx-int8")
# Not recorded: resolved, per machine, to the fastest of ENCODERS that measures equivalent to fp32.
AUTO = "auto"

# Called after every model call with (batch size, seconds): the server feeds its histograms.
EmbedObserver = Callable[[int, float], None]

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# Texts per model call when the caller names none: a GPU only fills with larger batches.
BATCH = {"cpu": 16, "cuda": 256}
# Reduced precision (fp16 on a GPU, bf16 on a CPU that computes it natively) is used only while
# every probe's vector stays this close (cosine) to its fp32 vector.
MIN_COSINE_TO_FP32 = 0.999
# auto: the fastest precision that agrees with fp32 on this device; fp32: always fp32.
PRECISION_ENV = "NEARDEX_PRECISION"
PRECISIONS = ("auto", "fp32")
# CPU features under which bf16 matrix products run natively (AVX512_BF16, AMX): elsewhere
# torch emulates them, slower than fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Sentences the precision check encodes both ways: short and long, plain and unusual text.
PRECISION_PROBES = (
    "what is the capital of france",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen"
    " as a by-product; chlorophyll in the chloroplasts absorbs mostly blue and red light.",
    "error 0x80070005: access denied (HRESULT) when writing C:\\ProgramData\\app\\cache.bin",
    "Der Vertrag tritt am 1. Januar 2027 in Kraft und gilt f\u00fcr alle Mitgliedstaaten.",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "how many calories in a banana",
    "tl;dr: it works, ship it \U0001f680",
)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def precision_setting() -> str:
    value = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        raise InvalidArgument(f"precision: {PRECISION_ENV}={value!r} is not one of {PRECISIONS}")
    return value


def gpu_driver_present() -> bool:
    """Whether a CUDA (or ROCm) driver shows itself: without one torch sees no GPU, and asking
    torch would cost its import (seconds) in a process that may never need it."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd"))


def resolve_device(device: str | None, encoder: str = "torch") -> str:
    """A torch device for the model: "auto" (or empty) is the first CUDA device when torch sees
    one and the encoder can use it (torch; auto, which is torch on a GPU), else the CPU. Naming a
    device that is not there is an error, not a silent fall back to the CPU."""
    device = (device or "auto").strip().lower()
    if not DEVICE.fullmatch(device):
        raise InvalidArgument(f"device: {device!r} is not auto, cpu, cuda or cuda:N")
    if device == "cpu" or (device == "auto" and (encoder not in ("torch", AUTO) or not gpu_driver_present())):
        return "cpu"
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda:0" if available else "cpu"
    if encoder not in ("torch", AUTO):
        raise InvalidArgument(f"device: the {encoder} encoder runs on the CPU only; got {device!r}")
    index = int(device.partition(":")[2] or 0)
    if index >= available:
        raise FailedPrecondition(
            f"device: {device} asked for, but torch sees {available} CUDA device(s) on this machine"
            " (use --device auto or cpu)")
    return f"cuda:{index}"


class Embedder(Protocol):
    name: str
    path: Path
    encoder: str
    dimension: int
    max_seq_length: int
    tokenizer: Any
    device: str  # the torch device it runs on: "cpu" or "cuda:N"
    batch_size: int  # texts per model call when the caller names none

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray: ...


class ModelCalls(Protocol):
    """The roads from a collection to its model, one for queries and one for document texts:
    direct by default; the server sends both through one scheduler that serves queries first."""

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def documents(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray: ...


class DirectCalls:
    """Both roads straight to the model (a process that only indexes, or only searches)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    def documents(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.embedder.encode(texts, batch_size)


class PromptedCalls:
    """A collection's roads to its model with its prompts put before each text: the query prompt
    before queries, the document prompt before document texts (as sentence-transformers' own
    `prompt` does, for models that pool over the prompt's tokens too). The one place prompts are
    applied, whichever road (direct or the server's scheduler) is underneath; texts of
    collections with different prompts still share a model call."""

    def __init__(self, calls: ModelCalls, prompts: Prompts) -> None:
        self.calls = calls
        self.prompts = prompts

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.calls.queries(_prefixed(self.prompts.query, texts))

    def documents(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.calls.documents(_prefixed(self.prompts.document, texts), batch_size)

    def documents_now(self, texts: Sequence[str]) -> np.ndarray:
        """Document texts a request waits for (Ask's sentences): the document prompt, on the
        queries' road."""
        return self.calls.queries(_prefixed(self.prompts.document, texts))


def _prefixed(prompt: str, texts: Sequence[str]) -> Sequence[str]:
    return [prompt + t for t in texts] if prompt else texts


class SerialEncoder:
    """What every encoder shares: one model call at a time, and observers told each call's size
    and duration. One call at a time because the model runtimes already spread one batch over
    every core: concurrent calls would only fight over the cores with smaller batches."""

    dimension: int
    device = "cpu"
    batch_size = BATCH["cpu"]

    def __init__(self) -> None:
        self.observers: list[EmbedObserver] = []
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            started = time.perf_counter()
            vectors = self._encode(list(texts), max(1, int(batch_size or self.batch_size)))
            elapsed = time.perf_counter() - started
        for observe in self.observers:
            observe(len(texts), elapsed)
        return vectors

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in order."""
        raise NotImplementedError


class TorchEmbedder(SerialEncoder):
    """The PyTorch path through sentence-transformers itself. fp32, unless a faster precision
    agrees with it (MIN_COSINE_TO_FP32) on this device: fp16 on a GPU, bf16 matrix products
    (autocast) on a CPU with native bf16. The encoder recorded in a collection stays the contract:
    a collection built in one precision or on one device is searched alike in another."""

    encoder = "torch"

    def __init__(self, name: str, path: Path, device: str = "cpu", precision: str | None = None) -> None:
        """precision: "fp32" for plain fp32 whatever the setting; None: NEARDEX_PRECISION."""
        super().__init__()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        self.name, self.path = name, path
        self.device = device
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        # Prompts are the collection's, put before the texts by PromptedCalls: a model's default
        # prompt applied here as well would come twice.
        self.model.default_prompt_name = None
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length)
        self.dimension = int(self.model.get_embedding_dimension())
        self.batch_size = BATCH["cuda" if device.startswith("cuda") else "cpu"]
        self.precision = "fp32"
        self._autocast: Any = None  # the dtype of autocast's matrix products, None for off
        if (precision or precision_setting()) == "auto":
            if device.startswith("cuda"):
                self.precision = self.try_half()
            elif cpu_flags() & set(BF16_CPU_FLAGS):
                self.precision = self.try_bf16()

    def try_half(self) -> str:
        """Switch the model to fp16 when that keeps every probe within MIN_COSINE_TO_FP32."""
        # Kept aside: fp16 weights cast back to fp32 are not the fp32 weights they came from.
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

        def back() -> None:
            self.model.float()
            self.model.load_state_dict(weights)

        return self._try_precision("fp16", self.model.half, back)

    def try_bf16(self) -> str:
        """Run matrix products in bf16 (weights stay fp32; norms and softmax stay fp32 under
        autocast) when that keeps every probe within MIN_COSINE_TO_FP32."""
        import torch

        return self._try_precision("bf16", lambda: setattr(self, "_autocast", torch.bfloat16),
                                   lambda: setattr(self, "_autocast", None))

    def _try_precision(self, name: str, switch: Callable[[], object], back: Callable[[], object]) -> str:
        """name when the probes' vectors after switch() agree with their fp32 vectors, else
        back() to fp32 and "fp32"."""
        texts = list(PRECISION_PROBES)
        full = self._encode(texts, len(texts))
        switch()
        if agrees_with_fp32(full, self._encode(texts, len(texts))):
            return name
        back()
        return "fp32"

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        with torch.autocast(self.model.device.type, dtype=self._autocast or torch.bfloat16,
                            enabled=self._autocast is not None):
            vectors = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def agrees_with_fp32(full: np.ndarray, reduced: np.ndarray) -> bool:
    """Whether every row of reduced is within MIN_COSINE_TO_FP32 of the same row of full (both
    unit length, so the dot product is the cosine)."""
    return bool(np.min(np.sum(full * reduced.astype(np.float32), axis=1)) >= MIN_COSINE_TO_FP32)


_plain: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


def plain_tokenizer(embedder: Embedder) -> Any:
    """The model's raw fast tokenizer, a private copy without padding or truncation.

    Counting must not share the embedder's tokenizer: a transformers tokenizer sets padding and
    truncation on its Rust object for each call, so a count running beside an encode in another
    thread can strip the padding from the encode's batch."""
    with _plain_lock:
        tokenizer = _plain.get(embedder)
        if tokenizer is None:
            backend = getattr(embedder.tokenizer, "backend_tokenizer", None)
            if backend is None:
                raise InvalidArgument(f"model: {embedder.name} has no fast (Rust) tokenizer")
            tokenizer = copy.deepcopy(backend)
            tokenizer.no_truncation()
            tokenizer.no_padding()
            _plain[embedder] = tokenizer
        return tokenizer


def count_tokens(embedder: Embedder, text: str) -> int:
    """Model tokens of text without special tokens."""
    return len(plain_tokenizer(embedder).encode(text, add_special_tokens=False).ids)


# A text longer than this many characters a window token is first tokenized in its head alone:
# tokenizing megabytes takes seconds, and a text past the window shows it in its head.
HEAD_CHARS_PER_TOKEN = 32
# The last place in a text where every tokenizer's pre-tokenizer splits: after a space, or
# between a word and the punctuation after it.
_LAST_BREAK = re.compile(r".*(?:\s|(?<=\w)(?=[^\w\s]))", re.DOTALL)


def check_fits(embedder: Embedder, text: str, field: str, prompt: str = "") -> None:
    """Refuse text longer than the model's window rather than let the model truncate it. The
    prompt put before it takes room in the window: the text is counted with it, as the model
    reads it.

    A long text is judged by its head first, cut where tokenizers split words apart (_LAST_BREAK):
    the head's tokens are then a part of the whole's, and a head past the window is enough to
    refuse without tokenizing the rest."""
    window = embedder.max_seq_length - 2  # [CLS] and [SEP]
    limit = window * HEAD_CHARS_PER_TOKEN
    with_prompt = " with its prompt" if prompt else ""
    if len(text) > limit:
        cut = _LAST_BREAK.match(text, 0, limit)
        head = text[: cut.end()] if cut else ""
        tokens = count_tokens(embedder, prompt + head)
        if tokens > window:
            raise InvalidArgument(
                f"{field}: {tokens} tokens{with_prompt} in its first {len(head)} of {len(text)} characters"
                f" already exceed the model's window of {window} tokens; shorten it (text is never"
                " truncated silently)")
    tokens = count_tokens(embedder, prompt + text)
    if tokens > window:
        raise InvalidArgument(
            f"{field}: {tokens} tokens{with_prompt} exceeds the model's window of {window} tokens;"
            " shorten it (text is never truncated silently)")
