"""WebSockets end to end: a real Pounce server on 127.0.0.1:0 and real clients.

``websockets`` (sync client) for ordinary traffic and compression, ``wsproto`` and raw sockets
where a test must put exact frames on the wire (fragments, protocol violations, silent peers),
``httpx`` for denial responses, and the CLI in a subprocess for the worker modes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets.exceptions
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol
from wsproto import ConnectionType, WSConnection
from wsproto import events as wsevents

from tests.utils import RunningServer, captured_logs, run_server

pytestmark = pytest.mark.timeout(30)

HTTP_IMPLS = ["fast", "h11"]


# ----------------------------------------------------------------------------- apps


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every message back; importable by the CLI tests as ``tests.test_websocket:echo_app``."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            return


class Recorder:
    """An app that records what it receives; the test thread waits on its events."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {}
        self.disconnected = threading.Event()
        self.done = threading.Event()

    def wait_disconnect(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.disconnected.wait(timeout), f"no websocket.disconnect; got {self.messages!r}"
        return self.messages[-1]


def ws_url(running: RunningServer, path: str = "/") -> str:
    return f"ws://{running.host}:{running.port}{path}"


@pytest.fixture(params=HTTP_IMPLS)
def http_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ----------------------------------------------------------------------------- raw frames


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A frame as a client would send it, with every bit under the test's control."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


class RawClient:
    """A WebSocket client on a plain socket: wsproto for the handshake, frames by hand."""

    def __init__(self, running: RunningServer, path: str = "/", extra: bytes = b"", headers: bytes = b"") -> None:
        self.sock = running.connect(timeout=5.0)
        self.buffer = b""
        key = b"dGhlIHNhbXBsZSBub25jZQ=="
        self.sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            + headers + b"\r\n" + extra
        )
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head

    def _read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer and time.monotonic() < deadline:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, sep, rest = self.buffer.partition(marker)
        assert sep, f"no {marker!r} in {self.buffer[:200]!r}"
        self.buffer = rest
        return head

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next server frame as (opcode, payload), or None once the server closed TCP."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.buffer[1] & 0x7F if len(self.buffer) >= 2 else 0
            offset = 2 if n < 126 else 4 if n == 126 else 10
            # The whole header first: a read may end inside the extended length (the slow-reader
            # test's 64 KiB frames did, now and then, and failed on a short struct.unpack).
            if len(self.buffer) >= offset:
                if n == 126:
                    n = struct.unpack("!H", self.buffer[2:4])[0]
                elif n == 127:
                    n = struct.unpack("!Q", self.buffer[2:10])[0]
                if len(self.buffer) >= offset + n:
                    assert not self.buffer[1] & 0x80, "server frames must not be masked"
                    opcode, payload = self.buffer[0] & 0x0F, self.buffer[offset : offset + n]
                    self.buffer = self.buffer[offset + n :]
                    return opcode, payload
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting for a frame"
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk

    def quiet_for(self, seconds: float) -> bool:
        """True if the server sent nothing (and kept the connection) for ``seconds``."""
        if self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.buffer += chunk
        return False

    def close_frame(self, timeout: float = 5.0) -> tuple[int, str]:
        """Skip data and pings until the server's close frame; return its code and reason."""
        for _ in range(1000):
            frame = self.frame(timeout)
            assert frame is not None, "TCP closed without a close frame"
            if frame[0] == 0x8:
                code = struct.unpack("!H", frame[1][:2])[0] if frame[1] else 1005
                return code, frame[1][2:].decode()
        raise AssertionError("no close frame")

    def assert_tcp_closed(self, timeout: float = 5.0) -> None:
        for _ in range(1000):
            if self.frame(timeout) is None:
                return
        raise AssertionError("TCP connection still open")

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------- traffic


def test_echo_text_and_bytes(http_impl: str) -> None:
    with run_server(echo_app, http=http_impl) as running:
        with connect(ws_url(running), compression=None) as ws:
            messages: list[str | bytes] = ["hello", "", "héllo wörld ✓", b"\x00\x01\x02", b"", bytes(range(256)) * 300]
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=5) == message


def test_scope(http_impl: str) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "chat"})
        await send({"type": "websocket.close"})

    with run_server(app, http=http_impl, root_path="/root") as running:
        url = ws_url(running, "/one%2Ftwo?x=1&y=%20")
        with connect(url, subprotocols=[Subprotocol("chat"), Subprotocol("other")], additional_headers={"X-Extra": "yes"}) as ws:
            assert ws.subprotocol == "chat"
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                ws.recv(timeout=5)
    headers = dict(seen["headers"])
    assert seen["type"] == "websocket"
    assert seen["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert seen["http_version"] == "1.1"
    assert seen["scheme"] == "ws"
    assert seen["path"] == "/root/one/two"
    assert seen["raw_path"] == b"/root/one%2Ftwo"
    assert seen["root_path"] == "/root"
    assert seen["query_string"] == b"x=1&y=%20"
    assert seen["subprotocols"] == ["chat", "other"]
    assert seen["client"][0] == "127.0.0.1" and seen["server"] == ("127.0.0.1", running.port)
    assert headers[b"host"] == f"127.0.0.1:{running.port}".encode()
    assert headers[b"x-extra"] == b"yes"
    assert headers[b"sec-websocket-protocol"] == b"chat, other"
    assert b"permessage-deflate" in headers[b"sec-websocket-extensions"]
    assert "websocket.http.response" in seen["extensions"]


def test_accept_with_subprotocol_and_headers() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "v2", "headers": [(b"x-session", b"42")]})
        await receive()

    with run_server(app) as running:
        with connect(ws_url(running), subprotocols=[Subprotocol("v1"), Subprotocol("v2")]) as ws:
            assert ws.subprotocol == "v2"
            assert ws.response is not None
            assert ws.response.headers["x-session"] == "42"
            assert ws.response.headers["server"] == "pounce"


