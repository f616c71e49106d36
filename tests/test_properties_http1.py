"""Property-based tests of the sans-I/O HTTP/1.1 parser (``pounce.protocols.http.parser``).

What must hold for *any* input, however it is segmented by the network:

* ``parse_request_head``, ``ChunkedReader`` and ``ContentLengthReader`` either return a result or raise
  ``ProtocolError`` with one of the statuses the protocol knows how to answer; never another exception
  (a crash in ``data_received`` kills the connection without an answer) and never a hang (pytest-timeout);
* the outcome does not depend on where the reads were cut: a request accepted in one read is accepted,
  identically, when it trickles in, and one rejected whole is rejected in pieces. A parser whose answer
  depends on TCP segmentation is a parser two hops can disagree with;
* every accepted head is internally consistent (unambiguous framing: RFC 9112 §6.3 / §6.1, one Host for
  1.1) and survives re-serialization;
* valid requests parse exactly as h11 (a mature, independent RFC 9112 implementation) parses them.

The protocol is simulated as ``FastHTTPProtocol`` drives the parser: the buffer grows read by read, the
head is re-parsed (with the ``scanned`` resume offset), empty lines before a request are dropped as they
come, and after the head the body reader consumes the same buffer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import h11
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from pounce.protocols.http.parser import (
    MAX_EMPTY_LINES,
    ChunkedReader,
    ContentLengthReader,
    ProtocolError,
    RequestHead,
    leading_empty_lines,
    parse_request_head,
    valid_host,
)
from tests.strategies import BASE_SETTINGS, cut, feed_chunks, mutated, tokens

pytestmark = pytest.mark.timeout(60)

# The statuses a head can be refused with (the protocol answers each and closes).
HEAD_STATUSES = frozenset({400, 413, 414, 431, 501, 505})
# The statuses a body reader can refuse with.
BODY_STATUSES = frozenset({400, 413, 431})


@dataclass(frozen=True)
class Limits:
    max_line: int
    max_head: int
    max_fields: int


# The server's defaults (``ServerConfig``: --limit-request-line 128 KiB, a 1 MiB head, --limit-request-fields
# 100; --limit-request-field-size, 128 KiB, is not exercised here).
DEFAULT_LIMITS = Limits(max_line=128 * 1024, max_head=1024 * 1024, max_fields=100)
# For the fuzzing properties: limits far above the generated sizes except the field count, so the
# "too many fields" path is exercised but the line/head size limits (tested at their boundaries, below)
# are out of reach. See test_head_outcome_at_the_size_limits for why they are kept apart.
FUZZ_LIMITS = Limits(max_line=8 * 1024, max_head=64 * 1024, max_fields=8)

def parse_head(buf: bytes | bytearray, limits: Limits, scanned: int = 0) -> tuple[RequestHead, int] | None:
    return parse_request_head(buf, limits.max_line, limits.max_head, limits.max_fields, scanned)


# ---------------------------------------------------------------------------------------- outcomes
HeadFields = tuple[Any, ...]


def head_fields(head: RequestHead) -> HeadFields:
    """Everything a RequestHead says, as a comparable value."""
    return (
        head.method,
        head.target,
        head.http_version,
        tuple(head.headers),
        head.content_length,
        head.chunked,
        head.keep_alive,
        head.expect_continue,
        head.upgrade,
    )


@dataclass(frozen=True)
class Parsed:
    """A head was accepted; ``rest`` is everything after it (the body and what follows)."""

    fields: HeadFields
    rest: bytes


@dataclass(frozen=True)
class Rejected:
    status: int


@dataclass(frozen=True)
class Incomplete:
    pass


HeadOutcome = Union[Parsed, Rejected, Incomplete]

# Whitespace-stripped field value without CTLs (RFC 9110 §5.5), as the parser must hand them out.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+")
_CLEAN_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_METHOD = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")


def serialize_head(head: RequestHead) -> bytes:
    """The head as a client would write it back: request line, one line per field, empty line."""
    lines = [b"%s %s HTTP/%s" % (head.method, head.target, head.http_version.encode())]
    lines += [name + b": " + value for name, value in head.headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def check_head_invariants(head: RequestHead, offset: int, buf: bytes, limits: Limits) -> None:
    """What every accepted head must satisfy, whatever bytes it came from."""
    # The body starts right after the CRLF CRLF that ends the head, inside the buffer.
    assert 4 <= offset <= len(buf), (offset, len(buf))
    assert buf[offset - 4 : offset] == b"\r\n\r\n"
    assert _METHOD.fullmatch(head.method), head.method
    assert _TARGET.fullmatch(head.target), head.target
    # RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form for OPTIONS only.
    assert head.target[:1] == b"/" or (head.target == b"*" and head.method == b"OPTIONS") or b"://" in head.target
    assert head.http_version in ("1.0", "1.1")
    assert len(head.headers) <= limits.max_fields
    names = [name for name, _ in head.headers]
    for name, value in head.headers:
        assert _TOKEN.fullmatch(name), name  # lower-cased token
        assert _CLEAN_VALUE.fullmatch(value), value  # no CR, LF, NUL; stripped
    # Unambiguous framing (RFC 9112 §6.3): at most one Content-Length, never with Transfer-Encoding,
    # chunked only when Transfer-Encoding says exactly that, and never in HTTP/1.0 (§6.1).
    lengths = [value for name, value in head.headers if name == b"content-length"]
    assert len(lengths) <= 1
    assert head.content_length == (int(lengths[0]) if lengths else 0)
    assert head.content_length >= 0
    has_te = b"transfer-encoding" in names
    assert head.chunked == has_te
    if head.chunked:
        assert not lengths and head.http_version == "1.1"
    # RFC 9112 §3.2: exactly one Host in 1.1, at most one in 1.0.
    hosts = [value for name, value in head.headers if name == b"host"]
    assert len(hosts) == 1 if head.http_version == "1.1" else len(hosts) <= 1
    assert all(valid_host(host) for host in hosts)  # uri-host [ ":" port ]
    if head.http_version == "1.0":
        assert not head.keep_alive and not head.expect_continue
    # Re-serialized, the head parses to the same thing, and ends where the serialization ends.
    # (Under generous size limits: writing "name: value" may add a byte per field.)
    again = serialize_head(head)
    roomy = Limits(max(limits.max_line, 8192), max(limits.max_head, 96 * 1024), limits.max_fields)
    reparsed = parse_head(again, roomy)
    assert reparsed is not None
    assert head_fields(reparsed[0]) == head_fields(head)
    assert reparsed[1] == len(again)


def feed_head(chunks: Sequence[bytes], limits: Limits) -> HeadOutcome:
    """Deliver ``chunks`` read by read as ``FastHTTPProtocol`` does, until a head is parsed or refused."""
    buf = bytearray()
    scanned = 0
    empty_lines = 0
    for index, chunk in enumerate(chunks):
        buf += chunk
        if buf[:1] == b"\r":
            # RFC 9112 §2.2 empty lines before the request line: the protocol drops them as they come,
            # and refuses a flood of them (400).
            skipped = leading_empty_lines(buf)
            empty_lines += skipped
            if empty_lines > MAX_EMPTY_LINES:
                return Rejected(400)
            del buf[:skipped]
            if not buf:
                continue
        try:
            parsed = parse_head(buf, limits, scanned)
        except ProtocolError as exc:
            assert exc.status in HEAD_STATUSES, (exc.status, exc.reason)
            return Rejected(exc.status)
        if parsed is None:
            scanned = len(buf)
            continue
        head, offset = parsed
        check_head_invariants(head, offset, bytes(buf), limits)
        return Parsed(head_fields(head), bytes(buf[offset:]) + b"".join(chunks[index + 1 :]))
    return Incomplete()


def describe(outcome: HeadOutcome | BodyOutcome) -> str:
    """A label for hypothesis' statistics (``--hypothesis-show-statistics``): shows the inputs reach
    every outcome, not only the first check."""
    if isinstance(outcome, Rejected):
        return f"head refused {outcome.status}"
    if isinstance(outcome, BodyOutcome):
        return "body refused" if outcome.status else "body done" if outcome.done else "body incomplete"
    return f"head {type(outcome).__name__.lower()}"


def assert_same_head_outcome(whole: HeadOutcome, split: HeadOutcome) -> None:
    """Segmentation must not change the outcome (see the module docstring)."""
    if isinstance(whole, Parsed):
        # Accepted in one read: accepted identically in pieces, and the body starts at the same byte.
        assert split == whole
    elif isinstance(whole, Rejected):
        # Refused in one read: refused in pieces. The status may differ: on a partial head a check
        # that needs less data (request line too long, bare LF) can fire before the one a whole head
        # trips first; both are refusals of the same bytes.
        assert isinstance(split, Rejected), split
    else:
        # Incomplete in one read: still waiting in pieces, or refused early (a partial head can already
        # be hopeless: a request line past the limit, a bare LF).
        assert isinstance(split, (Incomplete, Rejected)), split


# ----------------------------------------------------------------------------------- generators
# RFC 3986 pchar without pct-encoded: unreserved, sub-delims, ":" and "@".
_PCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
# Names a generated extra field must not have: the framing and persistence fields are generated on
# purpose (Host, Content-Length, Transfer-Encoding) or left out (Connection, Upgrade, Expect change
# what h11 does next, not how it parses).
_RESERVED_NAMES = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect", b"te", b"trailer")
)


# Path and query pieces: pchar, pct-encoded octets (also of NUL and UTF-8) and "/".
_PATH_PIECES = [*_PCHARS, "/", "/", "%20", "%2F", "%c3%A9", "%00"]


@st.composite
def origin_form_targets(draw: st.DrawFn) -> bytes:
    """RFC 9112 §3.2.1 origin-form: absolute-path [ "?" query ], from RFC 3986 characters only."""
    path = "/" + "".join(draw(st.lists(st.sampled_from(_PATH_PIECES), max_size=24)))
    if draw(st.booleans()):
        path += "?" + "".join(draw(st.lists(st.sampled_from([*_PATH_PIECES, "?"]), max_size=16)))
    return path.encode()


# field-vchar (RFC 9110 §5.5: VCHAR / obs-text) and the SP/HTAB allowed between them.
_VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + "\x80\xa0\xe9\xff" + "  \t"


def field_values() -> st.SearchStrategy[bytes]:
    """A field-value (RFC 9110 §5.5): visible characters, obs-text, inner SP/HTAB runs; maybe empty."""
    return st.text(alphabet=_VALUE_CHARS, max_size=24).map(lambda t: t.encode("latin-1").strip(b" \t"))


ows = st.sampled_from([b"", b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def hosts(draw: st.DrawFn) -> bytes:
    """A valid Host: uri-host [ ":" port ] (RFC 9112 §3.2): reg-name, IPv4 or IPv6 literal."""
    host = draw(
        st.one_of(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_~", min_size=1, max_size=20),
            st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t),
            st.sampled_from(["[::1]", "[2001:db8::7]", "[::ffff:192.0.2.1]"]),
        )
    )
    if draw(st.booleans()):
        host += ":%d" % draw(st.integers(0, 65535))
    return host.encode()


def random_case(draw: st.DrawFn, name: bytes) -> bytes:
    """``name`` with a random subset of its letters upper-cased (field names are case-insensitive)."""
    mask = draw(st.integers(0, (1 << len(name)) - 1))
    return bytes(c - 0x20 if 0x61 <= c <= 0x7A and mask >> i & 1 else c for i, c in enumerate(name))


@st.composite
def chunked_encodings(
    draw: st.DrawFn, data: bytes, max_line: int = 100, bws_before_ext: bool = True, trailers: bool = True
) -> bytes:
    """``data`` as a valid chunked body (RFC 9112 §7.1): any chunking, hex digits of either case with
    leading zeros, chunk extensions (with BWS before ";" when ``bws_before_ext``), trailer fields."""

    def size_line(size: int) -> bytes:
        digits = b"%x" % size
        line = random_case(draw, b"0" * draw(st.integers(0, min(3, 16 - len(digits)))) + digits)
        for _ in range(draw(st.integers(0, 2))):
            ext = draw(tokens(max_size=6))
            if draw(st.booleans()):
                ext += b"=" + draw(st.one_of(tokens(max_size=6), st.just(b'"quoted; value"')))
            bws = draw(ows) if bws_before_ext else b""
            line += bws + b";" + ext
        return line[:max_line]

    out = bytearray()
    pos = 0
    while pos < len(data):
        size = draw(st.integers(1, len(data) - pos))
        line = size_line(size)
        if not re.fullmatch(rb"[0-9A-Fa-f]+(?:[\t ]*;.*)?", line):  # cut inside an extension: drop it
            line = b"%x" % size
        out += line + b"\r\n" + data[pos : pos + size] + b"\r\n"
        pos += size
    last = size_line(0)
    out += (last if re.fullmatch(rb"0+(?:[\t ]*;.*)?", last) else b"0") + b"\r\n"
    if trailers:
        for _ in range(draw(st.integers(0, 3))):
            name = draw(tokens(max_size=10))
            if name.lower() in _RESERVED_NAMES:
                continue
            out += name + b":" + draw(ows) + draw(field_values()) + draw(ows) + b"\r\n"
    out += b"\r\n"
    return bytes(out)


@dataclass(frozen=True)
class GeneratedRequest:
    """A valid request; ``wire`` is what goes to our parser, ``h11_wire`` what goes to h11."""

    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased, values stripped: what both must report
    body: bytes
    wire: bytes
    h11_wire: bytes


@st.composite
def valid_requests(draw: st.DrawFn, leading_crlf: bool = True) -> GeneratedRequest:
    """Requests both our parser and h11 must accept, and parse identically.

    Kept inside what both accept, on purpose:
    * no duplicate Content-Length, no obs-fold, no Transfer-Encoding other than exactly ``chunked``,
      no chunked body in HTTP/1.0: we reject those (smuggling tells, RFC 9112 §6.1/§6.3/§5.2), h11
      accepts some of them;
    * no whitespace between a chunk size and ";" (RFC 9112 §7.1.1 BWS): we accept it, h11 does not;
    * a valid uri-host[:port] for Host and a handful of fields: our Host check and field-count limit
      (--limit-request-fields) have no h11 counterpart;
    * the leading empty lines (RFC 9112 §2.2: a server SHOULD ignore at least one) go to our parser
      only: h11 0.16 refuses them ("no request line received").
    """
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"]), tokens()))
    target = draw(origin_form_targets())
    if method == b"OPTIONS" and draw(st.booleans()):
        target = b"*"
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    header_lines: list[bytes] = []
    expected: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(tokens())
        if name.lower() in _RESERVED_NAMES:
            continue
        value = draw(field_values())
        header_lines.append(name + b":" + draw(ows) + value + draw(ows))
        expected.append((name.lower(), value))
    if version == b"1.1" or draw(st.booleans()):
        host = draw(hosts())
        at = draw(st.integers(0, len(header_lines)))
        header_lines.insert(at, random_case(draw, b"host") + b":" + draw(ows) + host + draw(ows))
        expected.insert(at, (b"host", host))
    body = draw(st.binary(max_size=200))
    framing = draw(st.sampled_from(["length", "chunked", "none"] if version == b"1.1" else ["length", "none"]))
    if framing == "none" and body:
        framing = "length"
    if framing == "length":
        digits = b"0" * draw(st.integers(0, 2)) + b"%d" % len(body)
        header_lines.append(random_case(draw, b"content-length") + b":" + draw(ows) + digits + draw(ows))
        expected.append((b"content-length", digits))
        encoded = body
    elif framing == "chunked":
        header_lines.append(random_case(draw, b"transfer-encoding") + b":" + draw(ows) + b"chunked")
        expected.append((b"transfer-encoding", b"chunked"))
        encoded = draw(chunked_encodings(body, bws_before_ext=False))
    else:
        encoded = b""
    message = b"%s %s HTTP/%s\r\n" % (method, target, version) + b"".join(line + b"\r\n" for line in header_lines)
    message += b"\r\n" + encoded
    lead = b"\r\n" * draw(st.integers(0, 2)) if leading_crlf else b""
    return GeneratedRequest(method, target, version, tuple(expected), body, lead + message, message)


# Input that looks enough like HTTP to get past the first checks: a soup of request fragments.
_FRAGMENTS = [
    b"GET", b"POST", b"OPTIONS", b" ", b"/", b"*", b"http://a/", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0",
    b"\r\n", b"\r\n\r\n", b"\n", b"\r", b"\t", b"\x00", b"\xff", b":", b"Host", b"a", b"Host: a\r\n",
    b"Content-Length", b"Transfer-Encoding", b"chunked", b"gzip", b"0", b"5", b"999999999999999999999",
    b"Connection", b"close", b"Upgrade", b"websocket", b"Expect", b"100-continue", b",", b";", b"[::1]",
]
http_soup = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(b"".join)
request_prefixes = st.one_of(
    st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: a\r\n", b"\r\n"]),
    # Empty lines before a request, up to past the flood limit (1 KiB of them).
    st.integers(0, 600).map(lambda n: b"\r\n" * n + b"GET / HTTP/1.1\r\nHost: a\r\n"),
)
# Arbitrary bytes rarely contain CRLF CRLF; ending half of them with one makes the parser decide.
arbitrary_heads = st.tuples(
    st.one_of(st.binary(max_size=300), http_soup, st.tuples(request_prefixes, st.binary(max_size=100)).map(b"".join)),
    st.sampled_from([b"", b"\r\n\r\n"]),
).map(b"".join)


# Field lines around framing and persistence, valid and not, for heads assembled at random from them:
# where request smuggling lives (RFC 9112 §6.1, §6.3). The invariants then check every accepted one.
_FRAMING_LINES = [
    b"Host: a", b"host: [::1]:80", b"Host:", b"Host: a b", b"Host: a/b",
    b"Content-Length: 0", b"Content-Length: 5", b"content-length: 05", b"Content-Length: 5, 5", b"Content-Length: -1",
    b"Content-Length: 1" + b"0" * 20, b"Content-Length:  7 ",
    b"Transfer-Encoding: chunked", b"transfer-encoding: CHUNKED", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip", b"Transfer-Encoding: identity", b"Transfer-Encoding: gzip",
    b"Transfer-Encoding:",
    b"Transfer-Encoding: chunked, chunked", b"Transfer-Encoding:\tchunked",
    b"Connection: close", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket", b"Expect: 100-continue",
    b"X-A: 1", b"x-b:", b"X-D: \xff",
]
# Lines no parser may accept (space before the colon, obs-fold, NUL, no colon): rarer, or nothing parses.
_BROKEN_LINES = [b"Content-Length : 5", b" chunked", b"\tx", b"X\x00: 1", b"X-C: a\x00b", b"", b"X-E"]
_REQUEST_LINES = [
    b"GET / HTTP/1.1", b"POST /p?q HTTP/1.1", b"OPTIONS * HTTP/1.1", b"GET * HTTP/1.1", b"GET http://a/b HTTP/1.1",
    b"CONNECT a:443 HTTP/1.1", b"POST / HTTP/1.0", b"GET / HTTP/1.5", b"GET / HTTP/2.0", b"GET / HTTP/0.9",
    b"GET /\xff HTTP/1.1", b"GET  / HTTP/1.1", b"get / HTTP/1.1",
]
_field_line = st.sampled_from(_FRAMING_LINES * 4 + _BROKEN_LINES)


@st.composite
def framing_soup_requests(draw: st.DrawFn) -> bytes:
    """A head assembled from the lines above (a Host line is usually among them), maybe a chunked body."""
    line = draw(st.sampled_from(_REQUEST_LINES))
    fields = draw(st.lists(_field_line, max_size=10))
    if draw(st.integers(0, 4)):
        fields.insert(draw(st.integers(0, len(fields))), b"Host: a")
    body = draw(st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]))
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


# ----------------------------------------------------------------------------- head properties
@settings(BASE_SETTINGS, max_examples=200)
@given(st.one_of(arbitrary_heads, framing_soup_requests()), st.data())
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes, draw: st.DataObject) -> None:
    chunks = draw.draw(feed_chunks(data), label="chunks")
    whole = feed_head([data], FUZZ_LIMITS)
    event(describe(whole))
    assert_same_head_outcome(whole, feed_head(chunks, FUZZ_LIMITS))


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    return draw(mutated(draw(valid_requests()).wire, line_sep=b"\r\n"))


@settings(BASE_SETTINGS, max_examples=100)
@given(mutated_requests(), st.data())
def test_mutated_requests_parse_or_raise_protocol_error(data: bytes, draw: st.DataObject) -> None:
    chunks = draw.draw(feed_chunks(data), label="chunks")
    whole = feed_head([data], FUZZ_LIMITS)
    event(describe(whole))
    assert_same_head_outcome(whole, feed_head(chunks, FUZZ_LIMITS))


@settings(BASE_SETTINGS, max_examples=50)
@given(valid_requests(), st.data())
def test_valid_requests_are_accepted_in_any_segmentation(request: GeneratedRequest, draw: st.DataObject) -> None:
    # Not vacuous: every generated request must be accepted, so a rule that refused valid input fails here.
    whole = feed_head([request.wire], DEFAULT_LIMITS)
    assert isinstance(whole, Parsed), whole
    assert whole.fields[0] == request.method and whole.fields[1] == request.target
    assert feed_head(draw.draw(feed_chunks(request.wire), label="chunks"), DEFAULT_LIMITS) == whole


@st.composite
def heads_at_the_size_limits(draw: st.DrawFn) -> tuple[bytes, Limits, list[int]]:
    """A valid head whose request line or total size is within a few bytes of the limit, and where the
    reads end: often in the last bytes of a line, where an incomplete head's checks run."""
    limits = Limits(max_line=draw(st.integers(30, 120)), max_head=draw(st.integers(60, 400)), max_fields=100)
    delta = draw(st.integers(-3, 3))
    if draw(st.booleans()):
        # Request line = "GET " + target + " HTTP/1.1": its length is the target's + 13.
        target = b"/" + b"a" * max(0, limits.max_line + delta - 14)
        head = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"
        near = head.find(b"\r\n")
    else:
        # Head size as the parser counts it: up to, not including, the final CRLF CRLF.
        base = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
        head = base + b"p" * max(0, limits.max_head + delta - len(base)) + b"\r\n\r\n"
        near = len(head) - 4
    cuts = draw(
        st.lists(st.one_of(st.integers(1, len(head) - 1), st.integers(near - 2, near + 3)), min_size=1, max_size=3)
    )
    return head, limits, sorted({c for c in cuts if 0 < c < len(head)})


