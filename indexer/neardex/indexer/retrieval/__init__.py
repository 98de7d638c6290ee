"""Retrieval: the engine a collection runs over its store (writes chunked and embedded, reads
grouped into documents), fusion of dense and lexical candidates, and question answering."""