def test_app_close_with_code_and_reason() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye soon"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done here"})

    with run_server(app) as running:
        with connect(ws_url(running)) as ws:
            assert ws.recv(timeout=5) == "bye soon"
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "done here")


def test_client_close_reaches_the_app_with_code_and_reason() -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            recorder.messages.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.disconnect":
                recorder.disconnected.set()
                return

    with run_server(app) as running:
        with connect(ws_url(running)) as ws:
            ws.send("one")
            ws.close(code=1001, reason="going away")
        last = recorder.wait_disconnect()
    assert recorder.messages[1] == {"type": "websocket.receive", "text": "one"}
    assert last == {"type": "websocket.disconnect", "code": 1001, "reason": "going away"}


def test_disconnect_when_the_peer_goes_away() -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        recorder.messages.append(message)
        recorder.disconnected.set()
        # Receiving again after the disconnect answers at once instead of hanging.
        recorder.messages.append(await asyncio.wait_for(receive(), 2))
        recorder.done.set()

    with run_server(app) as running:
        client = RawClient(running)
        assert client.status == 101
        client.close()  # no close frame: the TCP connection just goes
        message = recorder.wait_disconnect()
        assert recorder.done.wait(5)
    assert message["type"] == "websocket.disconnect" and message["code"] in (1005, 1006)
    assert recorder.messages[1] == message


def test_send_after_the_peer_left_raises_oserror() -> None:
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the disconnect
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError:
            outcome.append("OSError")
        done.set()

    with run_server(app) as running:
        with connect(ws_url(running)) as ws:
            ws.close()
        assert done.wait(5)
    assert outcome == ["OSError"]


# ----------------------------------------------------------------------------- denial


def test_denial_response_with_body(http_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"25")],
        })
        await send({"type": "websocket.http.response.body", "body": b'{"detail":', "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b'"Unauthorized"}'})

    with run_server(app, http=http_impl) as running:
        response = httpx.get(running.url, headers={
            "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
        })
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}
    assert response.headers["content-type"] == "application/json"


def test_close_before_accept_is_403_and_app_sees_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})
        recorder.messages.append(await receive())
        recorder.disconnected.set()

    caplog.set_level(logging.INFO, logger="uvicorn.error")
    with run_server(app, log_level="info") as running:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            connect(ws_url(running, "/room?id=7"))
        assert info.value.response.status_code == 403
        assert recorder.wait_disconnect() == {"type": "websocket.disconnect", "code": 1006}
    assert any('"WebSocket /room?id=7" 403' in record.getMessage() for record in caplog.records)


def test_app_exception_before_accept_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise ValueError("boom")

    with run_server(app) as running:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            connect(ws_url(running))
    assert info.value.response.status_code == 500
    assert info.value.response.body == b"Internal Server Error"
    assert any("Exception in ASGI application" in r.getMessage() for r in caplog.records)


def test_app_exception_after_accept_drops_the_connection() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("boom")

    with run_server(app) as running:
        with connect(ws_url(running)) as ws:
            ws.send("trigger")
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                ws.recv(timeout=5)
    # As in Uvicorn: no close frame, so the client reports 1006 (abnormal closure).
    assert info.value.rcvd is None