# The 414 case: the request line is exactly max_line (64) bytes; the first read ends after its CR.
LINE_AT_LIMIT = (b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: a\r\n\r\n", Limits(64, 400, 100), [65])
# The 431 case: the head is exactly max_head (100) bytes; the first read ends after the final CR LF CR.
_PAD_BASE = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
HEAD_AT_LIMIT = (_PAD_BASE + b"p" * (100 - len(_PAD_BASE)) + b"\r\n\r\n", Limits(8192, 100, 100), [103])


@settings(BASE_SETTINGS, max_examples=100)
@given(heads_at_the_size_limits())
@example(LINE_AT_LIMIT)
@example(HEAD_AT_LIMIT)
def test_head_outcome_at_the_size_limits(case: tuple[bytes, Limits, list[int]]) -> None:
    head, limits, cuts = case
    whole = feed_head([head], limits)
    assert_same_head_outcome(whole, feed_head(cut(head, cuts), limits))


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(LINE_AT_LIMIT, id="request-line-at-limit-414"),
        pytest.param(HEAD_AT_LIMIT, id="head-at-limit-431"),
    ],
)
def test_head_at_the_limit_repro(case: tuple[bytes, Limits, list[int]]) -> None:
    """Minimal reproductions of what test_head_outcome_at_the_size_limits finds (one per bug)."""
    head, limits, cuts = case
    assert isinstance(feed_head([head], limits), Parsed)  # one read: accepted
    assert feed_head(cut(head, cuts), limits) == feed_head([head], limits)  # two reads: refused today


