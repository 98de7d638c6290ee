"""Writes neardex/v1/openapi.json, the OpenAPI 3.1 document of the HTTP API, from the .proto.

Callers outside Python generate clients from an OpenAPI document; the .proto stays the one
source of truth, so the document is generated from it (with its comments as descriptions) by the
same step that generates the protobuf code (`generate.sh`), committed, and compared by CI's
check-proto like the rest. The descriptor comes from protoc itself (grpc_tools, pinned), as a
descriptor set with source info: the comments are not in the generated neardex_pb2.

What it describes is what the server's HTTP port speaks: the Connect protocol's unary calls,
`POST /neardex.v1.Neardex/<Method>` with protobuf's canonical JSON mapping (lowerCamelCase field
names, 64-bit integers as strings, enums by name, Timestamp as RFC 3339, Struct and Value as any
JSON) and Connect's errors. Streaming methods are left out (Connect streams are enveloped, which
OpenAPI cannot describe). Every operation carries an example request that works against the
small collection the examples describe (tests/integration/test_openapi_served.py sends each one to
a real server); an example expected to fail names its error.

Run from anywhere: `python proto/generate_openapi.py [--out PATH]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO = "neardex/v1/neardex.proto"
OUT = HERE / "neardex" / "v1" / "openapi.json"
REF = "#/components/schemas/"

FDP = descriptor_pb2.FieldDescriptorProto
# SourceCodeInfo paths: the field numbers of FileDescriptorProto, DescriptorProto, ...
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2

# Connect's codes and the HTTP status each is sent with (connectrpc.com/docs/protocol, "Error
# codes"); the document lists the statuses neardex's errors reach (server/errors.py) and a default.
CONNECT_CODES = {
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "data_loss": 500, "unauthenticated": 401,
}
ERROR_STATUSES = {
    "400": "invalid_argument (a field of the request is wrong: the message names it) or failed_precondition",
    "401": "unauthenticated: the server has keys and the call carries none, or an unknown one",
    "403": "permission_denied: the key's role or collections do not allow the call",
    "404": "not_found: a collection, alias, snapshot or model named by the request does not exist",
    "409": "already_exists: the collection or alias to create exists",
    "429": "resource_exhausted: a limit of the request (batch, top_k, body size) or of the server's load;"
           " with the neardex-retry-after-ms header the same call may succeed after that long",
    "500": "internal: a server fault",
    "503": "unavailable: the collection's store cannot be reached",
    "504": "deadline_exceeded: Connect-Timeout-Ms passed before the call finished",
}

# Each operation's example request. Together they assume one collection, `docs`, holding the
# documents `faiss`, `sqlite`, `bm25` and `draft` (metadata `topic` and `year`), a collection
# `docs-old` and an alias `docs-previous`, and are meant to be sent in the document's order.
EXAMPLE_WORLD = (
    "The examples assume a collection `docs` holding the documents `faiss`, `sqlite`, `bm25` and `draft`"
    " (metadata `topic` and `year`), a collection `docs-old` and an alias `docs-previous`, and are sent in"
    " this document's order.")
EXAMPLES: dict[str, dict[str, Any]] = {
    "CreateCollection": {"name": "articles", "defaultMode": "SEARCH_MODE_HYBRID", "indexedKeys": ["topic"],
                         "language": "english", "ttlSeconds": "0"},
    "ListCollections": {},
    "GetCollection": {"name": "docs"},
    "DeleteCollection": {"name": "docs-old"},
    "IndexMetadata": {"collection": "docs", "keys": ["year"]},
    "UpdateCollection": {"name": "docs", "ttlSeconds": "2592000"},
    "CreateAlias": {"name": "docs-latest", "collection": "docs", "replace": True},
    "DeleteAlias": {"name": "docs-previous"},
    "ListAliases": {"collection": "docs"},
    "CreateSnapshot": {"collection": "docs"},
    "ListSnapshots": {"collection": "docs"},
    "DeleteSnapshot": {"collection": "docs", "name": "docs-20260101T000000-000.snapshot"},
    "RestoreSnapshot": {"collection": "docs", "snapshot": "docs-20260101T000000-000.snapshot", "target": "docs-restored"},
    "Upsert": {"collection": "docs", "documents": [
        {"id": "hnsw", "title": "HNSW", "text": "HNSW is a graph index for approximate nearest neighbour search.",
         "metadata": {"topic": "indexes", "year": 2016}, "expiresAt": "2099-01-01T00:00:00Z"}]},
    "Delete": {"collection": "docs", "ids": ["draft"]},
    "Get": {"collection": "docs", "ids": ["hnsw", "no-such-id"], "fields": {"metadataKeys": ["topic"]}},
    "Count": {"collection": "docs", "filter": {"conditions": {"topic": {"in": ["indexes", "storage"]}}}},
    "Scroll": {"collection": "docs", "limit": 2, "fields": {"noText": True}},
    "Search": {"collection": "docs", "text": "how are vectors searched", "topK": 3, "mode": "SEARCH_MODE_HYBRID",
               "filter": {"conditions": {"year": {"range": {"gte": 2000}}}}, "chunksPerDocument": 2},
    "BatchSearch": {"requests": [
        {"collection": "docs", "text": "a database in one file", "topK": 2, "mode": "SEARCH_MODE_DENSE"},
        {"collection": "docs", "text": "ranking documents by term frequency", "topK": 2,
         "mode": "SEARCH_MODE_LEXICAL", "groupBy": "metadata.topic"}]},
    "Ask": {"collection": "docs", "question": "Which library searches dense vectors?", "topK": 2},
    "Embed": {"texts": ["approximate nearest neighbour search"]},
    "SearchSimilar": {"collection": "docs", "positive": ["faiss"], "topK": 2},
    "Similarity": {"texts": ["vector index", "inverted index"], "others": ["FAISS", "BM25"]},
    "Tokenize": {"text": "FAISS searches vectors quickly.", "collection": "docs"},
    "Facet": {"collection": "docs", "key": "topic", "limit": 5},
    "UpdateMetadata": {"collection": "docs", "ids": ["faiss"], "set": {"reviewed": True}},
    "MigrateCollection": {"name": "docs", "to": "milvus://milvus.internal:19530"},
}
# Examples that document an error instead: the status and the body the server answers with.
MISSING_SNAPSHOT = "snapshot: collection 'docs' has no snapshot 'docs-20260101T000000-000.snapshot'"
ERROR_EXAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    "DeleteSnapshot": ("404", {"code": "not_found",
                               "message": MISSING_SNAPSHOT}),
    "RestoreSnapshot": ("404", {"code": "not_found",
                                "message": MISSING_SNAPSHOT}),
    # A store the server's operator did not allow (the example server serves no Milvus).
    "MigrateCollection": ("403", {"code": "permission_denied",
                                  "message": "to: 'milvus://milvus.internal:19530' is not a store this server may"
                                             " use: collections live in its data folder, in the Milvus instances it"
                                             " serves, or where its operator allows (--allow-store)"}),
}

# Well-known types by their canonical JSON form (protobuf's JSON mapping), written inline.
_INT64 = {"type": "string", "format": "int64"}
_UINT64 = {"type": "string", "format": "uint64"}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Struct": {"type": "object", "description": "Any JSON object."},
    ".google.protobuf.Value": {"description": "Any JSON value."},
    ".google.protobuf.ListValue": {"type": "array", "items": {}, "description": "Any JSON array."},
    ".google.protobuf.NullValue": {"type": "null"},
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time",
                                   "description": "RFC 3339, UTC (\"2030-01-01T00:00:00Z\")."},
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
                                  "description": "Seconds with an `s` suffix (\"1.5s\")."},
    ".google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated lowerCamelCase paths."},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Any": {"type": "object", "required": ["@type"],
                             "properties": {"@type": {"type": "string"}}},
    ".google.protobuf.DoubleValue": {"type": ["number", "null"], "format": "double"},
    ".google.protobuf.FloatValue": {"type": ["number", "null"], "format": "float"},
    ".google.protobuf.Int64Value": {**_INT64, "type": ["string", "null"]},
    ".google.protobuf.UInt64Value": {**_UINT64, "type": ["string", "null"]},
    ".google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "int32", "minimum": 0},
    ".google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    ".google.protobuf.StringValue": {"type": ["string", "null"]},
    ".google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}
SCALARS: dict[int, dict[str, Any]] = {
    FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    FDP.TYPE_INT64: _INT64, FDP.TYPE_SINT64: _INT64, FDP.TYPE_SFIXED64: _INT64,
    FDP.TYPE_UINT64: _UINT64, FDP.TYPE_FIXED64: _UINT64,
    FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FDP.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FDP.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
    FDP.TYPE_BOOL: {"type": "boolean"},
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def descriptor_set(proto_root: Path = HERE) -> descriptor_pb2.FileDescriptorSet:
    """The .proto as protoc reads it, comments included."""
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        code = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", f"--descriptor_set_out={out}",
                            "--include_source_info", "--include_imports", PROTO])
        if code != 0:
            raise SystemExit(f"protoc failed on {PROTO} (exit {code})")
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(out.read_bytes())
    return files


def _comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


class Generator:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.file = next(f for f in files.file if f.name == PROTO)
        self.comments: dict[tuple[int, ...], str] = {}
        for location in self.file.source_code_info.location:
            text = "\n".join(part for part in (_comment(location.leading_comments),
                                               _comment(location.trailing_comments)) if part)
            if text:
                self.comments[tuple(location.path)] = text
        self.package = f".{self.file.package}."
        self.messages: dict[str, tuple[descriptor_pb2.DescriptorProto, tuple[int, ...]]] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, tuple[int, ...]]] = {}
        for i, message in enumerate(self.file.message_type):
            self._collect(message, f".{self.file.package}", (FILE_MESSAGE, i))
        for i, enum in enumerate(self.file.enum_type):
            self.enums[f".{self.file.package}.{enum.name}"] = (enum, (FILE_ENUM, i))
        self.schemas: dict[str, Any] = {}

    def _collect(self, message: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]) -> None:
        name = f"{scope}.{message.name}"
        self.messages[name] = (message, path)
        for i, nested in enumerate(message.nested_type):
            self._collect(nested, name, (*path, MESSAGE_NESTED, i))
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, (*path, MESSAGE_ENUM, i))

    def _component(self, full_name: str) -> str:
        """Components by their name inside the package ("Filter", "IndexSpec.ParamsEntry")."""
        if not full_name.startswith(self.package):
            raise SystemExit(f"{full_name}: a type from another package has no JSON form here")
        return full_name[len(self.package):]

    def _ref(self, full_name: str) -> dict[str, Any]:
        if full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[full_name])
        name = self._component(full_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # reserved first: messages refer to themselves (Filter)
            self.schemas[name] = (self._enum(full_name) if full_name in self.enums else self._message(full_name))
        return {"$ref": REF + name}

    def _enum(self, full_name: str) -> dict[str, Any]:
        enum, path = self.enums[full_name]
        lines = [self.comments.get(path, "")] if path in self.comments else []
        for i, value in enumerate(enum.value):
            note = self.comments.get((*path, ENUM_VALUE, i))
            lines.append(f"- `{value.name}`" + (f": {note}" if note else ""))
        return {"type": "string", "enum": [value.name for value in enum.value],
                "description": "\n".join(lines)}

    def _value(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP, FDP.TYPE_ENUM):
            return self._ref(field.type_name)
        return dict(SCALARS[field.type])

    def _field(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        entry = self.messages.get(field.type_name, (None, ()))[0]
        if entry is not None and entry.options.map_entry:
            key, value = entry.field
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self._value(value)}
            if key.type != FDP.TYPE_STRING:
                schema["propertyNames"] = {"pattern": "^(true|false)$" if key.type == FDP.TYPE_BOOL
                                           else "^-?[0-9]+$"}
            return schema
        if field.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": self._value(field)}
        return self._value(field)

    def _message(self, full_name: str) -> dict[str, Any]:
        message, path = self.messages[full_name]
        properties: dict[str, Any] = {}
        oneofs: dict[int, list[str]] = {}
        for i, field in enumerate(message.field):
            schema = self._field(field)
            note = self.comments.get((*path, MESSAGE_FIELD, i))
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(field.json_name)
            if note:
                schema["description"] = note
            properties[field.json_name] = schema
        for index, members in oneofs.items():
            also = f"One of `{message.oneof_decl[index].name}`: at most one of " + ", ".join(
                f"`{m}`" for m in members) + "."
            for member in members:
                prior = properties[member].get("description")
                properties[member]["description"] = f"{prior}\n\n{also}" if prior else also
        schema: dict[str, Any] = {"type": "object"}
        if path in self.comments:
            schema["description"] = self.comments[path]
        schema["properties"] = properties
        if oneofs:
            # "At most one of": with one member present, the others are absent.
            schema["dependentSchemas"] = {
                member: {"properties": {other: False for other in members if other != member}}
                for members in oneofs.values() for member in members}
        return schema

    def document(self) -> dict[str, Any]:
        service_index, service = 0, self.file.service[0]  # the one service of the package
        service_path = (FILE_SERVICE, service_index)
        full_service = f"{self.file.package}.{service.name}"
        paths: dict[str, Any] = {}
        streaming = []
        for i, method in enumerate(service.method):
            if method.client_streaming or method.server_streaming:
                streaming.append(method.name)
                continue
            paths[f"/{full_service}/{method.name}"] = {"post": self._operation(
                method, self.comments.get((*service_path, SERVICE_METHOD, i)), service.name)}
        missing = sorted(set(EXAMPLES) - {m.name for m in service.method})
        if missing:
            raise SystemExit(f"examples for methods the service does not have: {', '.join(missing)}")
        description = "\n\n".join([
            self.comments.get(service_path, ""),
            f"Each unary RPC of `{full_service}` is `POST /{full_service}/<Method>` in the Connect protocol"
            " (connectrpc.com/docs/protocol): the request and the response are JSON in protobuf's canonical"
            " JSON mapping (lowerCamelCase field names, the .proto's own names accepted too; 64-bit integers as"
            " strings; enums by name;"
            " Timestamp as RFC 3339; Struct and Value as any JSON; fields at their default value left out"
            " of responses). Binary protobuf (`application/proto`) is accepted too. An error is a Connect"
            " error: `{\"code\": \"not_found\", \"message\": ...}` with the HTTP status of its code.",
            "With keys on (`--api-keys-file`), a call carries its key as `Authorization: Bearer KEY` or"
            " `api-key: KEY`; without keys none is needed. `Connect-Timeout-Ms` sets the call's deadline.",
            "Not described here: the streaming RPCs (" + ", ".join(f"`{name}`" for name in streaming)
            + "), which take Connect streams (`application/connect+json`) that OpenAPI cannot describe;"
            " every Connect client speaks them.",
            EXAMPLE_WORLD,
        ])
        return {
            "openapi": "3.1.0",
            "info": {"title": "neardex HTTP API", "version": self.file.package.rsplit(".", 1)[-1],
                     "description": description},
            "tags": [{"name": service.name}],
            "security": [{"bearer": []}, {"apiKey": []}, {}],
            "paths": paths,
            "components": {
                "schemas": {**dict(sorted(self.schemas.items())), **self._error_schemas()},
                "responses": {f"Http{status}": {"description": what, "content": {"application/json": {
                                  "schema": {"$ref": REF + "ConnectError"}}},
                              **({"headers": {"neardex-retry-after-ms": {"$ref": "#/components/headers/RetryAfterMs"}}}
                                 if status == "429" else {})}
                              for status, what in ERROR_STATUSES.items()},
                "headers": {"RetryAfterMs": {
                    "description": "The server is at a load limit: the same call may succeed after this many"
                                   " milliseconds.", "schema": {"type": "integer", "minimum": 0}}},
                "parameters": {
                    "ConnectProtocolVersion": {"name": "Connect-Protocol-Version", "in": "header", "required": False,
                                               "description": "The Connect protocol's version; 1.",
                                               "schema": {"type": "string", "enum": ["1"]}},
                    "ConnectTimeoutMs": {"name": "Connect-Timeout-Ms", "in": "header", "required": False,
                                         "description": "The call's deadline, in milliseconds.",
                                         "schema": {"type": "integer", "minimum": 1, "maximum": 9999999999}},
                },
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer",
                               "description": "An API key of the server's keys file, as `Authorization: Bearer KEY`."},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "api-key",
                               "description": "The same key in an `api-key` header."},
                },
            },
        }

    def _operation(self, method: descriptor_pb2.MethodDescriptorProto, comment: str | None,
                   tag: str) -> dict[str, Any]:
        if method.name not in EXAMPLES:
            raise SystemExit(f"{method.name}: no example request (add one to EXAMPLES in {Path(__file__).name})")
        request, response = self._ref(method.input_type), self._ref(method.output_type)
        operation: dict[str, Any] = {"operationId": method.name, "tags": [tag], "summary": method.name}
        if comment:
            operation["description"] = comment
        operation["parameters"] = [{"$ref": "#/components/parameters/ConnectProtocolVersion"},
                                   {"$ref": "#/components/parameters/ConnectTimeoutMs"}]
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": request, "example": EXAMPLES[method.name]}}}
        responses: dict[str, Any] = {"200": {"description": "The call's answer.",
                                             "content": {"application/json": {"schema": response}}}}
        for status in ERROR_STATUSES:
            responses[status] = {"$ref": f"#/components/responses/Http{status}"}
        if method.name in ERROR_EXAMPLES:
            status, body = ERROR_EXAMPLES[method.name]
            responses[status] = {"description": f"{ERROR_STATUSES[status]}. The example request's answer.",
                                 "content": {"application/json": {"schema": {"$ref": REF + "ConnectError"},
                                                                  "example": body}}}
        responses["default"] = {"description": "Any other Connect error.", "content": {"application/json": {
            "schema": {"$ref": REF + "ConnectError"}}}}
        operation["responses"] = responses
        return operation

    @staticmethod
    def _error_schemas() -> dict[str, Any]:
        return {
            "ConnectError": {
                "type": "object", "required": ["code"],
                "description": "A Connect error; the HTTP status follows from its code.",
                "properties": {
                    "code": {"type": "string", "enum": list(CONNECT_CODES),
                             "description": "\n".join(f"- `{code}`: HTTP {status}"
                                                      for code, status in CONNECT_CODES.items())},
                    "message": {"type": "string", "description": "What went wrong, naming the field at fault."},
                    "details": {"type": "array", "items": {"$ref": REF + "ConnectErrorDetail"}},
                },
            },
            "ConnectErrorDetail": {
                "type": "object", "required": ["type", "value"],
                "properties": {
                    "type": {"type": "string", "description": "The detail's protobuf message name."},
                    "value": {"type": "string", "contentEncoding": "base64",
                              "description": "The detail's protobuf encoding, base64."},
                    "debug": {"description": "The detail as JSON, where the server could write it."},
                },
            },
        }


def generate(proto_root: Path = HERE) -> str:
    """The document's text, as committed."""
    return json.dumps(Generator(descriptor_set(proto_root)).document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write it (default {OUT})")
    args = parser.parse_args(argv)
    args.out.write_text(generate(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
