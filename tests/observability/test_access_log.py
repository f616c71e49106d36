"""Access-log formats, the access-log subscriber and ``--log-format json``."""

from __future__ import annotations

import io
import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest

from pounce.config import LOGGING_CONFIG, Config, ConfigError
from pounce.logging import AccessFormatter, JSONFormatter
from pounce.observability.access import AccessEntry, AccessLogFormat, AccessLogSubscriber
from pounce.observability.events import RequestStarted, ResponseCompleted
from pounce.protocols.utils import get_client_addr, get_path_with_query_string
from tests.supervisors.serving import get, serve

ACCESS_FMT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


def completed(path: str = "/a b", query: bytes = b"x=1", status: int = 200, **scope_extra: Any) -> ResponseCompleted:
    scope: dict[str, Any] = {
        "type": "http", "method": "GET", "path": path, "query_string": query, "http_version": "1.1",
        "scheme": "https", "client": ("10.0.0.7", 51000),
        "headers": [(b"host", b"example.org"), (b"user-agent", b"curl/8"), (b"referer", b"https://r/"),
                    (b"x-request-id", b"abc"), (b"x-multi", b"1"), (b"x-multi", b"2")],
        **scope_extra,
    }
    started = RequestStarted(time=1.0, worker_id=3, connection_id=9, request_id=42, method="GET", path=path,
                             http_version="1.1", stream_id=None, scope=scope)
    return ResponseCompleted(time=1.5, worker_id=3, connection_id=9, request_id=42, status=status, body_bytes=1234,
                             queue_seconds=0.001, first_byte_seconds=0.01, total_seconds=0.0125, request=started)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def subscriber_record(event: ResponseCompleted) -> logging.LogRecord:
    logger = logging.getLogger("tests.access.capture")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    capture = Capture()
    logger.handlers = [capture]
    AccessLogSubscriber(logger)(event)
    (record,) = capture.records
    return record


def cycle_record(event: ResponseCompleted) -> logging.LogRecord:
    """The record cycle.py writes today for the same request (phase 1: the access log is still there)."""
    scope = event.request.scope
    args = (get_client_addr(scope), scope["method"], get_path_with_query_string(scope), scope["http_version"], event.status)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


@pytest.mark.parametrize("use_colors", [False, True])
@pytest.mark.parametrize("status", [200, 404, 599])
def test_the_subscriber_writes_uvicorns_line_byte_for_byte(use_colors: bool, status: int) -> None:
    event = completed(status=status)
    formatter = AccessFormatter(ACCESS_FMT, use_colors=use_colors)
    ours = subscriber_record(event)
    assert formatter.format(ours) == formatter.format(cycle_record(event))
    assert ours.getMessage() == cycle_record(event).getMessage()
    if not use_colors and status == 200:
        assert formatter.format(ours) == 'INFO:     10.0.0.7:51000 - "GET /a%20b?x=1 HTTP/1.1" 200 OK'


def test_every_field_renders_from_an_event() -> None:
    text = " | ".join(
        "{%s}" % name
        for name in ("client", "client_host", "method", "path", "query", "target", "request_line", "http_version",
                     "protocol", "scheme", "status", "status_phrase", "bytes", "duration", "duration_ms", "user_agent",
                     "referer", "request_id", "worker_id", "header.x-request-id", "header.X-Multi", "header.absent")
    )
    line = AccessLogFormat(text).render(AccessEntry.from_event(completed()))
    assert line.split(" | ") == [
        "10.0.0.7:51000", "10.0.0.7", "GET", "/a%20b", "x=1", "/a%20b?x=1", "GET /a%20b?x=1 HTTP/1.1", "1.1",
        "HTTP/1.1", "https", "200", "OK", "1234", "0.012500", "12.500", "curl/8", "https://r/", "3-42", "3", "abc",
        "1, 2", "-",
    ]


def test_braces_and_errors() -> None:
    assert AccessLogFormat("{{literal}} {status}").render(AccessEntry.from_event(completed())) == "{literal} 200"
    for bad in ("{nope}", "{status", "status}", "{header.}", "{header.a b}"):
        with pytest.raises(ValueError):
            AccessLogFormat(bad)


def test_a_format_renders_uvicorn_records_with_what_they_carry() -> None:
    entry = AccessEntry.from_uvicorn_args(("1.2.3.4:5", "POST", "/p%20q?a=b", "1.0", 201))
    assert entry is not None
    assert AccessLogFormat("{client} {method} {path} {query} {protocol} {status} {bytes} {user_agent}").render(
        entry
    ) == "1.2.3.4:5 POST /p%20q a=b HTTP/1.0 201 - -"
    assert AccessEntry.from_uvicorn_args(("a", "b")) is None


def test_access_formatter_with_a_format() -> None:
    formatter = AccessFormatter("%(levelprefix)s %(message)s", use_colors=False, access_format="{method} {status} {bytes}")
    assert formatter.format(subscriber_record(completed())) == "INFO:     GET 200 1234"
    assert formatter.format(cycle_record(completed())) == "INFO:     GET 200 -"


