"""The RFC 6455 frame codec (with RFC 7692 permessage-deflate) behind Pounce's WebSocket protocol.

Sans-I/O: ``FrameReader`` turns received bytes into frame events and ``encode_frame`` builds the
frames we send. wsproto still does the handshake (see ``wsproto_impl``); after it, this codec does
the traffic in one pass over each frame with one unmasking copy and no per-frame objects.

Strictness (what Autobahn's fuzzing client rates OK rather than NON-STRICT): a frame is judged as
early as its bytes allow and nothing after a bad frame is parsed. The first header byte is checked
for reserved bits and opcodes before anything else in the frame (RFC 6455 5.2), the rest of the
header before its payload is awaited, and text is checked for UTF-8 as it arrives, fragment by
fragment and read by read (RFC 6455 8.1), so invalid text fails on the piece where it becomes
invalid rather than when the message ends. Events parsed before a bad frame are not lost: they
travel on the ``ProtocolViolation`` (``events``), for the protocol to act on them first; so does a
``FrameSkipper`` placed after the bad frame, which reads only the framing of what still comes, to
tell the protocol when the peer's close frame starts (see ``WSProtocol.fail``).

Memory: a message being assembled (fragmented, or one large frame arriving over several reads) is
one ``bytearray`` of payload, decompressed as it arrives, so it never holds more than
``max_size`` bytes however it was cut into fragments; a partial header or control frame is at
most 131 bytes; what a ``feed`` budget leaves unparsed is the rest of that read, kept as the read's
own bytes object. An unbounded run of (empty) fragments is refused with 1009 (``max_fragments``).
"""

from __future__ import annotations

import codecs
import struct
import zlib
from typing import TYPE_CHECKING, Any

from pounce.protocols.websockets.masking import unmask, unmask_onto

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

# RFC 6455 5.4 puts no bound on the number of fragments, but each one costs a frame parse whatever
# its size: a message may have at most max(MIN_FRAGMENTS, max_size // BYTES_PER_FRAGMENT) of them,
# so an endless run of empty continuation frames is refused (1009) like an endless payload. With
# the default 16 MiB limit that is 262144, far above what real clients send (Autobahn's 9.3.1:
# 65536 fragments of 64 bytes).
MIN_FRAGMENTS = 1024
BYTES_PER_FRAGMENT = 64

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

# A received frame event: ("message", str | bytes) | ("ping", bytes) | ("pong", bytes) | ("close", int, str)
FrameEvent = tuple[Any, ...]


