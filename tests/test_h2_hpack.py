"""The HPACK cache (pounce/protocols/http/h2_hpack.py) codes exactly what hpack itself codes.

Sequences of header blocks drawn from a small pool (so blocks repeat, and the dynamic table fills,
evicts and changes size) go through hpack's coder and ours side by side: every encoded block must be
byte for byte hpack's, and every decoded block field for field.
"""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from pounce.protocols.http.h2_hpack import CachingDecoder, CachingEncoder

FIELDS = [
    (b":status", b"200"),
    (b":status", b"404"),
    (b"content-type", b"text/plain"),
    (b"content-length", b"13"),
    (b"date", b"Wed, 02 Dec 2026 01:58:38 GMT"),
    (b"date", b"Wed, 02 Dec 2026 01:58:39 GMT"),
    (b"server", b"pounce"),
    (b"x-long", b"v" * 300),  # larger than a shrunk table: clears it
    (b"set-cookie", b"id=1"),
]
blocks = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=6).map(tuple)
steps = st.lists(
    st.one_of(blocks, st.sampled_from([64, 256, 4096]).map(lambda size: ("resize", size))),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, pool=st.lists(blocks, min_size=1, max_size=4))
def test_encoder_matches_hpack(steps: list[object], pool: list[tuple[tuple[bytes, bytes], ...]]) -> None:
    ours, theirs = CachingEncoder(), Encoder()
    # Replaying blocks from a small pool is what makes them repeat against an unchanged table.
    for step in steps + [pool[i % len(pool)] for i in range(12)]:
        if isinstance(step, tuple) and step and step[0] == "resize":
            ours.header_table_size = theirs.header_table_size = int(step[1])  # type: ignore[arg-type]
            continue
        assert ours.encode(list(step)) == theirs.encode(list(step))  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(steps=steps, pool=st.lists(blocks, min_size=1, max_size=4))
def test_decoder_matches_hpack(steps: list[object], pool: list[tuple[tuple[bytes, bytes], ...]]) -> None:
    encoder, ours, theirs = Encoder(), CachingDecoder(65536), Decoder(65536)
    for step in steps + [pool[i % len(pool)] for i in range(12)]:
        if isinstance(step, tuple) and step and step[0] == "resize":
            encoder.header_table_size = int(step[1])  # type: ignore[arg-type]
            continue
        data = encoder.encode(list(step))  # type: ignore[arg-type]
        assert _outcome(ours, data) == _outcome(theirs, data)


def _outcome(decoder: Decoder, data: bytes) -> object:
    """The fields, or the error: hpack's own encoder, resized twice, can emit blocks no decoder takes."""
    try:
        return list(decoder.decode(data, raw=True))
    except Exception as exc:
        return type(exc)


def test_repeated_blocks_come_from_the_cache() -> None:
    encoder = CachingEncoder()
    block = [(b":status", b"200"), (b"server", b"pounce")]
    first = encoder.encode(block)  # adds "server: pounce" to the table
    second = encoder.encode(block)  # all indexed now: kept
    assert second != first
    assert encoder.encode(block) is second


def test_never_indexed_field_is_not_served_an_indexed_encoding() -> None:
    # A sensitive field not in the table goes out as a never-indexed literal and leaves the table as it
    # was; the same field sent as an ordinary one must still be added to the table, not reuse that block.
    ours, theirs = CachingEncoder(), Encoder()
    sensitive = [NeverIndexedHeaderTuple(b"authorization", b"secret")]
    plain = [(b"authorization", b"secret")]
    for block in (sensitive, sensitive, plain, plain, sensitive):
        assert ours.encode(block) == theirs.encode(block)  # type: ignore[arg-type]


def test_an_oversized_block_is_refused_again_from_the_cache() -> None:
    data = Encoder().encode([(b"x-a", b"v" * 100)])
    decoder = CachingDecoder(4096)
    assert list(decoder.decode(data, raw=True)) == [(b"x-a", b"v" * 100)]
    decoder.max_header_list_size = 50
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(data, raw=True)