@pytest.mark.parametrize(
    ("headers", "status", "text"),
    [
        ({"Sec-WebSocket-Version": "13"}, 400, "Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 426, "Version"),
    ],
)
def test_invalid_upgrade_request(http_impl: str, headers: dict[str, str], status: int, text: str) -> None:
    with run_server(echo_app, http=http_impl) as running:
        response = httpx.get(running.url, headers={"Upgrade": "websocket", "Connection": "Upgrade", **headers})
    assert response.status_code == status
    assert text in response.text
    if status == 426:
        assert response.headers["sec-websocket-version"] == "13"


def test_an_unsupported_version_is_named_not_called_missing(http_impl: str) -> None:
    # RFC 6455 §4.4: 426 and the versions we speak. The reason said "Missing header,
    # 'Sec-WebSocket-Version'" although the client had sent one.
    key = {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Upgrade": "websocket", "Connection": "Upgrade"}
    with run_server(echo_app, http=http_impl) as running, captured_logs() as messages:
        response = httpx.get(running.url, headers={**key, "Sec-WebSocket-Version": "8"})
        missing = httpx.get(running.url, headers=key)
    assert response.status_code == 426
    assert response.headers["sec-websocket-version"] == "13"
    assert response.text == "Invalid WebSocket upgrade request: unsupported Sec-WebSocket-Version '8'; " \
        "this server supports 13\n"
    assert "Missing" not in response.text
    assert "Invalid WebSocket upgrade request: unsupported Sec-WebSocket-Version '8'; this server supports 13" in messages
    # Not sent at all: that one is missing (400, as wsproto and Uvicorn's wsproto protocol answer).
    assert missing.status_code == 400
    assert "Missing header, 'Sec-WebSocket-Version'" in missing.text


# ----------------------------------------------------------------------------- frames


def test_fragmented_messages_with_a_ping_in_between(http_impl: str) -> None:
    with run_server(echo_app, http=http_impl) as running:
        client = RawClient(running)
        client.send(
            client_frame(0x1, "frag".encode(), fin=False)
            + client_frame(0x9, b"ping!")
            + client_frame(0x0, " mé".encode()[:3], fin=False)
            + client_frame(0x0, " mé".encode()[3:] + b"nt")
        )
        assert client.frame() == (0xA, b"ping!")
        assert client.frame() == (0x1, "frag mént".encode())
        client.send(client_frame(0x2, b"\x00" * 70000, fin=False) + client_frame(0x0, b"\x01" * 10))
        assert client.frame() == (0x2, b"\x00" * 70000 + b"\x01" * 10)
        client.send(client_frame(0x8, struct.pack("!H", 1000)))
        assert client.close_frame() == (1000, "")
        client.assert_tcp_closed()


def test_large_message_round_trip() -> None:
    payload = os.urandom(4 * 1024 * 1024)
    with run_server(echo_app) as running:
        with connect(ws_url(running), max_size=None, compression=None) as ws:
            ws.send(payload)
            assert ws.recv(timeout=10) == payload


def test_wsproto_client_echo_and_close() -> None:
    with run_server(echo_app) as running:
        sock = running.connect()
        conn = WSConnection(ConnectionType.CLIENT)
        sock.sendall(conn.send(wsevents.Request(host="127.0.0.1", target="/")))
        got: list[Any] = []
        deadline = time.monotonic() + 5
        sent = False
        while time.monotonic() < deadline and not any(isinstance(e, wsevents.CloseConnection) for e in got):
            conn.receive_data(sock.recv(65536) or None)
            for event in conn.events():
                got.append(event)
                if isinstance(event, wsevents.AcceptConnection) and not sent:
                    sock.sendall(conn.send(wsevents.TextMessage(data="via wsproto")))
                    sock.sendall(conn.send(wsevents.BytesMessage(data=b"\xff" * 3000)))
                    sent = True
                elif isinstance(event, (wsevents.TextMessage, wsevents.BytesMessage)) and len(got) == 3:
                    sock.sendall(conn.send(wsevents.CloseConnection(code=1000)))
        sock.close()
    kinds = [type(e).__name__ for e in got]
    assert kinds == ["AcceptConnection", "TextMessage", "BytesMessage", "CloseConnection"]
    assert got[1].data == "via wsproto" and got[2].data == b"\xff" * 3000
    assert got[3].code == 1000


def test_permessage_deflate_negotiated_and_used() -> None:
    text = "compress me " * 50_000
    with run_server(echo_app) as running:
        with connect(ws_url(running), max_size=None) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            for _ in range(3):  # several messages: the shared compression context carries over
                ws.send(text)
                assert ws.recv(timeout=10) == text
            ws.send(b"\x00\x01" * 10)
            assert ws.recv(timeout=5) == b"\x00\x01" * 10


@pytest.mark.parametrize("bits", [9, 12, 15])
def test_permessage_deflate_parameters(bits: int) -> None:
    """No context takeover either way and small windows, as negotiated by the client's offer."""
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=bits, client_max_window_bits=bits,
    )
    messages: list[str | bytes] = [os.urandom(50).hex() * 200, "short", "x" * 70_000, os.urandom(3000)]
    with run_server(echo_app) as running:
        with connect(ws_url(running), extensions=[factory], compression=None, max_size=None) as ws:
            assert ws.response is not None
            negotiated = ws.response.headers["sec-websocket-extensions"]
            assert "server_no_context_takeover" in negotiated and "client_no_context_takeover" in negotiated
            for message in messages:
                ws.send(message)
                assert ws.recv(timeout=5) == message


def test_permessage_deflate_can_be_turned_off() -> None:
    with run_server(echo_app, ws_per_message_deflate=False) as running:
        with connect(ws_url(running)) as ws:
            assert ws.response is not None
            assert "sec-websocket-extensions" not in ws.response.headers
            ws.send("plain")
            assert ws.recv(timeout=5) == "plain"


def test_max_size() -> None:
    with run_server(echo_app, ws_max_size=1000) as running:
        with connect(ws_url(running), compression=None) as ws:
            ws.send(b"x" * 1000)
            assert ws.recv(timeout=5) == b"x" * 1000
            ws.send("é" * 501)  # 1002 bytes of UTF-8: the limit counts bytes, not characters
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert "maximum size (1000 bytes)" in info.value.rcvd.reason

        client = RawClient(running)  # fragments that add up to too much
        client.send(b"".join(client_frame(0x2 if i == 0 else 0x0, b"y" * 300, fin=False) for i in range(4)))
        assert client.close_frame()[0] == 1009
        client.assert_tcp_closed()


def test_max_size_applies_after_decompression() -> None:
    """A small compressed frame may not inflate past ws_max_size (a compression bomb)."""
    with run_server(echo_app, ws_max_size=100_000) as running:
        with connect(ws_url(running), max_size=None) as ws:
            ws.send(b"\x00" * 100_000)
            assert ws.recv(timeout=5) == b"\x00" * 100_000
        # Negotiate deflate by hand so that the bomb is exactly what goes on the wire.
        raw = RawClient(running, headers=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        assert b"permessage-deflate" in raw.head
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(b"\x00" * 10_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert len(bomb) < 20_000
        raw.send(client_frame(0x2, bomb[:-4], rsv=0x40))
        assert raw.close_frame()[0] == 1009
        raw.assert_tcp_closed()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(client_frame(0x1, b"hi", masked=False), 1002, id="unmasked"),
        pytest.param(client_frame(0x1, b"\xff\xfe"), 1007, id="invalid-utf8"),
        pytest.param(client_frame(0x3, b"x"), 1002, id="reserved-opcode"),
        pytest.param(client_frame(0x1, b"x", rsv=0x40), 1002, id="rsv1-without-extension"),
        pytest.param(client_frame(0x9, b"p" * 126), 1002, id="control-too-long"),
        pytest.param(client_frame(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(client_frame(0x0, b"x"), 1002, id="continuation-without-start"),
        pytest.param(client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), 1002, id="text-inside-text"),
        pytest.param(client_frame(0x8, struct.pack("!H", 999)), 1002, id="close-code-999"),
        pytest.param(client_frame(0x8, b"\x03"), 1002, id="close-one-byte"),
        pytest.param(client_frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007, id="close-reason-not-utf8"),
    ],
)
def test_protocol_errors_close_with_the_right_code(frame: bytes, code: int) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            recorder.messages.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.disconnect":
                recorder.disconnected.set()
                return

    with run_server(app) as running:
        client = RawClient(running)
        client.send(frame)
        assert client.close_frame()[0] == code
        client.assert_tcp_closed()
        assert recorder.wait_disconnect()["code"] == code
    assert not any(m["type"] == "websocket.receive" for m in recorder.messages)


def test_frames_split_across_reads_at_every_boundary() -> None:
    """The frame reader sees TCP's arbitrary read boundaries: every split must give the same events."""
    from pounce.protocols.websockets.frames import FrameReader

    rng = random.Random(5)
    expected: list[tuple[Any, ...]] = []
    stream = b""
    for size in [0, 1, 125, 126, 1024, 1025, 65535, 65536, 70000, 300_000]:
        payload = rng.randbytes(size)
        if size > 2:
            cut = rng.randrange(1, size)
            stream += client_frame(0x2, payload[:cut], fin=False) + client_frame(0x9, b"p")
            stream += client_frame(0x0, payload[cut:])
            expected.append(("ping", b"p"))
        else:
            stream += client_frame(0x2, payload)
        expected.append(("message", payload))
    stream += client_frame(0x1, "añb".encode()) + client_frame(0x8, struct.pack("!H", 1000) + b"ok")
    expected += [("message", "añb"), ("close", 1000, "ok")]
    for chunk in [1, 2, 3, 13, 4096, 65536, 262144, len(stream)]:
        reader = FrameReader(max_size=1 << 20, deflate=None)
        got: list[tuple[Any, ...]] = []
        for pos in range(0, len(stream), chunk):
            got += reader.feed(stream[pos : pos + chunk])
        assert got == expected, f"chunk size {chunk}"


def test_data_sent_with_the_upgrade_request_is_not_lost(http_impl: str) -> None:
    with run_server(echo_app, http=http_impl) as running:
        client = RawClient(running, extra=client_frame(0x1, b"early bird"))
        assert client.status == 101
        assert client.frame() == (0x1, b"early bird")


# ----------------------------------------------------------------------------- strictness
# What Autobahn's fuzzing client checks beyond the close code (its NON-STRICT ratings): a bad frame
# fails the connection as soon as its bytes arrive, what came before it is still handled, and
# nothing after it is. ``benchmarks/autobahn.py`` runs the whole suite.


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(client_frame(0x1, b"Hello", rsv=0x20), id="rsv2"),  # Autobahn 3.2
        pytest.param(client_frame(0x5, b"x"), id="reserved-data-opcode"),  # 4.1.3
        pytest.param(client_frame(0xB, b"x"), id="reserved-control-opcode"),  # 4.2.3
        pytest.param(client_frame(0x0, b"fragment3", fin=False), id="continuation-of-nothing"),  # 5.15
    ],
)
def test_frames_after_a_bad_frame_are_not_processed(bad: bytes) -> None:
    with run_server(echo_app, ws_ping_interval=None) as running:
        client = RawClient(running)
        # One write, so one read on the server: a message, the bad frame, then more that must not count.
        client.send(
            client_frame(0x1, b"Hello", fin=False) + client_frame(0x0, b", world")
            + bad + client_frame(0x9, b"no pong") + client_frame(0x1, b"no echo")
        )
        assert client.frame() == (0x1, b"Hello, world")  # the message before it is the app's
        frame = client.frame()
        assert frame is not None and frame[0] == 0x8, frame  # then the close: no pong, no echo
        assert struct.unpack("!H", frame[1][:2])[0] == 1002
        client.assert_tcp_closed()


