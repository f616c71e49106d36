"""WebSocket over HTTP/1.1: wsproto for the handshake, a lean RFC 6455 frame codec for the traffic.

The HTTP protocol hands over the connection on an upgrade request: it builds this protocol,
calls ``connection_made(transport)``, replays the raw request head (plus any bytes already
read) through ``data_received`` and switches the transport to us.

wsproto (the ``ws`` extra) does what it is best at: it validates the upgrade request, negotiates
permessage-deflate, and writes the 101, 403, 500 and ``websocket.http.response`` answers. Once
the connection is accepted, frames go through :class:`FrameReader` and :func:`encode_frame`
below instead of wsproto's frame layer: one pass over each frame, one unmasking copy, no
per-frame objects, and permessage-deflate (RFC 7692) with a decompression budget, so that a
small compressed frame cannot inflate past ``ws_max_size``. That makes a small message about six
times cheaper than on Uvicorn's wsproto path; at 64 KiB the gain is about 1.3x, because there
unmasking the payload (pure Python, see ``unmask``) is most of the work on both.

Behaviour follows Uvicorn's wsproto implementation (ASGI events, close codes, log lines, reads
paused while a received message waits for the app). Differences, all on purpose:

* ``websocket.send`` output is coalesced: what the app sends before it next yields to the event
  loop goes out in one ``write``, flushed at once past 64 KiB so that the transport's write
  flow control still applies;
* protocol errors (bad UTF-8, bad opcodes, unmasked or malformed frames) are answered with a
  close frame carrying the right code (1002/1007) instead of a bare TCP close, and a send after
  such a failure raises ``ClientDisconnected`` like a send after the peer left;
* ``receive()`` after the disconnect message returns the disconnect message again instead of
  waiting forever;
* wsproto drops ``sec-websocket-protocol`` and ``sec-websocket-extensions`` from the request
  headers; they are put back in the scope.

``ws_max_queue`` needs no separate limit here: reads pause as soon as one message waits, so at
most one read's worth of messages is ever queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections import deque
from typing import Any, Literal, cast
from urllib.parse import unquote

import h11
import wsproto
from wsproto import ConnectionType, events
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from pounce._types import ASGI3Application, ASGISendEvent, Message, Scope
from pounce.logging import TRACE_LOG_LEVEL
from pounce.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

# How long to wait for the peer to answer our close frame before dropping the TCP connection
# (RFC 6455 7.1.1 lets the server give up on a peer that never replies).
CLOSE_TIMEOUT = 10.0

# Bytes a client may send after its upgrade request and before the app accepts; beyond this we
# stop reading until the handshake is decided, so a flood cannot grow memory without bound.
_EARLY_DATA_LIMIT = 64 * 1024

# Coalesced websocket.send output is written at once past this size, so that the transport
# sees the data (and can pause us) before an app that never yields fills memory.
_FLUSH_AT = 64 * 1024

_RECEIVE = "websocket.receive"

# ---------------------------------------------------------------------------------- framing

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Close codes a peer may send (RFC 6455 7.4.1 and the IANA registry); 1005, 1006 and 1015
# are only ever reported locally, never put on the wire.
_VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_LOCAL_ONLY_CLOSE_CODES = frozenset({1005, 1006, 1015})

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
# Below this size XOR through Python ints is faster; above it, four strided translate()s are.
_INT_UNMASK_MAX = 1024

# A received frame event: ("message", str | bytes) | ("ping", bytes) | ("pong", bytes) | ("close", int, str)
FrameEvent = tuple[Any, ...]


class ProtocolViolation(Exception):
    """The peer broke RFC 6455/7692: fail the connection with ``code`` (RFC 6455 7.1.7)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(buf: bytes | bytearray, start: int, stop: int) -> bytes:
    """The payload ``buf[start:stop]`` XORed with the 4-byte client mask just before it (RFC 6455 5.3)."""
    mask = buf[start - 4 : start]
    n = stop - start
    if n <= _INT_UNMASK_MAX:
        key = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(buf[start:stop], "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    data = bytearray(memoryview(buf)[start:stop])  # the one copy the payload needs
    if mask != b"\x00\x00\x00\x00":
        a, b, c, d = (_XOR_TABLES[byte] for byte in mask)
        data[0::4] = data[0::4].translate(a)
        data[1::4] = data[1::4].translate(b)
        data[2::4] = data[2::4].translate(c)
        data[3::4] = data[3::4].translate(d)
    return bytes(data)


def frame_header(opcode: int, length: int, rsv1: bool = False) -> bytes:
    """The header of a final, unmasked (server-to-client) frame."""
    first = 0xC0 | opcode if rsv1 else 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    return frame_header(opcode, len(payload), rsv1) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """A close frame's body: the code, then the reason cut to fit 125 bytes on a character boundary."""
    if code is None or code == 1005:
        return b""
    if code in _LOCAL_ONLY_CLOSE_CODES:
        code = 1000  # as wsproto does: these codes must never be sent
    if not 0 <= code <= 0xFFFF:
        raise RuntimeError(f"Invalid WebSocket close code {code!r}.")
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        encoded = encoded[:123].decode("utf-8", errors="ignore").encode("utf-8")
    return struct.pack("!H", code) + encoded


def parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 1005, ""  # "no status code": RFC 6455 7.1.5
    if len(payload) == 1:
        raise ProtocolViolation(1002, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolViolation(1002, f"close frame with invalid code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(1007, "close reason is not valid UTF-8") from None
    return code, reason


class Deflate:
    """permessage-deflate (RFC 7692) with the parameters wsproto negotiated."""

    def __init__(self, extension: PerMessageDeflate) -> None:
        self.inbound_bits = extension.client_max_window_bits
        self.outbound_bits = extension.server_max_window_bits
        self.inbound_reset = extension.client_no_context_takeover
        self.outbound_reset = extension.server_no_context_takeover
        self.decompressor = zlib.decompressobj(-self.inbound_bits)
        self.compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.outbound_bits)

    def decompress(self, parts: list[bytes], max_size: int) -> bytes:
        """Inflate one message, failing with 1009 as soon as it outgrows ``max_size``."""
        d = self.decompressor
        out: list[bytes] = []
        budget = max_size + 1  # one byte more than allowed tells "too big" from "exactly full"
        try:
            for part in [*parts, b"\x00\x00\xff\xff"]:
                chunk = d.decompress(part, budget)
                budget -= len(chunk)
                if budget <= 0 or d.unconsumed_tail:
                    raise ProtocolViolation(1009, f"Message exceeds the maximum size ({max_size} bytes)")
                out.append(chunk)
        except zlib.error as exc:
            raise ProtocolViolation(1007, f"invalid compressed data: {exc}") from None
        if self.inbound_reset:
            self.decompressor = zlib.decompressobj(-self.inbound_bits)
        return out[0] if len(out) == 1 else b"".join(out)

    def compress(self, data: bytes) -> bytes:
        c = self.compressor
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if self.outbound_reset:
            self.compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.outbound_bits)
        # RFC 7692 7.2.1: drop the 00 00 ff ff tail of the sync flush.
        return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


class FrameReader:
    """Incremental parser for the frames a client sends (RFC 6455 section 5)."""

    def __init__(self, max_size: int, deflate: Deflate | None) -> None:
        self.max_size = max_size
        self.deflate = deflate
        self.pending = bytearray()  # the start of a frame not yet complete
        self.need = 0  # bytes ``pending`` must hold before parsing is worth another try
        # The fragmented message being assembled
        self.opcode: int | None = None
        self.compressed = False
        self.parts: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> list[FrameEvent]:
        out: list[FrameEvent] = []
        pending = self.pending
        pos = 0
        if pending:
            need = self.need
            if need and len(pending) + len(data) < need:
                pending += data  # a large frame still arriving: nothing to parse yet
                return out
            if need:
                # Complete the frame that straddled reads, without copying the rest of ``data``.
                pos = need - len(pending)
                pending += memoryview(data)[:pos]
                self.need = 0
                consumed = self.parse(pending, 0, out)
                if out and out[-1][0] == "close":
                    pending.clear()
                    return out
                if consumed < len(pending):  # pragma: no cover - pending held exactly one frame
                    data, pos = bytes(pending[consumed:]) + bytes(memoryview(data)[pos:]), 0
                pending.clear()
            else:
                # Only a few header bytes were pending: parse from a joined copy.
                pending += data
                data = bytes(pending)
                pending.clear()
        end = self.parse(data, pos, out)
        if end < len(data) and not (out and out[-1][0] == "close"):
            pending += memoryview(data)[end:]
        return out

    def parse(self, data: bytes | bytearray, pos: int, out: list[FrameEvent]) -> int:
        """Parse whole frames from ``data[pos:]`` into ``out``; return where the unparsed rest starts."""
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 6
            elif length == 126:
                if end - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 8
                if length < 126:
                    raise ProtocolViolation(1002, "frame length not minimally encoded")
            else:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 14
                if length < 65536 or length >> 63:
                    raise ProtocolViolation(1002, "frame length not minimally encoded or too large")
            if not b1 & 0x80:
                raise ProtocolViolation(1002, "client frames must be masked")
            opcode = b0 & 0x0F
            if opcode >= 8:
                if length > 125 or not b0 & 0x80:
                    raise ProtocolViolation(1002, "control frames must be unfragmented and at most 125 bytes")
            else:
                # Refused on the declared length, before any of it is buffered. A compressed message
                # is held to max_size once inflated (Deflate.decompress); on the wire it may take a
                # little more than max_size when the data does not compress.
                compressed = self.compressed or (b0 & 0x40 and self.deflate is not None)
                limit = self.max_size + (self.max_size >> 3) + 1024 if compressed else self.max_size
                if self.size + length > limit:
                    raise ProtocolViolation(1009, f"Message exceeds the maximum size ({self.max_size} bytes)")
            stop = start + length
            if stop > end:
                self.need = stop - pos
                break
            payload = unmask(data, start, stop) if length else b""
            pos = stop
            event = self.frame(b0, opcode, payload)
            if event is not None:
                out.append(event)
                if event[0] == "close":
                    return pos  # nothing after a close frame counts
        return pos

    def frame(self, b0: int, opcode: int, payload: bytes) -> FrameEvent | None:
        fin = b0 & 0x80
        rsv1 = b0 & 0x40
        if b0 & 0x30 or (rsv1 and (self.deflate is None or opcode == OP_CONTINUATION or opcode >= 8)):
            raise ProtocolViolation(1002, "reserved bits set without a negotiated extension")
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if self.opcode is not None:
                raise ProtocolViolation(1002, "new data frame before the fragmented message finished")
            if fin:
                if rsv1:
                    assert self.deflate is not None
                    payload = self.deflate.decompress([payload], self.max_size)
                return ("message", self.decode(payload) if opcode == OP_TEXT else payload)
            self.opcode = opcode
            self.compressed = bool(rsv1)
            self.parts = [payload]
            self.size = len(payload)
            return None
        if opcode == OP_CONTINUATION:
            if self.opcode is None:
                raise ProtocolViolation(1002, "continuation frame without a message to continue")
            self.parts.append(payload)
            self.size += len(payload)
            if not fin:
                return None
            parts, self.parts, self.size = self.parts, [], 0
            message_opcode, self.opcode = self.opcode, None
            if self.compressed:
                self.compressed = False
                assert self.deflate is not None
                data = self.deflate.decompress(parts, self.max_size)
            else:
                data = b"".join(parts)
            return ("message", self.decode(data) if message_opcode == OP_TEXT else data)
        if opcode == OP_PING:
            return ("ping", payload)
        if opcode == OP_PONG:
            return ("pong", payload)
        if opcode == OP_CLOSE:
            code, reason = parse_close(payload)
            return ("close", code, reason)
        raise ProtocolViolation(1002, f"unknown opcode {opcode:#x}")

    @staticmethod
    def decode(payload: bytes) -> str:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "text message is not valid UTF-8") from None


