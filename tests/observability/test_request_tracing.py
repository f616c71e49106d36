"""``--otel`` end to end: the server spans of real requests (HTTP/1.1 with both parsers, HTTP/2), read back
from the SDK's in-memory exporter, and a real ``python -m pounce --otel`` configured by environment only.

In-process servers get the test's own TracerProvider through ``Telemetry(tracer=RequestTracer(provider))``
(what a supervisor hands its workers), so no test touches the process-wide OpenTelemetry globals.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from pounce.observability.runtime import Telemetry  # noqa: E402
from pounce.observability.tracing import RequestTracer  # noqa: E402
from tests.observability.clients import H2Client, wait_until  # noqa: E402
from tests.supervisors.serving import get, serve  # noqa: E402
from tests.utils import read_response, run_server  # noqa: E402

pytestmark = pytest.mark.timeout(60)

Scope = dict[str, Any]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()


class Tracing:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.app_tracer = self.provider.get_tracer("the-app")

    def telemetry(self) -> Telemetry:
        return Telemetry(tracer=RequestTracer(self.provider))

    def spans(self, count: int) -> list[ReadableSpan]:
        """The finished spans once there are ``count`` (the last one ends after its response went out)."""
        wait_until(lambda: len(self.exporter.get_finished_spans()) >= count, what=f"{count} spans")
        spans = list(self.exporter.get_finished_spans())
        assert len(spans) == count, [s.name for s in spans]
        return spans

    def server_spans(self, count: int) -> list[ReadableSpan]:
        return [s for s in self.spans(count) if s.kind is SpanKind.SERVER]


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = Tracing()
    yield tracing
    tracing.provider.shutdown()


def make_app(tracing: Tracing) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        while (await receive()).get("more_body"):
            pass
        if path == "/error":
            raise RuntimeError("boom")
        if path.startswith("/child"):
            # The app's own span, made the usual way: a child of whatever span is current.
            assert trace.get_current_span().is_recording()
            with tracing.app_tracer.start_as_current_span("db query " + path):
                await asyncio.sleep(0.02)
        if path == "/slow":
            await asyncio.sleep(0.1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def duration(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


def serving(tracing: Tracing, http: str, **kwargs: Any) -> Any:
    extra: dict[str, Any] = {"http2": True} if http == "h2" else {"http": http}
    return run_server(make_app(tracing), otel=True, telemetry=tracing.telemetry(), access_log=False, **extra, **kwargs)


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_one_server_span_per_request_with_the_stable_attributes(tracing: Tracing, http: str) -> None:
    with serving(tracing, http) as server:
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                peer_port = client.sock.getsockname()[1]
                headers = [(b"user-agent", b"tests/1")]
                assert client.response(client.request(b"GET", b"/items/7?q=1", headers=headers))[0] == 200
                assert client.response(client.request(b"POST", b"/p", body=b"data"))[0] == 200
        else:
            with server.connect() as sock:
                peer_port = sock.getsockname()[1]
                sock.sendall(b"GET /items/7?q=1 HTTP/1.1\r\nhost: api.example.org:8443\r\nuser-agent: tests/1\r\n\r\n"
                             b"POST /p HTTP/1.1\r\nhost: api.example.org:8443\r\ncontent-length: 4\r\n\r\ndata")
                buf = bytearray()
                assert read_response(sock, buf).status == read_response(sock, buf).status == 200
        get_span, post_span = tracing.server_spans(2)
    version = "2" if http == "h2" else "1.1"
    authority = ("example.org", None) if http == "h2" else ("api.example.org", 8443)
    expected = {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "url.query": "q=1",
        "url.scheme": "http",
        "network.protocol.name": "http",
        "network.protocol.version": version,
        "server.address": authority[0],
        "network.peer.address": "127.0.0.1",
        "network.peer.port": peer_port,
        "client.address": "127.0.0.1",
        "client.port": peer_port,
        "user_agent.original": "tests/1",
        "http.response.status_code": 200,
    }
    if authority[1] is not None:
        expected["server.port"] = authority[1]
    assert attributes(get_span) == expected
    assert (get_span.name, post_span.name) == ("GET", "POST")
    assert attributes(post_span)["http.request.method"] == "POST"
    assert attributes(post_span)["url.path"] == "/p" and "url.query" not in attributes(post_span)
    for span in (get_span, post_span):
        assert span.kind is SpanKind.SERVER and span.parent is None
        assert span.status.status_code is StatusCode.UNSET
        assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "pounce"
        assert 0 <= duration(span) < 5
    assert get_span.context.trace_id != post_span.context.trace_id


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_the_callers_trace_continues_and_app_spans_nest_under_the_server_span(tracing: Tracing, http: str) -> None:
    with serving(tracing, http) as server:
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                headers = [(b"traceparent", TRACEPARENT), (b"tracestate", b"vendor=1")]
                assert client.response(client.request(b"GET", b"/child", headers=headers))[0] == 200
        else:
            with httpx.Client() as client:
                response = client.get(server.url + "/child", headers={"traceparent": TRACEPARENT.decode(),
                                                                      "tracestate": "vendor=1"})
                assert response.status_code == 200
        app_span, server_span = tracing.spans(2)
    assert server_span.kind is SpanKind.SERVER and app_span.name == "db query /child"
    assert format(server_span.context.trace_id, "032x") == TRACE_ID
    assert server_span.parent is not None and server_span.parent.is_remote
    assert format(server_span.parent.span_id, "016x") == PARENT_ID
    assert server_span.context.trace_state.get("vendor") == "1"
    assert app_span.parent is not None and app_span.parent.span_id == server_span.context.span_id
    assert app_span.context.trace_id == server_span.context.trace_id
    # The server span covers the app's: it starts at the head, ends once the app is done.
    assert server_span.start_time is not None and app_span.start_time is not None
    assert server_span.end_time is not None and app_span.end_time is not None
    assert server_span.start_time <= app_span.start_time and app_span.end_time <= server_span.end_time


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_pipelined_requests_do_not_inherit_the_previous_requests_trace(tracing: Tracing, http: str) -> None:
    """The next pipelined request's task is created from inside the previous one's (its response completing
    starts it), where that request's span is current: its span must still be a root, or the caller's."""
    with serving(tracing, http) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /first HTTP/1.1\r\nhost: a\r\ntraceparent: " + TRACEPARENT + b"\r\n\r\n"
                         b"GET /second HTTP/1.1\r\nhost: a\r\n\r\n"
                         b"GET /third HTTP/1.1\r\nhost: a\r\n\r\n")
            buf = bytearray()
            assert [read_response(sock, buf).status for _ in range(3)] == [200] * 3
        first, second, third = tracing.server_spans(3)
    assert [attributes(s)["url.path"] for s in (first, second, third)] == ["/first", "/second", "/third"]
    assert first.parent is not None and format(first.parent.span_id, "016x") == PARENT_ID
    assert second.parent is None and third.parent is None
    assert len({format(s.context.trace_id, "032x") for s in (first, second, third)} | {TRACE_ID}) == 3


def test_concurrent_http2_streams_each_get_their_own_span_and_children(tracing: Tracing) -> None:
    with serving(tracing, "h2") as server:
        with H2Client(server.host, server.port) as client:
            streams = [client.request(b"GET", b"/child-%d" % n) for n in range(5)]
            assert [client.response(stream)[0] for stream in streams] == [200] * 5
        spans = tracing.spans(10)
    servers = {attributes(s)["url.path"]: s for s in spans if s.kind is SpanKind.SERVER}
    children = [s for s in spans if s.kind is not SpanKind.SERVER]
    assert len(servers) == len(children) == 5
    for child in children:
        path = child.name.removeprefix("db query ")
        assert child.parent is not None and child.parent.span_id == servers[path].context.span_id
    assert len({s.context.trace_id for s in servers.values()}) == 5


@pytest.mark.parametrize("http", ["auto", "h2"])
def test_errors_and_time_in_the_app_show_on_the_span(tracing: Tracing, http: str) -> None:
    with serving(tracing, http) as server:
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                assert client.response(client.request(b"GET", b"/error"))[0] == 500
                assert client.response(client.request(b"GET", b"/slow"))[0] == 200
        else:
            assert httpx.get(server.url + "/error").status_code == 500
            assert httpx.get(server.url + "/slow").status_code == 200
        failed, slow = tracing.server_spans(2)
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["error.type"] == "RuntimeError"
    assert attributes(failed)["http.response.status_code"] == 500
    assert [e.name for e in failed.events] == ["exception"]
    assert slow.status.status_code is StatusCode.UNSET
    assert duration(slow) >= 0.1


def parse_console_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed (each starts with a line "{"), among the log lines."""
    decoder = json.JSONDecoder()
    spans = []
    position = 0
    while True:
        start = text.find("{\n", position)
        if start < 0:
            return spans
        if start > 0 and text[start - 1] != "\n":
            position = start + 1
            continue
        span, position = decoder.raw_decode(text, start)
        spans.append(span)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "thread", "process"])
def test_the_console_exporter_is_configured_by_environment_only(tmp_path: Path, mode: str) -> None:
    """``OTEL_TRACES_EXPORTER=console pounce app --otel``: the spans print by the time the server has stopped
    (the batch processor would wait 5 s; a server stopped by SIGTERM flushes them before it re-raises it)."""
    workers = [] if mode == "single" else ["--workers", "2", "--worker-mode", mode]
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "pounce-console-test"}
    with serve("--otel", "--no-access-log", *workers, app="tests.observability.apps:app", tmp_path=tmp_path,
               env=env) as server:
        assert get(server.port, "/console-span?x=1")[0] == 200
        server.signal(signal.SIGTERM)
        server.wait(30)
        output = server.output()
    mine = [s for s in parse_console_spans(output) if s["attributes"].get("url.path") == "/console-span"]
    assert len(mine) == 1, output[-3000:]
    (span,) = mine
    assert span["name"] == "GET" and span["kind"] == "SpanKind.SERVER"
    assert span["attributes"]["url.query"] == "x=1"
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["resource"]["attributes"]["service.name"] == "pounce-console-test"
