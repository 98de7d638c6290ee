#!/usr/bin/env bash
# Regenerates neardex/v1/*_pb2*.py(i) and *_connect.py from the .proto files. The proto path equals the import
# path, so the generated modules import each other as neardex.v1.* with no rewriting.
set -euo pipefail
cd "$(dirname "$0")"
# The Connect service code (neardex_connect.py, for the server's HTTP port) comes from
# protoc-gen-connectrpc, pinned like grpcio-tools, in its google.protobuf form.
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  --connectrpc_out=. --connectrpc_opt=protobuf=google neardex/v1/*.proto
