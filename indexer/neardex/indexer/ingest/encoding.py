"""What a document becomes before it is stored: token-bounded chunks, the texts the model reads
for them, and their vectors.

Written once, for a collection's own writes and for the actors of `neardex index --ray`, so that
a document indexed either way is cut and embedded alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import deadline
from ..documents import Chunk, Document
from ..embedding.embedder import DirectCalls, Embedder, ModelCalls, PromptedCalls, plain_tokenizer
from ..embedding.sources import Prompts
from .chunker import Chunker

Prepared = tuple[list[Chunk], list[str]]  # a document's chunks, and the text embedded for each


def text_window(embedder: Embedder, prompt: str) -> int:
    """Tokens of the model's window left for a text after the special tokens and the prompt put
    before it (a prompt takes room in the window as any text does)."""
    window = embedder.max_seq_length - 2  # [CLS] and [SEP]
    return window - (len(plain_tokenizer(embedder).encode(prompt, add_special_tokens=False).ids) if prompt else 0)


class DocumentEncoder:
    def __init__(self, embedder: Embedder, chunk_tokens: int, overlap_tokens: int,
                 calls: ModelCalls | None = None, prompts: Prompts | None = None) -> None:
        """calls: the roads to the model (straight to it by default); prompts: the collection's,
        put before every text on either road (self.calls)."""
        self.embedder = embedder
        prompts = prompts or Prompts()
        self.calls = PromptedCalls(calls or DirectCalls(embedder), prompts)
        self.chunk_tokens = chunk_tokens
        self.chunker = Chunker(plain_tokenizer(embedder), chunk_tokens, overlap_tokens)
        self.window = text_window(embedder, prompts.document)

    def prepare(self, doc: Document) -> Prepared:
        """The title is embedded with every chunk when it fits in half the model's window; the
        chunk budget shrinks by the title's tokens, so title plus chunk never exceed the window
        (what the document prompt leaves of it)."""
        window = self.window
        title_tokens = self.chunker.count(doc.title) + 1 if doc.title else 0
        use_title = 0 < title_tokens <= window // 2
        budget = min(self.chunk_tokens, window - (title_tokens if use_title else 0))
        chunks = self.chunker.chunks(doc.text, budget)
        texts = [f"{doc.title} {c.text}" if use_title else c.text for c in chunks]
        return chunks, texts

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """One model call per `batch_size` texts (default: the model's) in length order, so each
        call pads little. Between calls the model is free for queries, and the caller's deadline
        is checked: a write whose caller has gone stops within one call."""
        batch_size = batch_size or self.embedder.batch_size
        vectors = np.empty((len(texts), self.embedder.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            deadline.check("embed")
            vectors[part] = self.calls.documents([texts[i] for i in part], batch_size)
        return vectors

    def encode(self, documents: Sequence[Document],
               batch_size: int | None = None) -> tuple[list[Prepared], np.ndarray]:
        """Each document's chunks and texts, and one vector per chunk in that order."""
        prepared = [self.prepare(d) for d in documents]
        return prepared, self.embed([t for _, texts in prepared for t in texts], batch_size)
