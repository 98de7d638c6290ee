"""ONNX Runtime encoders (fp32 and int8) for BERT-style sentence-transformers models, built on first use.

The first time a model is used with encoder "onnx-fp32" or "onnx-int8", the project builds both
graphs itself from the model's own weights and caches them; later loads only open the cached
file, and import neither torch nor transformers (the tokenizer is the model's tokenizer.json read
by `tokenizers`): a process that encodes with a cached build starts in a fraction of a second.

1. export the fp32 transformer with torch.onnx.export (eager attention, opset 17, dynamic batch
   and sequence axes; inputs input_ids / attention_mask / token_type_ids as the tokenizer gives
   them; output last_hidden_state);
2. fuse it with onnxruntime.transformers.optimizer (EmbedLayerNormalization, Attention,
   SkipLayerNormalization, BiasGelu), which alone makes ONNX Runtime faster than PyTorch here;
   this fused fp32 graph is the onnx-fp32 encoder;
3. quantize weights dynamically to int8 (per output channel, signed, full 8-bit range; activations
   are quantized per batch at run time), leaving in fp32 the parts that cost the most accuracy
   for the least time: the embedding table and the first encoder layer's two projections back to
   the hidden size (attention output and FFN output);
   (the onnx-int8 encoder);
4. check both against the fp32 PyTorch model on probe sentences, and refuse a build that
   does not match (a graph the exporter or the fusions got wrong must never be cached).

Pooling (mean / CLS / max / mean_sqrt_len, as the model's 1_Pooling config says) and L2 normalization happen in
numpy. Texts are tokenized with the model's own fast tokenizer, sorted by length and padded only
to the longest text of each batch; nothing is ever truncated: a text longer than the model's
max_seq_length raises TextTooLong (a ValueError).

Builds are cached once per machine (NEARDEX_MODEL_CACHE, else ~/.cache/neardex), in
a folder keyed by a hash of the source model's weight files and config.json, the build
recipe version and the ONNX Runtime version, so a changed model or a new recipe is rebuilt rather
than served stale. A build goes to a temporary folder that is renamed into place when complete;
a lock file serializes concurrent builders, and the rename alone keeps readers from ever seeing a
half-written model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..caches import machine_cache
from ..errors import InvalidArgument
from .embedder import SerialEncoder, plain_tokenizer
from .model_tokenizer import load_tokenizer, lower_case

# Every load below reads the model's folder (local_files_only); downloads are sources.py's.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Bump whenever the build below changes what it writes: old cache folders are then not reused.
RECIPE_VERSION = 2
# The graphs a build holds, by the precision each encoder names.
GRAPHS = {"fp32": "fp32.onnx", "int8": "int8.onnx"}
PRECISIONS = tuple(GRAPHS)

# Architectures whose exported graph the BERT fusions understand, or at worst leave unfused but
# correct (the probe check after the build guards the rest). Only "bert" is benchmarked.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra",
                         "mpnet")
# sentence-transformers' pooling modes: the legacy boolean keys and the names they map to.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")

# A build whose int8 vectors disagree with fp32 PyTorch more than this on the probes is refused.
MIN_PROBE_COSINE = 0.95
MIN_PROBE_COSINE_FP32 = 0.9999

# Padded tokens per model call: long texts get smaller batches so activations stay in cache.
DEFAULT_MAX_BATCH_TOKENS = 8192

_PROBES = (
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "What is the boiling point of water at high altitude?",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing"
    " oxygen as a by-product; it takes place in the chloroplasts of plant cells.",
    "SELECT id, name FROM users WHERE created_at > '2021-01-01' ORDER BY name;",
    "Der schnelle braune Fuchs springt über den faulen Hund. 東京は日本の首都です。",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "In 1724 Fahrenheit introduced the temperature scale that bears his name, used to record"
    " changes in temperature in an accurate fashion. " * 3,
)


class TextTooLong(InvalidArgument, ValueError):
    """A text has more tokens than the model's window; it is refused, never truncated."""


