"""A sans-I/O HTTP/1.1 request parser (RFC 9112), the engine of Pounce's fast path.

It never touches a socket: ``parse_request_head`` reads a request head out of a buffer and the body
readers take body bytes out of one. Every rule enforced here names the RFC section it comes from.
Anything that could let two parsers disagree about where a request ends (request smuggling) is
rejected with ``ProtocolError`` carrying the status to answer with; the protocol then closes the
connection, because after a framing error nothing that follows can be trusted.
"""

from __future__ import annotations

import re
from typing import NoReturn

__all__ = [
    "MAX_CHUNK_LINE",
    "ChunkedReader",
    "ContentLengthReader",
    "ProtocolError",
    "RequestHead",
    "leading_empty_lines",
    "parse_request_head",
    "valid_host",
]

# RFC 9110 §5.6.2: token = 1*tchar.
_TCHAR = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"
# RFC 9112 §3: request-line = method SP request-target SP HTTP-version. Exactly one SP between parts;
# the target is visible ASCII only (RFC 3986 characters; raw UTF-8 or whitespace is a 400).
_REQUEST_LINE = re.compile(rb"(%s+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % _TCHAR)
# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, one per CRLF-terminated line.
# The name must be a token, so whitespace before the colon (§5.1) and obs-fold continuation lines
# (§5.2, a line starting with SP/HTAB) both fail; field values may hold no CTL but HTAB (RFC 9110
# §5.5), which also rejects bare CR and bare LF inside a head.
_FIELD_LINES = re.compile(rb"(?:%s+:[\t\x20-\x7e\x80-\xff]*\r\n)*" % _TCHAR)
# RFC 9112 §7.1.1: chunk-size [ BWS ";" chunk-ext ]. Whitespace is allowed only before an extension:
# a bare "5 " is a known request-smuggling tell (parsers disagree on it), so it is rejected.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[\t ]*;[\t\x20-\x7e\x80-\xff]*)?")
# RFC 9110 §8.6: Content-Length = 1*DIGIT. More than 18 digits is at least 10^18 bytes (and past
# what int() converts without complaint at 4,300): no server would read that much, so it is a 413.
_DIGITS = re.compile(rb"[0-9]+")
_MAX_LENGTH_DIGITS = 18
# RFC 9112 §3.2 / RFC 3986 §3.2.2-3.2.3: Host = uri-host [ ":" port ], where uri-host is an IP-literal
# ("[" IPv6 or IPvFuture "]"), an IPv4 address or a reg-name (unreserved, pct-encoded, sub-delims).
# An empty value is allowed (a target URI without authority). Anything else is a 400.
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+)\]"
    rb"|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
# Host values already found valid: a server sees the same few over and over. Bounded; once full, what
# varies is simply checked each time.
_VALID_HOSTS: set[bytes] = set()
_VALID_HOSTS_MAX = 256
# RFC 9112 §2.2: the empty lines a server ignores before a request-line. The rule is there for a
# stray CRLF after a body; a client sending more than this many bytes of them is not confused but
# flooding, and gets a 400.
_EMPTY_LINES = re.compile(rb"(?:\r\n)+")
MAX_EMPTY_LINES = 1024
# RFC 9112 §7.1.1 / §7.1.2: a chunk-size line (extensions included) and a trailer field line are held to
# this, whatever --limit-request-line says: a body's framing has no reason to be long, and a long
# chunk extension is a known way to make parsers disagree (or to spend a server's memory).
MAX_CHUNK_LINE = 8 * 1024
# Both rules above in one pattern, so a whole head is validated in a single regex pass.
_HEAD = re.compile(rb"(%s+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r\n((?:%s+:[\t\x20-\x7e\x80-\xff]*\r\n)*)" % (_TCHAR, _TCHAR))
# The fields that decide framing, persistence or protocol; every other field is passed through as is.
# (TE decides the response's framing: "trailers" there lets it end with a trailer section.)
_FRAMING_FIELDS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade", b"te")
)
# RFC 9112 §2.2: a bare LF as a line terminator is something we do not accept. Searched only while a
# head is incomplete, so a client using LF line endings gets a prompt 400 instead of a header timeout.
_BARE_LF = re.compile(rb"(?<!\r)\n")
_NO_TOKENS: frozenset[bytes] = frozenset()
# RFC 9112 §3.2.2 / RFC 3986 §3.1: absolute-form starts with a scheme and "://".
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")