def test_head_at_the_limit_repro_cases_are_what_they_claim() -> None:
    assert len(LINE_AT_LIMIT[0].split(b"\r\n")[0]) == 64 == LINE_AT_LIMIT[1].max_line
    assert LINE_AT_LIMIT[0][: LINE_AT_LIMIT[2][0]].endswith(b"HTTP/1.1\r")
    assert HEAD_AT_LIMIT[0].find(b"\r\n\r\n") == 100 == HEAD_AT_LIMIT[1].max_head
    assert HEAD_AT_LIMIT[0][: HEAD_AT_LIMIT[2][0]].endswith(b"pp\r\n\r")


@settings(BASE_SETTINGS, max_examples=50)
@given(valid_requests(leading_crlf=False))
def test_reserialized_head_parses_the_same(request: GeneratedRequest) -> None:
    parsed = parse_head(request.wire, DEFAULT_LIMITS)
    assert parsed is not None
    head, offset = parsed
    # check_head_invariants re-serializes and re-parses; here the serialization is also compared with
    # the generator's own normalized view of the request.
    check_head_invariants(head, offset, request.wire, DEFAULT_LIMITS)
    assert tuple(head.headers) == request.headers
    assert serialize_head(head).startswith(b"%s %s HTTP/" % (request.method, request.target))


