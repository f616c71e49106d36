"""``--http3-backend zoomies`` through a real UDP socket, with bengal-zoomies' own QUIC and HTTP/3 client.

zoomies needs Python >= 3.14; elsewhere this module is skipped (CI runs it on 3.14, see .ci/run). What
the aioquic client makes of this backend is measured, not asserted, by benchmarks/h3_interop.py.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

if sys.version_info < (3, 14):
    pytest.skip("bengal-zoomies (the zoomies HTTP/3 backend) needs Python >= 3.14", allow_module_level=True)
pytest.importorskip("zoomies", reason="the zoomies HTTP/3 backend needs bengal-zoomies: pip install 'pounce-asgi[h3]'")
trustme = pytest.importorskip("trustme", reason="the test certificates come from trustme")

from zoomies import H3Connection, QuicConfiguration, QuicConnection  # noqa: E402
from zoomies import events as zevents  # noqa: E402

from pounce.protocols.http3.serve import ZOOMIES_WARNING  # noqa: E402
from tests.utils import RunningServer, run_server  # noqa: E402

pytestmark = pytest.mark.timeout(60)

PIECE = 1100  # zoomies sends one send_stream_data call as one packet: keep each within a datagram


@dataclass(frozen=True)
class Certs:
    ca_pem: bytes
    cert: str
    key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("zoomies-certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(d / "key.pem")
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(d / "cert.pem", append=i > 0)
    return Certs(ca.cert_pem.bytes(), str(d / "cert.pem"), str(d / "key.pem"))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/echo: the request body back, with its size in a header; /download?N: N bytes; /slow: 5 chunks,
    0.1 s apart; else a greeting."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/echo":
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(b"x-size", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": bytes(body)})
    elif scope["path"] == "/download":
        size = int(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        while size > 0:
            piece = min(size, 65536)
            size -= piece
            await send({"type": "http.response.body", "body": b"x" * piece, "more_body": size > 0})
    elif scope["path"] == "/slow":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"done"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello %s %s" % (scope["http_version"].encode(), scope["scheme"].encode())})


@dataclass
class Response:
    done: asyncio.Future[None]
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class ZoomiesClient(asyncio.DatagramProtocol):
    """zoomies' QuicConnection and H3Connection (client side) on a UDP socket, driven by asyncio."""

    def __init__(self, ca_pem: bytes, server: tuple[str, int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = server
        config = QuicConfiguration(
            is_client=True, ca_certs=ca_pem, server_name="localhost", max_data=64 << 20, max_stream_data=64 << 20
        )
        self.quic = QuicConnection(config)
        self.h3 = H3Connection(self, is_client=True)
        self.transport: asyncio.DatagramTransport | None = None
        self.connected: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[int] = self.loop.create_future()
        self.responses: dict[int, Response] = {}
        self.next_stream = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flush_soon = False
        self.control = bytearray()  # what came on the server's control stream (stream 3)

    # zoomies' H3StreamSender: pieces that fit a datagram (zoomies would send one oversized packet)
    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        for start in range(0, max(len(data), 1), PIECE):
            piece = data[start : start + PIECE]
            self.quic.send_stream_data(stream_id, piece, end_stream and start + PIECE >= len(data))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # As the server does: one datagram lost is fatal to a zoomies connection (see zoomies_backend).
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.quic.connect()
        self.flush()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handle(self.quic.datagram_received(data, addr, now=self.loop.time()))
        # One flush (so one ACK) per loop iteration, not per datagram: zoomies cannot survive a lost
        # packet (see zoomies_backend), and an ACK per datagram can overrun the server's socket buffer.
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self.flush)

    def handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, zevents.HandshakeComplete) and not self.connected.done():
                self.connected.set_result(None)
            elif isinstance(event, zevents.ConnectionClosed) and not self.closed.done():
                self.closed.set_result(event.error_code)
            elif isinstance(event, zevents.StreamReset) and event.stream_id in self.responses:
                response = self.responses[event.stream_id]
                response.reset = event.error_code
                if not response.done.done():
                    response.done.set_result(None)
            elif isinstance(event, zevents.StreamDataReceived) and event.stream_id == 3:
                self.control += event.data  # the server's control stream: SETTINGS, later GOAWAY
            elif isinstance(event, zevents.StreamDataReceived) and event.stream_id in self.responses:
                response = self.responses[event.stream_id]
                for h3_event in self.h3.handle_event(event):
                    if isinstance(h3_event, zevents.H3HeadersReceived):
                        response.headers = list(h3_event.headers)
                        response.status = int(dict(response.headers)[b":status"])
                    elif isinstance(h3_event, zevents.H3DataReceived):
                        response.body += h3_event.data
                if event.end_stream and not response.done.done():
                    response.done.set_result(None)

    def flush(self) -> None:
        self._flush_soon = False
        if self.transport is None or self.transport.is_closing():
            return
        for datagram in self.quic.send_datagrams(now=self.loop.time()):
            self.transport.sendto(datagram, self.server)
        if self._timer is not None:
            self._timer.cancel()
        at = self.quic.get_timer()
        self._timer = self.loop.call_at(at, self.on_timer) if at is not None else None

    def on_timer(self) -> None:
        self._timer = None
        self.handle(self.quic.handle_timer(self.loop.time()))
        self.flush()

    async def request(self, method: str, path: str, body: bytes = b"", timeout: float = 20) -> Response:
        stream_id = self.next_stream
        self.next_stream += 4
        response = Response(self.loop.create_future())
        self.responses[stream_id] = response
        headers = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", b"localhost"), (b":path", path.encode())]
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        # The body in several DATA frames, as a streaming client sends it.
        for start in range(0, len(body), 16384):
            self.h3.send_data(stream_id, body[start : start + 16384], end_stream=start + 16384 >= len(body))
        self.flush()
        await asyncio.wait_for(response.done, timeout)
        return response

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def zoomies_connect(port: int, ca_pem: bytes) -> ZoomiesClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(
        lambda: ZoomiesClient(ca_pem, ("127.0.0.1", port)), remote_addr=("127.0.0.1", port)
    )
    await asyncio.wait_for(client.connected, 10)
    return client


