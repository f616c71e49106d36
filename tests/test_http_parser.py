"""The sans-I/O HTTP/1.1 parser on its own: request heads, body readers, and every rejection status."""

from __future__ import annotations

import pytest

from pounce.protocols.http.parser import (
    ChunkedReader,
    ContentLengthReader,
    ProtocolError,
    RequestHead,
    parse_request_head,
)

MAX_LINE = 8192
MAX_HEAD = 65536


def parse(data: bytes) -> tuple[RequestHead, int]:
    parsed = parse_request_head(data, MAX_LINE, MAX_HEAD)
    assert parsed is not None, "head should be complete"
    return parsed


def rejected(data: bytes) -> int:
    with pytest.raises(ProtocolError) as info:
        parse_request_head(data, MAX_LINE, MAX_HEAD)
    return info.value.status


def test_simple_get() -> None:
    data = b"GET /a%20b?x=1 HTTP/1.1\r\nHost: example.org\r\nX-Thing:  spaced value \t\r\n\r\nrest"
    head, offset = parse(data)
    assert (head.method, head.target, head.http_version) == (b"GET", b"/a%20b?x=1", "1.1")
    assert head.headers == [(b"host", b"example.org"), (b"x-thing", b"spaced value")]
    assert data[offset:] == b"rest"
    assert head.keep_alive and not head.chunked and head.content_length == 0
    assert not head.expect_continue and head.upgrade is None


def test_incomplete_head_needs_more_data() -> None:
    full = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    for cut in range(len(full)):
        assert parse_request_head(full[:cut], MAX_LINE, MAX_HEAD) is None, cut
    head, offset = parse(full)
    assert head.content_length == 3 and offset == len(full)


def test_leading_empty_lines_are_ignored() -> None:
    # RFC 9112 §2.2: robustness against a stray CRLF after a previous body.
    head, _ = parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.method == b"GET"


def test_field_values_keep_obs_text() -> None:
    head, _ = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Name: café\r\n\r\n".encode())
    assert (b"x-name", "café".encode()) in head.headers


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, CLOSE", False),
        (b"1.1", b"keep-alive", True),
        # HTTP/1.0 connections are never kept alive (as Uvicorn's parsers and h11).
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    head, _ = parse(data + b"\r\n")
    assert head.keep_alive is keep_alive


def test_http10_without_host_is_fine() -> None:
    head, _ = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert head.http_version == "1.0" and head.headers == []


def test_expect_continue_only_on_11() -> None:
    head, _ = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
    assert head.expect_continue
    head, _ = parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert not head.expect_continue


def test_upgrade_needs_connection_upgrade() -> None:
    head, _ = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n")
    assert head.upgrade == b"websocket"
    head, _ = parse(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
    assert head.upgrade is None


@pytest.mark.parametrize(
    "target",
    [b"/", b"/a/b?c=d", b"//double", b"http://example.org", b"http://example.org/p?q", b"HTTPS://h:1/p"],
)
def test_accepted_targets(target: bytes) -> None:
    head, _ = parse(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.target == target


def test_asterisk_form_for_options() -> None:
    head, _ = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.target == b"*"


def test_chunked_and_content_length_framing() -> None:
    head, _ = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
    assert head.chunked and head.content_length == 0
    head, _ = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n")
    assert not head.chunked and head.content_length == 7


H = b"Host: a\r\n"

# (request head, expected status): every rule the parser enforces, with the RFC behind it.
REJECTED = [
    pytest.param(b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400, id="method-not-a-token"),
    pytest.param(b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400, id="two-spaces"),
    pytest.param(b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400, id="trailing-space"),
    pytest.param(b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400, id="space-in-target"),
    pytest.param("GET /é HTTP/1.1\r\n".encode() + H + b"\r\n", 400, id="raw-utf8-target"),
    pytest.param(b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n", 400, id="del-in-target"),
    pytest.param(b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400, id="bad-version"),
    pytest.param(b"GET / http/1.1\r\n" + H + b"\r\n", 400, id="lowercase-version"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http-0.9"),
    pytest.param(b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505, id="http-0.9-version"),
    pytest.param(b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400, id="relative-target"),
    pytest.param(b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, id="asterisk-not-options"),
    pytest.param(b"CONNECT a:443 HTTP/1.1\r\n" + H + b"\r\n", 400, id="authority-form"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n continued\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n\tcontinued\r\n\r\n", 400, id="obs-fold-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n " + H + b"\r\n", 400, id="leading-space-first-field"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", 400, id="tab-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", 400, id="empty-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", 400, id="name-not-a-token"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A 1\r\n\r\n", 400, id="no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400, id="ctl-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400, id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400, id="bare-cr-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", 400, id="bare-lf-between-fields"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", 400, id="lf-line-endings"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n", 400, id="cl-repeated"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, id="cl-differs"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\n", 400, id="cl-list"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\n", 400, id="cl-plus"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, id="cl-negative"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400, id="cl-hex"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n", 400, id="cl-inner-space"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400, id="cl-empty"),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, id="cl-and-te"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, id="te-and-cl"
    ),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400, id="te-not-chunked"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400, id="te-identity"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400, id="te-xchunked"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400, id="te-chunked-not-last"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400, id="te-chunked-twice"),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        id="te-repeated-field",
    ),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501, id="te-unknown-coding"),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        501,
        id="te-unknown-coding-split",
    ),
    pytest.param(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, id="te-in-http10"),
]