class UnsupportedModel(InvalidArgument, ValueError):
    """The model folder is not a BERT-style sentence-transformers model this encoder can build."""


def cache_dir_for(given: Path | None) -> Path:
    """NEARDEX_MODEL_CACHE, when set, holds every build and choice; otherwise the folder given,
    else the machine's model cache."""
    if os.environ.get("NEARDEX_MODEL_CACHE") or given is None:
        return machine_cache()
    return Path(given)


def default_threads() -> int:
    if env := os.environ.get("NEARDEX_ORT_THREADS"):
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# The model folder


class ModelSpec:
    """What the build and the encoder need to know about a sentence-transformers folder."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, Path(path)
        modules = _read_json(self.path / "modules.json", default=None)
        transformer_dir, pooling_dir = self.path, self.path / "1_Pooling"
        if modules is not None:
            kinds = [m.get("type", "") for m in modules]
            for module in modules:
                kind, sub = module.get("type", ""), module.get("path", "")
                if kind.endswith(".Transformer"):
                    transformer_dir = self.path / sub
                elif kind.endswith(".Pooling"):
                    pooling_dir = self.path / sub
                elif not kind.endswith(".Normalize"):
                    raise UnsupportedModel(
                        f"model: {name!r} has a {kind.rsplit('.', 1)[-1] or '?'} module; the"
                        " ONNX encoders support Transformer + Pooling (+ Normalize) only")
            if not any(k.endswith(".Transformer") for k in kinds):
                raise UnsupportedModel(f"model: {name!r} has no Transformer module")
        self.transformer_dir = transformer_dir
        config_path = transformer_dir / "config.json"
        if not config_path.is_file():
            raise UnsupportedModel(f"model: {name!r} has no config.json in {transformer_dir}")
        self.config = _read_json(config_path)
        self.model_type = str(self.config.get("model_type", ""))
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModel(
                f"model: {name!r} is a {self.model_type or 'unknown'!r} model; the ONNX"
                f" encoder supports BERT-style encoders ({', '.join(SUPPORTED_MODEL_TYPES)})")
        self.hidden_size = int(self.config.get("hidden_size") or self.config.get("dim") or 0)
        self.num_heads = int(self.config.get("num_attention_heads") or self.config.get("n_heads") or 0)

        pooling = _read_json(pooling_dir / "config.json", default=None)
        if pooling is None:
            raise UnsupportedModel(f"model: {name!r} has no pooling config ({pooling_dir})")
        if "pooling_mode" in pooling:  # sentence-transformers >= 6
            mode = pooling["pooling_mode"]
            modes = [mode] if isinstance(mode, str) else list(mode)
        else:  # older: one boolean per mode; none set means mean, as sentence-transformers reads it
            modes = [m for key, m in LEGACY_POOLING_KEYS.items() if pooling.get(key)] or ["mean"]
        if len(modes) != 1 or modes[0] not in POOLING_MODES:
            raise UnsupportedModel(
                f"model: {name!r} pools with {' + '.join(map(str, modes))}; the ONNX encoders"
                f" supports exactly one of {', '.join(POOLING_MODES)}")
        self.pooling = str(modes[0])
        self.dimension = int(pooling.get("embedding_dimension")
                             or pooling.get("word_embedding_dimension") or self.hidden_size)

        st_config = _read_json(transformer_dir / "sentence_bert_config.json", default=None)
        if st_config is None:
            st_config = _read_json(self.path / "sentence_bert_config.json", default={})
        self.do_lower_case = bool(st_config.get("do_lower_case", False))
        max_len = st_config.get("max_seq_length") or self.config.get("max_position_embeddings")
        if not max_len:
            raise UnsupportedModel(f"model: {name!r} states no max_seq_length")
        self.max_seq_length = int(max_len)

    def weight_files(self) -> list[Path]:
        files = sorted({f for pattern in WEIGHT_PATTERNS for f in self.transformer_dir.glob(pattern)})
        if not files:
            raise UnsupportedModel(
                f"model: {self.name!r} has no weights (model.safetensors or pytorch_model.bin)"
                f" in {self.transformer_dir}")
        return files

    def cache_key(self) -> str:
        """Hash of everything the built file depends on: weights, config, recipe, runtime."""
        files = [self.transformer_dir / "config.json", *self.weight_files()]
        return _files_key(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _files_key(files: tuple[tuple[str, int, int], ...]) -> str:
    """The key of files as cache_key makes it, once per process for the same files unchanged
    (path, size, modification time): auto's choice and the build it opens both ask, and hashing
    the weights takes 0.14 s of a start."""
    import onnxruntime

    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE_VERSION};ort={onnxruntime.__version__}\n".encode())
    for path, _, _ in files:
        digest.update(f"{Path(path).name}\n".encode())
        with open(path, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def _read_json(path: Path, default: Any = ...) -> Any:
    if not path.is_file():
        if default is ...:
            raise UnsupportedModel(f"model: {path} is missing")
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def load_spec_tokenizer(spec: ModelSpec) -> Any:
    """The model's fast tokenizer, without transformers where its folder has a tokenizer.json."""
    return load_tokenizer(spec.transformer_dir, spec.name, spec.do_lower_case)


