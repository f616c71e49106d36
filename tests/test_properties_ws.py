"""Property-based tests of the WebSocket frame reader (``pounce.protocols.websockets.frames``).

What must hold for any bytes a client sends, however they are segmented:

* ``FrameReader.feed`` returns frame events or raises ``ProtocolViolation`` with a close code the
  protocol fails the connection with (1002 protocol error, 1007 invalid data, 1009 too big); never
  another exception (it would kill the connection without a close frame) and never a hang;
* the events and the verdict do not depend on where the reads were cut;
* every event is well-formed: control payloads of at most 125 bytes, text as ``str``, close codes a peer
  may send (RFC 6455 §7.4), messages within ``max_size`` even once inflated (RFC 7692);
* valid masked client traffic (fragmented text/binary messages, pings and pongs between fragments,
  permessage-deflate with the parameters wsproto negotiates, all three length encodings) round-trips:
  exactly the messages sent, in order, and nothing after a close frame counts.

The protocol (``wsproto_impl``) feeds each read to one ``FrameReader`` and stops reading at the first
close event or violation; the simulation below does the same.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate

from pounce.protocols.websockets.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Deflate,
    FrameReader,
    ProtocolViolation,
)
from tests.strategies import BASE_SETTINGS, cut, feed_chunks, mutated, split_points

pytestmark = pytest.mark.timeout(60)

VIOLATION_CODES = frozenset({1002, 1007, 1009})
# RFC 6455 §7.4.1 and the IANA registry: what a peer may put in a close frame; 1005 stands for "none".
PEER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class DeflateParams:
    """The permessage-deflate parameters that shape the client-to-server direction."""

    client_no_context_takeover: bool
    client_max_window_bits: int

    def server_side(self) -> Deflate:
        # As wsproto_impl does after the handshake: Deflate(PerMessageDeflate) with the agreed values.
        return Deflate(
            PerMessageDeflate(
                client_no_context_takeover=self.client_no_context_takeover,
                client_max_window_bits=self.client_max_window_bits,
            )
        )


deflate_params = st.builds(
    DeflateParams,
    st.booleans(),
    # 8 is left out: zlib cannot produce raw deflate with a 256-byte window (it silently uses 512), a
    # known incompatibility every implementation works around; 9..15 are what clients really offer.
    st.integers(9, 15),
)
maybe_deflate = st.one_of(st.none(), deflate_params)


# ----------------------------------------------------------------------------------- encoding
def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes = b"\x00\x00\x00\x00",
    masked: bool = True,
    length_form: int | None = None,
) -> bytes:
    """A client-to-server frame (RFC 6455 §5.2). ``rsv`` is the three RSV bits (RSV1 = 4);
    ``length_form`` forces the 7-bit (0), 16-bit (126) or 64-bit (127) length encoding."""
    n = len(payload)
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    form = length_form if length_form is not None else (0 if n < 126 else 126 if n < 65536 else 127)
    mask_bit = 0x80 if masked else 0
    if form == 0:
        header = bytes((first, mask_bit | (n & 0x7F)))
    elif form == 126:
        header = struct.pack("!BBH", first, mask_bit | 126, n & 0xFFFF)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    key = (mask * (n // 4 + 1))[:n]
    # XOR as one big integer: fast enough for the 64 KiB payloads of the 64-bit length encoding.
    masked_payload = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return header + mask + masked_payload


class ClientCompressor:
    """The client side of permessage-deflate (RFC 7692 §7.2.1), as a browser would compress.

    ``bfinal=True`` flushes a message the other way RFC 7692 §7.2.3.3 allows ("Using a DEFLATE Block with
    BFINAL Set to 1", for platforms without a sync flush): the message ends the DEFLATE stream, plus the
    0x00 octet the RFC's example carries. The next message then starts a new stream; with context
    takeover it still refers to the same LZ77 window (RFC 7692 §7.2.1), given to zlib as a dictionary.
    """

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self.window = b""  # the last 2**bits bytes of plaintext: the LZ77 sliding window
        self.compressor = self._new()

    def _new(self) -> Any:
        bits = self.params.client_max_window_bits
        if self.window:
            return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, zdict=self.window)
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)

    def compress(self, data: bytes, bfinal: bool = False) -> bytes:
        if bfinal:
            out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_FINISH) + b"\x00"
        else:
            out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            assert out.endswith(b"\x00\x00\xff\xff")
            out = out[:-4]  # RFC 7692 §7.2.1: the empty stored block's tail is not sent
        if self.params.client_no_context_takeover:
            self.window = b""
            self.compressor = self._new()
        else:
            self.window = (self.window + data)[-(1 << self.params.client_max_window_bits) :]
            if bfinal:
                self.compressor = self._new()  # a new stream, same window
        return bytes(out)


# --------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class WsOutcome:
    events: tuple[tuple[Any, ...], ...]
    code: int | None  # the violation's close code, None if the input was accepted


def check_event(ev: tuple[Any, ...], max_size: int) -> None:
    kind = ev[0]
    if kind == "message":
        assert isinstance(ev[1], (str, bytes)), ev
        size = len(ev[1].encode("utf-8")) if isinstance(ev[1], str) else len(ev[1])
        assert size <= max_size, size
    elif kind in ("ping", "pong"):
        assert isinstance(ev[1], bytes) and len(ev[1]) <= 125, ev
    elif kind == "close":
        _, code, reason = ev
        assert code in PEER_CLOSE_CODES or 3000 <= code <= 4999 or (code == 1005 and reason == ""), ev
        assert isinstance(reason, str) and len(reason.encode("utf-8")) <= 123, ev
    else:  # pragma: no cover - would be a reader bug
        raise AssertionError(f"unknown event {ev!r}")


def feed_frames(chunks: Sequence[bytes], max_size: int, deflate: DeflateParams | None) -> WsOutcome:
    """Feed ``chunks`` read by read to one reader, as the protocol does, up to a close or a violation."""
    reader = FrameReader(max_size, deflate.server_side() if deflate is not None else None)
    events: list[tuple[Any, ...]] = []
    for chunk in chunks:
        try:
            out = reader.feed(chunk)
        except ProtocolViolation as violation:
            assert violation.code in VIOLATION_CODES, (violation.code, violation.reason)
            return WsOutcome(tuple(events), violation.code)
        for ev in out:
            check_event(ev, max_size)
        # Nothing after a close frame counts (RFC 6455 §5.5.1): it must be the last event of its read.
        assert all(ev[0] != "close" for ev in out[:-1]), out
        events += out
        if events and events[-1][0] == "close":
            break  # the protocol stops reading here
    return WsOutcome(tuple(events), None)


def assert_same_ws_outcome(whole: WsOutcome, split: WsOutcome, bytewise: WsOutcome) -> None:
    """Segmentation changes nothing. When a frame is refused, the events of the frames before it come
    out only as far as the reads delivered them (a read's events are lost with its exception), so those
    of any segmentation are a prefix of the one-byte-at-a-time events."""
    if whole.code is None:
        assert split == whole
        assert bytewise == whole
    else:
        assert split.code == bytewise.code == whole.code, (whole, split, bytewise)
        assert bytewise.events[: len(split.events)] == split.events
        assert bytewise.events[: len(whole.events)] == whole.events


def one_byte_reads(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))] or [data]


# --------------------------------------------------------------------------------- generators
masks = st.binary(min_size=4, max_size=4)


@st.composite
def big_payload(draw: st.DrawFn, low: int, high: int) -> bytes:
    """A payload of ``low..high`` bytes without drawing each byte (64-bit lengths need 64 KiB)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    return rng.randbytes(draw(st.integers(low, high)))


payloads = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=120, max_size=300),  # across the 7-bit / 16-bit boundary (126)
    big_payload(65530, 65540),  # across the 16-bit / 64-bit boundary (65536)
)
text_payloads = st.one_of(st.text(max_size=40), st.text(min_size=100, max_size=200))


