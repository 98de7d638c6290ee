"""Server settings: NEARDEX_* environment variables, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARDEX_")

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 50051
    # 0 disables the metrics endpoint (tests that run many servers in one process use it).
    metrics_port: int = 9100
    workers: int = 16
    max_top_k: int = 1000
    max_batch_documents: int = 10_000
    max_message_bytes: int = 64 * 1024 * 1024
    # Encoder for collections created without naming one.
    default_encoder: str = "torch"
    # Micro-batching of concurrent query embeddings; 0 or 1 turns it off.
    batch_max_size: int = 64
    batch_wait_ms: float = 0.0
    # Share of searches on approximate indexes whose results are checked against exact search.
    recall_sample_rate: float = 0.01
    # A sentence-transformers CrossEncoder folder; when set, Ask reranks its candidates with it.
    cross_encoder: str = ""
    # Share of Ask's order given to the answering sentence's similarity (0: retrieval order).
    ask_sentence_weight: float = 0.0