# ---------------------------------------------------------------------------------------------
# The build


def build(spec: ModelSpec, out_dir: Path) -> dict[str, Any]:
    """Export, fuse, quantize and verify spec's model into out_dir (GRAPHS); the manifest."""
    import warnings

    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    started = time.perf_counter()
    transformers_logging.disable_progress_bar()
    # transformers' tokenizer for its padded tensors (the build imports torch anyway), lower-cased
    # as the encoders' own.
    tokenizer = AutoTokenizer.from_pretrained(str(spec.transformer_dir), local_files_only=True)
    if spec.do_lower_case:
        lower_case(tokenizer.backend_tokenizer)
    model = AutoModel.from_pretrained(str(spec.transformer_dir), attn_implementation="eager",
                                      dtype=torch.float32, local_files_only=True).eval()
    forward_params = set(inspect.signature(model.forward).parameters)
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                   if n in forward_params and n in tokenizer.model_input_names]
    if "input_ids" not in input_names or "attention_mask" not in input_names:
        raise UnsupportedModel(f"model: {spec.name!r} does not take input_ids and attention_mask")

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              **extra).last_hidden_state

    # The PyTorch reference for the probe check, computed before the export: the traced module
    # itself gives different outputs afterwards (other models in the process are unaffected).
    batch = tokenizer(list(_PROBES), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**{n: batch[n] for n in input_names}).last_hidden_state.numpy()
    feed = {n: batch[n].numpy().astype(np.int64) for n in input_names}
    mask = feed["attention_mask"]
    reference = _pool(hidden, mask, spec.pooling)

    sample = tokenizer(["a short probe", "a slightly longer probe sentence for the export"],
                       padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in input_names)
    exported_path, fused_path, int8_path = (out_dir / "exported.onnx", out_dir / GRAPHS["fp32"],
                                            out_dir / GRAPHS["int8"])
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(), args, str(exported_path), dynamo=False, opset_version=17,
            input_names=input_names, output_names=["last_hidden_state"],
            dynamic_axes={n: axes for n in [*input_names, "last_hidden_state"]},
            do_constant_folding=True)
    exported = time.perf_counter()

    fused = optimizer.optimize_model(str(exported_path), model_type="bert", num_heads=spec.num_heads,
                                     hidden_size=spec.hidden_size, opt_level=0)
    fusions = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    graph = fused.model.graph
    for i, node in enumerate(graph.node):  # quantize_dynamic picks nodes by name
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    excluded = _fp32_nodes(graph, spec.hidden_size)
    fused.save_model_to_file(str(fused_path))
    exported_path.unlink()
    fused_at = time.perf_counter()

    logging.disable(logging.WARNING)  # the quantizer logs advice on the root logger
    try:
        quantize_dynamic(
            str(fused_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
            reduce_range=False, op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})
    finally:
        logging.disable(logging.NOTSET)
    quantized = time.perf_counter()

    # Probe check: fp32 graph and int8 graph against PyTorch itself, same tokens, same pooling.
    cosines = {}
    for label, path in (("fp32", fused_path), ("int8", int8_path)):
        session = _session(path, threads=default_threads())
        got = _pool(session.run(None, feed)[0], mask, spec.pooling)
        cosines[label] = float((got * reference).sum(axis=1).min())
    if cosines["fp32"] < MIN_PROBE_COSINE_FP32 or cosines["int8"] < MIN_PROBE_COSINE:
        raise RuntimeError(
            f"ONNX build of model {spec.name!r} does not match PyTorch on the probe"
            f" sentences (min cosine fp32 graph {cosines['fp32']:.5f}, int8 {cosines['int8']:.5f});"
            " use encoder 'torch' for this model")
    for extra in out_dir.iterdir():  # external-data side files of the intermediate graphs
        if extra.name not in GRAPHS.values():
            if extra.is_dir():
                shutil.rmtree(extra)
            else:
                extra.unlink()
    return {
        "recipe": RECIPE_VERSION,
        "model": spec.name,
        "source": str(spec.path),
        "model_type": spec.model_type,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "inputs": input_names,
        "pooling": spec.pooling,
        "fusions": fusions,
        "fp32_nodes": excluded,
        "probe_min_cosine": cosines,
        "seconds": {"export": exported - started, "fuse": fused_at - exported,
                    "quantize": quantized - fused_at, "total": time.perf_counter() - started},
    }