class ProtocolError(Exception):
    """The request cannot be served; answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """A parsed request line and header section, plus the framing facts derived from them."""

    __slots__ = (
        "method",
        "target",
        "http_version",
        "headers",
        "content_length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "trailers",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        content_length: int,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        trailers: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        # Names lower-cased, values with surrounding whitespace removed, order kept.
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        # The lower-cased Upgrade header value when the client asked to switch protocols.
        self.upgrade = upgrade
        # An HTTP/1.1 request whose TE accepts "trailers": the response may end with a trailer section.
        self.trailers = trailers


# Longer than any registered method (the longest, UPDATEREDIRECTREF, has 17 bytes), with room to spare.
MAX_METHOD = 64


def te_accepts_trailers(value: bytes) -> bool:
    """Whether a TE field value (RFC 9110 §10.1.4) names "trailers" among the codings it accepts."""
    return any(coding.partition(b";")[0].strip(b" \t") == b"trailers" for coding in value.lower().split(b","))


def valid_host(value: bytes) -> bool:
    """Whether a Host (or HTTP/2 ``:authority``) value is a ``uri-host [ ":" port ]`` (RFC 9112 §3.2)."""
    return _HOST.fullmatch(value) is not None


def leading_empty_lines(buf: bytes | bytearray) -> int:
    """How many bytes of empty lines (CRLFs) start ``buf``: a protocol drops them before parsing.

    RFC 9112 §2.2 lets a server ignore empty lines before a request-line. Dropping them as they come
    (instead of skipping them on every parse attempt) keeps a flood of CRLFs linear in cost.
    """
    match = _EMPTY_LINES.match(buf, 0, MAX_EMPTY_LINES + 2)
    return 0 if match is None else match.end()


def parse_request_head(
    buf: bytes | bytearray,
    max_line: int,
    max_head: int,
    max_fields: int = 100,
    scanned: int = 0,
    max_field: int | None = None,
) -> tuple[RequestHead, int] | None:
    """Parse the head at the start of ``buf``; return it and the offset of the body, or None for more data.

    The limits (``--limit-request-line``, the whole head, ``--limit-request-fields``,
    ``--limit-request-field-size``; ``max_field`` None: only the head limit) count bytes without
    the CRLFs, as Gunicorn counts them. A request line over ``max_line`` is a 414 (RFC 9110
    §15.5.15); too many fields, a field line over ``max_field`` or a head over ``max_head`` is a
    431 (RFC 6585 §5).

    ``scanned`` is how much of ``buf`` an earlier call already searched without finding the end of
    the head (the length ``buf`` had then): a head trickling in is searched once, not once per read.
    """
    if max_field is None:
        max_field = max_head
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before a request-line.
    start = 0
    while buf.startswith(b"\r\n", start):
        start += 2
    if start > MAX_EMPTY_LINES:
        raise ProtocolError(400, "Too many empty lines before the request")
    resume = scanned - 3 if scanned - 3 > start else start
    end = buf.find(b"\r\n\r\n", resume)
    if end < 0:
        # Judged only on what cannot fit whatever comes next, so that the outcome never depends on where
        # a read ended: a line of max_line bytes may have its CR here and its LF still to come, and a
        # head of max_head bytes up to three bytes of its final CRLF CRLF.
        # (The request line is looked for once: an earlier call that had more than max_line + 1 bytes
        # and did not refuse found its end in time, and a long head trickling in must not cost a
        # search of the whole line per read.)
        # RFC 9112 §3: the method is a token ended by SP; no method is MAX_METHOD bytes long, so bytes
        # that have not ended one by then are no request, whatever the request-line limit allows.
        if len(buf) - start > MAX_METHOD and buf.find(b" ", start, start + MAX_METHOD + 1) < 0:
            raise ProtocolError(400, "Invalid HTTP request line")
        line_room = start + max_line + 1
        if len(buf) > line_room >= scanned and buf.find(b"\r\n", start, line_room + 1) < 0:
            raise ProtocolError(414, "Request line too long")
        if len(buf) - start > max_head + 3:
            raise ProtocolError(431, "Request header fields too large")
        if _BARE_LF.search(buf, resume) is not None:
            raise ProtocolError(400, "Bare LF in request head")
        if len(buf) - start > max_field + 1:
            _check_last_line(buf, start, max_field)
        return None
    if end - start > max_head:
        if buf.find(b"\r\n", start, start + max_line + 2) < 0:
            raise ProtocolError(414, "Request line too long")
        raise ProtocolError(431, "Request header fields too large")

    # One pass validates the request line and every field line (RFC 9112 §3 and §5, see _HEAD). Matched in
    # place: the groups are bytes even of a bytearray, so the head is never copied out of the buffer first.
    match = _HEAD.fullmatch(buf, start, end + 2)
    if match is None:
        _explain_invalid_head(bytes(buf[: end + 2]), start, max_line)
    method, target, major, minor, fields = match.groups()
    if major != b"1":
        # RFC 9110 §15.6.6: 505 for a major version we do not implement.
        raise ProtocolError(505, "HTTP version not supported")
    http_version = "1.0" if minor == b"0" else "1.1"
    if len(method) > MAX_METHOD:
        raise ProtocolError(400, "Invalid HTTP request line")
    if len(method) + len(target) + 10 > max_line:
        raise ProtocolError(414, "Request line too long")
    # RFC 9112 §3.2: origin-form ("/path"), absolute-form ("http://host/path") or, for OPTIONS only,
    # asterisk-form. Authority-form belongs to CONNECT, a tunnel an ASGI server cannot provide.
    if (
        target[0] != 0x2F  # "/"
        and not (target == b"*" and method == b"OPTIONS")
        and _ABSOLUTE_FORM.match(target) is None
    ):
        raise ProtocolError(400, "Invalid request target")

    if fields.count(b"\r\n") > max_fields:
        # Each field costs a tuple and two bytes objects however short it is: count them, not just bytes.
        raise ProtocolError(431, "Too many request header fields")
    headers: list[tuple[bytes, bytes]] = []
    content_length: bytes | None = None
    transfer_encoding: bytes | None = None
    connection = b""
    expect = b""
    upgrade: bytes | None = None
    te = b""
    host_count = 0
    for line in fields[:-2].split(b"\r\n") if fields else ():
        if len(line) > max_field:
            raise ProtocolError(431, "Request header field too large")
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((name, value))
        if name not in _FRAMING_FIELDS:
            continue
        if name == b"host":
            host_count += 1
            if value not in _VALID_HOSTS:
                if _HOST.fullmatch(value) is None:
                    raise ProtocolError(400, "Invalid Host header")
                if len(_VALID_HOSTS) < _VALID_HOSTS_MAX:
                    _VALID_HOSTS.add(value)
        elif name == b"content-length":
            # RFC 9112 §6.3 (5): differing or malformed lengths are unrecoverable. A repeated
            # identical value is allowed by RFC 9110 §8.6, but it is a smuggling tell: reject it too.
            if content_length is not None or _DIGITS.fullmatch(value) is None:
                raise ProtocolError(400, "Invalid Content-Length")
            content_length = value
        elif name == b"transfer-encoding":
            # RFC 9110 §5.3: repeated field lines are one comma-separated list.
            value = value.lower()
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        elif name == b"connection":
            connection = value.lower() if not connection else connection + b"," + value.lower()
        elif name == b"expect":
            expect = value.lower()
        elif name == b"te":
            te = value if not te else te + b"," + value
        else:  # upgrade
            upgrade = value.lower()

    # RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
    if host_count > 1 or (host_count == 0 and http_version == "1.1"):
        raise ProtocolError(400, "Missing or repeated Host header")

    chunked = False
    if transfer_encoding is not None:
        # RFC 9112 §6.1: both framings present is a smuggling attempt; reject, never guess.
        if content_length is not None:
            raise ProtocolError(400, "Both Content-Length and Transfer-Encoding")
        if transfer_encoding != b"chunked":
            _reject_transfer_codings(transfer_encoding)
        if http_version == "1.0":
            # RFC 9112 §6.1: Transfer-Encoding in a 1.0 message means the framing is faulty.
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        chunked = True
    if content_length is None:
        length = 0
    elif len(content_length) > _MAX_LENGTH_DIGITS:
        raise ProtocolError(413, "Request body too large")
    else:
        length = int(content_length)

    tokens = {t.strip(b" \t") for t in connection.split(b",")} if connection else _NO_TOKENS
    # RFC 9112 §9.3: 1.1 is persistent unless "close". HTTP/1.0 keep-alive is never honoured, as in
    # Uvicorn (both its parsers) and h11: 1.0 clients get "connection: close" and the connection ends.
    keep_alive = http_version == "1.1" and b"close" not in tokens
    if upgrade is not None and b"upgrade" not in tokens:
        upgrade = None

    return (
        RequestHead(
            method,
            target,
            http_version,
            headers,
            length,
            chunked,
            keep_alive,
            expect == b"100-continue" and http_version == "1.1",
            upgrade,
            http_version == "1.1" and bool(te) and te_accepts_trailers(te),
        ),
        end + 4,
    )


def _check_last_line(buf: bytes | bytearray, start: int, max_field: int) -> None:
    """431 when the field line still arriving at the end of an incomplete head is over ``max_field``.

    Only the last line can still grow; those before it are checked when the head is complete (and
    are held to the head limit until then). Called after the bare-LF check, so every LF here ends a
    CRLF and the search is for one byte (memrchr), over at most ``max_field + 2`` bytes.
    """
    window = len(buf) - max_field - 2  # >= start: called only for more than max_field + 1 bytes
    if buf.rfind(b"\n", window) >= 0:
        return  # the last line started inside the window: max_field + 1 bytes at most (its CR may be here)
    if buf.find(b"\n", start, window) >= 0:
        # The request line has ended, so this is a field line, already too long whatever follows.
        raise ProtocolError(431, "Request header field too large")
    # Still the request line: held to max_line by the caller.


def _explain_invalid_head(head: bytes, start: int, max_line: int) -> NoReturn:
    """Raise the precise error for a head that failed the one-pass check (the rare, slow path)."""
    line_end = head.find(b"\r\n", start)
    if line_end - start > max_line:
        raise ProtocolError(414, "Request line too long")
    if _REQUEST_LINE.fullmatch(head, start, line_end) is None:
        raise ProtocolError(400, "Invalid HTTP request line")
    raise ProtocolError(400, "Invalid HTTP header field")


def _reject_transfer_codings(transfer_encoding: bytes) -> None:
    """Raise the right error for any Transfer-Encoding other than exactly ``chunked``."""
    codings = [coding.strip(b" \t") for coding in transfer_encoding.split(b",")]
    if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        # RFC 9112 §6.3 (4): chunked not final means the body length cannot be determined: 400. A
        # second chunked (§7.1: applied at most once) is as ambiguous.
        raise ProtocolError(400, "Invalid Transfer-Encoding")
    # RFC 9112 §6.1: chunked is final but preceded by codings we do not decode (gzip, ...).
    raise ProtocolError(501, "Unsupported Transfer-Encoding")


class ContentLengthReader:
    """Takes exactly ``Content-Length`` bytes of body (RFC 9112 §6.2)."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def feed(self, buf: bytearray) -> tuple[bytes, bool]:
        """Consume body bytes from ``buf``; return (data, finished)."""
        if len(buf) <= self.remaining:
            data = bytes(buf)
            del buf[:]
        else:
            data = bytes(buf[: self.remaining])
            del buf[: self.remaining]
        self.remaining -= len(data)
        return data, self.remaining == 0