@pytest.mark.parametrize(("data", "status"), REJECTED)
def test_rejected_heads(data: bytes, status: int) -> None:
    assert rejected(data) == status


def test_request_line_too_long_is_414() -> None:
    # Complete or not, a request line over the limit is refused as soon as it is seen.
    line = b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n"
    assert rejected(line + H + b"\r\n") == 414
    assert rejected(line[:-2]) == 414


def test_head_too_large_is_431() -> None:
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEAD // 1000 + 1))
    assert rejected(b"GET / HTTP/1.1\r\n" + H + fields + b"\r\n") == 431
    assert rejected(b"GET / HTTP/1.1\r\n" + H + fields) == 431


def feed_in_two(data: bytes, cut: int, max_line: int, max_head: int, max_field: int) -> int | None:
    """Parse ``data`` delivered in two reads split at ``cut`` as a protocol does; the refusal status
    (None: accepted)."""
    try:
        first = parse_request_head(data[:cut], max_line, max_head, 100, 0, max_field)
        assert first is None, cut  # the head ends only with its last byte
        assert parse_request_head(data, max_line, max_head, 100, cut, max_field) is not None
    except ProtocolError as exc:
        return exc.status
    return None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GET /" + b"a" * 26 + b" HTTP/1.1\r\nHost: a\r\n\r\n", None, id="line-at-limit"),
        pytest.param(b"GET /" + b"a" * 27 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="line-over-limit"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-F: " + b"v" * 15 + b"\r\n\r\n", None, id="field-at-limit"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-F: " + b"v" * 16 + b"\r\n\r\n", 431, id="field-over-limit"),
        pytest.param(b"GET / HTTP/1.1\r\nX-F: " + b"v" * 15 + b"\r\nHost: a\r\n\r\n", None, id="first-field-at-limit"),
        pytest.param(b"GET / HTTP/1.1\r\nX-F: " + b"v" * 16 + b"\r\nHost: a\r\n\r\n", 431, id="first-field-over"),
    ],
)
def test_line_and_field_limits_do_not_depend_on_where_reads_end(data: bytes, status: int | None) -> None:
    # --limit-request-line 40 and --limit-request-field-size 20, counted without CRLF (as Gunicorn does).
    whole: int | None = None
    try:
        assert parse_request_head(data, 40, 1000, 100, 0, 20) is not None
    except ProtocolError as exc:
        whole = exc.status
    assert whole == status
    for cut in range(1, len(data)):
        # Refused heads may be refused with another status in pieces, never accepted; accepted ones
        # are accepted however they arrive (a line at the limit may have its CR in one read, LF next).
        outcome = feed_in_two(data, cut, 40, 1000, 20)
        assert (outcome is None) == (status is None), (cut, outcome)


def test_an_over_long_field_line_is_refused_before_its_end() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-F: " + b"v" * 16  # 21 bytes and counting: over 20 already
    assert parse_request_head(head, 40, 1000, 100, 0, 20) is None  # its CR may be next (21 = 20 + 1)
    with pytest.raises(ProtocolError) as info:
        parse_request_head(head + b"v", 40, 1000, 100, 0, 20)
    assert info.value.status == 431
    # A request line still arriving is the line limit's business, not the field limit's.
    assert parse_request_head(b"GET /" + b"a" * 30, 40, 1000, 100, 0, 20) is None