# --------------------------------------------------------------------------- body readers
@dataclass(frozen=True)
class BodyOutcome:
    data: bytes
    done: bool
    leftover: bytes  # what stayed in the buffer once the body was done (or all of it, if not done)
    status: int | None = None  # set when the reader refused the body


def feed_body(reader: ChunkedReader | ContentLengthReader, chunks: Sequence[bytes]) -> BodyOutcome:
    """Deliver ``chunks`` into one buffer, read by read, as the protocol feeds its body reader."""
    buf = bytearray()
    out = bytearray()
    for index, chunk in enumerate(chunks):
        buf += chunk
        try:
            data, done = reader.feed(buf)
        except ProtocolError as exc:
            assert exc.status in BODY_STATUSES, (exc.status, exc.reason)
            return BodyOutcome(bytes(out), False, b"", exc.status)
        out += data
        if done:
            return BodyOutcome(bytes(out), True, bytes(buf) + b"".join(chunks[index + 1 :]))
    return BodyOutcome(bytes(out), False, bytes(buf))


def assert_same_body_outcome(whole: BodyOutcome, split: BodyOutcome) -> None:
    if whole.status is not None:
        assert split.status is not None, split
    elif whole.done:
        assert split == whole
    else:
        # Not finished: the same bytes decoded so far (data is handed out as soon as it is there).
        assert split.status is None and not split.done and split.data == whole.data, split


