"""The pure-Python unmasking paths (pounce/protocols/websockets/masking.py) against a plain XOR."""

from __future__ import annotations

import os
import random

import pytest

from pounce.bench.wsclient import client_frame
from pounce.protocols.websockets.frames import FrameReader, ProtocolViolation
from pounce.protocols.websockets.masking import unmask, unmask_onto


def _xor(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1023, 1024, 1025, 1027, 4096, 65536, 65539])
@pytest.mark.parametrize("mask", [b"\x00\x00\x00\x00", b"\xff\x00\x12\x80", b"\x01\x01\x01\x01"])
def test_unmask_and_unmask_onto_are_xor(size: int, mask: bytes) -> None:
    data = os.urandom(size + 7)
    expected = _xor(data[3 : 3 + size], mask)
    assert unmask(data, 3, 3 + size, mask) == expected
    out = bytearray(b"prefix")
    unmask_onto(out, data, 3, 3 + size, mask)
    assert out == b"prefix" + expected
    out = bytearray()
    unmask_onto(out, bytearray(data), 3, 3 + size, mask)  # a bytearray source too
    assert out == expected


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_a_large_message_spread_over_reads_arrives_whole(opcode: int) -> None:
    """A 70000-byte frame cut into reads at random places (the spanning path, unmasked straight into
    the message buffer), then the same cut again with the mask rotated at every odd offset."""
    rng = random.Random(5)
    payload = ("aé€😀" * 7000).encode()[:70000] if opcode == 0x1 else os.urandom(70000)
    if opcode == 0x1:
        payload = payload.decode("utf-8", "ignore").encode()  # whole characters only
    wire = client_frame(payload, opcode) * 3
    for _ in range(20):
        reader = FrameReader(1 << 24, None)
        events = []
        pos = 0
        while pos < len(wire):
            step = rng.choice([1, 3, 1500, 4093, 65536, 100000])
            events += reader.feed(wire[pos : pos + step])
            pos += step
        expected = payload.decode() if opcode == 0x1 else payload
        assert events == [("message", expected)] * 3


def test_invalid_utf8_in_a_spread_frame_fails_on_its_piece() -> None:
    """RFC 6455 8.1 on the spanning path: the read holding the bad byte fails (1007), not the end."""
    payload = b"a" * 5000 + b"\xff" + b"b" * 60000
    wire = client_frame(payload, 0x1)
    reader = FrameReader(1 << 24, None)
    assert reader.feed(wire[:3000]) == []
    with pytest.raises(ProtocolViolation) as caught:
        reader.feed(wire[3000:8000])
    assert caught.value.code == 1007