@pytest.mark.parametrize(
    "parts",
    [
        # Autobahn 6.4.1: the second fragment holds U+110000 (out of range) in UTF-8's 4-byte form.
        pytest.param(["κόσμε".encode(), b"\xf4\x90\x80\x80", b"edited"], id="bad-fragment"),
        # 6.4.2: the sequence starts valid at the end of one fragment; the next byte breaks it.
        pytest.param(["κόσμε".encode() + b"\xf4", b"\x90", b"\x80\x80edited"], id="bad-continuation-byte"),
        # CPython's incremental decoder holds back ED A0 until a third byte; it is a surrogate already.
        pytest.param([b"abc\xed", b"\xa0", b"\x80"], id="surrogate"),
    ],
)
def test_invalid_utf8_fails_on_the_fragment_where_it_turns_invalid(parts: list[bytes]) -> None:
    with run_server(echo_app, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(client_frame(0x1, parts[0], fin=False))
        assert client.quiet_for(0.3)  # valid so far: the server waits for more
        client.send(client_frame(0x0, parts[1], fin=False))
        # The close comes now, before the message's last fragment is even sent.
        assert client.close_frame(timeout=2)[0] == 1007
        client.assert_tcp_closed()


def test_invalid_utf8_fails_inside_a_frame_still_arriving() -> None:
    """Autobahn 6.4.3: one text frame sent in three pieces; the second turns it invalid."""
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited"
    frame = client_frame(0x1, payload)
    header = len(frame) - len(payload)
    cut1, cut2 = header + len("κόσμε".encode()), header + len("κόσμε".encode()) + 4
    with run_server(echo_app, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(frame[:cut1])
        assert client.quiet_for(0.3)
        client.send(frame[cut1:cut2])
        assert client.close_frame(timeout=2)[0] == 1007  # without the frame's last 6 bytes
        client.assert_tcp_closed()


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(client_frame(0x2, b"p" * 1000, rsv=0x10)[:8], id="rsv3-header-without-payload"),
        pytest.param(bytes([0x85]), id="reserved-opcode-first-byte-only"),
        # Reserved bits come first, even in a frame that is also too big (1009 otherwise).
        pytest.param(bytes([0xA2, 0xFF]) + struct.pack("!Q", 1 << 40), id="rsv-before-size"),
    ],
)
def test_a_bad_header_fails_before_its_payload_arrives(start: bytes) -> None:
    with run_server(echo_app, ws_max_size=1 << 20, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(start)  # and nothing more: the verdict cannot wait for the payload
        assert client.close_frame(timeout=2)[0] == 1002
        client.assert_tcp_closed()


def test_endless_fragments_close_with_1009() -> None:
    """An unbounded run of empty continuation frames never grows the payload; their number is bounded."""
    limit = 1024  # frames.MIN_FRAGMENTS: at least that many, whatever ws_max_size (4096 // 64 is less)
    with run_server(echo_app, ws_max_size=4096, ws_ping_interval=None) as running:
        client = RawClient(running)
        empty = client_frame(0x0, b"", fin=False)
        client.send(client_frame(0x1, b"a", fin=False) + empty * (limit - 1))
        assert client.quiet_for(0.3)  # as many fragments as a message may have: still fine
        client.send(empty)
        assert client.close_frame(timeout=2)[0] == 1009
        client.assert_tcp_closed()
        # Below the limit a heavily fragmented message is delivered whole.
        client = RawClient(running)
        client.send(client_frame(0x2, b"", fin=False) + client_frame(0x0, b"x", fin=False) * 1000 + client_frame(0x0, b"!"))
        assert client.frame() == (0x2, b"x" * 1000 + b"!")
    from pounce.protocols.websockets.frames import MIN_FRAGMENTS

    assert MIN_FRAGMENTS == limit


def test_after_failing_the_server_drains_until_the_peer_close_frame() -> None:
    """Closing a socket with unread input makes the kernel send a RST, which can destroy the close
    frame before a peer that is still sending has read it. After failing the connection the server
    sends its close frame, reads and discards what still comes (no RST meanwhile), and closes TCP
    as soon as the peer's own close frame arrives, its last bytes."""
    from pounce.protocols.websockets.wsproto_impl import FAIL_DRAIN_TIMEOUT

    with run_server(echo_app, ws_max_size=1024, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(client_frame(0x2, b"x" * 2000))  # too big: 1009, its payload skipped unread
        assert client.close_frame()[0] == 1009
        junk = client_frame(0x2, b"y" * 100) * 100
        for _ in range(20):  # 0.2 s: taken and dropped, no RST (a send after one would fail)
            client.sock.sendall(junk)
            time.sleep(0.01)
        assert client.quiet_for(0.05)  # still open, nothing answered
        started = time.monotonic()
        client.send(client_frame(0x8, struct.pack("!H", 1009)))  # the client answers our close frame
        client.assert_tcp_closed()
        assert time.monotonic() - started < FAIL_DRAIN_TIMEOUT / 2
        client.close()


def test_after_failing_a_peer_that_never_answers_is_closed_after_the_drain_timeout() -> None:
    from pounce.protocols.websockets.wsproto_impl import FAIL_DRAIN_TIMEOUT

    with run_server(echo_app, ws_max_size=1024, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(client_frame(0x1, b"\xff"))  # invalid UTF-8: 1007
        started = time.monotonic()
        assert client.close_frame()[0] == 1007
        client.assert_tcp_closed()
        assert FAIL_DRAIN_TIMEOUT * 0.9 <= time.monotonic() - started < FAIL_DRAIN_TIMEOUT + 2
        client.close()


def test_an_asyncio_client_still_writing_when_its_message_is_refused_closes_cleanly() -> None:
    """Uvicorn's test_send_binary_data_to_server_bigger_than_default_on_websockets: the server
    refuses a message from its header while the client is still writing it. A FIN then (a
    half-close) made the asyncio client close its transport with data buffered; CPython's transport,
    closed that way and then drained, fails the client's later abort() (AttributeError: 'NoneType'
    object has no attribute 'call_soon'). The server now waits for the client's close frame."""
    from websockets.asyncio.client import connect as async_connect

    from pounce.protocols.websockets.wsproto_impl import FAIL_DRAIN_TIMEOUT

    size = 16 << 20  # enough to be still in the client's buffers when the refusal comes
    with run_server(echo_app, ws_max_size=size, ws_ping_interval=None) as running:

        async def main() -> float:
            async with async_connect(ws_url(running), max_size=None, compression=None) as ws:
                started = time.monotonic()
                with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                    await ws.send(b"\x01" * (size + 1))
                    await ws.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            return time.monotonic() - started

        assert asyncio.run(main()) < FAIL_DRAIN_TIMEOUT  # closed on the client's close frame, not the drain timeout


def test_frame_skipper_finds_the_close_frame_past_skipped_payloads() -> None:
    from pounce.protocols.websockets.frames import SKIP_FRAMES_PER_FEED, FrameReader, FrameSkipper, ProtocolViolation

    stream = client_frame(0x2, b"a" * 70000) + client_frame(0x9, b"p") + client_frame(0x1, b"b" * 300)
    closing = client_frame(0x8, struct.pack("!H", 1000))
    skipper = FrameSkipper()
    for i in range(0, len(stream), 7):  # cut everywhere, headers included
        assert not skipper.feed(stream[i : i + 7])
    assert not skipper.feed(closing[:1])
    assert skipper.feed(closing[1:])
    assert skipper.feed(b"whatever follows")

    # A violation inside a payload spanning reads: the rest of that frame is skipped, unread.
    reader = FrameReader(max_size=1 << 20, deflate=None)
    frame = client_frame(0x1, b"\xff" + b"z" * 5000)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(frame[:100])
    skipper = info.value.skipper
    assert skipper is not None and not skipper.closed
    assert not skipper.feed(frame[100:])
    assert skipper.feed(closing)

    # At a bad header, the bad frame itself is skipped by its length; its bad close frame ends it.
    reader = FrameReader(max_size=1 << 20, deflate=None)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(client_frame(0x3, b"q" * 10) + client_frame(0x2, b"r") + closing)
    assert info.value.skipper is not None and info.value.skipper.closed
    reader = FrameReader(max_size=1 << 20, deflate=None)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(client_frame(0x8, b"\x03"))  # a 1-byte close payload
    assert info.value.skipper is not None and info.value.skipper.closed

    # A flood of tiny frames is not followed past a bound: the drain deadline decides then.
    skipper = FrameSkipper()
    assert not skipper.feed(client_frame(0x9) * (SKIP_FRAMES_PER_FEED + 1) + closing)
    assert skipper.lost and not skipper.feed(closing)


def test_frame_reader_hands_over_the_events_before_a_violation() -> None:
    from pounce.protocols.websockets.frames import FrameReader, ProtocolViolation

    reader = FrameReader(max_size=1 << 20, deflate=None)
    with pytest.raises(ProtocolViolation) as info:
        reader.feed(client_frame(0x1, b"ok") + client_frame(0x9, b"p") + client_frame(0x3, b"") + client_frame(0x1, b"never"))
    assert info.value.code == 1002
    assert info.value.events == [("message", "ok"), ("ping", b"p")]
    assert reader.feed(client_frame(0x1, b"later")) == []  # nothing is parsed after a violation


def test_raw_client_reads_a_header_cut_inside_its_length() -> None:
    """The test client itself: a read may end inside a frame's 64-bit length. The slow-reader test's
    64 KiB frames sometimes did, and its struct.unpack of a short buffer failed."""
    ours, theirs = socket.socketpair()
    client = RawClient.__new__(RawClient)
    client.sock, client.buffer = ours, b""
    payload = b"z" * 70000
    frame = struct.pack("!BBQ", 0x82, 127, len(payload)) + payload

    def feed() -> None:
        for piece in (frame[:3], frame[3:9], frame[9:]):
            theirs.sendall(piece)
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert client.frame() == (0x2, payload)
    finally:
        feeder.join()
        ours.close()
        theirs.close()


# ----------------------------------------------------------------------------- keepalive


def test_server_pings_and_a_client_that_answers_stays() -> None:
    with run_server(echo_app, ws_ping_interval=0.1, ws_ping_timeout=1.0) as running:
        client = RawClient(running)
        pings = 0
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            frame = client.frame()
            assert frame is not None and frame[0] == 0x9
            pings += 1
            client.send(client_frame(0xA, frame[1]))
        client.send(client_frame(0x1, b"still here"))
        for _ in range(100):
            frame = client.frame()
            assert frame is not None
            if frame[0] == 0x1:
                break
        assert frame == (0x1, b"still here")
    assert pings >= 3


def test_keepalive_timeout_closes_with_1011() -> None:
    with run_server(echo_app, ws_ping_interval=0.1, ws_ping_timeout=0.2) as running:
        client = RawClient(running)  # never answers the pings
        assert client.close_frame() == (1011, "keepalive ping timeout")
        client.assert_tcp_closed()


def test_client_ping_is_answered_with_its_payload() -> None:
    with run_server(echo_app, ws_ping_interval=None) as running:
        client = RawClient(running)
        client.send(client_frame(0x9, b"are you there"))
        assert client.frame() == (0xA, b"are you there")


def test_server_shutdown_closes_with_1012() -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        recorder.messages.append(await receive())
        recorder.disconnected.set()

    with run_server(app) as running:
        with connect(ws_url(running)) as ws:
            running.server.should_exit = True
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                ws.recv(timeout=5)
        assert recorder.wait_disconnect() == {"type": "websocket.disconnect", "code": 1012}
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012


# ----------------------------------------------------------------------------- back-pressure


def _protocols(running: RunningServer) -> list[Any]:
    return [c for c in running.server.server_state.connections if type(c).__name__ == "WSProtocol"]


def test_reads_pause_while_the_app_is_busy() -> None:
    release = threading.Event()
    got: list[bytes] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():  # a busy app that does not read
            await asyncio.sleep(0.01)
        for _ in range(50):
            got.append((await receive())["bytes"])
        done.set()

    with run_server(app) as running:
        with connect(ws_url(running), compression=None) as ws:
            for i in range(50):
                ws.send(bytes([i]) * 65536)
            deadline = time.monotonic() + 5
            while not any(p.read_paused for p in _protocols(running)) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert any(p.read_paused for p in _protocols(running))
            release.set()
            assert done.wait(10)
    assert got == [bytes([i]) * 65536 for i in range(50)]


def test_at_most_ws_max_queue_messages_wait_for_the_app() -> None:
    """One read of many small messages is parsed ws_max_queue at a time, as the app takes them."""
    release = threading.Event()
    got: list[bytes] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        for _ in range(100):
            got.append((await receive())["bytes"])
        done.set()

    with run_server(app, ws_max_queue=4) as running:
        client = RawClient(running)
        client.send(b"".join(client_frame(0x2, bytes([i])) for i in range(100)))
        deadline = time.monotonic() + 5
        while not any(p.inbox for p in _protocols(running)) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert [len(p.inbox) for p in _protocols(running)] == [4]
        release.set()
        assert done.wait(5)
    assert got == [bytes([i]) for i in range(100)]


def _queue_app(release: threading.Event, got: list[bytes], done: threading.Event) -> Any:
    """Accepts, waits for ``release``, then collects binary messages until a text one."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        while (message := await receive()).get("bytes") is not None:
            got.append(message["bytes"])
        done.set()

    return app


def _send_until_blocked(sock: socket.socket, frames: Iterator[bytes]) -> tuple[int, bytes]:
    """Send frames until the socket stops taking bytes (twice, 50 ms apart): how many frames were
    started, and the unsent rest of the last one (to send once the server reads again)."""
    sock.setblocking(False)
    count = 0
    try:
        for frame in frames:
            count += 1
            view = memoryview(frame)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    time.sleep(0.05)
                    try:
                        view = view[sock.send(view) :]
                    except BlockingIOError:
                        if view.nbytes == len(frame):
                            return count - 1, b""  # full between two frames
                        return count, bytes(view)
        return count, b""
    finally:
        sock.setblocking(True)


def test_ws_max_queue_messages_wait_then_reading_stops() -> None:
    """--ws-max-queue bounds the received messages waiting for the app; once it is full the server stops
    reading (back-pressure: the client's sends block), and nothing is dropped. Reading used to pause at
    the first waiting message whatever the option said."""
    release, done, got = threading.Event(), threading.Event(), []
    payloads = [bytes([i % 256]) * 65536 for i in range(400)]  # 25 MiB: more than socket buffers hold
    with run_server(_queue_app(release, got, done), ws_max_queue=8, ws_ping_interval=None) as running:
        client = RawClient(running)
        for payload in payloads[:8]:  # one write each, a little apart: separate reads on the server
            client.send(client_frame(0x2, payload))
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while not any(len(p.inbox) >= 8 for p in _protocols(running)) and time.monotonic() < deadline:
            time.sleep(0.01)
        (protocol,) = _protocols(running)
        assert len(protocol.inbox) == 8 and protocol.read_paused
        # The queue is full: what the client sends now fills TCP buffers, and then its sends block.
        more, rest = _send_until_blocked(client.sock, (client_frame(0x2, p) for p in payloads[8:]))
        assert 0 < more < len(payloads) - 8, more
        time.sleep(0.2)
        assert len(protocol.inbox) == 8 and protocol.read_paused  # still not read
        release.set()
        client.send(rest + client_frame(0x1, b"end"))
        assert done.wait(10)
    # Every message arrives, in order, once the app reads them.
    assert got == payloads[: 8 + more]


def test_ws_max_queue_is_also_bounded_in_bytes() -> None:
    # A few large messages must not add up to ws_max_queue x ws_max_size: ws_max_size bytes waiting
    # pause reading too.
    release, done, got = threading.Event(), threading.Event(), []
    with run_server(
        _queue_app(release, got, done), ws_max_queue=32, ws_max_size=100_000, ws_ping_interval=None
    ) as running:
        client = RawClient(running)
        for i in range(5):
            client.send(client_frame(0x2, bytes([i]) * 60_000))
            time.sleep(0.02)
        time.sleep(0.2)
        (protocol,) = _protocols(running)
        assert len(protocol.inbox) == 2 and protocol.read_paused  # 120,000 bytes >= 100,000
        release.set()
        client.send(client_frame(0x1, b"end"))
        assert done.wait(5)
    assert got == [bytes([i]) * 60_000 for i in range(5)]


def test_sends_wait_for_a_slow_reader() -> None:
    sent: list[int] = []
    total = 400

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(total):
            await send({"type": "websocket.send", "bytes": bytes([i % 256]) * 65536})
            sent.append(i)
        await receive()

    with run_server(app) as running:
        client = RawClient(running)
        try:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            time.sleep(0.5)  # not reading: the server's buffers fill up
            # 400 x 64 KiB = 25 MiB cannot all be in flight: send() must have been waiting.
            assert len(sent) < total
            for i in range(total):
                assert client.frame(timeout=10) == (0x2, bytes([i % 256]) * 65536)
            assert len(sent) == total
        finally:
            # A failed assertion must not leave a peer that never reads: the server would wait
            # for it (up to --timeout-write) to stop, and the failure would read as a hang.
            client.close()


class FakeTransport(asyncio.Transport):
    """What WSProtocol sees of a socket, with the test deciding when writes are paused."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closing = False
        self.aborted = False
        self.buffered = 0  # what get_write_buffer_size() reports

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


def _accepted_protocol(**config: Any) -> tuple[Any, FakeTransport]:
    """A WSProtocol past its handshake on a FakeTransport (call inside a running loop)."""
    from pounce import Config
    from pounce.protocols.websockets.frames import FrameReader
    from pounce.protocols.websockets.wsproto_impl import WSProtocol
    from pounce.server import ServerState

    protocol = WSProtocol(Config(echo_app, lifespan="off", **config), ServerState(), {}, asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.handshake_complete = True
    protocol.reader = FrameReader(protocol.max_size, None)
    return protocol, transport


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        n, offset = data[1] & 0x7F, 2
        assert n < 126
        frames.append((data[0] & 0x0F, data[offset : offset + n]))
        data = data[offset + n :]
    return frames


def test_pongs_coalesce_and_reads_pause_while_writes_are_paused() -> None:
    """A ping flood from a peer that does not read: one pong is kept, not one per ping (RFC 6455
    5.5.3 allows answering only the latest), and reading stops until the peer takes data again."""

    async def scenario() -> None:
        protocol, transport = _accepted_protocol(ws_ping_interval=None)
        protocol.data_received(client_frame(0x9, b"one") + client_frame(0x9, b"two"))
        assert _server_frames(bytes(transport.written)) == [(0xA, b"one"), (0xA, b"two")]  # one write
        transport.written.clear()
        protocol.pause_writing()
        assert not transport.reading  # the peer is not reading: neither do we
        # A read that was already under way: its first ws_max_queue (32) pings are parsed now,
        # the rest wait for later loop turns.
        protocol.data_received(b"".join(client_frame(0x9, b"%d" % i) for i in range(1000)))
        assert transport.written == b""
        protocol.resume_writing()
        assert _server_frames(bytes(transport.written)) == [(0xA, b"31")]  # one pong for 32 pings
        await asyncio.sleep(0)  # one loop turn parses one budget's worth of what was read
        assert _server_frames(bytes(transport.written)) == [(0xA, b"%d" % i) for i in [31, *range(32, 64)]]
        for _ in range(100):
            await asyncio.sleep(0)
        assert _server_frames(bytes(transport.written)) == [(0xA, b"%d" % i) for i in [31, *range(32, 1000)]]
        assert transport.reading  # all parsed: reading again
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_write_stall_and_a_stuck_close_are_bounded_by_timeout_write() -> None:
    async def scenario() -> None:
        protocol, transport = _accepted_protocol(ws_ping_interval=None, timeout_write=0.1)
        protocol.pause_writing()
        await asyncio.sleep(0.3)
        assert transport.aborted  # --timeout-write with nothing taken: dropped
        assert protocol.inbox[-1] == {"type": "websocket.disconnect", "code": 1006}
        protocol.connection_lost(None)

        # Closing with data still buffered (below the high-water mark, so writes never paused):
        # close() alone would wait for a peer that never reads forever.
        protocol, transport = _accepted_protocol(ws_ping_interval=None, timeout_write=0.1)
        transport.buffered = 1000
        protocol.data_received(client_frame(0x8, struct.pack("!H", 1000)))
        assert transport.closing and not transport.aborted
        await asyncio.sleep(0.3)
        assert transport.aborted
        protocol.connection_lost(None)

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- configuration


def test_ws_none_serves_the_upgrade_request_as_http() -> None:
    with run_server(echo_app, ws="none") as running:
        response = httpx.get(running.url, headers={
            "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
        })
    assert (response.status_code, response.text) == (200, "plain http")


@pytest.mark.parametrize("name", ["auto", "wsproto", "websockets", "websockets-sansio"])
def test_ws_names(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Uvicorn's other implementation names are accepted, announced, and served by the wsproto one."""
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    with run_server(echo_app, ws=name, log_level="info") as running:
        with connect(ws_url(running)) as ws:
            ws.send(name)
            assert ws.recv(timeout=5) == name
            assert [type(p).__name__ for p in _protocols(running)] == ["WSProtocol"]
    mapped = [r.getMessage() for r in caplog.records if f"--ws {name} " in r.getMessage()]
    if name.startswith("websockets"):
        assert mapped and "'wsproto'" in mapped[0]
    else:
        assert not mapped


@pytest.mark.parametrize("worker_mode", ["thread", "process"])
def test_cli_worker_modes_and_ws_options(worker_mode: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable, "-m", "pounce", "tests.test_websocket:echo_app", "--port", str(port),
        "--workers", "2", "--worker-mode", worker_mode, "--lifespan", "off", "--log-level", "warning",
        "--ws", "wsproto", "--ws-max-size", "100", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "5",
        "--ws-per-message-deflate", "false", "--ws-max-queue", "4",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.getcwd())
    try:
        ws = _connect_retrying(f"ws://127.0.0.1:{port}/", deadline=time.monotonic() + 20)
        with ws:
            assert ws.response is not None and "sec-websocket-extensions" not in ws.response.headers
            ws.send("x" * 100)
            assert ws.recv(timeout=5) == "x" * 100
            ws.send("x" * 101)
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait(5)


def _connect_retrying(url: str, deadline: float) -> ClientConnection:
    while True:
        try:
            return connect(url, open_timeout=2)
        except (OSError, websockets.exceptions.InvalidHandshake):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
