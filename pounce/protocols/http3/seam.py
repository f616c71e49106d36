"""The seam between Pounce's HTTP/3 layer and a QUIC library: the only interface a backend implements.

Pounce owns the UDP socket, the routing of datagrams to connections, the timers, the limits and the
ASGI side; a backend owns QUIC (packet protection, loss recovery, congestion control, TLS 1.3) and the
HTTP/3 framing (QPACK, frames). The seam is deliberately at the level of HTTP/3 requests, not QUIC
streams: a backend whose library has its own H3 layer (aioquic, bengal-zoomies) maps it onto these few
calls and events, and nothing of the library leaks past it.

Time is passed in (the event loop's clock), never read by a backend, so timers stay in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, Union

Address = tuple[str, int]

# RFC 9114 §8.1 error codes the HTTP/3 layer uses.
H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_EXCESSIVE_LOAD = 0x107
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E


# Events a session reports (``QuicSession.events``), in the order they happened.
@dataclasses.dataclass(frozen=True)
class HeadersReceived:
    """A request head (or, later on the same stream, request trailers)."""

    stream_id: int
    headers: list[tuple[bytes, bytes]]
    ended: bool


@dataclasses.dataclass(frozen=True)
class DataReceived:
    """Request body bytes; they hold receive window until the app takes them (``QuicSession.consumed``)."""

    stream_id: int
    data: bytes
    ended: bool


@dataclasses.dataclass(frozen=True)
class StreamReset:
    """The client reset its request stream, or asked us to stop sending (STOP_SENDING) on it."""

    stream_id: int
    error_code: int


@dataclasses.dataclass(frozen=True)
class ConnectionIdIssued:
    connection_id: bytes


@dataclasses.dataclass(frozen=True)
class ConnectionIdRetired:
    connection_id: bytes


@dataclasses.dataclass(frozen=True)
class HandshakeCompleted:
    alpn: str | None
    early_data: bool


@dataclasses.dataclass(frozen=True)
class ConnectionTerminated:
    """The connection is over (closed by either side, or idle): nothing more is sent or received."""

    error_code: int
    reason: str


SessionEvent = Union[
    HeadersReceived, DataReceived, StreamReset, ConnectionIdIssued, ConnectionIdRetired, HandshakeCompleted, ConnectionTerminated
]


@dataclasses.dataclass(frozen=True)
class InitialPacket:
    """What the endpoint parsed from a datagram that may open a connection (RFC 8999 invariants)."""

    version: int
    destination_cid: bytes
    source_cid: bytes


class QuicSession(Protocol):
    """One QUIC connection carrying HTTP/3, as a backend runs it."""

    def connection_ids(self) -> Sequence[bytes]:
        """The connection IDs datagrams for this connection arrive with, so far (more come as events)."""
        ...

    def receive(self, data: bytes, addr: Address, now: float) -> None: ...

    def opened(self) -> bool:
        """Whether any packet so far could be decrypted: a forged Initial must not open a connection."""
        ...

    def events(self) -> list[SessionEvent]:
        """What ``receive``, ``handle_timer`` and our own calls have produced since the last call."""
        ...

    def datagrams(self, now: float) -> list[tuple[bytes, Address]]:
        """What to send now (each element one UDP datagram)."""
        ...

    def timer(self) -> float | None:
        """When ``handle_timer`` must run next (loop time), or None."""
        ...

    def handle_timer(self, now: float) -> None: ...

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None: ...

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    def unsent(self, stream_id: int) -> int:
        """Bytes handed to ``send_data`` on this stream that have not been sent yet (waiting for the
        peer's credit or the congestion window); the protocol hands over more only while this is low."""
        ...

    def consumed(self, stream_id: int, size: int) -> None:
        """The app took ``size`` bytes of this stream's body: the peer may send that much more.

        Until then the bytes count against the stream's and the connection's receive windows, which
        is what bounds the request body a connection holds.
        """
        ...

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """End one request stream both ways (RESET_STREAM and STOP_SENDING); the others go on."""
        ...

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        """STOP_SENDING only: our answer on the stream is complete and goes out; the rest of the
        request is not wanted (RFC 9114 §4.1.1)."""
        ...

    def ping(self) -> None:
        """Elicit an acknowledgement: keeps the QUIC idle timer from ending a connection whose app is
        slow to answer (nothing else would flow meanwhile)."""
        ...

    def goaway(self, first_refused: int) -> None:
        """HTTP/3 GOAWAY (RFC 9114 §5.2): requests on stream ``first_refused`` and above are not served."""
        ...

    def close(self, error_code: int, reason: str) -> None:
        """CONNECTION_CLOSE (it leaves with the next ``datagrams``)."""
        ...


class QuicBackend(Protocol):
    """Makes sessions; configured once per worker from the server's TLS and HTTP/3 options."""

    name: str
    # Length of the connection IDs we issue: short headers carry no length, so routing needs it.
    connection_id_length: int

    def supports_version(self, version: int) -> bool: ...

    def is_initial(self, first_byte: int, version: int) -> bool:
        """Whether a long-header packet of ``version`` with this first byte is an Initial."""
        ...

    def version_negotiation(self, packet: InitialPacket) -> bytes: ...

    def accept(self, data: bytes, packet: InitialPacket, addr: Address, now: float) -> QuicSession | bytes | None:
        """A new connection for this Initial; or a datagram to send back instead (Retry, or a close
        for a bad token); or None to ignore it."""
        ...

    def refuse(self, packet: InitialPacket) -> bytes | None:
        """A datagram closing this would-be connection (CONNECTION_REFUSED): we are full or stopping."""
        ...


__all__ = [
    "Address",
    "ConnectionIdIssued",
    "ConnectionIdRetired",
    "ConnectionTerminated",
    "DataReceived",
    "HandshakeCompleted",
    "HeadersReceived",
    "InitialPacket",
    "QuicBackend",
    "QuicSession",
    "SessionEvent",
    "StreamReset",
]
