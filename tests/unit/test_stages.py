"""The one timer of a request's stages: timings add up per stage, an observer sees each stage and
store call start and end in nesting order (errors included), and without one nothing is told.
The client's trace metadata: carried when a span is current, nothing added otherwise, and the
client unchanged where OpenTelemetry cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from neardex.client.tracing import with_trace
from neardex.indexer import stages
from tests.support.paths import ROOT


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def enter(self, name: str) -> Any:
        self.events.append(("enter", name))
        return name

    def exit(self, handle: Any, error: BaseException | None) -> None:
        self.events.append(("exit", handle, type(error).__name__ if error else ""))

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any]) -> None:
        self.events.append(("record", name, str(end_ns - start_ns), *sorted(attributes)))


@stages.watch_calls("store", ["read", "fail"])
class Store:
    def read(self, x: int) -> int:
        return x * 2

    def fail(self) -> None:
        raise KeyError("gone")


def test_stages_time_once_for_the_response_and_the_observer() -> None:
    log, timings, store = Log(), stages.Timings(), Store()
    with stages.observed(log):
        with timings.stage("dense"):
            assert store.read(2) == 4
        with pytest.raises(KeyError), timings.stage("dense"):
            store.fail()
        stages.record("model", 10, 25, texts=1)
    assert set(timings) == {"dense"} and timings["dense"] > 0
    assert log.events == [
        ("enter", "dense"), ("enter", "store.read"), ("exit", "store.read", ""), ("exit", "dense", ""),
        ("enter", "dense"), ("enter", "store.fail"), ("exit", "store.fail", "KeyError"), ("exit", "dense", "KeyError"),
        ("record", "model", "15", "texts")]


def test_without_an_observer_nothing_is_told() -> None:
    log, timings = Log(), stages.Timings()
    with stages.observed(log):
        pass
    with timings.stage("fetch"):
        assert Store().read(1) == 2
    stages.record("model", 0, 1)
    assert log.events == [] and stages.observer() is None and "fetch" in timings


def test_client_metadata_carries_the_current_trace_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    metadata = (("authorization", "Bearer k"),)
    assert with_trace(metadata) == metadata
    with TracerProvider().get_tracer("t").start_as_current_span("caller") as span:
        carried = dict(with_trace(metadata))
    context = span.get_span_context()
    assert carried["authorization"] == "Bearer k"
    assert carried["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


def test_client_without_opentelemetry_sends_its_metadata_unchanged() -> None:
    # opentelemetry made unimportable, as in an install of the client alone.
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from neardex.client.tracing import with_trace\n"
            "from neardex.client import Client\n"
            "assert with_trace((('a', 'b'),)) == (('a', 'b'),)\n"
            "print('ok')")
    paths = ":".join(str(ROOT / p) for p in ("proto", "client"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": paths}, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_traces_asked_for_without_the_sdk_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from neardex.indexer.errors import FailedPrecondition
    from neardex.server.tracing import Tracing

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as where the extra is not installed
    with pytest.raises(FailedPrecondition, match=r'otlp_endpoint: .*pip install "neardex-server\[otlp\]"'):
        Tracing.export_to("http://127.0.0.1:4317")
