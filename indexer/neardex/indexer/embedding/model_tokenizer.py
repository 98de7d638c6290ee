"""A model's tokenizer without transformers: its tokenizer.json read by the `tokenizers` library.

The ONNX encoders need the tokenizer and nothing else of transformers, whose import alone takes
longer (0.7 s, 1.7 s with the tokenizer's set-up) than a whole cached ONNX start should. A
sentence-transformers folder ships the fast tokenizer's full definition in tokenizer.json, which
is what transformers itself loads for a fast tokenizer; read directly, it gives the same token ids
(checked on 250 English and Chinese passages against transformers' tokenizer). A folder without a
tokenizer.json still loads through transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument


class ModelTokenizer:
    """The part of a transformers tokenizer neardex reads: the Rust tokenizer itself
    (`backend_tokenizer`, never set to pad or truncate) and the special tokens it needs."""

    is_fast = True

    def __init__(self, backend: Any, unk_token: str | None, pad_token_id: int | None) -> None:
        self.backend_tokenizer = backend
        self.unk_token = unk_token
        self.pad_token_id = pad_token_id


def load_tokenizer(folder: Path, name: str, do_lower_case: bool = False) -> Any:
    """The model's fast tokenizer from folder, set up as sentence-transformers sets it up: a
    ModelTokenizer from tokenizer.json where the folder has one, else transformers' own."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # Padding and truncation saved in the file are transformers' call-time settings: neardex
        # pads per batch itself and never truncates.
        backend.no_truncation()
        backend.no_padding()
        special = {**_read(folder / "special_tokens_map.json"), **_read(folder / "tokenizer_config.json")}
        unk = _token(special.get("unk_token")) or getattr(backend.model, "unk_token", None)
        pad = _token(special.get("pad_token"))
        pad_id = backend.token_to_id(pad) if pad else None
        tokenizer: Any = ModelTokenizer(backend, unk, pad_id)
    else:
        tokenizer = _transformers_tokenizer(folder, name)
    if do_lower_case:
        lower_case(tokenizer.backend_tokenizer)
    return tokenizer


def _transformers_tokenizer(folder: Path, name: str) -> Any:
    import transformers

    # The class the folder names, looked up directly: AutoTokenizer would import torch (seconds).
    config = _read(folder / "tokenizer_config.json")
    cls = getattr(transformers, str(config.get("tokenizer_class") or "AutoTokenizer"), None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        cls = transformers.AutoTokenizer
    tokenizer = cls.from_pretrained(str(folder), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidArgument(f"model: {name!r} has no fast (Rust) tokenizer")
    return tokenizer


def lower_case(backend: Any) -> None:
    """A Lowercase normalizer first, as sentence-transformers' Transformer adds for do_lower_case."""
    from tokenizers.normalizers import Lowercase
    from tokenizers.normalizers import Sequence as NormalizerSequence

    normalizer = backend.normalizer
    members: list[Any] = (list(normalizer) if isinstance(normalizer, NormalizerSequence)  # type: ignore[call-overload]
                          else [normalizer])
    if not any(isinstance(n, Lowercase) for n in members):
        backend.normalizer = NormalizerSequence([Lowercase(), *(n for n in members if n is not None)])


def _token(value: Any) -> str | None:
    """A special token as tokenizer configs write it: a string, or an AddedToken's dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}