_CHUNK_FRAGMENTS = [
    b"0", b"5", b"a", b"F", b"ffffffffffffffff", b"10000000000000000", b"\r\n", b"\n", b"\r", b";", b" ", b"\t",
    b"ext=1", b"hello", b"X-T: 1\r\n", b":", b"\x00", b"\xff", b"0\r\n\r\n", b"-", b"+", b"0x",
]
arbitrary_chunked = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(_CHUNK_FRAGMENTS), max_size=30).map(b"".join),
)


@st.composite
def mutated_chunked(draw: st.DrawFn) -> bytes:
    encoded = draw(chunked_encodings(draw(st.binary(max_size=100))))
    return draw(mutated(encoded, line_sep=b"\r\n"))


@settings(BASE_SETTINGS, max_examples=150)
@given(st.one_of(arbitrary_chunked, mutated_chunked()), st.data())
def test_chunked_reader_decodes_or_raises_protocol_error(data: bytes, draw: st.DataObject) -> None:
    whole = feed_body(ChunkedReader(), [data])
    event(describe(whole))
    split = feed_body(ChunkedReader(), draw.draw(feed_chunks(data), label="chunks"))
    assert_same_body_outcome(whole, split)
    # Never more data out than went in; what is left after the end is the input's own tail.
    assert len(whole.data) <= len(data)
    if whole.done:
        assert data.endswith(whole.leftover)