class ProtocolViolation(Exception):
    """The peer broke RFC 6455/7692: fail the connection with ``code`` (RFC 6455 7.1.7).

    ``events`` holds what the same ``feed`` call parsed before the bad frame; frames after it are
    never looked at.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events: list[FrameEvent] = []
        # What follows the bad frame, for the protocol's drain (see FrameSkipper): set by ``feed``.
        self.skipper: FrameSkipper | None = None
        # Where the reader stood when it raised: (the data, where the framing goes on in it, payload
        # bytes of the bad frame still to come after that data), or None at a frame header.
        self.resume: tuple[bytes | bytearray, int, int] | None = None
        self.peer_closed = False  # the bad frame was the peer's close frame: it sends nothing more


class _TooBig(ProtocolViolation):
    """1009 from inflating: ``fitting`` is the output that was still within the limit."""

    def __init__(self, max_size: int, fitting: bytes) -> None:
        super().__init__(1009, f"Message exceeds the maximum size ({max_size} bytes)")
        self.fitting = fitting


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


def _first_byte_table(deflate: bool) -> bytes:
    """1 for every first header byte (FIN, RSV1-3, opcode) RFC 6455 5.2 lets a frame start with."""
    table = bytearray(256)
    for b0 in range(256):
        opcode = b0 & 0x0F
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            continue  # 5.2: reserved opcodes
        if b0 & 0x30:
            continue  # 5.2: RSV2 and RSV3 mean nothing without an extension that defines them
        if b0 & 0x40 and not (deflate and opcode in (OP_TEXT, OP_BINARY)):
            continue  # RSV1 is RFC 7692's "compressed" bit: negotiated, first frame of a data message
        if opcode >= OP_CLOSE and not b0 & 0x80:
            continue  # 5.5: control frames are never fragmented
        table[b0] = 1
    return bytes(table)


_FIRST_BYTE_OK = _first_byte_table(False)
_FIRST_BYTE_OK_DEFLATE = _first_byte_table(True)


def _first_byte_error(b0: int) -> ProtocolViolation:
    opcode = b0 & 0x0F
    if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        return ProtocolViolation(1002, f"reserved opcode {opcode:#x}")
    if opcode >= OP_CLOSE and not b0 & 0x80:
        return ProtocolViolation(1002, "control frames must not be fragmented")
    return ProtocolViolation(1002, "reserved bits set without a negotiated extension")


class Deflate:
    """permessage-deflate (RFC 7692) with the parameters wsproto negotiated."""

    def __init__(self, extension: PerMessageDeflate) -> None:
        self.inbound_bits = extension.client_max_window_bits
        self.outbound_bits = extension.server_max_window_bits
        self.inbound_reset = extension.client_no_context_takeover
        self.outbound_reset = extension.server_no_context_takeover
        self.decompressor = zlib.decompressobj(-self.inbound_bits)
        self.compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.outbound_bits)
        # With context takeover, the last 2**bits bytes inflated: a sender that ends a message with
        # a BFINAL block (RFC 7692 7.2.3.3) starts its next message as a new DEFLATE stream that
        # still refers to them, so the next decompressor gets them as its dictionary.
        self.window = bytearray()

    def inflate(self, data: bytes, budget: int) -> bytes:
        """Inflate part of a message, at most ``budget`` bytes of output (more is 1009)."""
        d = self.decompressor
        try:
            out = d.decompress(data, budget + 1)  # one byte more than allowed tells "too big" from "full"
        except zlib.error as exc:
            raise ProtocolViolation(1007, f"invalid compressed data: {exc}") from None
        if len(out) > budget:
            raise _TooBig(budget, out[:budget])
        if not self.inbound_reset and out:
            window = self.window
            window += out
            size = 1 << self.inbound_bits
            if len(window) > 2 * size:  # trimmed now and then: amortised, one copy of the output
                del window[:-size]
        return out

    def end_message(self, budget: int) -> bytes:
        """The message's last output: RFC 7692 7.2.2 restores the 00 00 ff ff its sender removed."""
        out = self.inflate(b"\x00\x00\xff\xff", budget)
        if self.inbound_reset:
            self.decompressor = zlib.decompressobj(-self.inbound_bits)
        elif self.decompressor.eof:  # the message ended its DEFLATE stream with a BFINAL block
            size = 1 << self.inbound_bits
            self.decompressor = zlib.decompressobj(-self.inbound_bits, zdict=bytes(self.window[-size:]))
        return out

    def decompress(self, payload: bytes, max_size: int) -> bytes:
        """Inflate one whole message, failing with 1009 as soon as it outgrows ``max_size``."""
        try:
            out = self.inflate(payload, max_size)
            tail = self.end_message(max_size - len(out))
        except _TooBig as big:
            raise _TooBig(max_size, big.fitting) from None
        return out + tail if tail else out

    def compress(self, data: bytes) -> bytes:
        c = self.compressor
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if self.outbound_reset:
            self.compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.outbound_bits)
        # RFC 7692 7.2.1: drop the 00 00 ff ff tail of the sync flush.
        return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


# Frame headers FrameSkipper reads per call at most: past that it stops looking (``lost``).
SKIP_FRAMES_PER_FEED = 1024


class FrameSkipper:
    """What a peer sends after its bad frame: only the framing is read, to see its close frame come.

    RFC 6455 7.1.7: after failing the connection nothing the peer sends is processed, its answering
    close frame included. But that close frame (RFC 6455 5.5.1) is the last thing the peer sends, so
    the TCP connection can be closed once it starts with no input left unread: no RST that could
    destroy our own close frame before the peer has read it. Payloads are skipped by their declared
    lengths, never unmasked or kept; a header cut by a read is the most held (14 bytes). Past
    ``SKIP_FRAMES_PER_FEED`` headers in one read (a flood of tiny frames) it gives up (``lost``)
    and the protocol's drain deadline decides.
    """

    __slots__ = ("skip", "pending", "closed", "lost")

    def __init__(self) -> None:
        self.skip = 0  # payload bytes of the current frame still to skip
        self.pending = b""  # a frame header cut by the end of a read
        self.closed = False  # the peer's close frame has started
        self.lost = False

    def feed(self, data: bytes | bytearray, pos: int = 0) -> bool:
        """Skip ``data[pos:]``; True once the peer's close frame has begun."""
        if self.closed or self.lost:
            return self.closed
        end = len(data)
        frames = 0
        while pos < end:
            if self.skip:
                n = min(self.skip, end - pos)
                self.skip -= n
                pos += n
                continue
            if self.pending:
                held = len(self.pending)
                head = self.pending + bytes(data[pos : pos + 14])
                extent = _header_extent(head, 0, len(head))
                if extent is None:
                    self.pending = head  # fewer than 14 bytes in all: this read is used up
                    return False
                self.pending = b""
                size, length, opcode = extent
                pos += size - held
            else:
                extent = _header_extent(data, pos, end)
                if extent is None:
                    self.pending = bytes(data[pos:end])
                    return False
                size, length, opcode = extent
                pos += size
            if opcode == OP_CLOSE:
                self.closed = True
                return True
            frames += 1
            if frames > SKIP_FRAMES_PER_FEED:
                self.lost = True
                return False
            self.skip = length
        return False


