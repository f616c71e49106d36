"""WebSocket over HTTP/2 (RFC 8441): a raw h2 client (``tests.h2client``) opens extended CONNECTs
against a real ``--http2`` server; WebSocket frames are built and read with wsproto's frame protocol."""

from __future__ import annotations

import json
from typing import Any

import h2.events
import h2.settings
import pytest
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode

from pounce.observability.events import ConnectionClosed, ConnectionOpened, WebSocketAccepted, WebSocketClosed, WebSocketRejected
from tests.h2client import H2Client
from tests.observability.clients import Recorder, wait_until
from tests.utils import RunningServer, run_server

pytestmark = pytest.mark.timeout(30)

Scope = dict[str, Any]
PROTOCOL_ERROR = 1
seen: list[Any] = []  # what the app saw last (scope, disconnect), for the test to check


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """Plain HTTP: 200 "ok". WebSocket, by path: /echo echoes (the first message answered with the scope
    as JSON), /deny closes before accepting, /teapot answers 418 with a body, /bye sends one message and
    closes with 4001."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/teapot":
        await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"content-length", b"2")]})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        return
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    if path == "/bye":
        await send({"type": "websocket.send", "text": "bye"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        return
    first = True
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen.append(message)
            return
        if first:
            first = False
            info = {k: scope[k] for k in ("type", "http_version", "scheme", "path", "query_string", "subprotocols")}
            info["query_string"] = info["query_string"].decode()
            info["host"] = dict(scope["headers"]).get(b"host", b"").decode()
            await send({"type": "websocket.send", "text": json.dumps(info)})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


class WSClient:
    """One WebSocket on a stream of a raw HTTP/2 connection."""

    def __init__(self, client: H2Client, path: bytes = b"/echo", headers: list[tuple[bytes, bytes]] | None = None,
                 deflate: bool = False) -> None:
        self.client = client
        self.extension = PerMessageDeflate() if deflate else None
        extra = [(b"sec-websocket-version", b"13"), *(headers or [])]
        if self.extension is not None:
            offer = self.extension.offer()
            params = "" if offer is True else f"; {offer}"
            extra.append((b"sec-websocket-extensions", f"permessage-deflate{params}".encode()))
        self.stream_id = client.conn.get_next_available_stream_id()
        head = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", path),
                (b":authority", b"example.org")]
        client.conn.send_headers(self.stream_id, head + extra)
        client.flush()
        self.frames: FrameProtocol | None = None
        self.received: list[Frame] = []
        self.partial: Frame | None = None
        self.data_seen = 0

    def head(self) -> dict[bytes, bytes]:
        self.client.read(lambda: bool(self.client.of(h2.events.ResponseReceived, self.stream_id)))
        headers = dict(self.client.of(h2.events.ResponseReceived, self.stream_id)[0].headers)
        if headers[b":status"] == b"200":
            extensions = []
            if self.extension is not None and b"sec-websocket-extensions" in headers:
                self.extension.finalize(headers[b"sec-websocket-extensions"].decode())
                extensions = [self.extension]
            self.frames = FrameProtocol(client=True, extensions=extensions)
        return headers

    def send(self, payload: str | bytes) -> None:
        assert self.frames is not None
        self.client.conn.send_data(self.stream_id, self.frames.send_data(payload, fin=True))
        self.client.flush()

    def close(self, code: int = 1000) -> None:
        assert self.frames is not None
        self.client.conn.send_data(self.stream_id, self.frames.close(code, "bye"))
        self.client.flush()

    def _parse(self) -> None:
        assert self.frames is not None
        data = self.client.of(h2.events.DataReceived, self.stream_id)[self.data_seen:]
        self.data_seen += len(data)
        for event in data:
            self.frames.receive_bytes(event.data)
        for frame in self.frames.received_frames():
            # Frames come as their payload arrives: a message is whole at message_finished.
            if self.partial is not None:
                frame = Frame(self.partial.opcode, self.partial.payload + frame.payload, frame.frame_finished, frame.message_finished)
            if frame.message_finished:
                self.partial = None
                self.received.append(frame)
            else:
                self.partial = frame

    def recv(self) -> Frame:
        def ready() -> bool:
            self._parse()
            return bool(self.received) or self.client.ended(self.stream_id)

        self.client.read(ready)
        assert self.received, "the stream ended without a frame"
        return self.received.pop(0)


def connect(server: RunningServer) -> H2Client:
    client = H2Client(server.host, server.port)
    client.read(lambda: bool(client.of(h2.events.RemoteSettingsChanged)))
    return client


def test_the_server_advertises_extended_connect_and_a_websocket_talks_next_to_a_request() -> None:
    seen.clear()
    with run_server(app, http2=True, ws_ping_interval=None) as server, connect(server) as client:
        assert client.conn.remote_settings.enable_connect_protocol == 1
        ws = WSClient(client, b"/echo?x=1", [(b"sec-websocket-protocol", b"chat, superchat")])
        head = ws.head()
        assert head[b":status"] == b"200" and head[b"sec-websocket-protocol"] == b"chat"
        assert b"upgrade" not in head and b"connection" not in head
        ws.send("hello")
        info = json.loads(ws.recv().payload)
        assert info == {"type": "websocket", "http_version": "2", "scheme": "ws", "path": "/echo", "query_string": "x=1",
                        "subprotocols": ["chat", "superchat"], "host": "example.org"}
        # An ordinary request on the same connection is served while the WebSocket is open.
        request = client.request(path=b"/plain")
        assert client.response(request)[0] == 200 and client.response(request)[2] == b"ok"
        ws.send("text")
        frame = ws.recv()
        assert (frame.opcode, frame.payload) == (Opcode.TEXT, "text")
        ws.send(b"\x00\x01binary")
        frame = ws.recv()
        assert (frame.opcode, frame.payload) == (Opcode.BINARY, bytearray(b"\x00\x01binary"))
        ws.close(1000)
        frame = ws.recv()
        assert frame.opcode == Opcode.CLOSE and frame.payload[0] == 1000
        client.read(lambda: client.ended(ws.stream_id))
        assert client.of(h2.events.StreamEnded, ws.stream_id) and not client.of(h2.events.StreamReset, ws.stream_id)
        wait_until(lambda: bool(seen))
        assert seen[-1]["code"] == 1000
        # The connection goes on after the WebSocket's stream ended.
        again = client.request(path=b"/after")
        assert client.response(again)[0] == 200


def test_the_server_closes_with_its_code_then_ends_the_stream() -> None:
    with run_server(app, http2=True, ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client, b"/bye")
        assert ws.head()[b":status"] == b"200"
        assert ws.recv().payload == "bye"
        frame = ws.recv()
        assert frame.opcode == Opcode.CLOSE and tuple(frame.payload) == (4001, "done")
        ws.close(4001)
        client.read(lambda: client.ended(ws.stream_id))
        assert client.of(h2.events.StreamEnded, ws.stream_id)


@pytest.mark.parametrize(("path", "status", "body"), [(b"/deny", b"403", b""), (b"/teapot", b"418", b"no")])
def test_a_rejection_is_an_ordinary_response_on_the_stream(path: bytes, status: bytes, body: bytes) -> None:
    with run_server(app, http2=True) as server, connect(server) as client:
        ws = WSClient(client, path)
        code, _, received = client.response(ws.stream_id)
        assert (b"%d" % code, received) == (status, body)
        assert client.response(client.request())[0] == 200


def test_a_message_over_ws_max_size_is_closed_with_1009() -> None:
    with run_server(app, http2=True, ws_max_size=1024, ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client)
        assert ws.head()[b":status"] == b"200"
        ws.send(b"x" * 1024)  # the first message is answered with the scope
        ws.recv()
        ws.send(b"y" * 1024)
        assert ws.recv().payload == bytearray(b"y" * 1024)
        ws.send(b"z" * 1025)
        frame = ws.recv()
        assert frame.opcode == Opcode.CLOSE and frame.payload[0] == 1009
        client.read(lambda: client.ended(ws.stream_id))
        assert client.response(client.request())[0] == 200


def test_permessage_deflate_is_negotiated_and_used() -> None:
    with run_server(app, http2=True, ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client, deflate=True)
        head = ws.head()
        assert head[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
        ws.send("first")
        ws.recv()
        text = "compressible " * 1000
        ws.send(text)
        assert ws.recv().payload == text
        assert sum(len(e.data) for e in client.of(h2.events.DataReceived, ws.stream_id)) < 2000


def test_large_messages_travel_under_flow_control() -> None:
    """1 MiB each way: more than the stream's 64 KiB window, so both sides wait for WINDOW_UPDATEs."""
    with run_server(app, http2=True, ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client)
        assert ws.head()[b":status"] == b"200"
        ws.send("first")
        ws.recv()
        payload = bytes(range(256)) * 4096
        frames = ws.frames
        assert frames is not None
        data = frames.send_data(payload, fin=True)
        sent = 0
        while sent < len(data):  # as the window allows
            window = client.conn.local_flow_control_window(ws.stream_id)
            if window == 0:
                client.read(lambda: client.conn.local_flow_control_window(ws.stream_id) > 0)
                continue
            chunk = data[sent:sent + min(window, client.conn.max_outbound_frame_size)]
            client.conn.send_data(ws.stream_id, chunk)
            client.flush()
            sent += len(chunk)

        def acknowledged() -> bool:
            for event in client.of(h2.events.DataReceived, ws.stream_id)[ws.data_seen:]:
                client.conn.acknowledge_received_data(event.flow_controlled_length, ws.stream_id)
            client.flush()
            ws._parse()
            return bool(ws.received)

        client.read(acknowledged, timeout=20)
        assert ws.received[0].payload == bytearray(payload)


