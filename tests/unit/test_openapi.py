"""The OpenAPI document of the HTTP API: a valid OpenAPI 3.1 document, the one the generator makes
from the .proto today, an operation for every unary RPC, and schemas that accept exactly what
protobuf's JSON mapping writes for every field of every message (each message filled in, each
oneof member in turn, and turned to JSON by protobuf itself)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from openapi_spec_validator import validate

from neardex.v1 import neardex_pb2
from tests.support.openapi import DOCUMENT, document, generator, schema_of, validator

SERVICE = neardex_pb2.DESCRIPTOR.services_by_name["Neardex"]


def test_document_is_valid_openapi_31() -> None:
    assert document()["openapi"] == "3.1.0"
    validate(document())


def test_committed_document_is_what_the_proto_generates() -> None:
    assert generator().generate() == DOCUMENT.read_text(encoding="utf-8"), \
        "proto/neardex/v1/openapi.json is stale: run `make proto`"


def test_every_unary_rpc_is_one_operation_and_streams_are_named_as_left_out() -> None:
    doc = document()
    unary = {m.name for m in SERVICE.methods if not (m.client_streaming or m.server_streaming)}
    streams = {m.name for m in SERVICE.methods} - unary
    assert {path.rsplit("/", 1)[1] for path in doc["paths"]} == unary
    assert streams and all(f"`{name}`" in doc["info"]["description"] for name in streams)
    for method in SERVICE.methods:
        if method.name not in unary:
            continue
        operation = doc["paths"][f"/neardex.v1.Neardex/{method.name}"]["post"]
        assert set(operation) >= {"operationId", "requestBody", "responses"}
        body = operation["requestBody"]["content"]["application/json"]
        assert body["schema"] == schema_of(method.input_type.name)
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == \
            schema_of(method.output_type.name)
        for status in ("400", "401", "403", "404", "429", "default"):
            assert status in operation["responses"], (method.name, status)


def test_security_schemes_are_the_keys_the_server_takes() -> None:
    schemes = document()["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "api-key"}
    assert {} in document()["security"]  # a server without keys takes calls without one


def test_comments_of_the_proto_are_descriptions() -> None:
    schemas = document()["components"]["schemas"]
    assert "dotted paths" in schemas["Filter"]["properties"]["conditions"]["description"]
    assert "the collection's default mode" in schemas["SearchMode"]["description"]
    search = document()["paths"]["/neardex.v1.Neardex/Ask"]["post"]
    assert search["description"].startswith("Question-answering retrieval")


def test_examples_are_valid_requests_and_error_examples_valid_errors() -> None:
    for path, item in document()["paths"].items():
        operation = item["post"]
        body = operation["requestBody"]["content"]["application/json"]
        errors = list(validator(body["schema"]).iter_errors(body["example"]))
        assert not errors, f"{path}: {errors[0].message}"
        for status, response in operation["responses"].items():
            example = response.get("content", {}).get("application/json", {}).get("example")
            if example is not None:
                assert status != "200"
                validator(schema_of("ConnectError")).validate(example)


def _fill(descriptor: Descriptor, variant: int, depth: int = 0) -> Message:
    """A message with every field set to a value other than its default (one member of each
    oneof: the variant-th), nested messages to depth 2."""
    message = message_factory.GetMessageClass(descriptor)()
    skipped = set()
    for oneof in descriptor.oneofs:
        if oneof.name != f"_{oneof.fields[0].name}":  # proto3 `optional` is a oneof of one field
            chosen = oneof.fields[variant % len(oneof.fields)]
            skipped |= {f.name for f in oneof.fields if f.name != chosen.name}
    for field in descriptor.fields:
        if field.name not in skipped:
            _set(message, field, variant, depth)
    return message


def _scalar(field: FieldDescriptor) -> Any:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return field.enum_type.values[-1].number
    return {FieldDescriptor.CPPTYPE_BOOL: True, FieldDescriptor.CPPTYPE_STRING: "s" if field.type != field.TYPE_BYTES
            else b"\x01", FieldDescriptor.CPPTYPE_FLOAT: 0.5, FieldDescriptor.CPPTYPE_DOUBLE: 0.25}.get(kind, 7)


def _set(message: Message, field: FieldDescriptor, variant: int, depth: int) -> None:
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if is_map:
        value_field = field.message_type.fields_by_name["value"]
        target = getattr(message, field.name)
        if value_field.message_type is not None:
            if depth < 2:
                target["k"].CopyFrom(_fill(value_field.message_type, variant, depth + 1))
        else:
            target["k"] = _scalar(value_field)
        return
    if field.message_type is not None:
        full = field.message_type.full_name
        if field.is_repeated:
            if depth < 2 or full.startswith("google."):
                element = getattr(message, field.name).add()
                _message_value(element, field.message_type, variant, depth)
        elif depth < 2 or full.startswith("google."):
            _message_value(getattr(message, field.name), field.message_type, variant, depth)
        return
    if field.is_repeated:
        getattr(message, field.name).append(_scalar(field))
    else:
        setattr(message, field.name, _scalar(field))


def _message_value(target: Message, descriptor: Descriptor, variant: int, depth: int) -> None:
    full = descriptor.full_name
    if full == "google.protobuf.Struct":
        target.update({"a": 1, "b": [True, None, "x"], "c": {"d": 1.5}})
    elif full == "google.protobuf.Value":
        target.list_value.extend([1, "x", None, {"k": False}])
    elif full == "google.protobuf.ListValue":
        target.extend([1, "x"])
    elif full == "google.protobuf.Timestamp":
        target.FromJsonString("2030-01-02T03:04:05.123Z")
    else:
        target.CopyFrom(_fill(descriptor, variant, depth + 1))


@pytest.mark.parametrize("name", sorted(neardex_pb2.DESCRIPTOR.message_types_by_name))
def test_schema_accepts_what_protobuf_writes_for_every_field(name: str) -> None:
    descriptor = neardex_pb2.DESCRIPTOR.message_types_by_name[name]
    assert name in document()["components"]["schemas"], f"{name}: no operation reaches it"
    check = validator(schema_of(name))
    variants = max([len(o.fields) for o in descriptor.oneofs] or [1])
    for variant in range(variants):
        written = json_format.MessageToDict(_fill(descriptor, variant))
        errors = list(check.iter_errors(written))
        assert not errors, f"{name} {written}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_schemas_refuse_what_protobuf_would_not_write() -> None:
    search = validator(schema_of("SearchRequest"))
    assert search.is_valid({"collection": "c", "text": "q", "mode": "SEARCH_MODE_DENSE", "topK": 3})
    assert not search.is_valid({"collection": "c", "top_k": 3})  # not the JSON name
    assert not search.is_valid({"collection": "c", "mode": 1})  # enums by name
    assert not search.is_valid({"text": "q", "vector": {"values": [0.5]}})  # one member of a oneof
    assert not validator(schema_of("CountResponse")).is_valid({"count": 3})  # int64 is a string
    assert not validator(schema_of("Document")).is_valid({"expiresAt": "tomorrow"})
