"""The request cycle of one stream of a multiplexed connection (HTTP/2, HTTP/3).

A stream's response differs from an HTTP/1.1 one in the same ways whatever the framing: no
connection-specific fields, trailers and interim responses as HEADERS of their own, a failing app
resets its stream and never the connection, and the body leaves as flow control allows. That is
written here once, against ``StreamOwner`` (what a connection offers its streams; the connection side,
shared as well, is ``multiplexed.MultiplexedProtocol``). The ASGI side, extensions included (trailers,
early hints, pathsend), is the shared ``RequestResponseCycle``'s. ``StreamOutput`` is what the
connection's pump reads of any stream: a request's cycle, or a WebSocket carried on a stream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from pounce._types import ASGI3Application, Message, Scope
from pounce.protocols.http.cycle import INVALID_HEADER_NAME, INVALID_HEADER_VALUE, RequestResponseCycle
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl

# RFC 9113 §8.2.2 / RFC 9114 §4.2: connection-specific fields are not allowed on a stream. Apps written
# for HTTP/1.1 send them anyway ("connection: close" from our own 503/500 answers too): dropped.
FORBIDDEN_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
NO_CONTENT_STATUSES = frozenset((204, 304))


class StreamOwner(Protocol):
    """What a multiplexed connection offers the cycles of its streams."""

    logger: logging.Logger
    timeout_request_body: float
    stream_label: str  # "HTTP/3", for log lines

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]: ...
    def is_open(self, cycle: StreamCycle) -> bool: ...
    def abort_stream(self, cycle: StreamCycle) -> None: ...
    def send_informational(self, cycle: StreamCycle, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def schedule(self, cycle: StreamCycle) -> None: ...
    def acknowledge(self, cycle: StreamCycle, size: int) -> None: ...
    def refuse_body(self, cycle: StreamCycle, status: int, reason: str) -> None: ...
    def task_done(self, cycle: StreamCycle) -> None: ...
    def on_response_complete(self) -> None: ...


class StreamTransport(asyncio.Transport):
    """What a cycle sees as its transport: closing it resets its stream, not the connection."""

    def __init__(self, owner: StreamOwner, cycle: StreamCycle) -> None:
        super().__init__()
        self._owner = owner
        self._cycle = cycle

    def close(self) -> None:
        self._owner.abort_stream(self._cycle)

    def is_closing(self) -> bool:
        return not self._owner.is_open(self._cycle)

    # Inbound back-pressure is the protocol's flow control (see ``StreamCycle.receive``), not socket reads.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class StreamOutput:
    """One stream's outbound state, as the connection's pump reads it (``MultiplexedProtocol.pump``)."""

    stream_id: int
    pending: bytearray  # bytes for DATA frames, waiting for the peer's credit
    head: list[tuple[bytes, bytes]] | None = None  # response head not yet handed to the framing
    end_queued = False  # the stream ends after ``pending`` (and ``trailers``)
    trailers: list[tuple[bytes, bytes]] | None = None
    queued = False  # in the protocol's list of streams to pump at the next flush
    unacked = 0  # received bytes the app has not taken yet (flow-controlled bytes)
    # Forgotten (reset, refused) while its app task still runs: it still counts against the stream limit.
    orphaned = False
    # Output waiting for flow-control credit: the deadline, and what was sent since it was armed.
    window_timer: asyncio.TimerHandle | None = None
    window_progress = 0
    # A tunnel (a WebSocket on the stream, RFC 8441) takes the stream's DATA and end itself; a request's
    # body is the connection's to check and hand to its cycle.
    tunnel = False

    def tunnel_data(self, data: bytes, credit: int) -> None:
        raise NotImplementedError  # pragma: no cover

    def tunnel_ended(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def take_head(self) -> list[tuple[bytes, bytes]] | None:
        """The head, once."""
        head, self.head = self.head, None
        return head

    def take_chunk(self, size: int) -> bytes:
        """Up to ``size`` bytes of pending output, removed from the buffer."""
        pending = self.pending
        if size >= len(pending):
            chunk = bytes(pending)
            pending.clear()
        else:
            chunk = bytes(pending[:size])
            del pending[:size]
        return chunk

    def drained(self) -> None:
        """The pump handed on what it could and the stream goes on: the writer may go on too."""

    def forgotten(self) -> bool:
        """The stream is over for the connection (its output is dropped); True while its app still runs."""
        raise NotImplementedError  # pragma: no cover


class StreamCycle(StreamOutput, RequestResponseCycle):
    """One stream: the shared ASGI cycle with stream framing hooks, trailers and early hints."""

    length_left: int | None = None
    # Request body: what content-length declared (None: nothing) and how much has arrived.
    declared_length: int | None = None
    received = 0

    def __init__(self, owner: StreamOwner, stream_id: int, scope: Scope, expect_100_continue: bool) -> None:
        self.stream_id = stream_id
        self.owner = owner
        handle = StreamTransport(owner, self)
        RequestResponseCycle.__init__(
            self, scope, handle, FlowControl(handle), owner.logger, owner.on_response_complete, True, expect_100_continue
        )
        self.pending = bytearray()
        self.is_head = scope["method"] == "HEAD"
        # The shared receive() enforces the request-body deadline; what happens then is ours.
        self.body_timeout = owner.timeout_request_body

    def on_body_timeout(self) -> None:
        """The body made no progress in time: 408 on this stream (a reset once the response started)."""
        self.owner.logger.warning("Request body not received in time on %s stream %d.", self.owner.stream_label, self.stream_id)
        self.owner.refuse_body(self, 408, "Request body not received in time.")

    async def run_asgi(self, app: ASGI3Application) -> None:
        try:
            await super().run_asgi(app)
        finally:
            self.owner.task_done(self)

    # A stream never closes its connection for one response: "keep-alive off" has no meaning per stream.
    @property
    def keep_alive(self) -> bool:
        return True

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        pass

    async def receive(self) -> Message:
        message = await super().receive()
        if self.unacked:
            # The app has the bytes: give the peer the credit back.
            size, self.unacked = self.unacked, 0
            self.owner.acknowledge(self, size)
        return message

    # Framing hooks
    def write_continue(self) -> None:
        self.owner.send_informational(self, 100, [])

    def write_response_start(self, status: int, headers: Any) -> None:
        head = [(b":status", b"%d" % status), *self.owner.default_headers]
        for name, value in headers:
            if INVALID_HEADER_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if INVALID_HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            lname = name.lower()
            if lname in FORBIDDEN_HEADERS:
                continue
            if lname == b"te" and value.lower().strip() != b"trailers":
                continue
            if lname == b"content-length":
                self.length_left = int(value)
            # RFC 9113 §8.2.1 / RFC 9114 §4.2: no whitespace around a value (h2's own normalising is off).
            head.append((lname, value.strip(b" \t")))
        if status < 200 or status in NO_CONTENT_STATUSES or self.is_head:
            # RFC 9110 §6.4.1: no content; a HEAD response keeps the length a GET would have had.
            self._body_allowed = False
            self.length_left = None
        self.head = head
        self.owner.schedule(self)

    def write_body(self, body: bytes, more_body: bool) -> None:
        if self._body_allowed and body:
            if self.length_left is not None:
                self.length_left -= len(body)
                if self.length_left < 0:
                    raise RuntimeError("Response content longer than Content-Length")
            self.pending += body
        if not more_body:
            if self.length_left:
                raise RuntimeError("Response content shorter than Content-Length")
            self.end_queued = True
        if len(self.pending) > HIGH_WATER_LIMIT:
            self.flow.pause_writing()
        self.owner.schedule(self)

    # Extensions (see RequestResponseCycle); a file (pathsend) is sent in chunks through write_body.
    def write_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.owner.send_informational(self, status, headers)

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = [(name, value.strip(b" \t")) for name, value in trailers] or None
        self.write_body(b"", False)

    def frame_file(self, size: int) -> int:
        if not self._body_allowed:
            return 0
        if self.length_left is None:
            self.length_left = size
            if self.head is not None:
                # The file is the whole body: its size is the content-length (clients show progress).
                self.head.append((b"content-length", b"%d" % size))
            return size
        # A content-length the app declared is what goes out, even of a file that has grown since.
        return min(size, self.length_left)

    def take_head(self) -> list[tuple[bytes, bytes]] | None:
        """The response head, once, completed for the wire: content-length when the whole body is known
        (clients show progress, preallocate), and Server-Timing when that is on."""
        head = self.head
        if head is None:
            return None
        self.head = None
        if self.end_queued and self.length_left is None and self._body_allowed:
            head.append((b"content-length", b"%d" % len(self.pending)))
        if self.observer is not None:
            field = self.observer.head_sent()
            if field is not None:
                head.append(field)
        return head

    def drained(self) -> None:
        if self.flow.write_paused and len(self.pending) <= HIGH_WATER_LIMIT:
            self.flow.resume_writing()

    def forgotten(self) -> bool:
        if not self.response_complete:
            self.disconnected = True
            if self.observer is not None:
                self.observer.client_disconnected()
        self.pending.clear()
        self.notify()
        self.flow.resume_writing()
        return not self.finished


__all__ = ["FORBIDDEN_HEADERS", "StreamCycle", "StreamOutput", "StreamOwner", "StreamTransport"]
