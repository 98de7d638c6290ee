#!/usr/bin/env bash
# Regenerates neardex/v1/*_pb2*.py(i) from the .proto files. The proto path equals the import
# path, so the generated modules import each other as neardex.v1.* with no rewriting.
set -euo pipefail
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. neardex/v1/*.proto
