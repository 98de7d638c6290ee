"""Embedding: the model behind a collection (which model a name means, its revision and its
prompts: sources.py), loaded once per process, its encoders (torch with a measured precision, ONNX
int8) and the encoding of chunks into vectors. Nothing here knows about storage."""