class ChunkedReader:
    """Decodes ``Transfer-Encoding: chunked`` (RFC 9112 §7.1), discarding trailers (§7.1.2).

    Trailer fields are read and dropped, never merged into the headers the app saw: merging them
    would let a client add fields after the framing decisions were made.
    """

    __slots__ = ("_state", "_chunk_left", "_trailer_bytes", "max_line")

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self, max_line: int = MAX_CHUNK_LINE) -> None:
        self._state = self._SIZE
        self._chunk_left = 0
        self._trailer_bytes = 0
        self.max_line = max_line

    def feed(self, buf: bytearray) -> tuple[bytes, bool]:
        """Consume what can be decoded from ``buf``; return (data, finished)."""
        out: list[bytes] = []
        while True:
            state = self._state
            if state == self._SIZE:
                line_end = buf.find(b"\r\n", 0, self.max_line + 2)
                if line_end < 0 or line_end > self.max_line:
                    # The line's length is checked whether or not its end has arrived yet: a long
                    # chunk extension sent in one write is as much a memory cost as a trickled one.
                    # (max_line + 1: a line of exactly max_line may have its LF still to come.)
                    if len(buf) > self.max_line + 1:
                        raise ProtocolError(400, "Chunk size line too long")
                    break
                match = _CHUNK_SIZE.fullmatch(buf, 0, line_end)
                if match is None:
                    raise ProtocolError(400, "Invalid chunk size")
                size = int(match.group(1), 16)
                del buf[: line_end + 2]
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._chunk_left = size
                    self._state = self._DATA
            elif state == self._DATA:
                if not buf:
                    break
                take = min(len(buf), self._chunk_left)
                out.append(bytes(buf[:take]))
                del buf[:take]
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ProtocolError(400, "Chunk data not followed by CRLF")
                del buf[:2]
                self._state = self._SIZE
            elif state == self._TRAILER:
                line_end = buf.find(b"\r\n", 0, self.max_line + 2)
                if line_end < 0 or line_end > self.max_line:
                    # As for size lines: held to max_line whether or not the line ended in this read.
                    if len(buf) > self.max_line + 1:
                        raise ProtocolError(431, "Trailer section too large")
                    break
                line = bytes(buf[:line_end])
                del buf[: line_end + 2]
                if not line:
                    self._state = self._DONE
                    break
                self._trailer_bytes += line_end + 2
                if self._trailer_bytes > 64 * 1024:
                    raise ProtocolError(431, "Trailer section too large")
                if _FIELD_LINES.fullmatch(line + b"\r\n") is None:
                    raise ProtocolError(400, "Invalid trailer field")
            else:
                break
        return b"".join(out), self._state == self._DONE
