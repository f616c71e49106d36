"""HTTP/1.1 behaviour through real sockets, for both ``--http auto`` (our parser) and ``--http h11``.

Normal traffic goes through httpx; where the exact bytes matter (pipelining, 100-continue, HTTP/1.0,
unusual targets) a raw socket is used.
"""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.utils import RunningServer, captured_logs, read_response, run_server, wait_closed

# Coordination between the test thread and the app, which runs on the server's thread.
EVENTS: dict[str, threading.Event] = {}
RECORDS: dict[str, list[Any]] = {}
PROGRESS: dict[str, int] = {}


def new_id() -> str:
    key = uuid.uuid4().hex
    EVENTS[key] = threading.Event()
    RECORDS[key] = []
    return key


async def wait_for(event: threading.Event, timeout: float = 10.0) -> None:
    """Wait for a test-thread event from the app, without blocking the server's loop."""
    for _ in range(int(timeout / 0.01)):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the test never released the app")


async def read_body(receive: Any) -> tuple[bytes, int]:
    body = b""
    messages = 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        messages += 1
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body, messages


async def respond(send: Any, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


def scope_as_json(scope: Any) -> bytes:
    return json.dumps(
        {
            "keys": sorted(scope),
            "type": scope["type"],
            "asgi": scope["asgi"],
            "http_version": scope["http_version"],
            "server": list(scope["server"]),
            "client": list(scope["client"]),
            "scheme": scope["scheme"],
            "method": scope["method"],
            "root_path": scope["root_path"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "raw_path_is_bytes": isinstance(scope["raw_path"], bytes),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "headers_are_bytes": all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in scope["headers"]),
            "state": scope["state"],
        }
    ).encode()


async def app(scope: Any, receive: Any, send: Any) -> None:  # noqa: C901 - a router, one branch per test
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["answer"] = 42
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"].removeprefix(scope["root_path"])
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    key = query.get("id", "")

    if path == "/echo":
        body, messages = await read_body(receive)
        await respond(send, body, headers=[(b"x-messages", b"%d" % messages)])
    elif path.startswith("/scope"):
        await read_body(receive)
        await respond(send, scope_as_json(scope), headers=[(b"content-type", b"application/json")])
    elif path == "/stream":
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(int(query.get("n", "3"))):
            await send({"type": "http.response.body", "body": b"%d" % i * int(query.get("size", "1")), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fixed":
        await read_body(receive)
        await respond(send, b"hello", headers=[(b"content-length", b"5")])
    elif path == "/status":
        await read_body(receive)
        await respond(send, b"", status=int(query["code"]))
    elif path == "/hold-body":
        # Does not read the body until the test says so: the server must stop reading meanwhile.
        await wait_for(EVENTS[key])
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await respond(send, b"%d" % total)
    elif path == "/big-stream":
        # Streams until the client stops reading; records how far it got.
        await read_body(receive)
        chunk = b"x" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(int(query["chunks"])):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            PROGRESS[key] = PROGRESS.get(key, 0) + 1
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-disconnect":
        await read_body(receive)
        RECORDS[key].append((await receive())["type"])
        for message in (
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"too late"},
        ):
            try:
                await send(message)
            except Exception as exc:
                RECORDS[key].append(exc)
                break
        EVENTS[key].set()
    elif path == "/slow":
        RECORDS[key].append("started")
        await wait_for(EVENTS[key])
        body, _ = await read_body(receive)
        await respond(send, b"slow done")
    elif path == "/no-read":
        await respond(send, b"not reading that")
    elif path == "/error-before":
        raise RuntimeError("boom before the response")
    elif path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom during the response")
    elif path == "/no-response":
        return
    elif path == "/close-tokens":
        await respond(send, b"bye", headers=[(b"connection", b"keep-alive, Close")])
    else:
        await read_body(receive)
        await respond(send, b"ok")


@pytest.fixture(scope="module", params=["auto", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    # A long keep-alive timeout, so that "the server closed the connection" is never the idle timer.
    with run_server(app, http=request.param, timeout_keep_alive=60) as running:
        yield running


@pytest.fixture(params=["auto", "h11"])
def http(request: pytest.FixtureRequest) -> str:
    return str(request.param)


H = b"Host: example.org\r\n"


# Keep-alive and pipelining


def test_keep_alive_reuses_the_connection(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/scope").json()
        second = client.get("/scope").json()
    assert first["client"] == second["client"]


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    requests = (
        b"GET /echo?n=1 HTTP/1.1\r\n" + H + b"\r\n"
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nsecond"
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nthird\r\n0\r\n\r\n"
        b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n"
    )
    with server.connect() as sock:
        sock.sendall(requests)
        buf = bytearray()
        bodies = [read_response(sock, buf).body for _ in range(4)]
    assert bodies == [b"", b"second", b"third", b"hello"]


def test_pipelined_requests_sent_byte_by_byte(server: RunningServer) -> None:
    requests = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabcGET /fixed HTTP/1.1\r\n" + H + b"\r\n"
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(requests)):
            sock.sendall(requests[i : i + 1])
        buf = bytearray()
        assert read_response(sock, buf).body == b"abc"
        assert read_response(sock, buf).body == b"hello"


def test_connection_close_request(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /fixed HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n" + b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n")
        response = read_response(sock)
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""  # the second request is not answered


def test_response_connection_close_among_tokens_closes(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /close-tokens HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).body == b"bye"
        assert wait_closed(sock) == b""


def test_keep_alive_timeout_closes_idle_connection(http: str) -> None:
    with run_server(app, http=http, timeout_keep_alive=0.3) as server, server.connect() as sock:
        sock.sendall(b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).status == 200
        assert wait_closed(sock, timeout=3) == b""


# Request bodies


@pytest.mark.parametrize("size", [0, 1, 65535, 1024 * 1024])
def test_fixed_length_body(server: RunningServer, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/echo", content=body)
    assert response.content == body


def test_chunked_body(server: RunningServer) -> None:
    parts = [b"a" * 10, b"b" * 70000, b"", b"c" * 3]

    def stream() -> Iterator[bytes]:
        yield from parts

    with httpx.Client(base_url=server.url) as client:
        response = client.post("/echo", content=stream())
    assert response.content == b"".join(parts)


def test_chunked_body_with_extensions_and_trailers(server: RunningServer) -> None:
    request = (
        b"POST /scope HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: sneaky\r\nHost: evil.example\r\n\r\n"
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    )
    with server.connect() as sock:
        sock.sendall(request)
        buf = bytearray()
        scope = json.loads(read_response(sock, buf).body)
        echoed = read_response(sock, buf).body
    # Trailers are consumed and dropped: never merged into the headers the app saw.
    assert [name for name, _ in scope["headers"]] == ["host", "transfer-encoding"]
    assert echoed == b"hello"


def test_expect_100_continue(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        buf = bytearray()
        interim = read_response(sock, buf)
        assert interim.status == 100
        sock.sendall(b"hello")
        final = read_response(sock, buf)
        assert (final.status, final.body) == (200, b"hello")
        # Still a keep-alive connection.
        sock.sendall(b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock, buf).body == b"hello"


def test_expect_100_continue_answered_without_reading(server: RunningServer) -> None:
    # The app answers without asking for the body: no 100, and since the client may or may not
    # send the body now, the connection is closed after the response instead of guessing.
    with server.connect() as sock:
        sock.sendall(b"POST /no-read HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        response = read_response(sock)
        assert response.status == 200 and response.body == b"not reading that"
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("extra", [["-H", "Expect: 100-continue"], ["-H", "Transfer-Encoding: chunked"], ["--http1.0"]])
def test_curl_upload(server: RunningServer, extra: list[str], tmp_path: Any) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    upload = tmp_path / "body"
    upload.write_bytes(body)
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "20", "--data-binary", f"@{upload}", *extra, server.url + "/echo"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == body


def test_unread_body_is_skipped_on_keep_alive(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /no-read HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n0123456789"
            b"POST /no-read HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n"
        )
        buf = bytearray()
        assert [read_response(sock, buf).body for _ in range(3)] == [b"not reading that"] * 2 + [b"hello"]


# Responses


def test_streamed_response_is_chunked(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/stream", params={"n": 5, "size": 1000})
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert response.content == b"".join(b"%d" % i * 1000 for i in range(5))


def test_whole_body_gets_content_length(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/echo")
    if server.server.config.http == "h11":
        # h11 frames a response without Content-Length as chunked, as Uvicorn's h11 protocol does.
        assert response.headers["transfer-encoding"] == "chunked"
    else:
        # Ours holds the head back until the first body message and so knows the whole length.
        assert response.headers["content-length"] == "0"
        assert "transfer-encoding" not in response.headers


def test_head_request(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"HEAD /fixed HTTP/1.1\r\n" + H + b"\r\nHEAD /stream HTTP/1.1\r\n" + H + b"\r\nGET /fixed HTTP/1.1\r\n" + H + b"\r\n"
        )
        buf = bytearray()
        head = read_response(sock, buf, head_request=True)
        assert (head.status, head.header(b"content-length"), head.body) == (200, b"5", b"")
        assert read_response(sock, buf, head_request=True).status == 200
        # No body bytes leaked into the stream: the next response parses cleanly.
        assert read_response(sock, buf).body == b"hello"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server: RunningServer, code: int) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /status?code=%d HTTP/1.1\r\n" % code + H + b"\r\nGET /fixed HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        response = read_response(sock, buf)
        assert response.status == code
        assert response.header(b"transfer-encoding") is None
        assert read_response(sock, buf).body == b"hello"


def test_default_headers(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/fixed")
    assert response.headers["server"] == "pounce"
    assert parsedate_to_datetime(response.headers["date"]).tzinfo is not None


def test_default_headers_can_be_switched_off(http: str) -> None:
    with run_server(app, http=http, server_header=False, date_header=False, headers=[("X-Extra", "1")]) as server:
        with httpx.Client(base_url=server.url) as client:
            response = client.get("/fixed")
    assert "server" not in response.headers and "date" not in response.headers
    assert response.headers["x-extra"] == "1"


# HTTP/1.0 and request targets


def test_http10_closes_after_response(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /fixed HTTP/1.0\r\n\r\n")
        response = read_response(sock)
        assert (response.status, response.body) == (200, b"hello")
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""


def test_http10_keep_alive_is_not_honoured(server: RunningServer) -> None:
    # As Uvicorn (httptools and h11 alike): HTTP/1.0 connections always end after one response.
    with server.connect() as sock:
        sock.sendall(b"GET /fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = read_response(sock)
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""


def test_http10_streamed_response_is_not_chunked(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /stream?n=3&size=2 HTTP/1.0\r\n\r\n")
        response = read_response(sock)  # no framing: the body runs to the end of the connection
    assert response.header(b"transfer-encoding") is None
    assert response.body == b"001122"


def test_http10_scope(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /scope HTTP/1.0\r\n\r\n")
        scope = json.loads(read_response(sock).body)
    assert scope["http_version"] == "1.0"


def test_absolute_form_target(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET http://example.org/scope/a%20b?x=1 HTTP/1.1\r\n" + H + b"\r\n")
        scope = json.loads(read_response(sock).body)
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope/a b", "/scope/a%20b", "x=1")


def test_options_asterisk(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
        response = read_response(sock)
    # The router sends unknown paths to the default branch; the app saw path "*".
    assert response.status == 200 and response.body == b"ok"


# Scope


def test_scope(http: str) -> None:
    with run_server(app, http=http, root_path="/mount", lifespan="on") as server:
        with server.connect() as sock:
            sock.sendall(b"GET /scope/caf%C3%A9%2Fx?a=1&b=%20 HTTP/1.1\r\nHost: example.org\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n")
            scope = json.loads(read_response(sock).body)
            local = sock.getsockname()
    assert scope["keys"] == sorted(
        ["type", "asgi", "http_version", "server", "client", "scheme", "method", "root_path", "path", "raw_path"]
        + ["query_string", "headers", "state", "extensions"]
    )
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["server"] == [server.host, server.port]
    assert scope["client"] == [local[0], local[1]]
    assert scope["scheme"] == "http"
    assert scope["method"] == "GET"
    # As Uvicorn: root_path is prepended to path and raw_path; %2F stays a literal "/" in path.
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/scope/café/x"
    assert scope["raw_path"] == "/mount/scope/caf%C3%A9%2Fx" and scope["raw_path_is_bytes"]
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["headers"] == [["host", "example.org"], ["x-multi", "1"], ["x-multi", "2"]]
    assert scope["headers_are_bytes"]
    assert scope["state"] == {"answer": 42}


# Back-pressure


def test_request_body_back_pressure(server: RunningServer) -> None:
    """An app that does not read its body stops the server reading: the client's sends stall."""
    key = new_id()
    total = 48 * 1024 * 1024
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.connect((server.host, server.port))
    with sock:
        sock.sendall(b"POST /hold-body?id=%s HTTP/1.1\r\n" % key.encode() + H + b"Content-Length: %d\r\n\r\n" % total)
        sock.setblocking(False)
        chunk = b"z" * 65536
        sent = 0
        deadline = time.monotonic() + 20
        while sent < total and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk[: total - sent])
            except BlockingIOError:
                if not select.select([], [sock], [], 0.5)[1]:
                    break  # stalled: nobody is reading on the other side
        assert sent < total, "the server buffered the whole unread body"
        EVENTS[key].set()
        sock.setblocking(True)
        sock.settimeout(20)
        sock.sendall(b"z" * (total - sent))
        assert read_response(sock, timeout=20).body == b"%d" % total


def test_response_back_pressure(server: RunningServer) -> None:
    """A client that does not read makes the app's send() wait instead of buffering without bound."""
    key = new_id()
    chunks = 512  # 32 MiB
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((server.host, server.port))
    with sock:
        sock.sendall(b"GET /big-stream?id=%s&chunks=%d HTTP/1.1\r\n" % (key.encode(), chunks) + H + b"\r\n")
        last = -1
        for _ in range(100):  # bounded: up to 100 polls, 0.2 s apart
            time.sleep(0.2)
            if PROGRESS.get(key, 0) == last > 0:
                break  # the app has been stuck in send() for a while
            last = PROGRESS.get(key, 0)
        assert 0 < last < chunks, f"the app sent {last} of {chunks} chunks to a client that reads nothing"
        response = read_response(sock, timeout=30)
    assert len(response.body) == chunks * 65536


# Disconnects


def test_disconnect_is_reported_and_send_raises(server: RunningServer) -> None:
    key = new_id()
    with server.connect() as sock:
        sock.sendall(b"GET /wait-disconnect?id=%s HTTP/1.1\r\n" % key.encode() + H + b"\r\n")
        time.sleep(0.05)
    assert EVENTS[key].wait(5)
    message_type, *error = RECORDS[key]
    assert message_type == "http.disconnect"
    # ASGI HTTP spec 2.4: send() on a closed connection raises an OSError subclass.
    assert len(error) == 1 and isinstance(error[0], OSError)


async def fail_after_disconnect(scope: Any, receive: Any, send: Any) -> None:
    messages = []
    for _ in range(100):  # bounded: the client sends part of a body, then leaves
        message = await receive()
        messages.append(message["type"])
        if message["type"] == "http.disconnect":
            break
    RECORDS[scope["path"].strip("/")].extend(messages)
    raise RuntimeError("the app fails after the client left")


def test_disconnect_mid_body_then_app_error(http: str) -> None:
    key = new_id()
    with run_server(fail_after_disconnect, http=http) as server:
        with captured_logs() as errors, captured_logs("asyncio") as loop_errors:
            with server.connect() as sock:
                sock.sendall(b"POST /%s HTTP/1.1\r\n" % key.encode() + H + b"Content-Length: 10\r\n\r\n12345")
                for _ in range(500):  # bounded wait until the app has the first part of the body
                    if RECORDS[key] or server.server.server_state.tasks:
                        break
                    time.sleep(0.01)
            for _ in range(500):
                if not server.server.server_state.tasks:
                    break
                time.sleep(0.01)
    assert RECORDS[key][-1] == "http.disconnect"
    assert set(RECORDS[key][:-1]) <= {"http.request"}
    # The app's error is logged once; the request task itself ends cleanly (no stray task error).
    assert errors == ["Exception in ASGI application\n"]
    assert loop_errors == []


# Errors


def test_app_error_before_response_is_500_and_close(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /error-before HTTP/1.1\r\n" + H + b"\r\n")
        response = read_response(sock)
        assert (response.status, response.body) == (500, b"Internal Server Error")
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""


def test_app_returning_without_response_is_500(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /no-response HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).status == 500
        assert wait_closed(sock) == b""


def test_app_error_after_response_started_closes(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /error-after HTTP/1.1\r\n" + H + b"\r\n")
        received = wait_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in received
    assert not received.endswith(b"0\r\n\r\n"), "an aborted response must not look complete"


# Limits and upgrades


def test_limit_concurrency_answers_503(http: str) -> None:
    key = new_id()
    with run_server(app, http=http, limit_concurrency=2) as server, server.connect() as busy:
        busy.sendall(b"GET /slow?id=%s HTTP/1.1\r\n" % key.encode() + H + b"\r\n")
        for _ in range(500):  # bounded wait for the first request to be in the app
            if RECORDS[key]:
                break
            time.sleep(0.01)
        with server.connect() as extra:
            extra.sendall(b"GET /fixed HTTP/1.1\r\n" + H + b"\r\n")
            rejected = read_response(extra)
            assert (rejected.status, rejected.body) == (503, b"Service Unavailable")
            assert rejected.header(b"connection") == b"close"
            assert wait_closed(extra) == b""
        EVENTS[key].set()
        assert read_response(busy).body == b"slow done"


@pytest.mark.parametrize("ws", ["auto", "none"])
def test_unsupported_upgrade_is_served_as_http(http: str, ws: str) -> None:
    with run_server(app, http=http, ws=ws) as server, captured_logs() as messages, server.connect() as sock:
        upgrade = b"websocket" if ws == "none" else b"h2c"
        sock.sendall(b"GET /fixed HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n\r\n")
        response = read_response(sock)
    assert (response.status, response.body) == (200, b"hello")
    assert messages.count("Unsupported upgrade request.") == 1
    no_library = [m for m in messages if m.startswith("No supported WebSocket library detected.")]
    assert len(no_library) == (1 if ws == "none" else 0)


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_repeated_and_changing_response_headers(http: str) -> None:
    # The fast path remembers encoded header lines; a changed value must never come from that memory,
    # and an invalid header must be rejected even after valid ones were remembered.
    async def varying(scope: Any, receive: Any, send: Any) -> None:
        value = scope["query_string"] or b"none"
        name = b"bad header" if value == b"bad" else b"x-value"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"), (name, value)]})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(varying, http=http) as server, httpx.Client(base_url=server.url) as client:
        for value in ["a", "b", "a", "b"]:
            response = client.get("/?" + value)
            assert response.headers["x-value"] == value
            assert response.headers["content-type"] == "text/plain"
        with pytest.raises(httpx.HTTPError):
            client.get("/?bad")
