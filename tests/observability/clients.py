"""What the end-to-end observability tests share: an event recorder, a raw HTTP/2 client, bounded waits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events

from pounce.observability.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    RequestEvent,
    RequestStarted,
)

E = TypeVar("E", bound=Event)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


class Recorder:
    """An event handler that keeps every event; safe to read from the test thread while workers emit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    def wait_for(self, kind: type[E], count: int = 1, timeout: float = 5.0) -> list[E]:
        wait_until(lambda: len(self.of(kind)) >= count, timeout, f"{count} x {kind.__name__}")
        return self.of(kind)

    def of_request(self, started: RequestStarted) -> list[Event]:
        """The events of one request (``started``'s and the later ones with its ids), in order."""
        return [
            event for event in self.events
            if isinstance(event, RequestEvent)
            and (event.worker_id, event.request_id) == (started.worker_id, started.request_id)
        ]


def connections_pair(events: list[Event]) -> dict[int, tuple[ConnectionOpened, ConnectionClosed]]:
    """Check that every connection opened was closed once, after it, with the requests it carried counted.

    Every request event must belong to an opened connection, between its open and its close. Returns
    the pairs by connection id.
    """
    opened: dict[int, ConnectionOpened] = {}
    closed: dict[int, ConnectionClosed] = {}
    requests: dict[int, int] = {}
    for event in events:
        if isinstance(event, ConnectionOpened):
            assert event.connection_id not in opened, f"connection {event.connection_id} opened twice"
            opened[event.connection_id] = event
        elif isinstance(event, ConnectionClosed):
            assert event.connection_id in opened, f"connection {event.connection_id} closed, never opened"
            assert event.connection_id not in closed, f"connection {event.connection_id} closed twice"
            assert event.protocol == opened[event.connection_id].protocol
            closed[event.connection_id] = event
        elif isinstance(event, RequestEvent):
            assert event.connection_id in opened, f"{event} on a connection never opened"
            assert event.connection_id not in closed, f"{event} after its connection closed"
            if isinstance(event, RequestStarted):
                requests[event.connection_id] = requests.get(event.connection_id, 0) + 1
    assert opened.keys() == closed.keys(), "connections opened but not closed"
    for connection_id, done in closed.items():
        assert done.requests_served == requests.get(connection_id, 0), done
        assert opened[connection_id].time <= done.time
    return {cid: (opened[cid], closed[cid]) for cid in opened}


class H2Client:
    """HTTP/2 with prior knowledge over a raw socket, through the ``h2`` library (frames, resets, streams)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
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