# ---------------------------------------------------------------------------------- protocol


class WSProtocol(asyncio.Protocol):
    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        # The frozen ServerConfig when the Config provides one; Uvicorn-style attribute names
        # otherwise (both spell the websocket settings the same way).
        settings = getattr(config, "server_config", None)
        if settings is not None:
            self.app = cast(ASGI3Application, settings.app)
        else:
            settings = config
            self.app = cast(ASGI3Application, config.loaded_app)
        self.config = config
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path: str = settings.root_path
        self.asgi_version: str = settings.asgi_version
        self.app_state = app_state
        self.max_size: int = settings.ws_max_size
        self.max_queue: int = settings.ws_max_queue
        self.per_message_deflate: bool = settings.ws_per_message_deflate
        self.ping_interval: float | None = settings.ws_ping_interval
        self.ping_timeout: float | None = settings.ws_ping_timeout

        # Shared server state
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks

        # Connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.scope: Scope = {}

        # Handshake (wsproto), then frames (FrameReader, encode_frame)
        self.conn = wsproto.WSConnection(connection_type=ConnectionType.SERVER)
        self.reader: FrameReader | None = None
        self.deflate: Deflate | None = None
        self.request_seen = False
        self.handshake_complete = False
        self.response_started = False
        self.close_sent = False
        self.peer_closed = False  # the peer's close frame arrived, or the peer broke the protocol
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.close_timeout = CLOSE_TIMEOUT
        self.early_data = bytearray()

        # Messages for the app. A deque and one shared wake-up future are much cheaper per
        # message than asyncio.Queue, and the app is the only consumer.
        self.inbox: deque[Message] = deque()
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.disconnect_queued = False
        self.final_message: Message | None = None

        # Write flow control, and websocket.send output waiting for the end of this loop turn
        self.writable = asyncio.Event()
        self.writable.set()
        self.outbox: list[bytes] = []
        self.outbox_size = 0

        # Keepalive state
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.pending_ping_payload: bytes | None = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = cast(asyncio.Transport, transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self._prefix())

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        self.outbox.clear()
        # Uvicorn's codes: 1006 before the handshake completed, 1005 ("no status") after.
        self._put_disconnect({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
        self.connections.discard(self)
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._prefix())
        self.handshake_complete = True
        self.disconnected = True
        # asyncio never calls resume_writing() on a transport lost while paused.
        self.writable.set()
        self._cancel_close_timer()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            if self.peer_closed or (self.close_sent and self.close_timer is None):
                # Bytes after the closing handshake (a late pong, say): the session is over.
                self._close_transport()
                return
            try:
                frames = reader.feed(data)
            except ProtocolViolation as violation:
                self.fail(violation.code, violation.reason)
                return
            if frames:
                self.handle_frames(frames)
        elif self.request_seen:
            if not self.handshake_complete:
                # The client spoke before our 101: hold the bytes until the app decides.
                self.early_data += data
                if len(self.early_data) > _EARLY_DATA_LIMIT:
                    self._pause_reading()
            # else: a denial response is under way; whatever the client sends is moot.
        else:
            self.handle_handshake_data(data)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def shutdown(self) -> None:
        """Server shutdown: close open WebSockets with 1012 (service restart)."""
        self.stop_keepalive()
        if self.close_sent or self.disconnected or self.peer_closed:
            self._cancel_close_timer()
            self._close_transport()
            return
        if self.response_started:
            pass  # a denial response is being written: it ends with the transport
        elif self.handshake_complete:
            self._put_disconnect({"type": "websocket.disconnect", "code": 1012})
            self.close_sent = True
            self._write(encode_frame(OP_CLOSE, close_payload(1012)))
        else:
            self.send_500_response()
        self._close_transport()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)

    # ------------------------------------------------------------------ the handshake

    def handle_handshake_data(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            for event in self.conn.events():
                if isinstance(event, events.Request):
                    self.handle_connect(event)
                    break
        except RemoteProtocolError as err:
            self.reject_handshake(err)

    def reject_handshake(self, err: RemoteProtocolError) -> None:
        """A malformed upgrade request: answer with wsproto's status (400 or 426) and the reason."""
        self.logger.warning("Invalid WebSocket upgrade request: %s", err)
        hint = err.event_hint
        status = hint.status_code if isinstance(hint, events.RejectConnection) else 400
        headers = list(hint.headers) if isinstance(hint, events.RejectConnection) else []
        body = f"Invalid WebSocket upgrade request: {err}\n".encode()
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True))
            output += self.conn.send(events.RejectData(data=body))
        except (LocalProtocolError, h11.LocalProtocolError):
            output = b""  # the request was not even HTTP: nothing sensible to answer
        if output:
            self._write(output)
        self._close_transport()

    def handle_connect(self, event: events.Request) -> None:
        self.request_seen = True
        # Bytes that followed the request head in the same read sit in wsproto's HTTP parser,
        # which never hands them on after the upgrade: take them now.
        h11_conn = getattr(self.conn.handshake, "_h11_connection", None)
        trailing = getattr(h11_conn, "trailing_data", (b"", False))[0]
        if trailing:
            self.early_data += trailing
        headers: list[tuple[bytes, bytes]] = [(b"host", event.host.encode())]
        headers += [(key.lower(), value) for key, value in event.extra_headers]
        # wsproto strips these two from extra_headers; ASGI apps expect every request header.
        if event.subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(event.subprotocols).encode()))
        if event.extensions:
            offered = [ext if isinstance(ext, str) else ext.name for ext in event.extensions]
            headers.append((b"sec-websocket-extensions", ", ".join(offered).encode()))
        raw_path, _, query_string = event.target.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": event.subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    # ------------------------------------------------------------------ incoming frames

    def handle_frames(self, frames: list[FrameEvent]) -> None:
        for frame in frames:
            kind = frame[0]
            if kind == "message":
                if self.close_sent:
                    continue  # crossing our close frame: RFC 6455 lets us drop it
                self._put({"type": _RECEIVE, "text": frame[1]} if type(frame[1]) is str else {"type": _RECEIVE, "bytes": frame[1]})
                # Back-pressure as in Uvicorn: stop reading while a message waits for the app.
                if not self.read_paused:
                    self._pause_reading()
            elif kind == "ping":
                if not self.close_sent:
                    self._write(encode_frame(OP_PONG, frame[1]))
            elif kind == "pong":
                self.handle_pong(frame[1])
            else:
                self.handle_close(cast(int, frame[1]), cast(str, frame[2]))

    def handle_close(self, code: int, reason: str) -> None:
        if self.close_sent:
            # The peer answered our close frame: the closing handshake is complete.
            self.peer_closed = True
            self._cancel_close_timer()
            self._close_transport()
            return
        # The peer started the close: echo its code (RFC 6455 5.5.1), then drop TCP, as the
        # server should (RFC 6455 7.1.1).
        self.stop_keepalive()
        self.peer_closed = True
        self._write(encode_frame(OP_CLOSE, close_payload(code)))
        self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._close_transport()

    def fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or sent too much): close with ``code`` and drop TCP."""
        self.stop_keepalive()
        if code != 1009:
            self.logger.debug("WebSocket protocol error from %s: %s", self._prefix() or "peer", reason)
        if not self.close_sent:
            self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
            self._write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.peer_closed = True
        self._cancel_close_timer()
        self._close_transport()

    def handle_pong(self, payload: bytes) -> None:
        # Unsolicited pongs, and stale ones not matching the ping in flight, are ignored.
        if self.pending_ping_payload is None or payload != self.pending_ping_payload:
            return
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.schedule_ping()

    # ------------------------------------------------------------------ keepalive

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self.schedule_ping()

    def stop_keepalive(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending_ping_payload = None

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_later(delay, self.send_keepalive_ping)

    def send_keepalive_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return
        # A random payload identifies this ping, so a stale pong cannot satisfy it.
        self.pending_ping_payload = os.urandom(4)
        self.ping_sent_at = self.loop.time()
        self._write(encode_frame(OP_PING, self.pending_ping_payload))
        if self.ping_timeout is not None and self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        reason = "keepalive ping timeout"
        self.close_sent = True
        self._put_disconnect({"type": "websocket.disconnect", "code": 1011, "reason": reason})
        self._write(encode_frame(OP_CLOSE, close_payload(1011, reason)))
        self._close_transport()

    # ------------------------------------------------------------------ the application

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except ClientDisconnected:
            pass
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            self.send_500_response()
            if self.close_timer is None:
                self._close_transport()
            if not isinstance(exc, Exception):
                raise  # cancellation and exits are not ours to swallow
            return
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        # As in Uvicorn, an app that ends without "websocket.close" (or raises after accepting)
        # gets its TCP connection closed with no close frame: the client sees 1006. While a close
        # timer runs we are waiting for the peer's close reply instead; let it arrive.
        if self.close_timer is None:
            self._close_transport()

    def send_500_response(self) -> None:
        if self.response_started or self.handshake_complete or not self.request_seen:
            return
        if self.transport.is_closing():
            return
        self.response_started = True
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            (b"content-length", b"21"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=500, headers=headers, has_body=True))
            output += self.conn.send(events.RejectData(data=b"Internal Server Error"))
        except (LocalProtocolError, h11.LocalProtocolError):  # pragma: no cover - defensive
            return
        self._write(output)

    async def receive(self) -> Message:
        inbox = self.inbox
        while not inbox:
            if self.final_message is not None:
                return self.final_message
            waiter = self.inbox_waiter
            if waiter is None or waiter.done():
                # (done() only if a cancelled receive() left its future behind)
                waiter = self.inbox_waiter = self.loop.create_future()
            await waiter
        message = inbox.popleft()
        if message["type"] == "websocket.disconnect":
            self.final_message = message
        elif self.read_paused and not inbox and self.handshake_complete:
            # The app caught up: read again (the transport may be gone by now).
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if not self.writable.is_set():
            self._flush()
            await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        message_type = message["type"]

        if not self.handshake_complete:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self._log_handshake("403")
                self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
                self.handshake_complete = True
                self.close_sent = True
                self._write(self.conn.send(events.RejectConnection(status_code=403, headers=[])))
                self._close_transport()
            elif message_type == "websocket.http.response.start":
                status = message.get("status")
                if not isinstance(status, int) or not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                headers = list(self.server_state.default_headers) + [
                    (bytes(name), bytes(value)) for name, value in message.get("headers", [])
                ]
                self._log_handshake("%d" % status)
                self.handshake_complete = True
                self.response_started = True
                self._write(self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True)))
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{message_type}'."
                )

        elif not self.close_sent and not self.response_started:
            if self.peer_closed:
                # The peer's close frame is in (connection_lost may not have run yet).
                raise ClientDisconnected()
            if message_type == "websocket.send":
                data = message.get("bytes")
                if data is not None:
                    payload = bytes(data)
                    opcode = OP_BINARY
                else:
                    text = message.get("text")
                    if text is None:
                        raise RuntimeError("The 'websocket.send' message must carry 'bytes' or 'text'.")
                    payload = text.encode("utf-8")
                    opcode = OP_TEXT
                if self.deflate is not None:
                    self._queue_output(encode_frame(opcode, self.deflate.compress(payload), rsv1=True))
                elif len(payload) >= _FLUSH_AT:
                    # Large: header and payload go out without concatenating them first.
                    self._queue_output(frame_header(opcode, len(payload)))
                    self._queue_output(payload)
                else:
                    self._queue_output(encode_frame(opcode, payload))
            elif message_type == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason", "") or ""
                frame = encode_frame(OP_CLOSE, close_payload(code, reason))
                self.close_sent = True
                self.stop_keepalive()
                self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
                if not self.transport.is_closing():
                    self._write(frame)
                    self._await_close_reply()
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                )

        elif self.response_started:
            if message_type == "websocket.http.response.body":
                finished = not message.get("more_body", False)
                body = message.get("body", b"")
                self._write(self.conn.send(events.RejectData(data=body, body_finished=finished)))
                if finished:
                    self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
                    self.close_sent = True
                    self._close_transport()
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{message_type}'.")

        elif self.peer_closed:
            raise ClientDisconnected()  # we failed the connection; the app sends into the void
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")

    # ------------------------------------------------------------------ helpers

    def _accept(self, message: ASGISendEvent) -> None:
        self._log_handshake("[accepted]")
        subprotocol = message.get("subprotocol")
        extra_headers = list(self.server_state.default_headers) + [
            (bytes(name), bytes(value)) for name, value in message.get("headers", [])
        ]
        deflate = PerMessageDeflate() if self.per_message_deflate else None
        extensions: list[Extension] = [deflate] if deflate is not None else []
        if self.transport.is_closing():
            return
        output = self.conn.send(
            events.AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=extra_headers)
        )
        if deflate is not None and deflate.enabled():
            self.deflate = Deflate(deflate)
        self.reader = FrameReader(self.max_size, self.deflate)
        self.handshake_complete = True
        self._write(output)
        self.start_keepalive()
        early, self.early_data = bytes(self.early_data), bytearray()
        if self.read_paused and not self.inbox:
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self.data_received(early)

    def _log_handshake(self, outcome: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" %s', get_client_addr(self.scope), get_path_with_query_string(self.scope), outcome
            )

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _await_close_reply(self) -> None:
        # Reading must go on, or the peer's close frame would never be seen.
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_transport)

    def _cancel_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def _queue_output(self, output: bytes) -> None:
        """Hold websocket.send output until the app yields, then write it all at once."""
        outbox = self.outbox
        if not outbox:
            self.loop.call_soon(self._flush)
        outbox.append(output)
        self.outbox_size += len(output)
        if self.outbox_size >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        outbox = self.outbox
        if outbox:
            size, self.outbox_size = self.outbox_size, 0
            if self.transport.is_closing():
                outbox.clear()
            elif len(outbox) == 1:
                self.transport.write(outbox.pop())
            elif size >= _FLUSH_AT:
                # Large frames: writelines() lets the transport avoid joining them (sendmsg, 3.12+).
                self.transport.writelines(outbox)
                outbox.clear()
            else:
                self.transport.write(b"".join(outbox))
                outbox.clear()

    def _write(self, data: bytes) -> None:
        """Write now, after anything the app queued (frames must keep their order)."""
        if self.outbox:
            self._flush()
        if not self.transport.is_closing():
            self.transport.write(data)

    def _close_transport(self) -> None:
        if self.outbox:
            self._flush()
        self.transport.close()

    def _put_disconnect(self, message: Message) -> None:
        # One disconnect per connection: a close frame followed by connection_lost (or a shutdown
        # followed by it) must not hand the app a second, different one.
        if not self.disconnect_queued:
            self.disconnect_queued = True
            self._put(message)

    def _put(self, message: Message) -> None:
        self.inbox.append(message)
        waiter = self.inbox_waiter
        if waiter is not None:
            self.inbox_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _prefix(self) -> str:
        return "%s:%d - " % self.client if self.client else ""
