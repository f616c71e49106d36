"""WebSocket over HTTP/3 (RFC 9220) with the aioquic backend: aioquic's own HTTP/3 client opens extended
CONNECTs (``:protocol websocket``) against a real ``--http3`` server; WebSocket frames are built and read
with wsproto's frame protocol. The tunnel is the one RFC 8441 uses (``websockets/stream.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aioquic", reason="HTTP/3 needs aioquic: pip install 'pounce-asgi[h3]'")
from aioquic.h3.connection import Setting
from wsproto.frame_protocol import CloseReason, Frame, FrameProtocol, Opcode

from tests.h3client import H3Client, Response, h3_connect
from tests.test_http3 import Certs, certs  # noqa: F401 (the module's certificate fixture)
from tests.test_websocket_h2 import app  # the same app the RFC 8441 tests run
from tests.utils import RunningServer, run_server

pytestmark = pytest.mark.timeout(30)

class H3WebSocket:
    """One WebSocket on a request stream of an aioquic HTTP/3 connection."""

    def __init__(self, client: H3Client, path: str = "/echo", headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.client = client
        extra = [(b":protocol", b"websocket"), (b"sec-websocket-version", b"13"), *(headers or [])]
        self.response: Response = client.start("CONNECT", path, headers=extra, end=False)
        self.frames = FrameProtocol(client=True, extensions=[])
        self.seen = 0
        self.received: list[Frame] = []
        self.partial: Frame | None = None

    async def head(self) -> int:
        for _ in range(500):
            if self.response.status is not None or self.response.done.done():
                break
            await asyncio.sleep(0.01)
        assert self.response.status is not None
        return self.response.status

    def _send(self, data: bytes) -> None:
        self.client.http.send_data(self.response.stream_id, bytes(data), end_stream=False)
        self.client.transmit()

    def send(self, payload: str | bytes) -> None:
        self._send(self.frames.send_data(payload, fin=True))

    def close(self, code: int = 1000) -> None:
        self._send(self.frames.close(code, "bye"))

    async def recv(self) -> Frame:
        for _ in range(500):
            body = self.response.body
            if len(body) > self.seen:
                self.frames.receive_bytes(bytes(body[self.seen:]))
                self.seen = len(body)
                for frame in self.frames.received_frames():
                    # Frames come as their payload arrives: a message is whole at message_finished.
                    if self.partial is not None:
                        frame = Frame(self.partial.opcode, self.partial.payload + frame.payload,
                                      frame.frame_finished, frame.message_finished)
                    self.partial = None if frame.message_finished else frame
                    if frame.message_finished:
                        self.received.append(frame)
            if self.received or self.response.done.done():
                break
            await asyncio.sleep(0.01)
        assert self.received, "the stream ended without a frame"
        return self.received.pop(0)


@pytest.fixture
def served(certs: Certs) -> Iterator[RunningServer]:  # noqa: F811
    with run_server(app, http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        yield running


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_websocket_text_binary_close_and_a_request_alongside(served: RunningServer, certs: Certs) -> None:  # noqa: F811
    async def go() -> None:
        async with h3_connect(int(served.server.http3.port), certs.ca_pem) as client:
            ws = H3WebSocket(client, "/echo", [(b"sec-websocket-protocol", b"chat, other")])
            assert await ws.head() == 200
            assert ws.response.header(b"sec-websocket-protocol") == b"chat"
            assert client.http._received_settings is not None
            assert client.http._received_settings.get(Setting.ENABLE_CONNECT_PROTOCOL) == 1
            ws.send("hello")
            info = json.loads((await ws.recv()).payload)
            assert info == {"type": "websocket", "http_version": "3", "scheme": "wss", "path": "/echo",
                            "query_string": "", "subprotocols": ["chat", "other"], "host": "localhost"}
            # An HTTP/3 request on the same connection while the WebSocket is open.
            response = await client.request("GET", "/")
            assert response.status == 200 and bytes(response.body) == b"ok"
            ws.send("text")
            frame = await ws.recv()
            assert frame.opcode == Opcode.TEXT and frame.payload == "text"
            ws.send(b"\x00\x01binary" * 1000)
            frame = await ws.recv()
            assert frame.opcode == Opcode.BINARY and frame.payload == b"\x00\x01binary" * 1000
            ws.close(1000)
            frame = await ws.recv()
            assert frame.opcode == Opcode.CLOSE and frame.payload[0] == CloseReason.NORMAL_CLOSURE
            await asyncio.wait_for(ws.response.done, 5)  # the server ended the stream after its close
            assert ws.response.reset is None
            again = await client.request("GET", "/")
            assert again.status == 200

    run(go())


def test_websocket_server_close_deny_and_http_response(served: RunningServer, certs: Certs) -> None:  # noqa: F811
    async def go() -> None:
        async with h3_connect(int(served.server.http3.port), certs.ca_pem) as client:
            bye = H3WebSocket(client, "/bye")
            assert await bye.head() == 200
            frame = await bye.recv()
            assert frame.payload == "bye"
            frame = await bye.recv()
            assert frame.opcode == Opcode.CLOSE and frame.payload == (4001, "done")
            denied = H3WebSocket(client, "/deny")
            assert await denied.head() == 403
            teapot = H3WebSocket(client, "/teapot")
            assert await teapot.head() == 418
            await asyncio.wait_for(teapot.response.done, 5)
            assert bytes(teapot.response.body) == b"no"
            other = H3WebSocket(client, "/echo", [])
            unknown = client.start("CONNECT", "/x", headers=[(b":protocol", b"webtransport")], end=False)
            await asyncio.wait_for(unknown.done, 5)
            assert unknown.status == 501
            assert await other.head() == 200

    run(go())


def test_without_our_websockets_extended_connect_is_not_offered(certs: Certs) -> None:  # noqa: F811
    """--ws none: no SETTINGS_ENABLE_CONNECT_PROTOCOL, and an extended CONNECT is malformed (H3_MESSAGE_ERROR)."""

    async def go(running: RunningServer) -> None:
        async with h3_connect(int(running.server.http3.port), certs.ca_pem) as client:
            response = await client.request("GET", "/")
            assert response.status == 200
            assert client.http._received_settings is not None
            assert Setting.ENABLE_CONNECT_PROTOCOL not in client.http._received_settings
            ws = H3WebSocket(client, "/echo")
            await asyncio.wait_for(ws.response.done, 5)
            assert ws.response.status is None and ws.response.reset == 0x10E
            assert (await client.request("GET", "/")).status == 200  # the connection goes on

    with run_server(app, http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key, ws="none") as running:
        run(go(running))
