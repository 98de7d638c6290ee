"""Question-answering retrieval: the passages most likely to answer a question, each with the
sentence that answers it marked.

Retrieval gives candidate passages (the collection's search, hybrid by default). Every sentence of
every candidate is embedded with the collection's model in one call and compared with the
question: the closest sentence is the passage's answer, and its similarity is evidence the
passage-level retrieval cannot see (a passage that mentions a topic vs one that answers it); the
final order can blend the two (SENTENCE_WEIGHT). With a rerank stage (the request's, else the
collection's default, else the answerer's default: the server's NEARDEX_CROSS_ENCODER), the
retrieval itself reorders the candidates by a cross-encoder reading question and passage together
(retrieval/rerank.py), and its probability is the answer's confidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from .. import deadline, stages
from ..errors import InvalidArgument
from ..ingest.chunker import sentence_spans
from ..query import analysis
from ..query.filters import Filter
from ..records import Hit
from .engine import Collection
from .request import Rerank

# Passages whose sentences are read: enough that the answer is among them, few enough that one
# model call embeds them all quickly.
MIN_CANDIDATES = 20
# Share of the final order given to the best sentence's similarity; the rest is the retrieval
# score. Measured on msmarco-dl19-5k (weights 0 to 1, see ARCHITECTURE.md) no weight above 0 raised
# MRR@10 there (short passages, the retrieval already saw the sentence), so by default the sentence
# evidence marks the answer and sets the confidence without reordering; NEARDEX_ASK_SENTENCE_WEIGHT
# turns the blend on for collections of long passages.
SENTENCE_WEIGHT = 0.0


@dataclass(frozen=True)
class Answer:
    passage: Hit
    sentence: str
    sentence_start: int  # offsets inside passage.text
    sentence_end: int
    confidence: float


@dataclass
class AskResult:
    answers: list[Answer]
    timings_ms: dict[str, float]


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.ones_like(values)


class Answerer:
    def __init__(self, collection: Collection, default_rerank: Rerank | None = None,
                 sentence_weight: float = SENTENCE_WEIGHT, max_terms: int = analysis.DEFAULT_MAX_QUERY_TERMS) -> None:
        """default_rerank serves questions that name no rerank in a collection without a default
        one; its depth 0 means every candidate passage."""
        self.collection = collection
        self.default_rerank = default_rerank
        self.sentence_weight = sentence_weight
        self.max_terms = max_terms

    def ask(self, question: str, k: int = 5, flt: Filter | None = None, mode: str = "",
            rerank: Rerank | None = None) -> AskResult:
        if not question or not question.strip():
            raise InvalidArgument("question: must not be empty")
        # A question longer than the window is refused: its tail would be cut off unseen. Checked
        # here, not by the search request: the question is embedded in every mode, to compare
        # sentences with.
        self.collection.check_query(question, "question")
        started = time.perf_counter()
        timings = stages.Timings()
        deadline.check("embed")
        with timings.stage("embed"):
            vector = self.collection.encode_queries([question])[0]
        candidates = max(k, MIN_CANDIDATES)
        if rerank is None and not self.collection.manifest.rerank_model and self.default_rerank is not None:
            rerank = replace(self.default_rerank, depth=self.default_rerank.depth or candidates)
        retrieval = self.collection.run(self.collection.request(
            text=question, k=candidates, flt=flt, mode=mode, max_terms=self.max_terms,
            field="question", encoded=vector, rerank=rerank))
        for stage, ms in retrieval.timings_ms.items():
            if stage not in ("total", "embed"):  # "rerank" included: the cross-encoder's time
                timings[stage] = ms
        hits = retrieval.hits
        if not hits:
            timings["total"] = _ms(started)
            return AskResult([], timings)

        deadline.check("sentences")
        with timings.stage("sentences"):
            spans = [sentence_spans(h.text) or [(0, len(h.text))] for h in hits]
            # A sentence alone often lacks its subject ("It is 6,650 km long."); the document title,
            # embedded with every chunk too, gives it back.
            flat = [f"{h.title} {h.text[s:e]}" if h.title else h.text[s:e] for h, hs in zip(hits, spans) for s, e in hs]
            # Sentences are passages' text: embedded with the document prompt (the question had the
            # query prompt), on the queries' road: in the server that is the batching worker, the one
            # thread every request-time model call runs on.
            sentence_vectors = self.collection.encode_passages_now(flat)
            similarity = sentence_vectors @ vector
            best: list[tuple[int, int, float]] = []
            row = 0
            for hs in spans:
                i = int(np.argmax(similarity[row : row + len(hs)]))
                best.append((*hs[i], float(similarity[row + i])))
                row += len(hs)

        retrieval_scores = np.array([h.score for h in hits], dtype=np.float32)
        sentence_scores = np.array([b[2] for b in best], dtype=np.float32)
        # The answering sentence's cosine similarity to the question: comparable across questions
        # and collections of one model, unlike the rank-relative blend.
        confidence = [max(0.0, min(1.0, s)) for s in sentence_scores.tolist()]
        reranked = [next((r.score for r in h.retrievers if r.retriever == "rerank"), None) for h in hits]
        if any(p is not None for p in reranked):
            # Already in the cross-encoder's order; its probability is the confidence (passages
            # past its depth keep their sentence's).
            order = np.arange(len(hits))
            confidence = [c if p is None else p for c, p in zip(confidence, reranked)]
        else:
            t = time.perf_counter()
            order = np.arange(len(hits))
            if self.sentence_weight > 0:
                blended = ((1 - self.sentence_weight) * _minmax(retrieval_scores)
                           + self.sentence_weight * _minmax(sentence_scores))
                order = np.argsort(-blended, kind="stable")
            timings["rerank"] = _ms(t)  # the final order's stage, as with a cross-encoder
        answers = []
        for i in order[:k]:
            start, end, _ = best[i]
            answers.append(Answer(hits[i], hits[i].text[start:end], start, end, confidence[i]))
        timings["total"] = _ms(started)
        return AskResult(answers, timings)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
