"""A raw HTTP/2 client for tests: prior knowledge over a socket, through the ``h2`` library."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events


class H2Client:
    """HTTP/2 with prior knowledge over a raw socket, through the ``h2`` library (frames, resets, streams)."""

    def __init__(self, host: str, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[Any] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: bytes = b"GET", path: bytes = b"/", headers: list[tuple[bytes, bytes]] | None = None,
                body: bytes | None = None, end: bool = True) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        head = [(b":method", method), (b":path", path), (b":scheme", b"http"), (b":authority", b"example.org")]
        self.conn.send_headers(stream_id, head + (headers or []), end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    def reset(self, stream_id: int, error_code: int = 8) -> None:
        self.conn.reset_stream(stream_id, error_code)
        self.flush()

    def read(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if self.closed:
                raise ConnectionError("server closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not met in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("condition not met in time") from None
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                continue
            self.events += self.conn.receive_data(data)
            self.flush()

    def of(self, kind: type[Any], stream_id: int | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (stream_id is None or e.stream_id == stream_id)]

    def ended(self, stream_id: int) -> bool:
        return bool(self.of(h2.events.StreamEnded, stream_id) or self.of(h2.events.StreamReset, stream_id))

    def response(self, stream_id: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers (in order, repeated ones kept) and body of the stream's response."""
        self.read(lambda: self.ended(stream_id))
        responses = self.of(h2.events.ResponseReceived, stream_id)
        assert responses, self.events
        headers = list(responses[0].headers)
        status = int(dict(headers)[b":status"])
        body = b"".join(e.data for e in self.of(h2.events.DataReceived, stream_id))
        return status, headers, body

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