@settings(BASE_SETTINGS, max_examples=100)
@given(st.binary(max_size=300), st.binary(max_size=20), st.data())
def test_chunked_reader_round_trips_valid_encodings(payload: bytes, after: bytes, draw: st.DataObject) -> None:
    encoded = draw.draw(chunked_encodings(payload), label="encoded")
    stream = encoded + after  # ``after``: the next pipelined request, which must stay untouched
    chunks = draw.draw(feed_chunks(stream), label="chunks")
    reader = ChunkedReader()
    buf = bytearray()
    decoded = bytearray()
    fed = 0
    for index, chunk in enumerate(chunks):
        buf += chunk
        fed += len(chunk)
        data, done = reader.feed(buf)
        decoded += data
        # Finished exactly when the last byte of the encoding has arrived, not before, not after.
        assert done == (fed >= len(encoded)), (fed, len(encoded))
        if done:
            assert bytes(buf) + b"".join(chunks[index + 1 :]) == after
            break
    assert bytes(decoded) == payload


@settings(BASE_SETTINGS, max_examples=100)
@given(st.binary(max_size=300), st.integers(0, 300), st.data())
def test_content_length_reader_takes_exactly_the_length(stream: bytes, length: int, draw: st.DataObject) -> None:
    chunks = draw.draw(feed_chunks(stream), label="chunks")
    reader = ContentLengthReader(length)
    buf = bytearray()
    decoded = bytearray()
    fed = 0
    done = length == 0 and not stream
    for index, chunk in enumerate(chunks):
        buf += chunk
        fed += len(chunk)
        data, done = reader.feed(buf)
        decoded += data
        assert done == (fed >= length)
        if done:
            assert bytes(buf) + b"".join(chunks[index + 1 :]) == stream[length:]
            break
    assert bytes(decoded) == stream[:length]
    assert done == (len(stream) >= length)


