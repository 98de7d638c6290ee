"""Fuzzing every RPC of neardex.v1.Neardex against a real `neardex serve`.

Requests are built from the proto's own descriptors, so a new field or RPC is fuzzed without a
change here: every field gets random and extreme values (empty, huge, control characters, NaN and
infinite numbers, integer extremes, unknown enum values, duplicate ids, deep and wide metadata),
Struct values (metadata, filter values) hold NaN, infinities and control characters at any depth,
and some requests carry bytes that are no valid message at all (a string field that is not UTF-8,
a truncated message). Other requests carry a list at, or one past, each documented maximum (top_k,
documents in a batch, searches in a batch, similarity texts, values in a filter list, filter
depth, conditions in a filter). Requests go to a collection in the data folder and to one in
milvus-lite (when pymilvus is installed). Each request must end with an answer or a status other than INTERNAL and
UNKNOWN whose message starts with the field it is about; the server must not die, and must still
answer a normal search correctly at the end.

    .venv/bin/python -m tests.support.fuzz_requests --requests 10000 [--seed 1] [--json FILE]

`tests/e2e/test_fuzz_rpcs.py` runs a short fixed-seed form in `make test`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor as pbd
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from neardex.indexer.query.filters import MAX_CONDITIONS, MAX_DEPTH, MAX_VALUES
from neardex.server.settings import Settings
from neardex.v1 import neardex_pb2 as pb
from tests.support.processes import free_port, start_serve, stop_process

SERVICE = pb.DESCRIPTOR.services_by_name["Neardex"]
MILVUS = importlib.util.find_spec("pymilvus") is not None
# Collections the fuzzer aims at (so requests get past the name check), and one it never names:
# the canary searched at the end. "mdocs" lives in milvus-lite, "vdocs" holds its own vectors.
STORED = ["docs", "mdocs"] if MILVUS else ["docs"]
NAMES = [*STORED, *STORED, "vdocs", "nope", "", "../etc", "a" * 65, "docs\x00", "DOCS"]
CANARY = "canary"
CONTROL_TEXT = ["\x00", "a\x01b", "\x08\x0c\x0b", "line\nbreak\r", "\x1b[31m\x1f\x7f", 'quo"te\\back\'slash', "\t"]
HUGE_TEXT = ["x" * 70_000, "y" * 1_000_000]
SPECIAL_TEXT = ["", " ", "nul\x00inside", "a" * 5000, "word " * 400, "\u202eRTL\u202c", "🚀" * 50,
                "moon landing", "\ud7ff\ue000", *CONTROL_TEXT, *HUGE_TEXT]
# Fields always given a value (empty is among them), so that most requests name a collection and
# documents have ids and text, and get past those checks to the rest of their fields.
ALWAYS_SET = {"collection", "id", "text"}
# The documented maxima of a server with default settings.
MAXIMA = {name: Settings.model_fields[name].default
          for name in ("max_top_k", "max_batch_documents", "max_batch_searches", "max_similarity_texts")}
INT32 = [0, 1, -1, 2, 10, 1000, MAXIMA["max_top_k"] + 1, 100_000, 2**31 - 1, -(2**31)]
INT64 = [0, 1, -1, 2**63 - 1, -(2**63), 2**53 + 1]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
FLOATS = [0.0, -0.0, 1.0, -1.0, *NON_FINITE, 1e38, -1e38, 1e-45, 3.4e38, 1e308]
# A status code the server may answer with, and the start of a message that names a field.
# (A quoted key is Python's repr of it, escapes and all.)
_FIELD = r"[a-z_]\w*(\.\w+|\[(\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\])*"
FIELD_FIRST = re.compile(rf"^{_FIELD}(, {_FIELD})*: ")
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# A store refusing what validation let through (the Milvus store's words for it): also a problem.
STORE_REFUSED = "store: Milvus at "


# -- strategies from descriptors --------------------------------------------------------------


def keys() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=10), st.sampled_from(["year", "tags", *CONTROL_TEXT, "k" * 100_000]))


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.floats(), st.sampled_from(NON_FINITE),
                        st.integers(-(2**53), 2**53), st.text(max_size=30),
                        st.sampled_from(["river", "", "x" * 2000, *CONTROL_TEXT]))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=8),
                                                        st.dictionaries(keys(), inner, max_size=8)),
                        max_leaves=max_leaves)


def deep_struct(depth: int) -> struct_pb2.Struct:
    """A struct nested `depth` levels: past protobuf's own recursion limit it cannot be parsed."""
    inner = struct_pb2.Struct()
    for _ in range(min(depth, 90)):
        outer = struct_pb2.Struct()
        outer.fields["k"].struct_value.CopyFrom(inner)
        inner = outer
    return inner