@dataclass(frozen=True)
class Traffic:
    """Valid client traffic: the bytes on the wire and the events the reader must report."""

    wire: bytes
    expected: tuple[tuple[Any, ...], ...]
    deflate: DeflateParams | None


@st.composite
def control_frames(draw: st.DrawFn) -> tuple[bytes, tuple[Any, ...]]:
    opcode = draw(st.sampled_from([OP_PING, OP_PONG]))
    payload = draw(st.binary(max_size=125))
    return client_frame(opcode, payload, mask=draw(masks)), ("ping" if opcode == OP_PING else "pong", payload)


@st.composite
def valid_traffic(draw: st.DrawFn, with_close: bool = True, bfinal: bool = False) -> Traffic:
    """Messages (text or binary, maybe compressed, split into fragments with control frames between
    them), then maybe a close frame followed by bytes that must be ignored. With ``bfinal``, compressed
    messages are sometimes flushed with a BFINAL block instead of a sync flush (see ClientCompressor)."""
    deflate = draw(deflate_params if bfinal else maybe_deflate)
    compressor = ClientCompressor(deflate) if deflate is not None else None
    wire = bytearray()
    expected: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 4))):
        value: str | bytes
        if draw(st.booleans()):
            text = draw(text_payloads)
            opcode, data, value = OP_TEXT, text.encode("utf-8"), text
        else:
            data = draw(payloads)
            opcode, value = OP_BINARY, data
        compressed = compressor is not None and draw(st.booleans())
        if compressed and compressor is not None:
            body = compressor.compress(data, bfinal=bfinal and draw(st.booleans()))
        else:
            body = data
        # Fragments: cut points anywhere in the (compressed) body, also inside a UTF-8 sequence.
        cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=3))))
        bounds = [0, *cuts, len(body)]
        parts = [body[a:b] for a, b in zip(bounds, bounds[1:])]
        for index, part in enumerate(parts):
            first, last = index == 0, index == len(parts) - 1
            wire += client_frame(
                opcode if first else OP_CONTINUATION,
                part,
                fin=last,
                rsv=4 if compressed and first else 0,  # RSV1 on the first frame only (RFC 7692 §6)
                mask=draw(masks),
                # The 16-bit form may carry small lengths only if minimal: keep the minimal encoding.
            )
            if not last:
                for _ in range(draw(st.integers(0, 2))):  # control frames may come between fragments
                    frame, ev = draw(control_frames())
                    wire += frame
                    expected.append(ev)
        expected.append(("message", value))
        for _ in range(draw(st.integers(0, 1))):
            frame, ev = draw(control_frames())
            wire += frame
            expected.append(ev)
    if with_close and draw(st.booleans()):
        if draw(st.booleans()):
            code = draw(st.one_of(st.sampled_from(sorted(PEER_CLOSE_CODES)), st.integers(3000, 4999)))
            reason = draw(st.text(max_size=20))
            payload = struct.pack("!H", code) + reason.encode("utf-8")
            expected.append(("close", code, reason))
        else:
            payload = b""
            expected.append(("close", 1005, ""))
        wire += client_frame(OP_CLOSE, payload, mask=draw(masks))
        wire += draw(st.binary(max_size=20))  # after the close: never parsed
    return Traffic(bytes(wire), tuple(expected), deflate)