def _header_extent(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
    """(header size, payload length, opcode) of the frame header at ``buf[pos:end]``; None if cut."""
    if end - pos < 2:
        return None
    b1 = buf[pos + 1]
    length = b1 & 0x7F
    size = 2
    if length == 126:
        size = 4
        if end - pos < size:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
    elif length == 127:
        size = 10
        if end - pos < size:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
    if b1 & 0x80:
        size += 4  # the mask
    if end - pos < size:
        return None
    return size, length, buf[pos] & 0x0F


class FrameReader:
    """Incremental parser for the frames a client sends (RFC 6455 section 5)."""

    def __init__(self, max_size: int, deflate: Deflate | None) -> None:
        self.max_size = max_size
        # A compressed message is held to max_size once inflated (Deflate.inflate's budget); on the
        # wire it may take a little more than max_size when the data does not compress.
        self.wire_limit = max_size + (max_size >> 3) + 1024 if deflate is not None else max_size
        self.max_fragments = max(MIN_FRAGMENTS, max_size // BYTES_PER_FRAGMENT)
        self.deflate = deflate
        self.first_byte_ok = _FIRST_BYTE_OK_DEFLATE if deflate is not None else _FIRST_BYTE_OK
        self.pending = bytearray()  # a header or control frame cut by a read: at most 131 bytes
        self.done = False  # after a close frame or a violation nothing more is parsed
        # What a ``budget`` left unparsed: ``held[held_pos:]`` (the read itself, not a copy)
        self.held: bytes | bytearray = b""
        self.held_pos = 0
        self.budget_left = -1
        # The data frame whose payload is arriving over several reads
        self.remaining = 0  # its payload bytes still to come
        self.frame_fin = False
        self.frame_mask = b""  # its mask, rotated so that the next payload byte takes mask[0]
        # The message being assembled: fragmented (RFC 6455 5.4), or one frame spanning reads
        self.opcode: int | None = None  # OP_TEXT or OP_BINARY while one is open
        self.compressed = False
        self.buffer = bytearray()  # its payload so far (inflated)
        self.size = 0  # its payload bytes so far, as sent (compressed or not)
        self.fragments = 0
        self.utf8: codecs.IncrementalDecoder | None = None  # text only: the UTF-8 check so far

    @property
    def has_held(self) -> bool:
        """Frames a budget left for a later ``feed`` (``feed(b"")`` parses on)."""
        return self.held_pos < len(self.held)

    def feed(self, data: bytes | bytearray, budget: int = -1) -> list[FrameEvent]:
        """The events in one read (and in what an earlier budget held back).

        With a ``budget``, at most that many frames are parsed; the rest of the read is held
        (``has_held``) for the next call. Raises ``ProtocolViolation``, carrying the events before it.
        """
        out: list[FrameEvent] = []
        if self.done:
            return out
        try:
            pos = 0
            if self.held_pos < len(self.held):
                held, pos = self.held, self.held_pos
                self.held, self.held_pos = b"", 0
                if data:  # not while the protocol waits on held frames (it stops reading): a copy
                    data, pos = held[pos:] + data, 0
                else:
                    data = held  # parse on where the budget stopped, without copying the rest
            elif self.remaining:
                pos = self.payload(data, 0, out)
            elif self.pending:
                pending = self.pending
                pending += data
                data = bytes(pending)  # small (a cut header) plus this read: one copy
                pending.clear()
            if pos < len(data):
                self.budget_left = budget
                end = self.parse(data, pos, out)
                if end < len(data) and not self.done:
                    if self.budget_left == 0:
                        self.held, self.held_pos = data, end
                    else:
                        self.pending += memoryview(data)[end:]
        except ProtocolViolation as violation:
            self.done = True
            skipper = FrameSkipper()
            if violation.peer_closed:
                skipper.closed = True
            elif violation.resume is not None:
                rest, at, skipper.skip = violation.resume
                skipper.feed(rest, at)
            violation.skipper = skipper
            violation.resume = None
            self.pending.clear()
            self.held, self.held_pos = b"", 0
            self.buffer = bytearray()
            violation.events = out
            raise
        return out

    def parse(self, data: bytes | bytearray, pos: int, out: list[FrameEvent]) -> int:
        """Parse frames from ``data[pos:]`` into ``out``; return where the unparsed rest starts.

        Each check runs as soon as the bytes it needs are here, in the order they come: a frame's
        verdict does not depend on how TCP cut it.
        """
        end = len(data)
        first_byte_ok = self.first_byte_ok
        budget = self.budget_left  # frames still to parse; -1 counts down forever
        try:  # (free in CPython 3.11+ until something raises)
            while pos < end:
                if not budget:
                    break
                b0 = data[pos]
                if not first_byte_ok[b0]:
                    raise _first_byte_error(b0)  # RFC 6455 5.2: before anything else in the frame
                opcode = b0 & 0x0F
                if opcode < OP_CLOSE and (self.opcode is None) == (opcode == OP_CONTINUATION):
                    # RFC 6455 5.4: continuation frames continue a message; a new one waits for the last.
                    if opcode == OP_CONTINUATION:
                        raise ProtocolViolation(1002, "continuation frame without a message to continue")
                    raise ProtocolViolation(1002, "new data frame before the fragmented message finished")
                if end - pos < 2:
                    break
                b1 = data[pos + 1]
                if not b1 & 0x80:
                    raise ProtocolViolation(1002, "client frames must be masked")  # RFC 6455 5.1
                length = b1 & 0x7F
                if length < 126:
                    start = pos + 6
                elif opcode >= OP_CLOSE:
                    raise ProtocolViolation(1002, "control frames must be at most 125 bytes")  # RFC 6455 5.5
                elif length == 126:
                    if end - pos < 4:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    start = pos + 8
                    if length < 126:
                        raise ProtocolViolation(1002, "frame length not minimally encoded")  # RFC 6455 5.2
                else:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    start = pos + 14
                    if length < 65536 or length >> 63:
                        raise ProtocolViolation(1002, "frame length not minimally encoded or too large")

                if opcode >= OP_CLOSE:
                    stop = start + length
                    if stop > end:
                        break  # control frames are small: wait for all of one
                    payload = unmask(data, start, stop, data[start - 4 : start]) if length else b""
                    pos = stop
                    budget -= 1
                    if opcode == OP_PING:
                        out.append(("ping", payload))
                    elif opcode == OP_PONG:
                        out.append(("pong", payload))
                    else:
                        try:
                            code, reason = parse_close(payload)
                        except ProtocolViolation as violation:
                            violation.peer_closed = True
                            raise
                        out.append(("close", code, reason))
                        self.done = True
                        return pos  # RFC 6455 5.5.1: nothing after a close frame counts
                    continue

                # A data frame: refused on its declared length, before any of it is buffered.
                if opcode:
                    compressed = b0 & 0x40
                    size = length
                else:
                    if self.fragments >= self.max_fragments:
                        raise ProtocolViolation(1009, f"Message has more than {self.max_fragments} fragments")
                    compressed = self.compressed
                    size = self.size + length
                if size > (self.wire_limit if compressed else self.max_size):
                    raise ProtocolViolation(1009, f"Message exceeds the maximum size ({self.max_size} bytes)")
                if start > end:
                    break  # the mask is not all here
                stop = start + length
                if stop > end:
                    # The payload spans reads: take it as it comes (checked, inflated, kept).
                    self.begin(b0, opcode, size, length, data[start - 4 : start])
                    return self.payload(data, start, out)
                payload = unmask(data, start, stop, data[start - 4 : start]) if length else b""
                pos = stop
                budget -= 1
                if opcode and b0 & 0x80 and not compressed:
                    # The common case, a whole message in one frame: one-shot UTF-8 decoding.
                    out.append(("message", self.decode(payload) if opcode == OP_TEXT else payload))
                else:
                    self.fragment(b0, opcode, size, payload, out)
        except ProtocolViolation as violation:
            if violation.resume is None:
                # At a bad header ``pos`` is its frame's start, after a bad payload the next frame's.
                violation.resume = (data, pos, 0)
            raise
        self.budget_left = budget
        return pos

    def fragment(self, b0: int, opcode: int, size: int, payload: bytes, out: list[FrameEvent]) -> None:
        """A whole data frame that is compressed, or one fragment of a message."""
        if opcode:
            if b0 & 0x80:  # compressed, unfragmented
                assert self.deflate is not None
                try:
                    data = self.deflate.decompress(payload, self.max_size)
                except _TooBig as big:
                    if opcode == OP_TEXT:  # invalid text before the limit is the first error
                        self.check_utf8(_Utf8Decoder(), big.fitting)
                    raise
                out.append(("message", self.decode(data) if opcode == OP_TEXT else data))
                return
            self.open(opcode, bool(b0 & 0x40))
        self.size = size
        self.fragments += 1
        self.add(payload)
        if b0 & 0x80:
            out.append(self.finish())

    def begin(self, b0: int, opcode: int, size: int, length: int, mask: bytes | bytearray) -> None:
        """A data frame whose payload (``length`` bytes) will arrive over several reads."""
        if opcode:
            self.open(opcode, bool(b0 & 0x40))
        self.size = size
        self.fragments += 1
        self.remaining = length
        self.frame_fin = bool(b0 & 0x80)
        self.frame_mask = bytes(mask)

    def payload(self, data: bytes | bytearray, pos: int, out: list[FrameEvent]) -> int:
        """Take what ``data[pos:]`` holds of the spanning frame's payload; return where it stops."""
        n = min(self.remaining, len(data) - pos)
        left = self.remaining - n  # the frame's payload bytes still to come after this read
        try:
            if n:
                mask = self.frame_mask
                if self.compressed:
                    self.add(unmask(data, pos, pos + n, mask))
                else:
                    self.add_unmasked(data, pos, pos + n, mask)
                self.remaining = left
                shift = n & 3
                if shift:
                    self.frame_mask = mask[shift:] + mask[:shift]
            if not left and self.frame_fin:
                out.append(self.finish())
        except ProtocolViolation as violation:
            violation.resume = (data, pos + n, left)
            raise
        return pos + n

    def open(self, opcode: int, compressed: bool) -> None:
        self.opcode = opcode
        self.compressed = compressed
        self.utf8 = _Utf8Decoder() if opcode == OP_TEXT else None

    def add(self, chunk: bytes) -> None:
        """Add a piece of the open message's payload: inflate it, check its UTF-8, keep it."""
        if self.compressed:
            assert self.deflate is not None
            try:
                chunk = self.deflate.inflate(chunk, self.max_size - len(self.buffer))
            except _TooBig as big:
                if self.utf8 is not None:
                    self.check_utf8(self.utf8, big.fitting)
                raise _TooBig(self.max_size, big.fitting) from None
        if chunk:
            if self.utf8 is not None:
                self.check_utf8(self.utf8, chunk)
            self.buffer += chunk

    def add_unmasked(self, data: bytes | bytearray, start: int, stop: int, mask: bytes) -> None:
        """``add`` for a piece of an uncompressed message: unmasked straight into the message buffer."""
        buffer = self.buffer
        at = len(buffer)
        unmask_onto(buffer, data, start, stop, mask)
        if self.utf8 is not None:
            self.check_utf8(self.utf8, buffer[at:])

    def finish(self) -> FrameEvent:
        """The open message's last frame is in: the message event, and a clean slate."""
        if self.compressed:
            assert self.deflate is not None
            self.add_inflated_tail()
        buffer = self.buffer
        message: str | bytes
        if self.utf8 is not None:
            try:
                self.utf8.decode(b"", True)
            except UnicodeDecodeError:
                raise ProtocolViolation(1007, "text message ends inside a UTF-8 sequence") from None
            message = buffer.decode("utf-8")
        else:
            message = bytes(buffer)
        self.opcode = None
        self.compressed = False
        self.buffer = bytearray()
        self.size = 0
        self.fragments = 0
        self.utf8 = None
        return ("message", message)

    def add_inflated_tail(self) -> None:
        assert self.deflate is not None
        try:
            tail = self.deflate.end_message(self.max_size - len(self.buffer))
        except _TooBig as big:
            if self.utf8 is not None:
                self.check_utf8(self.utf8, big.fitting)
            raise _TooBig(self.max_size, big.fitting) from None
        if tail:
            if self.utf8 is not None:
                self.check_utf8(self.utf8, tail)
            self.buffer += tail

    @staticmethod
    def check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes | bytearray) -> None:
        """RFC 6455 8.1: fail (1007) on the piece of a text message where its UTF-8 turns invalid."""
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "text message is not valid UTF-8") from None
        # CPython's decoder holds back ED A0..BF (the start of a UTF-16 surrogate, which RFC 3629 3
        # excludes) until a third byte comes, although nothing can make it valid.
        held = decoder.getstate()[0]
        if len(held) > 1 and held[0] == 0xED and held[1] >= 0xA0:
            raise ProtocolViolation(1007, "text message is not valid UTF-8")

    @staticmethod
    def decode(payload: bytes) -> str:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "text message is not valid UTF-8") from None
