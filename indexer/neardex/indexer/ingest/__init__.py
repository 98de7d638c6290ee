"""Ingest: documents read from collections on disk (files, JSONL, CSV, BEIR), split into chunks
measured in the model's own tokens, and fed to a collection in batches (in process or on Ray)."""