def _fp32_nodes(graph: Any, hidden: int) -> list[str]:
    """Nodes that stay fp32: the first layer's projections back to the hidden size.

    Measured on all-MiniLM-L6-v2 (quantizing one node at a time), the first layer's FFN output
    and attention output projections cost the most cosine per unit of time; the walk stops at
    the first FFN output projection (in > hidden -> hidden), so it works unfused too.
    """
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    names: list[str] = []
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        dims = shapes[node.input[1]]
        if len(dims) != 2 or dims[1] != hidden:
            continue
        names.append(node.name)
        if dims[0] > hidden:
            break
    return names


def _session(path: Path, threads: int, profile: bool = False, spinning: bool = False) -> Any:
    """spinning: ONNX Runtime's threads busy-wait for the next call; off by default, since in a
    server they took the cores from every other thread between calls (the same speed either way
    for a batch of texts: 66.9 against 67.1 passages/s, `bench/embedding.py`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """(batch, seq, dim) hidden states -> (batch, dim) L2-normalized float32 vectors."""
    if mode == "cls":
        vectors = hidden[:, 0, :]
    elif mode == "max":
        vectors = np.where(mask[:, :, None] > 0, hidden, np.float32(-1e9)).max(axis=1)
    else:  # mean over real tokens (or over sqrt of their count: same direction, but kept exact)
        weights = mask.astype(np.float32)
        vectors = np.matmul(weights[:, None, :], hidden)[:, 0, :]
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        vectors /= np.sqrt(counts) if mode == "mean_sqrt_len_tokens" else counts
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on path (POSIX flock); elsewhere the atomic rename alone must do."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(spec: ModelSpec, cache_dir: Path) -> tuple[Path, dict[str, Any], bool]:
    """(folder, manifest, built now) of spec's ONNX graphs in cache_dir, building them if missing."""
    folder = cache_dir / f"onnx-{spec.cache_key()[:24]}"  # content only: names and paths vary
    if _complete(folder):
        return folder, _read_json(folder / "manifest.json"), False
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / f"{folder.name}.lock"):
        if _complete(folder):  # another process built it while this one waited
            return folder, _read_json(folder / "manifest.json"), False
        if folder.exists():  # left incomplete by hand: start over
            shutil.rmtree(folder)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.build-", dir=cache_dir))
        try:
            manifest = build(spec, work)
            manifest["key"] = folder.name
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
            umask = os.umask(0)
            os.umask(umask)
            work.chmod(0o777 & ~umask)  # mkdtemp made it private
            try:
                os.rename(work, folder)
            except OSError:
                if not _complete(folder):  # lost a race without a lock (no fcntl): theirs wins
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return folder, manifest, True


