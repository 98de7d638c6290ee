"""neardex's engine, in layers; each imports only from the layers listed before it.

- kernel (this folder): errors, deadlines, durable files, data-folder layout, documents, records
- query/: the filter language and query-text analysis every store reads
- stores/: the `Store` interface; local/ (SQLite + FAISS + FTS5) and milvus/ own their internals
- embedding/: models and encoders
- ingest/: readers, chunker, batch indexing
- retrieval/: the engine over a store, fusion, answers
- catalog/: the data folder's collections, aliases and snapshots
"""