@st.composite
def random_frames(draw: st.DrawFn) -> bytes:
    """Frame-shaped noise: well-formed frames with at most one header field broken (unmasked, RSV bits,
    reserved opcode, non-minimal length, FIN off), and payloads at the edges (bad close codes and
    reasons, invalid UTF-8, oversized control frames). One broken field at a time, so a frame gets past
    the first checks to the later ones."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 5))):
        broken = draw(st.sampled_from([None, None, None, "fin", "rsv", "opcode", "masked", "length"]))
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_CONTINUATION]))
        if broken == "opcode":
            opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))
        if opcode == OP_CLOSE:
            code = draw(st.one_of(st.integers(0, 5000), st.sampled_from([1000, 1005, 1006, 1015, 2999, 3000, 4999])))
            reasons = st.sampled_from([b"\xff", b"\xc3", b"a" * 124])  # invalid UTF-8, cut UTF-8, too long
            reason = draw(st.one_of(st.text(max_size=10).map(str.encode), reasons))
            payload = struct.pack("!H", code) + reason
            if draw(st.integers(0, 4)) == 0:
                payload = draw(st.sampled_from([b"", b"\x03"]))  # no code, or half of one
        elif opcode == OP_TEXT:
            bad_utf8 = draw(st.sampled_from([b"", b"\xff", b"\xc3", b"\xed\xa0\x80"]))  # none, invalid, cut, surrogate
            payload = draw(st.text(max_size=12)).encode() + bad_utf8
        else:
            payload = draw(st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=130)))
        out += client_frame(
            opcode,
            payload,
            fin=broken != "fin",
            rsv=draw(st.sampled_from([4, 2, 1, 7])) if broken == "rsv" else 0,
            mask=draw(masks),
            masked=broken != "masked",
            length_form=draw(st.sampled_from([126, 127])) if broken == "length" else None,
        )
    return bytes(out)


@st.composite
def arbitrary_client_bytes(draw: st.DrawFn) -> tuple[bytes, DeflateParams | None]:
    data = draw(st.one_of(st.binary(max_size=300), random_frames(), random_frames()))
    return data, draw(maybe_deflate)


@st.composite
def mutated_traffic(draw: st.DrawFn) -> tuple[bytes, DeflateParams | None]:
    traffic = draw(valid_traffic())
    if len(traffic.wire) > 1024:  # keep the one-byte-at-a-time reference cheap
        return draw(mutated(traffic.wire[:1024])), traffic.deflate
    return draw(mutated(traffic.wire)), traffic.deflate


def describe(outcome: WsOutcome) -> str:
    return f"violation {outcome.code}" if outcome.code else "accepted"


# --------------------------------------------------------------------------------- properties
@settings(BASE_SETTINGS, max_examples=200)
@given(st.one_of(arbitrary_client_bytes(), arbitrary_client_bytes(), mutated_traffic()), st.data())
def test_frame_reader_reports_events_or_a_violation(
    case: tuple[bytes, DeflateParams | None], draw: st.DataObject
) -> None:
    data, deflate = case
    whole = feed_frames([data], MAX_SIZE, deflate)
    event(describe(whole))
    split = feed_frames(draw.draw(feed_chunks(data), label="chunks"), MAX_SIZE, deflate)
    assert_same_ws_outcome(whole, split, feed_frames(one_byte_reads(data), MAX_SIZE, deflate))


@settings(BASE_SETTINGS, max_examples=150)
@given(valid_traffic(), st.data())
def test_valid_client_traffic_round_trips(traffic: Traffic, draw: st.DataObject) -> None:
    chunks = draw.draw(feed_chunks(traffic.wire), label="chunks")
    outcome = feed_frames(chunks, MAX_SIZE, traffic.deflate)
    assert outcome == WsOutcome(traffic.expected, None)
    event("compressed" if traffic.deflate else "plain")


@settings(BASE_SETTINGS, max_examples=200)
@given(
    st.one_of(
        st.integers(0, 0xFFFF),
        st.sampled_from(sorted(PEER_CLOSE_CODES | {1004, 1005, 1006, 1015, 2999, 3000, 4999, 5000})),
    ),
    st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=10), st.just(b"a" * 124)),
    st.sampled_from([None, b"", b"\x03"]),
)
def test_close_frames_follow_rfc6455(code: int, reason: bytes, odd_payload: bytes | None) -> None:
    # RFC 6455 §5.5.1 / §7.4: a close body is empty or a 2-byte code a peer may send (7.4.1's list and
    # 3000-4999) plus a UTF-8 reason, 125 bytes at most. Anything else fails the connection: 1007 for
    # a reason that is not UTF-8 (§8.1), 1002 otherwise.
    payload = odd_payload if odd_payload is not None else struct.pack("!H", code) + reason
    outcome = feed_frames([client_frame(OP_CLOSE, payload, mask=b"\x01\x02\x03\x04")], MAX_SIZE, None)
    if payload == b"":
        assert outcome == WsOutcome((("close", 1005, ""),), None)
    elif len(payload) == 1 or len(payload) > 125 or not (code in PEER_CLOSE_CODES or 3000 <= code <= 4999):
        assert outcome == WsOutcome((), 1002)
    else:
        try:
            text = reason.decode("utf-8")
        except UnicodeDecodeError:
            assert outcome == WsOutcome((), 1007)
        else:
            assert outcome == WsOutcome((("close", code, text),), None)


# The RFC 7692 §7.2.3.3 example: "Hello" compressed in a DEFLATE block with BFINAL set, then 0x00. Sent
# twice with context takeover, the reader before e18f2ca delivered the second message empty (its
# decompressor stayed at the end of the first DEFLATE stream): kept as an explicit example.
RFC7692_BFINAL_HELLO = bytes.fromhex("f348cdc9c9070000")
BFINAL_TWICE = Traffic(
    client_frame(OP_TEXT, RFC7692_BFINAL_HELLO, rsv=4, mask=b"abcd") * 2,
    (("message", "Hello"), ("message", "Hello")),
    DeflateParams(client_no_context_takeover=False, client_max_window_bits=15),
)


@settings(BASE_SETTINGS, max_examples=50)
@given(valid_traffic(bfinal=True).flatmap(lambda t: st.tuples(st.just(t), split_points(len(t.wire)))))
@example((BFINAL_TWICE, []))
def test_bfinal_flushed_messages_round_trip(case: tuple[Traffic, list[int]]) -> None:
    # RFC 7692 §7.2.1/§7.2.3.3: a message may end its DEFLATE data with a BFINAL block; with context
    # takeover the next message still decompresses against the same LZ77 window (RFC 7692 §7.2.2).
    traffic, cuts = case
    outcome = feed_frames(cut(traffic.wire, cuts), MAX_SIZE, traffic.deflate)
    assert outcome == WsOutcome(traffic.expected, None)


@st.composite
def sized_messages(draw: st.DrawFn) -> tuple[bytes, int, list[int], DeflateParams | None]:
    """Binary messages around a small ``max_size``, compressed or not: (wire, max_size, sizes, deflate)."""
    max_size = draw(st.integers(1, 300))
    deflate = draw(maybe_deflate)
    compressor = ClientCompressor(deflate) if deflate is not None else None
    wire = bytearray()
    sizes = []
    for _ in range(draw(st.integers(1, 3))):
        size = max_size + draw(st.integers(-3, 3))
        data = draw(st.sampled_from([b"a", b"\x00\xff", b"xyz"])) * max(size, 0)
        data = data[: max(size, 0)]
        body = compressor.compress(data) if compressor is not None else data
        cut_at = draw(st.integers(0, len(body)))
        wire += client_frame(OP_BINARY, body[:cut_at], fin=False, rsv=4 if compressor else 0, mask=draw(masks))
        wire += client_frame(OP_CONTINUATION, body[cut_at:], mask=draw(masks))
        sizes.append(len(data))
    return bytes(wire), max_size, sizes, deflate


@settings(BASE_SETTINGS, max_examples=100)
@given(sized_messages(), st.data())
def test_messages_over_max_size_fail_with_1009(
    case: tuple[bytes, int, list[int], DeflateParams | None], draw: st.DataObject
) -> None:
    # RFC 6455 §7.4.1 1009: a message too big to process. The limit holds for the inflated size too (a
    # small compressed frame must not inflate without bound); messages up to max_size get through.
    wire, max_size, sizes, deflate = case
    outcome = feed_frames(draw.draw(feed_chunks(wire), label="chunks"), max_size, deflate)
    fitting = 0
    while fitting < len(sizes) and sizes[fitting] <= max_size:
        fitting += 1
    if fitting == len(sizes):
        assert outcome.code is None and [len(ev[1]) for ev in outcome.events] == sizes
    else:
        assert outcome.code == 1009
        assert all(ev[0] == "message" for ev in outcome.events) and len(outcome.events) <= fitting


def test_property_helpers_can_fail() -> None:
    """The comparisons are not vacuous."""
    accepted = WsOutcome((("message", b"a"),), None)
    with pytest.raises(AssertionError):
        assert_same_ws_outcome(accepted, WsOutcome((), 1002), accepted)
    with pytest.raises(AssertionError):
        check_event(("ping", b"x" * 126), MAX_SIZE)
    with pytest.raises(AssertionError):
        check_event(("close", 1006, ""), MAX_SIZE)
    # And the encoder speaks the reader's language: one masked text frame is one message.
    one_text_frame = client_frame(OP_TEXT, b"hi", mask=b"abcd")
    assert feed_frames([one_text_frame], MAX_SIZE, None) == WsOutcome((("message", "hi"),), None)