@st.composite
def chunked_lines_at_the_limit(draw: st.DrawFn) -> tuple[bytes, int, list[int]]:
    """A chunked body with a size line (long extension) or trailer line within a few bytes of max_line,
    and where the reads end (often around that line's CRLF)."""
    max_line = draw(st.integers(16, 200))
    length = max_line + draw(st.integers(-2, 3))
    if draw(st.booleans()):
        line = b"5;" + b"e" * max(0, length - 2)
        body = line + b"\r\nhello\r\n0\r\n\r\n"
        near = len(line)
    else:
        prefix = b"5\r\nhello\r\n0\r\n"
        line = b"X-T: " + b"v" * max(0, length - 5)
        body = prefix + line + b"\r\n\r\n"
        near = len(prefix) + len(line)
    cuts = draw(
        st.lists(st.one_of(st.integers(1, len(body) - 1), st.integers(near - 2, near + 2)), min_size=1, max_size=3)
    )
    return body, max_line, sorted({c for c in cuts if 0 < c < len(body)})


# A size line of exactly max_line (64) bytes, the first read ending after its CR.
SIZE_LINE_AT_LIMIT = (b"5;" + b"e" * 62 + b"\r\nhello\r\n0\r\n\r\n", 64, [65])
# A trailer line of 100 bytes, over max_line (64): accepted in one read, refused (431) in two.
LONG_TRAILER = (b"5\r\nhello\r\n0\r\nX-T: " + b"v" * 95 + b"\r\n\r\n", 64, [90])


@settings(BASE_SETTINGS, max_examples=100)
@given(chunked_lines_at_the_limit())
@example(SIZE_LINE_AT_LIMIT)
@example(LONG_TRAILER)
def test_chunked_outcome_at_the_line_limit(case: tuple[bytes, int, list[int]]) -> None:
    body, max_line, cuts = case
    whole = feed_body(ChunkedReader(max_line), [body])
    assert_same_body_outcome(whole, feed_body(ChunkedReader(max_line), cut(body, cuts)))


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(SIZE_LINE_AT_LIMIT, id="size-line-at-limit"),
        pytest.param(LONG_TRAILER, id="trailer-over-limit"),
    ],
)
def test_chunked_line_limit_repro(case: tuple[bytes, int, list[int]]) -> None:
    """Minimal reproductions of what test_chunked_outcome_at_the_line_limit finds (one per bug)."""
    body, max_line, cuts = case
    assert feed_body(ChunkedReader(max_line), cut(body, cuts)) == feed_body(ChunkedReader(max_line), [body])