def _complete(folder: Path) -> bool:
    return (folder / "manifest.json").is_file() and all((folder / g).is_file() for g in GRAPHS.values())


# ---------------------------------------------------------------------------------------------
# The encoder


class OnnxEmbedder(SerialEncoder):
    """ONNX Runtime encoding of the fused fp32 graph ("onnx-fp32": the same vectors as
    TorchEmbedder's fp32 to cosine 0.9999) or of its int8 quantization ("onnx-int8": cosine >= 0.95
    on every probe, 0.995 on average over msmarco passages)."""

    def __init__(self, name: str, path: Path, cache_dir: Path | None = None, *,
                 precision: str = "int8", threads: int | None = None,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, spinning: bool = False) -> None:
        super().__init__()
        if precision not in GRAPHS:
            raise InvalidArgument(f"encoder: no ONNX graph of precision {precision!r}; expected one of {PRECISIONS}")
        self.encoder = f"onnx-{precision}"
        self.precision = precision
        self.name, self.path = name, Path(path)
        self.spec = ModelSpec(name, self.path)
        self.dimension = self.spec.dimension
        self.max_seq_length = self.spec.max_seq_length
        self.tokenizer = load_spec_tokenizer(self.spec)
        self.cache_dir = cache_dir_for(cache_dir)
        started = time.perf_counter()
        self.model_dir, self.manifest, self.built = ensure_built(self.spec, self.cache_dir)
        self.build_seconds = time.perf_counter() - started if self.built else 0.0
        self.threads = threads or default_threads()
        self.max_batch_tokens = max_batch_tokens
        self.session = _session(self.model_dir / GRAPHS[precision], self.threads, spinning=spinning)
        self._inputs = [i.name for i in self.session.get_inputs()]
        # The raw tokenizer without truncation or padding that counting uses too: nothing
        # changes its settings, so encodes and counts can share it across threads.
        self._backend = plain_tokenizer(self)
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else 0

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        encodings = self._backend.encode_batch(texts, add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        too_long = np.flatnonzero(lengths > self.max_seq_length)
        if too_long.size:
            i = int(too_long[0])
            raise TextTooLong(
                f"text {i}: {int(lengths[i])} tokens (with [CLS] and [SEP]) exceeds model"
                f" {self.name!r}'s max_seq_length of {self.max_seq_length}; shorten it (text is"
                " never truncated silently)")
        if self.precision == "int8":
            # Activations are quantized with one scale per call: in a batch, a text's vector would
            # depend on the texts beside it (cosine 0.991 to itself alone), so a query would answer
            # differently when micro-batched with others. Alone, each text is also unpadded, which
            # costs little: a text is already dozens of rows of every product.
            batch_size = 1
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        want_types = "token_type_ids" in self._inputs
        for batch in self._batches(order, lengths, batch_size):
            width = int(lengths[batch[-1]])  # sorted: the last is the longest
            ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros((len(batch), width), dtype=np.int64) if want_types else None
            for row, index in enumerate(batch):
                enc = encodings[index]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                if types is not None:
                    types[row, :n] = enc.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {n: feed[n] for n in self._inputs})[0]
            out[batch] = _pool(hidden, mask, self.spec.pooling)
        return out

    def _batches(self, order: np.ndarray, lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        """Runs of the length-sorted order: at most batch_size texts and max_batch_tokens padded."""
        start, n = 0, len(order)
        while start < n:
            end = min(n, start + batch_size)
            while end - start > 1 and (end - start) * int(lengths[order[end - 1]]) > self.max_batch_tokens:
                end -= 1
            yield order[start:end]
            start = end