def test_json_access_record() -> None:
    line = JSONFormatter().format(subscriber_record(completed()))
    data = json.loads(line)
    assert data["level"] == "INFO"
    assert data["message"] == '10.0.0.7:51000 - "GET /a%20b?x=1 HTTP/1.1" 200'
    assert data["timestamp"].endswith("+00:00")
    for key, value in {"client": "10.0.0.7:51000", "method": "GET", "path": "/a%20b", "query": "x=1", "status": 200,
                       "bytes": 1234, "duration": 0.0125, "protocol": "HTTP/1.1", "user_agent": "curl/8",
                       "referer": "https://r/", "request_id": "3-42", "worker_id": 3, "scheme": "https"}.items():
        assert data[key] == value, key
    assert "trace_id" not in data
    custom = json.loads(JSONFormatter(access_format="{method} {target}").format(subscriber_record(completed())))
    assert custom["message"] == "GET /a%20b?x=1"


def test_json_error_record_with_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in %s", ("app",), sys.exc_info())
    data = json.loads(JSONFormatter().format(record))
    assert data["message"] == "Exception in app"
    assert data["logger"] == "uvicorn.error"
    assert "ValueError: bad" in data["exception"]


def test_json_includes_the_current_span() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "inside", (), None)
    with tracer.start_as_current_span("s") as span:
        data = json.loads(JSONFormatter().format(record))
    context = span.get_span_context()
    assert data["trace_id"] == format(context.trace_id, "032x")
    assert data["span_id"] == format(context.span_id, "016x")
    record.__dict__.update(otelTraceID="ab" * 16, otelSpanID="cd" * 8)
    assert json.loads(JSONFormatter().format(record))["trace_id"] == "ab" * 16


def _formatter_of(logger_name: str) -> logging.Formatter:
    handlers = logging.getLogger(logger_name).handlers or logging.getLogger("uvicorn").handlers
    formatter = handlers[0].formatter
    assert formatter is not None
    return formatter


def test_config_applies_the_options_to_the_default_logging_config() -> None:
    Config("tests.observability.apps:app", access_log_format="{method} {status}")
    access = _formatter_of("uvicorn.access")
    assert isinstance(access, AccessFormatter) and access.access_format == AccessLogFormat("{method} {status}")
    Config("tests.observability.apps:app", log_format="json")
    assert isinstance(_formatter_of("uvicorn.access"), JSONFormatter)
    assert isinstance(_formatter_of("uvicorn.error"), JSONFormatter)
    Config("tests.observability.apps:app")  # back to Uvicorn's formatters
    assert type(_formatter_of("uvicorn.access")) is AccessFormatter
    assert LOGGING_CONFIG["formatters"]["access"]["()"] == "pounce.logging.AccessFormatter"


def test_a_custom_log_config_wins(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    custom = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"mine": {"format": "MINE %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "mine", "stream": stream}},
        "loggers": {"uvicorn.access": {"handlers": ["h"], "level": "INFO", "propagate": False}},
    }
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        Config("tests.observability.apps:app", log_config=custom, log_format="json")
    assert "your configuration decides" in caplog.text
    logging.getLogger("uvicorn.access").info("hello")
    assert stream.getvalue() == "MINE hello\n"
    Config("tests.observability.apps:app")


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="access-log-format"):
        Config("tests.observability.apps:app", access_log_format="{nope}")
    with pytest.raises(ConfigError, match="log_format"):
        Config("tests.observability.apps:app", log_format="xml")


@pytest.mark.slow
def test_every_line_of_a_json_run_parses(tmp_path: Path) -> None:
    with serve("--log-format", "json", app="tests.observability.apps:app", tmp_path=tmp_path) as server:
        assert get(server.port, "/hello")[0] == 200
        assert get(server.port, "/error")[0] == 500
        server.signal(signal.SIGTERM)
        server.wait(20)  # a lone server re-raises SIGTERM once it has shut down, as Uvicorn does
        lines = [line for line in server.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    messages = [r["message"] for r in records]
    assert any(m.startswith("Started server process") for m in messages)
    assert any(m.startswith("Finished server process") for m in messages)
    access = [r for r in records if r["logger"] == "uvicorn.access" and r.get("path") == "/hello"]
    assert access and access[0]["method"] == "GET" and access[0]["status"] == 200
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and "RuntimeError: boom" in errors[0]["exception"]
    assert all({"timestamp", "level", "logger", "message"} <= set(r) for r in records)


@pytest.mark.slow
def test_access_log_format_on_the_command_line(tmp_path: Path) -> None:
    with serve("--access-log-format", "{method} {path} {status} [{protocol}]", app="tests.observability.apps:app",
               tmp_path=tmp_path) as server:
        assert get(server.port, "/fmt")[0] == 200
        assert server.wait_log("INFO:     GET /fmt 200 [HTTP/1.1]"), server.output()
