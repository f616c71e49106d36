"""The RFC 6455 frame codec (with RFC 7692 permessage-deflate) behind Pounce's WebSocket protocol.

Sans-I/O: ``FrameReader`` turns received bytes into frame events and ``encode_frame`` builds the
frames we send. wsproto still does the handshake (see ``wsproto_impl``); after it, this codec does
the traffic in one pass over each frame with one unmasking copy and no per-frame objects, and caps
decompression at the message size limit so a small compressed frame cannot inflate without bound.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsproto.extensions import PerMessageDeflate

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
