"""An HTTP/3 test client: aioquic's own QUIC client and H3Connection, independent of Pounce's code."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration


@dataclasses.dataclass
class Response:
    stream_id: int
    done: asyncio.Future[None]
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] | None = None
    informational: list[int] = dataclasses.field(default_factory=list)
    body: bytearray = dataclasses.field(default_factory=bytearray)
    reset: int | None = None  # the server's RESET_STREAM error code

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.responses: dict[int, Response] = {}
        self.terminated: quic_events.ConnectionTerminated | None = None
        self.closed_event = asyncio.Event()
        self.goaway = False

    def quic_event_received(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived) and event.stream_id % 4 == 3:
            # The server's control stream: notice GOAWAY (type 0x07), which aioquic's H3 layer discards.
            if b"\x07" in event.data:
                self.goaway = True
        for h3_event in self.http.handle_event(event):
            response = self.responses.get(getattr(h3_event, "stream_id", -1))
            if response is None:
                continue
            if isinstance(h3_event, h3_events.HeadersReceived):
                headers = list(h3_event.headers)
                status = dict(headers).get(b":status")
                if status is not None and int(status) < 200:
                    response.informational.append(int(status))
                elif response.status is None:
                    response.status = int(status or 0)
                    response.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
                else:
                    response.trailers = headers
            elif isinstance(h3_event, h3_events.DataReceived):
                response.body += h3_event.data
            if getattr(h3_event, "stream_ended", False) and not response.done.done():
                response.done.set_result(None)
        if isinstance(event, quic_events.StreamReset):
            response = self.responses.get(event.stream_id)
            if response is not None:
                response.reset = event.error_code
                if not response.done.done():
                    response.done.set_result(None)
        elif isinstance(event, quic_events.ConnectionTerminated):
            self.terminated = event
            self.closed_event.set()
            for response in self.responses.values():
                if not response.done.done():
                    response.done.set_result(None)

    def start(
        self,
        method: str = "GET",
        path: str = "/",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        end: bool = True,
    ) -> Response:
        """Send a request (its whole body, if given) and return its response, to await with ``done``."""
        stream_id = self._quic.get_next_available_stream_id()
        response = Response(stream_id, asyncio.get_running_loop().create_future())
        self.responses[stream_id] = response
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *(headers or []),
        ]
        self.http.send_headers(stream_id, head, end_stream=end and body is None)
        if body is not None:
            self.http.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return response

    async def request(self, method: str = "GET", path: str = "/", timeout: float = 20, **kwargs: Any) -> Response:
        response = self.start(method, path, **kwargs)
        await asyncio.wait_for(response.done, timeout)
        return response

    def reset(self, stream_id: int, error_code: int = 0x10C) -> None:
        self._quic.reset_stream(stream_id, error_code)
        self._quic.stop_stream(stream_id, error_code)
        self.transmit()


@contextlib.asynccontextmanager
async def h3_connect(port: int, ca_pem: str, **config: Any) -> AsyncIterator[H3Client]:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost", **config)
    configuration.load_verify_locations(ca_pem)
    async with connect("127.0.0.1", port, configuration=configuration, create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        yield client
