"""WebSocket on a stream of a multiplexed connection: RFC 8441 (HTTP/2), RFC 9220 (HTTP/3).

The WebSocket is the same ``WSProtocol`` an HTTP/1.1 upgrade hands its socket to (``frames``,
``keepalive``, its options, limits, close codes and events); only what it runs on differs.
``WebSocketStream`` is its transport, made of one stream of the connection:

* what it writes becomes the stream's DATA, sent by the connection's pump as the peer's flow-control
  window allows; past ``HIGH_WATER_LIMIT`` unsent bytes the protocol is paused, as a socket pauses it;
* what arrives in DATA is handed to it, and credited back to the peer only then: while it has reading
  paused (its queue for the app is full) DATA waits here, at most one stream window of it, and the
  client is held back by flow control instead of TCP;
* ``close()`` ends the stream (END_STREAM) after what is pending, ``abort()`` resets it, and the
  client's END_STREAM is the end of input (``eof_received``); once the stream is over the protocol
  gets ``connection_lost``.

``StreamHandshake`` answers in HEADERS instead of the HTTP/1.1 handshake's 101: the extended CONNECT
was the opening request (there is no Sec-WebSocket-Key to answer), accept is ``:status 200`` (with
the chosen subprotocol and permessage-deflate parameters), ``websocket.close`` before accept is 403,
and a denial (``websocket.http.response``) or a failing app is an ordinary response on the stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, split_comma_header

from pounce._types import Scope
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT
from pounce.protocols.http.stream_cycle import FORBIDDEN_HEADERS, StreamOutput
from pounce.protocols.websockets.frames import Deflate
from pounce.protocols.websockets.handshake import Handshake
from pounce.protocols.websockets.wsproto_impl import WSProtocol

if TYPE_CHECKING:
    from pounce.protocols.http.multiplexed import MultiplexedProtocol

Headers = list[tuple[bytes, bytes]]


class StreamHandshake(Handshake):
    """The answers to an extended CONNECT, as the stream's HEADERS (see the module docstring)."""

    def __init__(self, stream: WebSocketStream, subprotocols: list[str], offers: list[str]) -> None:
        # Nothing to parse: the request arrived as the stream's header block, checked by the connection.
        self.stream = stream
        self.subprotocols = subprotocols
        self.offers = offers  # the client's sec-websocket-extensions, one offer each
        self.head = b""

    def accept(self, subprotocol: str | None, headers: Headers, deflate: bool) -> tuple[bytes, Deflate | None]:
        head: Headers = [(b":status", b"200")]
        if subprotocol is not None:
            if subprotocol not in self.subprotocols:
                raise LocalProtocolError(f"unexpected subprotocol {subprotocol}")  # as wsproto says it
            head.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        extension = PerMessageDeflate() if deflate else None
        if extension is not None and self.offers:
            accepted = server_extensions_handshake(self.offers, [extension])
            if accepted:
                head.append((b"sec-websocket-extensions", accepted))
        self.stream.send_head(head + headers, end=False)
        return b"", Deflate(extension) if extension is not None and extension.enabled() else None

    def forbid(self) -> bytes:
        self.stream.send_head([(b":status", b"403"), (b"content-length", b"0")], end=True)
        return b""

    def deny(self, status: int, headers: Headers) -> bytes:
        self.stream.send_head([(b":status", b"%d" % status), *headers], end=False)
        return b""

    def deny_body(self, body: bytes, finished: bool) -> bytes:
        return body  # DATA; the protocol closes the transport (END_STREAM) after the last piece

    def internal_error(self) -> bytes:
        head = [(b":status", b"500"), (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
        self.stream.send_head(head, end=False)
        return b"Internal Server Error"


class WebSocketStream(StreamOutput, asyncio.Transport):
    """One stream carrying a WebSocket: the ``WSProtocol``'s transport (see the module docstring)."""

    tunnel = True
    task: asyncio.Task[None] | None = None

    def __init__(self, owner: MultiplexedProtocol, stream_id: int, protocol: WSProtocol) -> None:
        asyncio.Transport.__init__(self)
        self.owner = owner
        self.stream_id = stream_id
        self.protocol = protocol
        self.pending = bytearray()
        self.held: deque[tuple[bytes, int]] = deque()  # DATA (and its credit) waiting while reading is paused
        self.reading_paused = False
        self.writing_paused = False
        self.closing = False
        self.eof_due = False  # the client's END_STREAM came behind held DATA
        self.lost = False
        self.delivery_scheduled = False

    @classmethod
    def open(cls, owner: MultiplexedProtocol, stream_id: int, scope: Scope) -> WebSocketStream:
        """Start the app on an extended CONNECT; ``scope`` is the request's HTTP scope, made a websocket one."""
        cfg = owner.config
        protocol = WSProtocol(config=cfg, server_state=owner.server_state, app_state=owner.app_state)
        stream = cls(owner, stream_id, protocol)
        headers = scope["headers"]
        subprotocols = [p for name, value in headers if name == b"sec-websocket-protocol" for p in split_comma_header(value)]
        offers = [o for name, value in headers if name == b"sec-websocket-extensions" for o in split_comma_header(value)]
        protocol.handshake = StreamHandshake(stream, subprotocols, offers)
        del scope["method"]
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        scope["subprotocols"] = subprotocols
        scope["extensions"] = {"websocket.http.response": {}}
        protocol.connection_made(stream)
        stream.task = protocol.start(scope)
        stream.task.add_done_callback(stream._task_done)
        return stream

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.owner.task_done(self)

    def send_head(self, headers: Headers, end: bool) -> None:
        if self.closing or self.head is not None:
            return
        self.head = [(name.lower(), value) for name, value in headers if name.lower() not in FORBIDDEN_HEADERS]
        if end:
            self.closing = self.end_queued = True
        self.owner.schedule(self)

    # asyncio.Transport, as the protocol uses it
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.owner.transport.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or not data:
            return
        self.pending += data
        self.owner.schedule(self)
        if not self.writing_paused and len(self.pending) > HIGH_WATER_LIMIT:
            self.writing_paused = True
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self.closing or not self.owner.is_open(self)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.owner.is_open(self):
            self.end_queued = True  # END_STREAM once the pending bytes (our close frame) are out
            self.owner.schedule(self)

    def abort(self) -> None:
        self.closing = True
        self.owner.cancel_stream(self)

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if (self.held or self.eof_due) and not self.delivery_scheduled:
                # Later, as a socket would: the protocol may be in the middle of something now.
                self.delivery_scheduled = True
                self.owner.loop.call_soon(self._deliver_held)

    def is_reading(self) -> bool:
        return not self.reading_paused

    # From the connection
    def tunnel_data(self, data: bytes, credit: int) -> None:
        if self.reading_paused or self.held:
            self.held.append((data, credit))
            self.unacked += credit  # given back if the stream ends first
            return
        self._deliver(data, credit)

    def tunnel_ended(self) -> None:
        if self.reading_paused or self.held:
            self.eof_due = True
        else:
            self._eof()

    def _deliver(self, data: bytes, credit: int) -> None:
        if data:
            self.protocol.data_received(data)
        self.owner.acknowledge(self, credit)

    def _deliver_held(self) -> None:
        self.delivery_scheduled = False
        held = self.held
        while held and not self.reading_paused and not self.lost:
            data, credit = held.popleft()
            self.unacked -= credit
            self._deliver(data, credit)
        if self.eof_due and not held and not self.reading_paused and not self.lost:
            self.eof_due = False
            self._eof()

    def _eof(self) -> None:
        # As asyncio does at a socket's EOF: the protocol may say (it never does) it writes on.
        self.protocol.eof_received()
        self.close()

    # StreamOutput
    def drained(self) -> None:
        if self.writing_paused and len(self.pending) <= HIGH_WATER_LIMIT:
            self.writing_paused = False
            self.protocol.resume_writing()

    def forgotten(self) -> bool:
        self.closing = True
        self.pending.clear()
        self.held.clear()
        if not self.lost:
            self.lost = True
            self.owner.loop.call_soon(self.protocol.connection_lost, None)
        return self.task is not None and not self.task.done()


__all__ = ["StreamHandshake", "WebSocketStream"]
