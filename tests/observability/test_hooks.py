"""The protocol-facing hooks: what phase 2 of the event work calls from the cycle, connection base, h2 and ws."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from pounce.observability import events as ev
from pounce.observability import hooks
from pounce.observability.access import AccessLogSubscriber
from pounce.observability.bus import EventBus


@pytest.fixture(autouse=True)
def access_lines_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Config loaded by an earlier test (Uvicorn's logging config) leaves uvicorn.access not propagating.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "propagate", True)


def http_scope(path: str = "/x", method: str = "GET", version: str = "1.1") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "http_version": version, "query_string": b"",
            "headers": [], "client": ("127.0.0.1", 5555), "scheme": "http"}


def test_a_request_through_the_hooks_pairs_and_times_correctly() -> None:
    seen: list[ev.Event] = []
    bus = EventBus(worker_id=7, handlers=[seen.append])
    connection_id = hooks.connection_opened(bus, "http/1.1", ("127.0.0.1", 5555), tls=False)
    head_parsed = time.monotonic()
    request = hooks.request_started(bus, connection_id, http_scope(), head_parsed)
    app_called = head_parsed + 0.001
    first_byte = head_parsed + 0.011
    hooks.response_started(bus, request, 200)
    hooks.response_completed(bus, request, 200, 5, app_called, first_byte, now=head_parsed + 0.02)
    hooks.connection_closed(bus, connection_id, "http/1.1", requests_served=1)
    assert [type(e) for e in seen] == [ev.ConnectionOpened, ev.RequestStarted, ev.ResponseStarted,
                                       ev.ResponseCompleted, ev.ConnectionClosed]
    done = seen[3]
    assert isinstance(done, ev.ResponseCompleted)
    assert done.request is request and request.time == head_parsed
    assert done.queue_seconds == pytest.approx(0.001)
    assert done.first_byte_seconds == pytest.approx(0.010)
    assert done.total_seconds == pytest.approx(0.020)
    assert {e.worker_id for e in seen} == {7}
    assert {getattr(e, "connection_id") for e in seen} == {connection_id}
    assert hooks.request_started(bus, connection_id, http_scope()).request_id == request.request_id + 1


def test_failures_disconnects_websockets_and_resets() -> None:
    seen: list[ev.Event] = []
    bus = EventBus(handlers=[seen.append])
    request = hooks.request_started(bus, 1, http_scope(version="2"), stream_id=3)
    hooks.request_failed(bus, request, ValueError("x"), "Exception in ASGI application", sent_500=False)
    hooks.client_disconnected(bus, request, status=200, body_bytes=10)
    hooks.stream_reset(bus, 1, 3, request.request_id, 8, "server")
    ws_scope = {"type": "websocket", "path": "/ws"}
    ws_id = hooks.websocket_accepted(bus, 2, ws_scope, "chat")
    hooks.websocket_closed(bus, 2, ws_id, 1000, "client", 3, 4)
    hooks.websocket_rejected(bus, 3, ws_scope, 403)
    failed = seen[1]
    assert isinstance(failed, ev.RequestFailed) and failed.exception_type == "ValueError" and not failed.sent_500
    assert isinstance(seen[0], ev.RequestStarted) and seen[0].stream_id == 3
    assert [type(e).__name__ for e in seen[2:]] == ["ClientDisconnected", "StreamReset", "WebSocketAccepted",
                                                    "WebSocketClosed", "WebSocketRejected"]
    hooks.request_failed(bus, request, None, "ASGI callable returned without starting response.", sent_500=True)
    assert isinstance(seen[-1], ev.RequestFailed) and seen[-1].exception_type is None


def test_the_access_log_subscriber_on_the_hooks(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus(handlers=[AccessLogSubscriber()])
    request = hooks.request_started(bus, 1, http_scope("/p q"))
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        hooks.response_completed(bus, request, 404, 0, request.time, request.time)
    assert caplog.messages == ['127.0.0.1:5555 - "GET /p%20q HTTP/1.1" 404']


def test_a_response_cut_short_is_still_logged_and_one_never_started_is_not(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus(handlers=[AccessLogSubscriber()])
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        started = hooks.request_started(bus, 1, http_scope("/stream"))
        hooks.client_disconnected(bus, started, status=200, body_bytes=4096)
        never = hooks.request_started(bus, 1, http_scope("/slow"))
        hooks.client_disconnected(bus, never, status=None, body_bytes=0)
    assert caplog.messages == ['127.0.0.1:5555 - "GET /stream HTTP/1.1" 200']
    (record,) = caplog.records
    event = record.__dict__["pounce_response"]
    assert isinstance(event, ev.ClientDisconnected) and event.response_started and event.body_bytes == 4096


def test_an_upgraded_connection_keeps_its_id() -> None:
    seen: list[ev.Event] = []
    bus = EventBus(handlers=[seen.append])
    connection_id = hooks.connection_opened(bus, "http/1.1", None, tls=True)
    hooks.connection_closed(bus, connection_id, "http/1.1", 1, upgraded_to="websocket")
    assert hooks.connection_opened(bus, "websocket", None, tls=True, connection_id=connection_id) == connection_id
    assert [(type(e).__name__, getattr(e, "protocol")) for e in seen] == [
        ("ConnectionOpened", "http/1.1"), ("ConnectionClosed", "http/1.1"), ("ConnectionOpened", "websocket")]