def test_websocket_events_are_those_of_http_1_1() -> None:
    recorder = Recorder()
    with run_server(app, http2=True, event_handlers=[recorder], ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client, b"/bye")
        ws.head()
        ws.recv()
        ws.recv()
        ws.close(4001)
        client.read(lambda: client.ended(ws.stream_id))
        denied = WSClient(client, b"/deny")
        client.response(denied.stream_id)
        wait_until(lambda: sum(isinstance(e, ConnectionClosed) and e.protocol == "websocket" for e in recorder.events) == 2)
    websocket = [e for e in recorder.events if getattr(e, "protocol", None) == "websocket" or
                 isinstance(e, (WebSocketAccepted, WebSocketClosed, WebSocketRejected))]
    kinds = [type(e).__name__ for e in websocket]
    assert kinds == ["ConnectionOpened", "WebSocketAccepted", "WebSocketClosed", "ConnectionClosed",
                     "ConnectionOpened", "WebSocketRejected", "ConnectionClosed"]
    opened, accepted, closed = websocket[:3]
    assert isinstance(opened, ConnectionOpened) and opened.tls is False
    assert isinstance(accepted, WebSocketAccepted) and accepted.path == "/bye"
    assert isinstance(closed, WebSocketClosed) and (closed.close_code, closed.initiator, closed.messages_sent) == (4001, "server", 1)
    rejected = websocket[5]
    assert isinstance(rejected, WebSocketRejected) and rejected.status == 403


