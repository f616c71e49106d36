"""WebSocket events end to end: real sockets against an in-process server (``tests.utils.run_server``).

A WebSocket's connection is first an HTTP/1.1 connection: its ``ConnectionClosed(upgraded_to="websocket")``
is followed by the WebSocket's ``ConnectionOpened`` with the same connection id, then
``WebSocketAccepted`` (or ``WebSocketRejected``), ``WebSocketClosed`` with the close code, who closed and
the messages each way, and the WebSocket's ``ConnectionClosed``. ``--otel`` gives each WebSocket a span.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed as ClientSawClose
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from pounce.observability.bus import EXTENSION_KEY, EventSource, events_extension
from pounce.observability.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    WebSocketAccepted,
    WebSocketClosed,
    WebSocketRejected,
)
from tests.observability.clients import Recorder, wait_until
from tests.utils import RunningServer, run_server

pytestmark = pytest.mark.timeout(60)

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """By path: /echo echoes until the client closes; /talk sends two messages and closes with 4001;
    /leave accepts and returns (no close frame); /deny closes before accepting (403); /teapot answers
    418 through websocket.http.response; /boom raises before accepting (500). Plain HTTP: 200."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    message = await receive()
    assert message["type"] == "websocket.connect"
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/teapot":
        await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"content-length", b"2")]})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        return
    if path == "/boom":
        raise RuntimeError("boom before accepting")
    subprotocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    if path == "/talk":
        await send({"type": "websocket.send", "text": "one"})
        await send({"type": "websocket.send", "bytes": b"two"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        return
    if path == "/leave":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def ws_url(server: RunningServer, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


CONNECTION_EVENTS = (ConnectionOpened, ConnectionClosed, WebSocketAccepted, WebSocketRejected, WebSocketClosed)


def of_connections(events: list[Event]) -> list[Event]:
    """The connection and WebSocket events (not the server's, nor the upgrade request's own)."""
    return [event for event in events if isinstance(event, CONNECTION_EVENTS)]


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in of_connections(events)]


def session(recorder: Recorder) -> list[Event]:
    """The events of the one WebSocket connection served, once its WebSocket side has closed."""
    wait_until(
        lambda: any(isinstance(e, ConnectionClosed) and e.protocol == "websocket" for e in recorder.events),
        what="the WebSocket connection closed",
    )
    return recorder.events


@pytest.mark.parametrize("http", ["fast", "h11"])
def test_accepted_then_closed_by_the_client_on_the_same_connection_id(http: str) -> None:
    recorder = Recorder()
    with run_server(app, http=http, event_handlers=[recorder], access_log=False, ws_ping_interval=None) as server:
        with connect(ws_url(server, "/echo?x=1"), subprotocols=[Subprotocol("chat")]) as ws:
            for text in ("a", "b", "c"):
                ws.send(text)
                assert ws.recv() == text
            ws.close(code=1000)
        events = session(recorder)
    assert kinds(events) == [
        "ConnectionOpened", "ConnectionClosed",  # the HTTP/1.1 connection, handed over
        "ConnectionOpened", "WebSocketAccepted", "WebSocketClosed", "ConnectionClosed",  # the WebSocket
    ]
    http_opened, http_closed, ws_opened, accepted, closed, ws_closed = of_connections(events)
    assert isinstance(http_opened, ConnectionOpened) and http_opened.protocol == "http/1.1"
    assert isinstance(http_closed, ConnectionClosed) and http_closed.upgraded_to == "websocket"
    assert isinstance(ws_opened, ConnectionOpened) and ws_opened.protocol == "websocket"
    assert ws_opened.peer == http_opened.peer and ws_opened.tls is False
    assert isinstance(accepted, WebSocketAccepted)
    assert accepted.path == "/echo" and accepted.subprotocol == "chat" and accepted.scope["type"] == "websocket"
    assert isinstance(closed, WebSocketClosed)
    assert (closed.close_code, closed.initiator, closed.messages_received, closed.messages_sent) == (1000, "client", 3, 3)
    assert closed.request_id == accepted.request_id
    assert isinstance(ws_closed, ConnectionClosed)
    assert (ws_closed.protocol, ws_closed.requests_served, ws_closed.upgraded_to) == ("websocket", 1, None)
    # One connection id throughout, the upgrade included.
    assert {e.connection_id for e in (http_opened, http_closed, ws_opened, accepted, closed, ws_closed)} == {
        http_opened.connection_id
    }
    assert http_opened.time <= http_closed.time <= ws_opened.time <= accepted.time <= closed.time <= ws_closed.time


def test_closed_by_the_server_with_its_code_and_counts() -> None:
    recorder = Recorder()
    with run_server(app, event_handlers=[recorder], access_log=False, ws_ping_interval=None) as server:
        with connect(ws_url(server, "/talk")) as ws:
            assert ws.recv() == "one"
            assert ws.recv() == b"two"
            with pytest.raises(ClientSawClose) as info:
                ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4001
        session(recorder)
    closed = recorder.of(WebSocketClosed)
    assert len(closed) == 1
    assert (closed[0].close_code, closed[0].initiator, closed[0].messages_received, closed[0].messages_sent) == (
        4001, "server", 0, 2
    )
    assert recorder.of(WebSocketAccepted)[0].subprotocol is None


def handshake(server: RunningServer, path: str) -> socket.socket:
    sock = server.connect()
    sock.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def test_lost_without_a_close_frame_is_1006_by_whoever_left() -> None:
    recorder = Recorder()
    with run_server(app, event_handlers=[recorder], access_log=False, ws_ping_interval=None) as server:
        # The client drops TCP mid-session: 1006, the client's doing.
        sock = handshake(server, "/echo")
        mask = b"\x00\x00\x00\x00"
        sock.sendall(bytes((0x81, 0x80 | 2)) + mask + b"hi")
        assert sock.recv(100) == b"\x81\x02hi"
        sock.close()
        wait_until(lambda: len(recorder.of(WebSocketClosed)) == 1, what="the first close")
        # The app returns without closing: Pounce drops TCP, 1006 on the server's side.
        sock = handshake(server, "/leave")
        sock.settimeout(5)
        assert sock.recv(100) == b""
        sock.close()
        wait_until(lambda: len(recorder.of(WebSocketClosed)) == 2, what="the second close")
    first, second = recorder.of(WebSocketClosed)
    assert (first.close_code, first.initiator, first.messages_received, first.messages_sent) == (1006, "client", 1, 1)
    assert (second.close_code, second.initiator, second.messages_received, second.messages_sent) == (1006, "server", 0, 0)


def test_a_protocol_violation_is_closed_by_the_server_with_its_code() -> None:
    recorder = Recorder()
    with run_server(app, event_handlers=[recorder], access_log=False, ws_ping_interval=None, ws_max_size=16) as server:
        sock = handshake(server, "/echo")
        sock.sendall(bytes((0x82, 0x80 | 17)) + b"\x00\x00\x00\x00" + b"x" * 17)  # over ws_max_size: 1009
        sock.settimeout(5)
        frame = sock.recv(100)
        assert frame[:1] == b"\x88" and struct.unpack("!H", frame[2:4])[0] == 1009
        sock.sendall(bytes((0x88, 0x80 | 2)) + b"\x00\x00\x00\x00" + struct.pack("!H", 1009))  # the reply
        assert sock.recv(100) == b""
        sock.close()
        session(recorder)
    closed = recorder.of(WebSocketClosed)
    assert [(c.close_code, c.initiator, c.messages_received) for c in closed] == [(1009, "server", 0)]


@pytest.mark.parametrize(("path", "status"), [("/deny", 403), ("/teapot", 418), ("/boom", 500)])
def test_a_refused_handshake_is_rejected_with_its_status(path: str, status: int) -> None:
    recorder = Recorder()
    with run_server(app, event_handlers=[recorder], access_log=False, log_level="critical") as server:
        with pytest.raises(InvalidStatus) as info:
            with connect(ws_url(server, path)):
                pass
        assert info.value.response.status_code == status
        events = session(recorder)
    assert kinds(events) == [
        "ConnectionOpened", "ConnectionClosed", "ConnectionOpened", "WebSocketRejected", "ConnectionClosed"
    ]
    (rejected,) = recorder.of(WebSocketRejected)
    assert (rejected.path, rejected.status) == (path, status)
    assert rejected.connection_id == recorder.of(ConnectionOpened)[0].connection_id
    assert recorder.of(ConnectionClosed)[-1].requests_served == 1


def test_no_events_and_no_ids_while_nobody_listens() -> None:
    with run_server(app, access_log=False, ws_ping_interval=None) as server:
        state = server.server.server_state
        assert state.events is None
        with connect(ws_url(server, "/echo")) as ws:
            ws.send("x")
            assert ws.recv() == "x"
            (protocol,) = state.connections
            assert (protocol.connection_id, protocol.request_id, protocol._announced) == (0, 0, False)
            assert (protocol.messages_received, protocol.messages_sent) == (1, 1)


def test_a_framework_subscribes_through_the_websocket_scope() -> None:
    """The WebSocket scope offers ``pounce.events`` (next to ``websocket.http.response``). A subscription
    made in the handshake sees that WebSocket accepted and closed, though not its connection opened
    (that happened while nobody listened) nor, therefore, closed; later connections fully."""
    seen = Recorder()
    scopes: list[Scope] = []
    unsubscribe: list[Any] = []

    async def framework(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scopes.append(scope)
            source = events_extension(scope)
            assert isinstance(source, EventSource)
            if scope["path"] == "/subscribe":
                unsubscribe.append(source.subscribe(seen))
        await app(scope, receive, send)

    with run_server(framework, access_log=False, ws_ping_interval=None) as server:
        state = server.server.server_state
        with connect(ws_url(server, "/subscribe")) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"
        wait_until(lambda: len(seen.of(WebSocketClosed)) == 1, what="the first WebSocket closed")
        with connect(ws_url(server, "/echo")) as ws:
            ws.send("again")
            assert ws.recv() == "again"
        wait_until(lambda: len(seen.of(ConnectionClosed)) == 2, what="the second connection closed")
        unsubscribe.pop()()
        assert state.events is None
        with httpx.Client() as client:  # nothing is seen once unsubscribed
            assert client.get(server.url + "/").status_code == 200
    assert kinds(seen.events) == [
        "WebSocketAccepted", "WebSocketClosed",  # /subscribe: its connection began before the subscription
        "ConnectionOpened", "ConnectionClosed", "ConnectionOpened", "WebSocketAccepted", "WebSocketClosed",
        "ConnectionClosed",  # /echo, from its HTTP/1.1 request on
    ]
    first, second = seen.of(WebSocketClosed)
    assert (first.messages_received, first.messages_sent, first.initiator) == (1, 1, "client")
    assert first.connection_id != second.connection_id
    for scope in scopes:
        assert scope["extensions"][EXTENSION_KEY] is state.event_bus.source
        assert "websocket.http.response" in scope["extensions"]


# ----------------------------------------------------------------------------- --otel


def test_each_websocket_gets_a_server_span() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from pounce.observability.runtime import Telemetry
    from pounce.observability.tracing import RequestTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app_tracer = provider.get_tracer("the-app")

    def finished(count: int) -> list[Any]:
        wait_until(lambda: len(exporter.get_finished_spans()) >= count, what=f"{count} spans")
        found = list(exporter.get_finished_spans())
        assert len(found) == count, [s.name for s in found]
        return found

    async def traced_app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/echo":
            with app_tracer.start_as_current_span("the-app-session"):
                await app(scope, receive, send)
            return
        await app(scope, receive, send)

    telemetry = Telemetry(tracer=RequestTracer(provider))
    try:
        with run_server(
            traced_app, telemetry=telemetry, access_log=False, ws_ping_interval=None, log_level="critical"
        ) as server:
            started = time.time_ns()
            with connect(ws_url(server, "/echo?q=1"), user_agent_header="ws-test") as ws:
                ws.send("x")
                assert ws.recv() == "x"
            finished(2)
            for path in ("/deny", "/boom"):
                with pytest.raises(InvalidStatus):
                    with connect(ws_url(server, path)):
                        pass
            found = finished(4)
    finally:
        provider.shutdown()
    session_span = next(s for s in found if s.name == "the-app-session")
    servers = [s for s in found if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET", "GET", "GET"]
    echo, deny, boom = servers
    attributes = dict(echo.attributes or {})
    assert attributes["url.scheme"] == "ws"
    assert attributes["url.path"] == "/echo" and attributes["url.query"] == "q=1"
    assert attributes["http.response.status_code"] == 101
    assert attributes["user_agent.original"] == "ws-test"
    assert attributes["network.peer.address"] == "127.0.0.1"
    assert echo.status.status_code is StatusCode.UNSET
    assert echo.start_time is not None and echo.end_time is not None and started <= echo.start_time < echo.end_time
    # The app's span, made while the WebSocket ran, is the server span's child.
    assert session_span.parent is not None and session_span.parent.span_id == echo.context.span_id
    assert session_span.context.trace_id == echo.context.trace_id
    assert dict(deny.attributes or {})["http.response.status_code"] == 403
    assert deny.status.status_code is StatusCode.UNSET
    boom_attributes = dict(boom.attributes or {})
    assert boom_attributes["http.response.status_code"] == 500 and boom_attributes["error.type"] == "RuntimeError"
    assert boom.status.status_code is StatusCode.ERROR
