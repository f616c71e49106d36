"""``--otel``: the request tracer, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import context, trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from pounce.config import Config  # noqa: E402
from pounce.observability.tracing import RequestTracer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[tuple[RequestTracer, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield RequestTracer(provider), exporter, provider
    provider.shutdown()


def scope(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http", "method": "GET", "path": "/items/7", "query_string": b"q=1", "scheme": "https",
        "http_version": "2", "server": ("10.0.0.1", 8443), "client": ("10.0.0.9", 50123),
        "headers": [(b"host", b"api.example.org:8443"), (b"user-agent", b"curl/8")],
    }
    base.update(extra)
    return base


def test_one_server_span_per_request_with_semantic_convention_attributes(spans: Any) -> None:
    tracer, exporter, _ = spans
    request_scope = scope()
    traced = tracer.start_request(request_scope)
    request_scope["client"] = ("203.0.113.5", 4444)  # as --proxy-headers rewrites it while the app runs
    traced.end(200)
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"
    assert span.kind is SpanKind.SERVER
    assert span.parent is None
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "url.query": "q=1",
        "url.scheme": "https",
        "network.protocol.name": "http",
        "network.protocol.version": "2",
        "server.address": "api.example.org",
        "server.port": 8443,
        "network.peer.address": "10.0.0.9",
        "network.peer.port": 50123,
        "user_agent.original": "curl/8",
        "client.address": "203.0.113.5",
        "client.port": 4444,
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "pounce"


def test_the_callers_trace_is_continued_from_traceparent(spans: Any) -> None:
    tracer, exporter, _ = spans
    headers = [(b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()), (b"tracestate", b"vendor=1")]
    tracer.start_request(scope(headers=headers)).end(204)
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert span.context.trace_state.get("vendor") == "1"
    assert span.attributes is not None and span.attributes["server.address"] == "10.0.0.1"  # no host header


def test_the_span_is_current_while_the_app_runs_and_app_spans_nest_under_it(spans: Any) -> None:
    tracer, exporter, provider = spans
    before = context.get_current()
    traced = tracer.start_request(scope())
    assert trace.get_current_span() is traced.span
    with provider.get_tracer("app").start_as_current_span("db query"):
        pass
    traced.end(200)
    assert context.get_current() == before
    app_span, server_span = exporter.get_finished_spans()
    assert app_span.name == "db query"
    assert app_span.parent is not None and app_span.parent.span_id == server_span.context.span_id
    assert app_span.context.trace_id == server_span.context.trace_id


def test_errors_and_5xx_mark_the_span(spans: Any) -> None:
    tracer, exporter, _ = spans
    tracer.start_request(scope()).end(503)
    tracer.start_request(scope()).end(500, error=KeyError("k"))
    unavailable, failed = exporter.get_finished_spans()
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.attributes is not None and unavailable.attributes["error.type"] == "503"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "KeyError"
    assert [e.name for e in failed.events] == ["exception"]


def test_unknown_methods_websockets_and_timestamps(spans: Any) -> None:
    import time

    tracer, exporter, _ = spans
    head_parsed = time.monotonic() - 0.25
    traced = tracer.start_request(scope(method="BREW"), started=head_parsed)
    traced.end(418)
    traced.end(418)  # once only
    ws = scope(type="websocket", scheme="wss", http_version="1.1")
    del ws["method"]
    tracer.start_request(ws).end()
    brew, websocket = exporter.get_finished_spans()
    assert brew.name == "HTTP"
    assert brew.attributes is not None and brew.attributes["http.request.method"] == "_OTHER"
    assert brew.attributes["http.request.method_original"] == "BREW"
    assert brew.end_time is not None and brew.start_time is not None
    assert 0.2 < (brew.end_time - brew.start_time) / 1e9 < 5
    assert websocket.name == "GET" and websocket.attributes is not None
    assert websocket.attributes["url.scheme"] == "wss"


def test_console_exporter_configured_only_by_environment_variables(tmp_path: Path) -> None:
    program = (
        "from pounce.observability.tracing import configure_tracing\n"
        "tracer = configure_tracing()\n"
        "assert configure_tracing() is tracer\n"
        "scope = {'type': 'http', 'method': 'POST', 'path': '/env', 'headers': [], 'query_string': b''}\n"
        "tracer.start_request(scope).end(201)\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "pounce-env-test"}
    env.pop("OTEL_RESOURCE_ATTRIBUTES", None)
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    span = json.loads(out.stdout)
    assert span["name"] == "POST"
    assert span["kind"] == "SpanKind.SERVER"
    assert span["attributes"]["url.path"] == "/env"
    assert span["attributes"]["http.response.status_code"] == 201
    assert span["resource"]["attributes"]["service.name"] == "pounce-env-test"


def test_the_sampler_from_the_environment_is_honoured(tmp_path: Path) -> None:
    """OTEL_TRACES_SAMPLER: a request the sampler drops still gets a current (non-recording) span and
    exports nothing; its parent's decision is followed (parentbased_always_off drops a root, keeps a
    sampled parent's child)."""
    program = (
        "from opentelemetry import trace\n"
        "from pounce.observability.tracing import configure_tracing\n"
        "tracer = configure_tracing()\n"
        "root = {'type': 'http', 'method': 'GET', 'path': '/dropped', 'headers': [], 'query_string': b''}\n"
        "traced = tracer.start_request(root)\n"
        "assert not trace.get_current_span().is_recording()\n"
        "traced.end(200)\n"
        "parent = [(b'traceparent', b'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')]\n"
        "child = {'type': 'http', 'method': 'GET', 'path': '/kept', 'headers': parent, 'query_string': b''}\n"
        "tracer.start_request(child).end(200)\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "parentbased_always_off"}
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    span = json.loads(out.stdout)  # exactly one span: the child of a sampled parent
    assert span["attributes"]["url.path"] == "/kept"
    assert span["attributes"]["http.response.status_code"] == 200


def test_a_missing_exporter_is_a_warning_not_a_failure() -> None:
    program = (
        "import logging; logging.basicConfig()\n"
        "from pounce.observability.tracing import configure_tracing\n"
        "configure_tracing().start_request({'type': 'http', 'method': 'GET', 'path': '/'}).end(200)\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp_not_installed"}
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "otlp_not_installed" in out.stderr and "not installed" in out.stderr


def test_otel_option_reaches_the_server_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    from tests.observability.test_server_events import hello
    from tests.utils import run_server

    config = Config(hello, otel=True)
    assert config.otel
    with run_server(hello, otel=True) as server:
        assert isinstance(server.server.server_state.tracer, RequestTracer)