# ------------------------------------------------------------------------- whole requests
@dataclass(frozen=True)
class RequestOutcome:
    head: HeadOutcome
    body: BodyOutcome | None = None


def feed_request(chunks: Sequence[bytes], limits: Limits) -> RequestOutcome:
    """Head, then body, as the protocol parses one request from successive reads."""
    head = feed_head(chunks, limits)
    if not isinstance(head, Parsed):
        return RequestOutcome(head)
    _method, _target, _version, _headers, length, chunked = head.fields[:6]
    reader = ChunkedReader(limits.max_line) if chunked else ContentLengthReader(length)
    if not chunked and length == 0:
        return RequestOutcome(head, BodyOutcome(b"", True, head.rest))
    # The body arrives in the same segmentation as the rest of the stream did.
    consumed = sum(map(len, chunks)) - len(head.rest)
    pos = 0
    cuts: list[int] = []
    for chunk in chunks:
        pos += len(chunk)
        if consumed < pos < consumed + len(head.rest):
            cuts.append(pos - consumed)
    body_chunks = cut(head.rest, cuts) if head.rest else []
    return RequestOutcome(head, feed_body(reader, body_chunks))


@settings(BASE_SETTINGS, max_examples=100)
@given(st.one_of(mutated_requests(), framing_soup_requests()), st.data())
def test_mutated_requests_with_bodies_never_crash_the_readers(data: bytes, draw: st.DataObject) -> None:
    whole = feed_request([data], FUZZ_LIMITS)
    event(describe(whole.head) if whole.body is None else describe(whole.body))
    split = feed_request(draw.draw(feed_chunks(data), label="chunks"), FUZZ_LIMITS)
    assert_same_head_outcome(whole.head, split.head)
    if whole.body is not None and split.body is not None:
        assert_same_body_outcome(whole.body, split.body)


# ----------------------------------------------------------------------------- differential
def h11_parse(chunks: Sequence[bytes]) -> tuple[h11.Request, bytes, bytes]:
    """The request, body and trailing bytes as h11 (server side) reads them from ``chunks``."""
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    body = bytearray()
    for index, chunk in enumerate(chunks):
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                trailing, _closed = conn.trailing_data
                return request, bytes(body), bytes(trailing) + b"".join(chunks[index + 1 :])
            else:  # pragma: no cover - a valid request yields nothing else
                raise AssertionError(f"unexpected h11 event {event!r}")
    raise AssertionError("h11 did not finish the request")


@settings(BASE_SETTINGS, max_examples=100)
@given(valid_requests(), st.binary(max_size=16), st.data())
def test_valid_requests_parse_as_h11_parses_them(request: GeneratedRequest, after: bytes, draw: st.DataObject) -> None:
    ours = feed_request(draw.draw(feed_chunks(request.wire + after), label="our chunks"), DEFAULT_LIMITS)
    theirs, h11_body, h11_trailing = h11_parse(draw.draw(feed_chunks(request.h11_wire + after), label="h11 chunks"))
    assert isinstance(ours.head, Parsed), ours
    assert ours.body is not None and ours.body.status is None and ours.body.done, ours.body
    method, target, version, headers = ours.head.fields[:4]
    assert method == theirs.method == request.method
    assert target == theirs.target == request.target
    assert version.encode() == theirs.http_version == request.version
    # Both lower-case names and strip OWS; order and repeated names are kept by both.
    assert list(headers) == [(name, value) for name, value in theirs.headers] == list(request.headers)
    assert ours.body.data == h11_body == request.body
    # Both stop exactly at the end of the request: the next bytes are left for the next one.
    assert ours.body.leftover == h11_trailing == after


def test_property_helpers_can_fail() -> None:
    """The outcome comparison is not vacuous: a head refused only in pieces is caught."""
    accepted = Parsed(("GET",), b"")
    with pytest.raises(AssertionError):
        assert_same_head_outcome(accepted, Rejected(431))
    with pytest.raises(AssertionError):
        assert_same_head_outcome(Rejected(400), Incomplete())
    with pytest.raises(AssertionError):
        assert_same_body_outcome(BodyOutcome(b"a", True, b""), BodyOutcome(b"a", True, b"x"))
    # A head parsed to something else than its re-serialization would fail check_head_invariants.
    head, offset = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", DEFAULT_LIMITS) or (None, 0)
    assert head is not None
    head.headers.append((b"Bad Name", b" x "))
    with pytest.raises(AssertionError):
        check_head_invariants(head, offset, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", DEFAULT_LIMITS)
