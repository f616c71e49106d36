"""Malformed and smuggling requests through real sockets, for both HTTP/1.1 protocols.

Every row is sent on a fresh connection, followed (where the framing allows) by a second, "smuggled"
request. The server must answer the documented status with ``connection: close``, close the
connection, and never show the smuggled request to the app.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.utils import RunningServer, captured_logs, read_response, run_server, wait_closed

SEEN_PATHS: list[str] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    SEEN_PATHS.append(scope["path"])
    body = b""
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    out = b"%s %s %d" % (scope["method"].encode(), scope["path"].encode(), len(body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture(scope="module", params=["auto", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    # A long keep-alive timeout, so that "the server closed the connection" is never the idle timer.
    with run_server(app, http=request.param, timeout_keep_alive=60) as running:
        yield running


def protocol_of(server: RunningServer) -> str:
    return str(server.server.config.http)


H = b"Host: example.org\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.org\r\n\r\n"


def post(*fields: bytes, version: bytes = b"1.1", body: bytes = b"") -> bytes:
    host = H if version == b"1.1" else b""
    return b"POST /framing HTTP/" + version + b"\r\n" + host + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked"

# id, request bytes, status from --http auto, status from --http h11 (None: h11 accepts it, see comment).
ROWS: list[tuple[str, bytes, int, int | None]] = [
    # Request line (RFC 9112 §3).
    ("method-not-a-token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("two-spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("control-char-in-target", b"GET /\x01 HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("raw-utf8-in-target", "GET /é HTTP/1.1\r\n".encode() + H + b"\r\n", 400, 400),
    ("bad-version", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400, 400),
    ("http-0.9", b"GET /\r\n\r\n", 400, 400),
    ("http-2.0-version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, 505),
    # No method is 64 bytes long: junk is refused at once, not buffered up to the request-line limit.
    ("100k-bytes-without-a-request-line", b"x" * 100_000, 400, 400),
    ("method-longer-than-any", b"X" * 65 + b" / HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("relative-target", b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("asterisk-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    ("connect-authority-form", b"CONNECT example.org:443 HTTP/1.1\r\n" + H + b"\r\n", 400, 400),
    # Host (RFC 9112 §3.2).
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", 400, 400),
    ("repeated-host", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400, 400),
    # Field syntax (RFC 9112 §5, RFC 9110 §5.5).
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n continued\r\n\r\n", 400, 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n", 400, 400),
    ("leading-whitespace-line", b"GET / HTTP/1.1\r\n X-A: 1\r\n" + H + b"\r\n", 400, 400),
    ("name-not-a-token", b"GET / HTTP/1.1\r\n" + H + b"X{A}: 1\r\n\r\n", 400, 400),
    ("empty-name", b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", 400, 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400, 400),
    ("control-char-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x1bb\r\n\r\n", 400, 400),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400, 400),
    ("bare-lf-between-fields", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", 400, 400),
    ("lf-line-endings", b"GET / HTTP/1.1\nHost: example.org\n\n", 400, 400),
    # Content-Length (RFC 9112 §6.3, RFC 9110 §8.6).
    ("cl-repeated-same", post(b"Content-Length: 1", b"Content-Length: 1", body=b"x" + SMUGGLED), 400, 400),
    ("cl-repeated-different", post(b"Content-Length: 1", b"Content-Length: 2", body=b"xx" + SMUGGLED), 400, 400),
    ("cl-list", post(b"Content-Length: 1, 1", body=b"x" + SMUGGLED), 400, 400),
    ("cl-plus-sign", post(b"Content-Length: +1", body=b"x" + SMUGGLED), 400, 400),
    ("cl-negative", post(b"Content-Length: -1", body=SMUGGLED), 400, 400),
    ("cl-hex", post(b"Content-Length: 0x1", body=b"x" + SMUGGLED), 400, 400),
    ("cl-empty", post(b"Content-Length:", body=SMUGGLED), 400, 400),
    # Transfer-Encoding (RFC 9112 §6.1, §6.3, §7.1).
    ("cl-and-te", post(b"Content-Length: 4", CHUNKED, body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-and-cl", post(CHUNKED, b"Content-Length: 40", body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-not-chunked", post(b"Transfer-Encoding: gzip", body=SMUGGLED), 400, 400),
    ("te-identity", post(b"Transfer-Encoding: identity", body=SMUGGLED), 400, 400),
    ("te-xchunked", post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-chunked-not-final", post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-chunked-twice", post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-repeated-field", post(CHUNKED, CHUNKED, body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    ("te-unknown-coding", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n" + SMUGGLED), 501, 501),
    ("te-in-http-1.0", post(CHUNKED, version=b"1.0", body=b"0\r\n\r\n" + SMUGGLED), 400, 400),
    # Chunked body (RFC 9112 §7.1).
    ("chunk-size-not-hex", post(CHUNKED, body=b"zz\r\n" + SMUGGLED), 400, 400),
    ("chunk-size-negative", post(CHUNKED, body=b"-1\r\n" + SMUGGLED), 400, 400),
    ("chunk-size-0x", post(CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400, 400),
    ("chunk-size-overflow", post(CHUNKED, body=b"f" * 40 + b"\r\n" + SMUGGLED), 400, 400),
    ("chunk-size-bare-lf", post(CHUNKED, body=b"5\nhello\r\n0\r\n\r\n" + SMUGGLED), 400, 400),
    ("chunk-data-too-long", post(CHUNKED, body=b"5\r\nhelloXX\r\n0\r\n\r\n" + SMUGGLED), 400, 400),
    ("chunk-bad-trailer", post(CHUNKED, body=b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n" + SMUGGLED), 400, 400),
    # h11's chunk-size grammar allows trailing whitespace; our ChunkedReader checks the h11 path too.
    ("chunk-size-trailing-space", post(CHUNKED, body=b"5 \r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400, 400),
    # A long chunk extension sent in one write (its CRLF already there) is held to the 8 KiB line limit.
    ("chunk-extension-too-long", post(CHUNKED, body=b"5;" + b"x" * 60000 + b"\r\nhello\r\n0\r\n\r\n"), 400, 400),
    # Size limits: sent incomplete, so the server must give up without waiting for the end. Both
    # parsers are held to the same limits (--limit-request-line and --limit-request-field-size 128 KiB,
    # a 1 MiB head, --limit-request-fields 100).
    ("request-line-too-long", b"GET /" + b"a" * 140_000, 414, 414),
    ("request-target-too-long-complete", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, 414),
    (
        "header-section-too-large",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 120_000) for i in range(10)),
        431,
        431,
    ),
    ("one-header-too-large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 140_000, 431, 431),
    ("one-header-too-large-complete", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 200_000 + b"\r\n\r\n", 431, 431),
    ("too-many-header-fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(2000)) + b"\r\n", 431, 431),
    # RFC 9112 §3.2: a Host that is not uri-host[:port] is a 400.
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: exa mple.org\r\n\r\n", 400, 400),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: example.org:80x\r\n\r\n", 400, 400),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: example.org/evil\r\n\r\n", 400, 400),
    # RFC 9110 §8.6: a length no server would read is a 413, not an int() traceback or an endless wait.
    ("content-length-5000-digits", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 413, 413),
    ("content-length-23-digits", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"1" * 23 + b"\r\n\r\n", 413, 413),
]


@pytest.mark.parametrize(("data", "auto_status", "h11_status"), [pytest.param(*row[1:], id=row[0]) for row in ROWS])
def test_malformed_request(server: RunningServer, data: bytes, auto_status: int, h11_status: int | None) -> None:
    status = auto_status if protocol_of(server) == "auto" else h11_status
    SEEN_PATHS.clear()
    with server.connect() as sock:
        sock.sendall(data)
        buf = bytearray()
        response = read_response(sock, buf)
        if status is None:
            # Accepted by this protocol: the documented leniency, not a crash or a hang. The second
            # request is then a plain pipelined one; wait for it so it cannot leak into the next row.
            assert response.status == 200, response
            assert read_response(sock, buf).body == b"GET /smuggled 0"
            return
        assert response.status == status, response
        assert response.header(b"connection") is not None
        assert b"close" in response.header(b"connection").lower()  # type: ignore[union-attr]
        assert response.header(b"server") == b"pounce"
        # Closed by the server, and nothing after the error response (no smuggled second answer).
        assert wait_closed(sock) == b""
    assert "/smuggled" not in SEEN_PATHS


def test_valid_chunked_request_then_pipelined_request(server: RunningServer) -> None:
    # The control case for the table: the same framing done right keeps the connection usable.
    SEEN_PATHS.clear()
    with server.connect() as sock:
        sock.sendall(post(CHUNKED, body=b"5\r\nhello\r\n0\r\nX-Trailer: ignored\r\n\r\n") + SMUGGLED)
        buf = bytearray()
        first = read_response(sock, buf)
        second = read_response(sock, buf)
    assert (first.status, first.body) == (200, b"POST /framing 5")
    assert (second.status, second.body) == (200, b"GET /smuggled 0")


def test_rejection_is_logged(server: RunningServer) -> None:
    with captured_logs() as messages, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert read_response(sock).status == 400
        wait_closed(sock)
    assert messages == ["Invalid HTTP request received."]


@pytest.fixture(scope="module", params=["auto", "h11"])
def impatient_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(app, http=request.param, timeout_request_header=0.5) as running:
        yield running


def test_slow_headers_get_408(impatient_server: RunningServer) -> None:
    with captured_logs() as messages, impatient_server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: exa")
        response = read_response(sock)
        assert response.status == 408
        assert b"close" in (response.header(b"connection") or b"").lower()
        assert wait_closed(sock) == b""
        client = "%s:%d" % sock.getsockname()[:2]
    # One line saying what happened (not also "Invalid HTTP request received.").
    assert messages == [f"Request headers not received in time from {client}."]


def test_trickled_headers_get_408(impatient_server: RunningServer) -> None:
    # One deadline for the whole head: sending a byte now and then does not keep the connection.
    request = b"GET / HTTP/1.1\r\nHost: example.org\r\nX-Slow: " + b"x" * 200 + b"\r\n\r\n"
    with impatient_server.connect() as sock:
        sent = 0
        for byte in request:  # bounded: at most len(request) sends, 0.05 s apart
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            ready = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) if _readable(sock) else b""
            if ready:
                break
            time.sleep(0.05)
        assert sent < len(request), "the whole head went through although it took far longer than the timeout"
        assert read_response(sock).status == 408


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_idle_new_connection_is_closed_without_a_response(impatient_server: RunningServer) -> None:
    with impatient_server.connect() as sock:
        assert wait_closed(sock) == b""


def test_keep_alive_connection_then_slow_head(impatient_server: RunningServer) -> None:
    # After a served request, a slow next head is timed out too (the timer is re-armed per request).
    with impatient_server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        assert read_response(sock, buf).status == 200
        sock.sendall(b"GET /second HTTP/1.1\r\n")
        assert read_response(sock, buf).status == 408
        assert wait_closed(sock) == b""