def test_without_websockets_the_setting_is_not_advertised_and_extended_connect_is_malformed() -> None:
    with run_server(app, http2=True, ws="none") as server, connect(server) as client:
        assert client.conn.remote_settings.enable_connect_protocol == 0
        ws = WSClient(client)
        client.read(lambda: client.ended(ws.stream_id))
        assert client.of(h2.events.StreamReset, ws.stream_id)[0].error_code == PROTOCOL_ERROR
        assert client.response(client.request())[0] == 200


def test_a_client_that_does_not_use_the_setting_sees_no_difference() -> None:
    """Ordinary requests (and a plain CONNECT, which has no ASGI form) are served as before."""
    with run_server(app, http2=True) as server, connect(server) as client:
        assert client.response(client.request(path=b"/x"))[0] == 200
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream_id, [(b":method", b"CONNECT"), (b":authority", b"example.org:443")])
        client.flush()
        client.read(lambda: client.ended(stream_id))
        assert client.of(h2.events.StreamReset, stream_id)[0].error_code == PROTOCOL_ERROR


def test_an_unknown_protocol_is_501() -> None:
    with run_server(app, http2=True) as server, connect(server) as client:
        stream_id = client.conn.get_next_available_stream_id()
        head = [(b":method", b"CONNECT"), (b":protocol", b"connect-udp"), (b":scheme", b"http"), (b":path", b"/"),
                (b":authority", b"example.org")]
        client.conn.send_headers(stream_id, head)
        client.flush()
        assert client.response(stream_id)[0] == 501


def test_shutdown_closes_the_websocket_with_1012_then_the_connection() -> None:
    with run_server(app, http2=True, ws_ping_interval=None) as server, connect(server) as client:
        ws = WSClient(client)
        assert ws.head()[b":status"] == b"200"
        server.server.should_exit = True
        frame = ws.recv()
        assert frame.opcode == Opcode.CLOSE and frame.payload[0] == 1012
        client.read(lambda: client.ended(ws.stream_id))
        client.read(lambda: bool(client.of(h2.events.ConnectionTerminated)) or client.closed)
