"""Server settings: NEARDEX_* environment variables, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from neardex.indexer.query.analysis import DEFAULT_MAX_QUERY_TERMS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARDEX_")

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 50051
    # HTTP/JSON (the Connect protocol's unary shape) beside gRPC: -1 turns it off, 0 picks a free port.
    http_port: int = -1
    # The web console at / of the HTTP port (static files; its calls are the API's, with their keys).
    console: bool = True
    # The HTTP port's edge: a connection with no complete request headers (or, between requests,
    # no new request) for this long is closed; a body must arrive whole within its own limit.
    http_idle_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    # Connections open at once on the HTTP port; past it new ones are closed on accept.
    http_max_connections: int = 1024
    # A TLS handshake not finished within this long is abandoned.
    tls_handshake_timeout_s: float = 5.0
    # 0 disables the metrics endpoint (tests that run many servers in one process use it).
    # Beside the gRPC port: the exporter range 9100-9999 is allocated in full, 9100 to node_exporter.
    metrics_port: int = 50052
    # Where the metrics port listens; empty: the same host as the gRPC port. With API keys on, a
    # scrape needs a key of role metrics (or admin).
    metrics_host: str = ""
    # Calls held at once (running, or waiting for the model); past it RESOURCE_EXHAUSTED at once.
    max_concurrent_rpcs: int = 64
    # A call whose caller sends no message for this long (a unary request never sent, a stream's
    # next message) is cancelled.
    request_timeout_s: float = 30.0
    # A gRPC connection with no call for this long is closed.
    grpc_idle_timeout_s: float = 300.0
    # Expired documents are deleted (purged) from open collections this often; reads leave them out
    # at once whatever this is, it only bounds how long their space is held. 0 turns it off.
    purge_interval_s: float = 30.0
    max_top_k: int = 1000
    max_batch_documents: int = 10_000
    # Searches in one BatchSearch call.
    max_batch_searches: int = 256
    # Texts in each list of one Similarity call.
    max_similarity_texts: int = 256
    # Distinct terms of a lexical (or hybrid) query after analysis; past it INVALID_ARGUMENT.
    max_query_terms: int = DEFAULT_MAX_QUERY_TERMS
    max_message_bytes: int = 64 * 1024 * 1024
    # Encoder for collections created without naming one.
    default_encoder: str = "auto"
    # Micro-batching of concurrent query embeddings; 0 or 1 turns it off.
    batch_max_size: int = 64
    batch_wait_ms: float = 0.0
    # Texts waiting for the model at most; past it a query is refused with RESOURCE_EXHAUSTED.
    batch_max_queue: int = 4096
    # Texts of an upsert per model call: a query arriving during indexing waits for at most one.
    document_batch_size: int = 8
    # Where models run: auto (a CUDA device when torch sees one), cpu, cuda or cuda:N.
    device: str = "auto"
    # Share of searches on approximate indexes whose results are checked against exact search.
    recall_sample_rate: float = 0.01
    # A sentence-transformers CrossEncoder (a folder or a Hugging Face id): the default rerank stage of
    # Ask (after a request's own and its collection's), over every passage Ask reads.
    cross_encoder: str = ""
    # Share of Ask's order given to the answering sentence's similarity (0: retrieval order).
    ask_sentence_weight: float = 0.0
    # Milvus instances whose neardex collections this server serves besides its own
    # (milvus://host:port, or a milvus-lite .db file); as JSON in NEARDEX_MILVUS: ["milvus://m:19530"].
    milvus: list[str] = []
    # Stores a CreateCollection request may name besides the data folder (and milvus-lite .db
    # files directly inside it) and the Milvus instances above: milvus://host:port instances,
    # milvus-lite .db files, and folders where .db files may be made; as JSON in NEARDEX_ALLOW_STORE.
    allow_store: list[str] = []
    # Models a request may name besides the bundled one: folders under this one (unset: none).
    model_dir: Path | None = None
    # API keys file (see `neardex keys`); unset: every call is allowed, as on a laptop.
    api_keys_file: Path | None = None
    # TLS: certificate chain and private key (PEM); with a client CA, client certificates are
    # required too (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # OpenTelemetry traces to this OTLP gRPC collector (http://host:4317); empty: the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT, and without it no traces (the SDK is not even imported).
    otlp_endpoint: str = ""