def test_the_request_line_is_looked_for_once_while_a_head_trickles_in() -> None:
    # A long head arriving a few bytes a read must not cost a search of the request line per read: once
    # a call with more than max_line + 1 bytes has accepted it, later ones (scanned past it) skip it.
    line = b"GET /" + b"a" * 26 + b" HTTP/1.1\r\n"  # 40 bytes, at the limit
    buf = line + b"Host: a\r\n"
    assert parse_request_head(buf, 40, 1000, 100, 0) is None
    # Were the line searched again, this (a lie: scanned says the first 50 bytes were seen) would be a 414.
    corrupt = b"GET /" + b"a" * 60 + b"\r\nHost: a\r\nX: y"
    assert parse_request_head(corrupt, 40, 1000, 100, 50) is None


def test_bare_lf_rejected_before_the_head_completes() -> None:
    # Without this the client would wait for a CRLF CRLF that never comes (until the header timeout).
    assert rejected(b"GET / HTTP/1.1\nHost: a\n") == 400
    assert parse_request_head(b"GET / HTTP/1.1\r", MAX_LINE, MAX_HEAD) is None


def test_content_length_reader() -> None:
    reader = ContentLengthReader(5)
    buf = bytearray(b"he")
    assert reader.feed(buf) == (b"he", False) and buf == b""
    buf += b"lloNEXT"
    assert reader.feed(buf) == (b"llo", True)
    assert buf == b"NEXT"


def feed_bytewise(reader: ChunkedReader, data: bytes) -> tuple[bytes, bool, bytearray]:
    buf = bytearray()
    out = b""
    done = False
    for i in range(len(data)):
        buf += data[i : i + 1]
        chunk, done = reader.feed(buf)
        out += chunk
        if done:
            buf += data[i + 1 :]
            break
    return out, done, buf


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n", b"hello"),
        (b"0\r\n\r\n", b""),
    ],
)
def test_chunked_reader(encoded: bytes, decoded: bytes) -> None:
    reader = ChunkedReader()
    buf = bytearray(encoded + b"NEXT")
    assert reader.feed(buf) == (decoded, True)
    assert buf == b"NEXT"
    # The same, one byte at a time: state survives every split point.
    out, done, rest = feed_bytewise(ChunkedReader(), encoded + b"NEXT")
    assert (out, done, bytes(rest)) == (decoded, True, b"NEXT")


@pytest.mark.parametrize(
    ("encoded", "status"),
    [
        pytest.param(b"zz\r\n", 400, id="not-hex"),
        pytest.param(b"-1\r\n", 400, id="negative"),
        pytest.param(b"0x5\r\nhello\r\n", 400, id="0x-prefix"),
        pytest.param(b"+5\r\nhello\r\n", 400, id="plus"),
        pytest.param(b"\r\n", 400, id="empty-size"),
        pytest.param(b"5 \r\nhello\r\n", 400, id="trailing-space"),
        pytest.param(b" 5\r\nhello\r\n", 400, id="leading-space"),
        pytest.param(b"1" * 17 + b"\r\n", 400, id="too-many-digits"),
        pytest.param(b"5\nhello\r\n0\r\n\r\n", 400, id="bare-lf-after-size"),
        pytest.param(b"5\r\nhelloXX", 400, id="data-not-followed-by-crlf"),
        pytest.param(b"5\r\nhello\n0\r\n\r\n", 400, id="bare-lf-after-data"),
        pytest.param(b"0\r\nX-T : 1\r\n\r\n", 400, id="bad-trailer"),
        pytest.param(b"0\r\n folded\r\n\r\n", 400, id="folded-trailer"),
        pytest.param(b"5" + b";" * 9000, 400, id="size-line-too-long"),
        pytest.param(b"0\r\n" + b"X-T: " + b"v" * 9000, 431, id="trailer-line-too-long"),
        pytest.param(b"0\r\n" + b"X-T: vvvvvvvvvv\r\n" * 5000, 431, id="trailers-too-large"),
    ],
)
def test_chunked_reader_rejects(encoded: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        ChunkedReader().feed(bytearray(encoded))
    assert info.value.status == status


def test_a_flood_of_empty_lines_is_refused() -> None:
    # RFC 9112 §2.2 asks servers to ignore at least one empty line; a kilobyte of them is a flood.
    assert parse(b"\r\n" * 512 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0].method == b"GET"
    assert rejected(b"\r\n" * 513 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 400


def test_host_values() -> None:
    from pounce.protocols.http.parser import valid_host

    for good in (b"example.org", b"example.org:8080", b"127.0.0.1:80", b"[::1]:8000", b"", b"a_b.local", b"xn--bcher-kva.de", b"%41.example", b"[v1.fe80::a+en1]"):
        assert valid_host(good), good
    for bad in (b"exa mple.org", b"example.org/", b"example.org:80x", b"a@b", b"[::1", b"%4", b"host\x00"):
        assert not valid_host(bad), bad
