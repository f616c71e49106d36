"""The access log as a subscriber, through real sockets: Uvicorn's line byte for byte, ``--access-log-format``
with every kind of field filled, and ``--log-format json`` for a whole server run (with ``--otel``: trace ids).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pounce.observability.access import UVICORN_MESSAGE
from tests.observability.clients import H2Client, wait_until
from tests.supervisors.serving import serve
from tests.utils import read_response, run_server

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/error":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 404 if scope["path"] == "/missing" else 200, "headers": []})
    await send({"type": "http.response.body", "body": b"body"})


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def access_records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def the_servers_access_formatter() -> logging.Formatter:
    """What the server's logging config formats access records with (LOGGING_CONFIG's "access" handler)."""
    formatters = [h.formatter for h in logging.getLogger("uvicorn.access").handlers if h.formatter is not None]
    assert formatters
    return formatters[0]


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_the_default_line_is_uvicorns_byte_for_byte(http: str) -> None:
    extra: dict[str, Any] = {"http2": True} if http == "h2" else {"http": http}
    with run_server(app, log_level="info", **extra) as server, access_records() as captured:
        formatter = the_servers_access_formatter()
        expected = []
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                port = client.sock.getsockname()[1]
                for target in (b"/path?q", b"/a%20b?x=1&y", b"/missing", b"/error"):
                    client.response(client.request(b"GET", target))
            version = "2"
        else:
            with server.connect() as sock:
                port = sock.getsockname()[1]
                buf = bytearray()
                for target in (b"/path?q", b"/a%20b?x=1&y", b"/missing", b"/error"):
                    sock.sendall(b"GET %s HTTP/1.1\r\nhost: a\r\n\r\n" % target)
                    read_response(sock, buf)
            version = "1.1"
        for target, status, phrase in (("/path?q", 200, "OK"), ("/a%20b?x=1&y", 200, "OK"),
                                       ("/missing", 404, "Not Found"), ("/error", 500, "Internal Server Error")):
            expected.append((f'127.0.0.1:{port} - "GET {target} HTTP/{version}" {status}',
                             f'INFO:     127.0.0.1:{port} - "GET {target} HTTP/{version}" {status} {phrase}'))
        wait_until(lambda: len(captured.records) >= 4, what="4 access records")
    assert [(r.getMessage(), formatter.format(r)) for r in captured.records] == expected
    for record in captured.records:
        # Uvicorn's message and five arguments: a --log-config written for Uvicorn formats them unchanged.
        assert record.msg == UVICORN_MESSAGE and isinstance(record.args, tuple) and len(record.args) == 5
        assert record.name == "uvicorn.access" and record.levelno == logging.INFO


def test_no_access_log_no_lines() -> None:
    with run_server(app, log_level="info", access_log=False) as server, access_records() as captured:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            read_response(sock)
    assert captured.records == []


FORMAT = ("[{client}] [{request_line}] [{status} {status_phrase}] [{bytes}] [{duration}] [{duration_ms}] "
          "[{header.x-request-id}] [{header.absent}] [{user_agent}] [{referer}] [{request_id}] [{worker_id}] "
          "[{scheme}] [{protocol}] [{query}]")
LINE = re.compile(
    r"INFO: +\[127\.0\.0\.1:(?P<port>\d+)\] \[(?P<request_line>[^\]]+)\] \[(?P<status>\d+) (?P<phrase>[^\]]+)\] "
    r"\[(?P<bytes>\d+)\] \[(?P<duration>\d+\.\d{6})\] \[(?P<duration_ms>\d+\.\d{3})\] \[(?P<request_id_header>[^\]]*)\] "
    r"\[(?P<absent>[^\]]*)\] \[(?P<user_agent>[^\]]*)\] \[(?P<referer>[^\]]*)\] \[(?P<request_id>[^\]]*)\] "
    r"\[(?P<worker_id>[^\]]*)\] \[(?P<scheme>[^\]]*)\] \[(?P<protocol>[^\]]*)\] \[(?P<query>[^\]]*)\]$"
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "process"])
def test_access_log_format_fills_bytes_duration_and_header_fields(tmp_path: Path, mode: str) -> None:
    import http.client

    workers = [] if mode == "single" else ["--workers", "2", "--worker-mode", "process"]
    with serve("--access-log-format", FORMAT, *workers, app="tests.observability.apps:app", tmp_path=tmp_path) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/sleep?a=1", headers={"X-Request-ID": "req-42", "User-Agent": "probe/2",
                                                   "Referer": "https://ref.example/"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200
        assert server.wait_log("[GET /sleep?a=1 HTTP/1.1]"), server.output()
        lines = [m for m in map(LINE.match, server.output().splitlines()) if m and "/sleep" in m["request_line"]]
    assert len(lines) == 1, server.output()
    line = lines[0]
    assert (line["status"], line["phrase"]) == ("200", "OK")
    assert int(line["bytes"]) == len(body) == len("worker=0")
    worker = body.decode().removeprefix("worker=")
    assert 0.1 <= float(line["duration"]) < 5  # the app slept 0.1 s
    assert float(line["duration_ms"]) == pytest.approx(float(line["duration"]) * 1000, abs=0.002)
    assert (line["request_id_header"], line["absent"], line["user_agent"], line["referer"]) == (
        "req-42", "-", "probe/2", "https://ref.example/")
    assert line["worker_id"] == worker and worker in (("0",) if mode == "single" else ("1", "2"))
    assert re.fullmatch(rf"{worker}-\d+", line["request_id"])
    assert (line["scheme"], line["protocol"], line["query"]) == ("http", "HTTP/1.1", "a=1")


def run_json_server(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    import http.client

    with serve("--log-format", "json", *args, app="tests.observability.apps:app", tmp_path=tmp_path,
               env=env) as server:
        if "--workers" in args:
            # Both workers serving before the test goes on: one stopped in its startup logs no "Finished".
            assert server.wait_log("Application startup complete.", count=2), server.output()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/hello?x=1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                                                   "User-Agent": "json-test"})
        assert conn.getresponse().read() != b""
        conn.request("GET", "/error")
        assert conn.getresponse().status == 500
        conn.close()
        server.signal(signal.SIGTERM)
        server.wait(30)
        lines = [line for line in server.output().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n{server.output()[-3000:]}")
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= set(record), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["timestamp"]), record
    return records


def check_run(records: list[dict[str, Any]], workers: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Startup, access, error and shutdown records are there with their fields; returns hello, error's access
    record and the error record."""
    messages = [r["message"] for r in records]
    assert sum(m.startswith("Started server process") for m in messages) == max(workers, 1)
    assert sum(m.startswith("Finished server process") for m in messages) == max(workers, 1)
    assert any(m.startswith("Shutting down") for m in messages)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    hello = [r for r in access if r["path"] == "/hello"]
    failed = [r for r in access if r["path"] == "/error"]
    assert len(hello) == len(failed) == 1, access
    record = hello[0]
    for key, value in {"client": record["client"], "method": "GET", "query": "x=1", "status": 200,
                       "protocol": "HTTP/1.1",
                       "http_version": "1.1", "user_agent": "json-test", "scheme": "http", "level": "INFO"}.items():
        assert record[key] == value, (key, record)
    assert record["client"].startswith("127.0.0.1:")
    assert record["worker_id"] in (range(1, workers + 1) if workers else (0,))
    assert record["bytes"] == len(f"worker={record['worker_id']}")
    assert record["message"] == f'{record["client"]} - "GET /hello?x=1 HTTP/1.1" 200'
    assert 0 <= record["duration"] < 5 and re.fullmatch(r"\d+-\d+", record["request_id"])
    assert failed[0]["status"] == 500
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["message"] == "Exception in ASGI application\n"
    assert "RuntimeError: boom" in errors[0]["exception"]
    return record, failed[0], errors[0]


