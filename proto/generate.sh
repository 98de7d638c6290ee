#!/usr/bin/env bash
# Regenerates neardex/v1/*_pb2*.py(i) and *_connect.py from the .proto files, and the OpenAPI
# document of the HTTP API (neardex/v1/openapi.json). The proto path equals the import path, so
# the generated modules import each other as neardex.v1.* with no rewriting.
set -euo pipefail
cd "$(dirname "$0")"
# The Connect service code (neardex_connect.py, for the server's HTTP port) comes from
# protoc-gen-connectrpc, pinned like grpcio-tools, in its google.protobuf form.
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  --connectrpc_out=. --connectrpc_opt=protobuf=google neardex/v1/*.proto
# The same protoc (with the .proto's comments, as descriptions) for the OpenAPI document.
python generate_openapi.py