def struct_strategy() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(data: dict[str, Any]) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        struct.update(data)
        return struct

    wide = st.dictionaries(keys(), json_values(), max_size=6).map(build)
    return st.one_of(wide, st.integers(1, 90).map(deep_struct),
                     st.just({f"k{i}": i for i in range(2000)}).map(build),
                     st.sampled_from([{"year": 2001}, {"tags": ["river"]}, {"year": "abc"}, {"year": float("nan")},
                                      {"a": {"b": [1, {"c": float("-inf")}]}}, {"tags": ["ok", "\x00\x1f"]}]).map(build))


def scalar(fd: pbd.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == fd.TYPE_STRING:
        if fd.name == "collection":
            # Mostly a stored collection, so that requests get past the name to their other fields.
            return st.one_of(st.sampled_from(STORED), st.sampled_from(STORED), st.sampled_from(NAMES),
                             st.text(min_size=1, max_size=20)).filter(lambda s: s != CANARY)
        if fd.name == "name":  # what is created, deleted, aliased: never the collections searched
            return st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=20)).filter(
                lambda s: s not in (CANARY, *STORED))
        if fd.name in ("id", "ids", "positive", "negative"):
            return st.one_of(st.sampled_from(["d1", "d1", "", " ", "x" * 2000, *CONTROL_TEXT, *HUGE_TEXT]),
                             st.text(min_size=1, max_size=8))
        return st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=40))
    if t == fd.TYPE_BOOL:
        return st.booleans()
    if t == fd.TYPE_ENUM:
        return st.integers(-3, 12)
    if t in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        width = 32 if t == fd.TYPE_FLOAT else 64
        return st.one_of(st.sampled_from(FLOATS), st.floats(width=width))
    if t in (fd.TYPE_INT32, fd.TYPE_SINT32, fd.TYPE_SFIXED32):
        return st.one_of(st.sampled_from(INT32), st.integers(-(2**31), 2**31 - 1))
    if t in (fd.TYPE_INT64, fd.TYPE_SINT64, fd.TYPE_SFIXED64):
        return st.one_of(st.sampled_from(INT64), st.integers(-(2**63), 2**63 - 1))
    if t in (fd.TYPE_UINT32, fd.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (fd.TYPE_UINT64, fd.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    raise NotImplementedError(f"field type {t} of {fd.full_name}")


def message_strategy(desc: pbd.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    cls = _class_of(desc)
    if desc.full_name == "google.protobuf.Struct":
        return struct_strategy()
    if desc.full_name == "google.protobuf.Value":
        return json_values().map(json_to_value)
    if desc.full_name == "google.protobuf.ListValue":
        return st.lists(json_values(10), max_size=6).map(_list_value)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for fd in desc.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key = scalar(fd.message_type.fields_by_name["key"])
            value_fd = fd.message_type.fields_by_name["value"]
            value = (message_strategy(value_fd.message_type, depth + 1) if value_fd.message_type is not None
                     else scalar(value_fd))
            fields[fd.name] = st.dictionaries(key, value, max_size=4 if depth < 2 else 1)
            continue
        if fd.message_type is not None:
            element = message_strategy(fd.message_type, depth + 1) if depth < 3 else st.just(None)
        elif fd.name == "values":  # vector values: the collection's dimension now and then
            element = scalar(fd)
            fields[fd.name] = st.one_of(st.lists(element, max_size=8),
                                        st.lists(st.floats(-1, 1, width=32), min_size=384, max_size=384),
                                        st.lists(element, min_size=384, max_size=384))
            continue
        else:
            element = scalar(fd)
        if fd.is_repeated:
            fields[fd.name] = st.lists(element, max_size=6 if depth < 2 else 2)
        elif fd.name in ALWAYS_SET:
            fields[fd.name] = element
        else:
            fields[fd.name] = st.one_of(st.none(), element)
    always = {name: fields.pop(name) for name in ALWAYS_SET & set(fields)}
    return st.fixed_dictionaries(always, optional=fields).map(lambda values: _build(cls, values))


def _build(cls: Any, values: dict[str, Any]) -> Any:
    message = cls()
    for name, value in values.items():
        if value is None:
            continue
        fd = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            is_message = fd.message_type.fields_by_name["value"].message_type is not None
            for k, v in value.items():
                if is_message:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif fd.is_repeated:
            items = [item for item in value if item is not None]
            if fd.message_type is not None:
                for item in items:
                    target.add().CopyFrom(item)
            else:
                target.extend(items)
        elif fd.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def json_to_value(v: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    struct = struct_pb2.Struct()
    struct.update({"v": v})
    value.CopyFrom(struct.fields["v"])
    return value


def _list_value(items: list[Any]) -> struct_pb2.ListValue:
    lv = struct_pb2.ListValue()
    lv.extend(items)
    return lv


def _class_of(desc: pbd.Descriptor) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def _invalid_utf8(message: Any) -> bytes:
    """The message with one of its top-level string fields repeated as bytes that are not UTF-8."""
    strings = [fd for fd in message.DESCRIPTOR.fields if fd.type == fd.TYPE_STRING and not fd.is_repeated]
    data = message.SerializeToString()
    if not strings:
        return data + b"\xff"  # a truncated, malformed tail
    fd = strings[0]
    bad = b"\xc3\x28\xed\xa0\x80"  # an invalid continuation, and a UTF-8-encoded surrogate
    return data + bytes([(fd.number << 3) | 2, len(bad)]) + bad


@dataclass
class Findings:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def note(self, method: str, code: grpc.StatusCode, details: str, request: Any) -> None:
        self.requests += 1
        self.statuses[code.name] += 1
        self.by_method[f"{method} {code.name}"] += 1
        if code in BAD_CODES or (code is grpc.StatusCode.FAILED_PRECONDITION and details.startswith(STORE_REFUSED)):
            self.problems.append(f"{method}: {code.name}: {details[:200]} for {str(request)[:300]!r}")
        elif code is not grpc.StatusCode.OK and code is not grpc.StatusCode.DEADLINE_EXCEEDED \
                and not FIELD_FIRST.match(details):
            self.problems.append(f"{method}: {code.name} names no field: {details[:200]!r}")


# -- lists at and past each documented maximum --------------------------------------------------


def _numbers(count: int) -> struct_pb2.ListValue:
    return struct_pb2.ListValue(values=[struct_pb2.Value(number_value=2000 + i) for i in range(count)])


def _nested(depth: int) -> pb.Filter:
    flt = pb.Filter(conditions={"year": pb.Condition(exists=True)})
    for level in range(depth):
        flt = pb.Filter(**{("all", "any", "none")[level % 3]: [flt]})
    return flt


def _conditions(count: int) -> pb.Filter:
    return pb.Filter(any=[pb.Filter(conditions={"year": pb.Condition(range=pb.Range(gte=2000 + i))})
                          for i in range(count)])


# Each: (its maximum, a request of n for a collection).
AT_LIMIT: dict[str, tuple[int, Any]] = {
    "top_k": (MAXIMA["max_top_k"], lambda n, c: ("Search", pb.SearchRequest(collection=c, text="river", top_k=n))),
    "batch_documents": (MAXIMA["max_batch_documents"], lambda n, c: ("Upsert", pb.UpsertRequest(
        collection="vdocs", documents=[pb.Document(id=f"bulk{i}", vector=pb.Vector(values=[1.0, 0.5]))
                                       for i in range(n)]))),
    "batch_searches": (MAXIMA["max_batch_searches"], lambda n, c: ("BatchSearch", pb.BatchSearchRequest(
        requests=[pb.SearchRequest(collection=c, text=f"river {i % 4}", top_k=3) for i in range(n)]))),
    "similarity_texts": (MAXIMA["max_similarity_texts"], lambda n, c: ("Similarity", pb.SimilarityRequest(
        texts=[f"river {i % 4}" for i in range(n)]))),
    "filter_values": (MAX_VALUES, lambda n, c: ("Count", pb.CountRequest(
        collection=c, filter=pb.Filter(conditions={"year": pb.Condition(**{"in": _numbers(n)})})))),
    "filter_depth": (MAX_DEPTH, lambda n, c: ("Count", pb.CountRequest(collection=c, filter=_nested(n)))),
    "filter_conditions": (MAX_CONDITIONS, lambda n, c: ("Search", pb.SearchRequest(
        collection=c, text="river", top_k=5, filter=_conditions(n)))),
}


def limit_requests() -> st.SearchStrategy[tuple[str, Any, Any]]:
    """A request with one list at its documented maximum, or one past it."""
    def build(kind: str, past: bool, collection: str) -> tuple[str, Any, Any]:
        maximum, make = AT_LIMIT[kind]
        method, message = make(maximum + past, collection)
        return method, message, 1

    return st.builds(build, st.sampled_from(sorted(AT_LIMIT)), st.booleans(), st.sampled_from(STORED))


def request_strategy() -> st.SearchStrategy[tuple[str, bytes | list[bytes], Any]]:
    per_method = [limit_requests()]
    for method in SERVICE.methods:
        messages = message_strategy(method.input_type)
        if method.client_streaming:
            per_method.append(st.tuples(st.just(method.name), st.lists(messages, min_size=0, max_size=3),
                                        st.booleans()))
        else:
            per_method.append(st.tuples(st.just(method.name), messages, st.integers(0, 19)))
    return st.one_of(per_method).map(_encode)


def _encode(item: tuple[str, Any, Any]) -> tuple[str, bytes | list[bytes], Any]:
    method, message, corrupt = item
    if isinstance(message, list):
        return method, [m.SerializeToString() for m in message], message
    data = _invalid_utf8(message) if corrupt == 0 else message.SerializeToString()
    return method, data, message


def fuzz(target: str, requests: int, seed_value: int, findings: Findings) -> None:
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20),
                                                     ("grpc.max_send_message_length", 64 << 20)])
    stubs = {}
    for method in SERVICE.methods:
        path = f"/{SERVICE.full_name}/{method.name}"
        stubs[method.name] = (channel.stream_stream(path) if method.client_streaming
                              else channel.unary_stream(path) if method.server_streaming
                              else channel.unary_unary(path))

    @seed(seed_value)
    @settings(max_examples=requests, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(request_strategy())
    def send(item: tuple[str, bytes | list[bytes], Any]) -> None:
        method, data, message = item
        call = stubs[method]
        try:
            if isinstance(data, list):
                list(call(iter(data), timeout=120))
            elif SERVICE.methods_by_name[method].server_streaming:
                list(call(data, timeout=120))
            else:
                call(data, timeout=120)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
        findings.note(method, code, details, message)

    try:
        send()
    finally:
        channel.close()


def milvus_file(work: Path) -> str:
    return str(work / "milvus.db")


def seed_server(target: str, work: Path) -> None:
    from neardex.client import Client

    with Client(target, timeout=120) as client:
        for name in ("docs", CANARY):
            client.create_collection(name)
        if MILVUS:
            client.create_collection("mdocs", store=milvus_file(work), indexed_keys=["tags"])
        client.create_collection("vdocs", model="none", dimension=2)
        for name in STORED:
            client.upsert(name, [{"id": f"d{i}", "text": f"Document {i} about rivers and the moon landing.",
                                  "metadata": {"year": 2000 + i, "tags": ["river", f"t{i}"]}} for i in range(20)])
        client.upsert(CANARY, [
            {"id": "apollo", "text": "Apollo 11 landed on the Moon on 20 July 1969."},
            {"id": "nile", "text": "The Nile flows north into the Mediterranean Sea."},
        ])


def canary_answers(target: str) -> bool:
    from neardex.client import Client

    with Client(target, timeout=120) as client:
        return client.search(CANARY, "when did people land on the moon", k=1).hits[0].id == "apollo"


def run(requests: int, seed_value: int, work: Path) -> tuple[Findings, bool, bool]:
    """(findings, the server still runs, the canary search answers right)."""
    port = free_port()
    proc = start_serve(work / "data", port, 0, *(["--milvus", milvus_file(work)] if MILVUS else []))
    target = f"127.0.0.1:{port}"
    findings = Findings()
    try:
        seed_server(target, work)
        fuzz(target, requests, seed_value, findings)
        alive = proc.poll() is None
        return findings, alive, alive and canary_answers(target)
    finally:
        stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neardex-fuzz-") as tmp:
        findings, alive, canary = run(args.requests, args.seed, Path(tmp))
    print(f"{findings.requests} requests in {time.perf_counter() - started:.0f} s; statuses:"
          f" {dict(findings.statuses.most_common())}; server alive: {alive}; normal search right after: {canary};"
          f" problems: {len(findings.problems)}")
    for problem in findings.problems[:50]:
        print("  " + problem)
    if args.json:
        args.json.write_text(json.dumps({"requests": findings.requests, "statuses": findings.statuses, "by_method": findings.by_method,
                                         "alive": alive, "canary": canary, "problems": findings.problems}, indent=2))


if __name__ == "__main__":
    main()