def test_every_line_of_a_json_run_with_otel_parses_and_carries_the_trace(tmp_path: Path) -> None:
    records = run_json_server(tmp_path, "--otel", env={"OTEL_TRACES_EXPORTER": "none"})
    hello, failed_access, error = check_run(records, workers=0)
    # The access record of a request, and the error its app raised, carry the request's span.
    assert hello["trace_id"] == TRACE_ID and re.fullmatch(r"[0-9a-f]{16}", hello["span_id"])
    assert hello["span_id"] != PARENT_ID  # the server span's own id, a child of the caller's
    assert error["trace_id"] == failed_access["trace_id"] and error["span_id"] == failed_access["span_id"]
    assert error["trace_id"] != TRACE_ID and re.fullmatch(r"[0-9a-f]{32}", error["trace_id"])
    # Records outside any request have none.
    outside = [r for r in records if r["logger"] != "uvicorn.access" and r["level"] != "ERROR"]
    assert outside and not any("trace_id" in r for r in outside)


@pytest.mark.slow
def test_every_line_of_a_json_run_with_process_workers_parses(tmp_path: Path) -> None:
    records = run_json_server(tmp_path, "--workers", "2", "--worker-mode", "process")
    hello, _, _ = check_run(records, workers=2)
    assert hello["worker_id"] in (1, 2)
    assert not any("trace_id" in r for r in records)


class _Transport(asyncio.Transport):
    """Just enough transport for a protocol served by hand (as Uvicorn's own protocol tests do)."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = b""
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 8000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += bytes(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_a_protocol_served_without_a_server_still_logs(http: str) -> None:
    """A protocol with a ServerState of its own and no Server (Uvicorn's protocol tests build them so)."""
    from pounce.config import Config
    from pounce.server import ServerState

    async def serve_one() -> bytes:
        config = Config(app, http=http, lifespan="off", log_config=None, log_level="info")
        config.load()
        state = ServerState()
        protocol = config.server_config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /by-hand?q HTTP/1.1\r\nhost: a\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        return transport.buffer

    with access_records() as captured:
        assert asyncio.run(serve_one()).startswith(b"HTTP/1.1 200 OK\r\n")
    assert [r.getMessage() for r in captured.records] == ['127.0.0.1:8000 - "GET /by-hand?q HTTP/1.1" 200']


def test_a_handler_configured_after_startup_gets_the_lines() -> None:
    """As in Uvicorn, whether to log is decided per connection: an app that sets up logging once the server
    runs (uvicorn.access had nowhere to write at startup) gets the access lines of later connections."""
    access = logging.getLogger("uvicorn.access")
    access.propagate = False  # restored by conftest
    # Nowhere to write at startup, whatever earlier tests left on the logger.
    leftover, access.handlers = access.handlers, []
    try:
        _handler_configured_after_startup(access)
    finally:
        access.handlers = leftover


def _handler_configured_after_startup(access: logging.Logger) -> None:
    with run_server(app, log_config=None, log_level="info") as server:
        state = server.server.server_state
        assert state.access_log is None and state.events is None
        with access_records() as captured:
            with server.connect() as sock:
                sock.sendall(b"GET /later HTTP/1.1\r\nhost: a\r\n\r\n")
                assert read_response(sock).status == 200
            wait_until(lambda: len(captured.records) == 1, what="the access line")
        assert state.access_log is not None
    assert captured.records[0].getMessage().endswith('"GET /later HTTP/1.1" 200')
    assert state.access_log is None  # unsubscribed when the server stopped