@pytest.fixture
def served(certs: Certs, caplog: pytest.LogCaptureFixture) -> Iterator[RunningServer]:
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    with run_server(app, http3=True, http3_backend="zoomies", ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        yield running


def h3_port(running: RunningServer) -> int:
    assert running.server.http3 is not None
    return running.server.http3.port


def test_get_post_and_the_warning(served: RunningServer, certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> tuple[Response, Response, Response]:
        client = await zoomies_connect(h3_port(served), certs.ca_pem)
        try:
            get = await client.request("GET", "/")
            body = bytes(range(256)) * 200  # 51200 bytes, in four DATA frames
            post = await client.request("POST", "/echo", body)
            again = await client.request("GET", "/")  # a second request on the same connection
            return get, post, again
        finally:
            client.close()

    get, post, again = asyncio.run(go())
    assert get.status == 200 and bytes(get.body) == b"hello 3 https"
    assert post.status == 200 and post.header(b"x-size") == b"51200"
    assert bytes(post.body) == bytes(range(256)) * 200
    assert again.status == 200 and bytes(again.body) == b"hello 3 https"
    records = caplog.get_records("setup") + caplog.get_records("call")  # the server started in the fixture
    warnings = [r.getMessage() for r in records if r.name == "uvicorn.error" and r.levelno == logging.WARNING]
    version = importlib.metadata.version("bengal-zoomies")
    assert warnings == [ZOOMIES_WARNING % version], warnings
    assert "interoperates only with zoomies clients" in warnings[0]


def test_download_and_concurrent_requests(served: RunningServer, certs: Certs) -> None:
    async def go() -> tuple[Response, list[Response]]:
        client = await zoomies_connect(h3_port(served), certs.ca_pem)
        try:
            download = await client.request("GET", "/download?1000000")
            several = await asyncio.gather(*(client.request("POST", "/echo", b"%d" % i * 1000) for i in range(10)))
            return download, list(several)
        finally:
            client.close()

    download, several = asyncio.run(go())
    assert download.status == 200 and bytes(download.body) == b"x" * 1_000_000
    for i, response in enumerate(several):
        assert response.status == 200 and bytes(response.body) == b"%d" % i * 1000


def test_many_requests_on_one_connection(served: RunningServer, certs: Certs) -> None:
    """zoomies advertises 100 streams and never more; the backend raises the limit (MAX_STREAMS) as
    streams end and drops zoomies' state for them, so a connection serves any number of requests in
    bounded memory. A stream beyond the advertised limit closes the connection (STREAM_LIMIT_ERROR)."""

    async def go() -> tuple[list[Response], int, int]:
        client = await zoomies_connect(h3_port(served), certs.ca_pem)
        try:
            responses = [await client.request("GET", "/") for _ in range(150)]
            (connection,) = served.server.http3.live  # type: ignore[union-attr]
            kept = len(connection.session._quic._streams)  # type: ignore[attr-defined]
            client.next_stream = 4 * 1000  # far past the limit (stream 1000 of a limit about 200)
            refused = asyncio.ensure_future(client.request("GET", "/"))
            code = await asyncio.wait_for(client.closed, 5)
            refused.cancel()
            return responses, kept, code
        finally:
            client.close()

    responses, kept, code = asyncio.run(go())
    assert all(r.status == 200 and bytes(r.body) == b"hello 3 https" for r in responses)
    assert kept < 10, kept  # zoomies' state for 150 streams, minus the retired ones
    assert code == 0x04  # STREAM_LIMIT_ERROR (RFC 9000 §4.6)


def test_unread_body_past_the_window_is_reset(certs: Certs) -> None:
    """zoomies has no flow control: a body the app does not read is cut off at the stream window
    (H3_EXCESSIVE_LOAD), and the connection goes on serving."""

    async def hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            await asyncio.sleep(2)  # does not read the body meanwhile
        await app(scope, receive, send)

    async def go(running: RunningServer) -> tuple[Response, Response]:
        client = await zoomies_connect(h3_port(running), certs.ca_pem)
        try:
            held = await client.request("POST", "/hold", b"x" * 1_000_000)
            after = await client.request("GET", "/")
            return held, after
        finally:
            client.close()

    with run_server(hold, http3=True, http3_backend="zoomies", ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        held, after = asyncio.run(go(running))
    assert held.reset == 0x107  # H3_EXCESSIVE_LOAD
    assert after.status == 200


def test_shutdown_mid_stream(certs: Certs) -> None:
    """GOAWAY on the control stream, the stream in flight completes, then CONNECTION_CLOSE H3_NO_ERROR."""

    async def go(running: RunningServer) -> tuple[Response, ZoomiesClient, int]:
        client = await zoomies_connect(h3_port(running), certs.ca_pem)
        try:
            pending = asyncio.ensure_future(client.request("GET", "/slow"))
            await asyncio.sleep(0.15)
            running.server.should_exit = True
            response = await pending
            code = await asyncio.wait_for(client.closed, 5)
            return response, client, code
        finally:
            client.close()

    with run_server(app, http3=True, http3_backend="zoomies", ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        response, client, code = asyncio.run(go(running))
    assert response.status == 200 and bytes(response.body) == b"01234done"
    # Control stream: type 0x00, SETTINGS (0x04, empty), then GOAWAY (0x07) naming stream 4.
    assert bytes(client.control) == b"\x00\x04\x00\x07\x01\x04"
    assert code == 0x100


def test_refusal_and_version_negotiation(certs: Certs) -> None:
    """What the backend builds where zoomies has nothing: a CONNECTION_REFUSED close in the client's
    Initial keys (a full or stopping endpoint), and a Version Negotiation packet (RFC 8999 §6)."""
    from pounce.protocols.http3.seam import InitialPacket
    from pounce.protocols.http3.zoomies_backend import ZoomiesBackend

    backend = ZoomiesBackend(
        certfile=certs.cert, keyfile=certs.key, password=None, idle_timeout=5, stream_window=1, connection_window=1
    )
    client = QuicConnection(QuicConfiguration(is_client=True, ca_certs=certs.ca_pem, server_name="localhost"))
    client.connect()
    (initial,) = client.send_datagrams(now=1.0)
    dcid = initial[6 : 6 + initial[5]]
    scid_at = 7 + initial[5]
    scid = initial[scid_at : scid_at + initial[scid_at - 1]]
    packet = InitialPacket(1, dcid, scid)
    refusal = backend.refuse(packet)
    assert refusal is not None
    closed = [e for e in client.datagram_received(refusal, ("127.0.0.1", 1), now=2.0) if isinstance(e, zevents.ConnectionClosed)]
    assert [e.error_code for e in closed] == [0x02]  # CONNECTION_REFUSED
    negotiation = backend.version_negotiation(packet)
    assert negotiation[0] & 0x80 and negotiation[1:5] == bytes(4)
    assert negotiation[5:] == bytes([len(scid)]) + scid + bytes([len(dcid)]) + dcid + b"\x00\x00\x00\x01"


def test_cli_refuses_what_zoomies_lacks(certs: Certs) -> None:
    from click.testing import CliRunner

    from pounce.main import main

    for flag, message in (("--http3-0rtt", "--http3-0rtt is not available"), ("--http3-retry", "--http3-retry is not available")):
        args = ["tests.test_http3_zoomies:app", "--http3", "--http3-backend", "zoomies", flag]
        result = CliRunner().invoke(main, [*args, "--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key])
        assert result.exit_code == 2, result.output
        assert message in result.output
