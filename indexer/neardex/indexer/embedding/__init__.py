"""Embedding: the model behind a collection, loaded once per process, its encoders (torch with a
measured precision, ONNX int8) and the encoding of chunks into vectors. Nothing here knows about
storage."""
