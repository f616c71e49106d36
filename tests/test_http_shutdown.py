"""Graceful shutdown of HTTP/1.1 connections, for both protocols, through real sockets.

In-flight requests finish (with ``connection: close``); idle keep-alive connections drain: a request
that arrives within the grace window is still served, and the connection closes after it, or when
the window ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.utils import RunningServer, read_response, run_server, wait_closed

RELEASE = threading.Event()
STARTED = threading.Event()


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        STARTED.set()
        for _ in range(1000):  # bounded: at most 10 s
            if RELEASE.is_set():
                break
            await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"done " + scope["path"].encode()})


@pytest.fixture(params=["auto", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    RELEASE.clear()
    STARTED.clear()
    with run_server(app, http=request.param, timeout_keep_alive=5) as running:
        yield running


H = b"Host: example.org\r\n"


def connections(server: RunningServer) -> list[Any]:
    for _ in range(10):  # the set belongs to the server's thread; retry if it changes under us
        try:
            return list(server.server.server_state.connections)
        except RuntimeError:
            continue
    raise AssertionError("could not read the connection set")


def start_shutdown(server: RunningServer) -> None:
    """Ask the server to stop and wait until it has told every open connection so."""
    server.server.should_exit = True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if all(not s.is_serving() for s in server.server.servers) and all(
            getattr(c, "draining", False) or (c.cycle is not None and not c.cycle.keep_alive)
            for c in connections(server)
        ):
            return
        time.sleep(0.01)
    raise AssertionError("the server did not start shutting down")


def test_in_flight_request_finishes(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\n" + H + b"\r\n")
        assert STARTED.wait(5)
        start_shutdown(server)
        RELEASE.set()
        response = read_response(sock)
        assert (response.status, response.body) == (200, b"done /slow")
        assert response.header(b"connection") == b"close"
        assert wait_closed(sock) == b""
    thread_done = _server_stops(server)
    assert thread_done


def test_idle_keep_alive_connection_serves_one_more_request(server: RunningServer) -> None:
    # The rolling-restart race: the client sends its next request on a pooled connection just as the
    # server begins to shut down. That request must be served, not dropped.
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        first = read_response(sock, buf)
        assert first.header(b"connection") is None  # a keep-alive response
        start_shutdown(server)
        sock.sendall(b"GET /second HTTP/1.1\r\n" + H + b"\r\n")
        second = read_response(sock, buf)
        assert (second.status, second.body) == (200, b"done /second")
        assert second.header(b"connection") == b"close"
        assert wait_closed(sock) == b""


def test_idle_keep_alive_connection_closes_when_the_window_ends(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).status == 200
        start_shutdown(server)
        # Nothing more is sent: the server closes by itself (window: min(timeout_keep_alive, 1 s)),
        # long before the 5 s keep-alive timeout.
        assert wait_closed(sock, timeout=4) == b""
    assert _server_stops(server)


def test_partial_request_at_shutdown_is_completed(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        assert read_response(sock, buf).status == 200
        sock.sendall(b"GET /second HTTP/1.1\r\nHo")
        time.sleep(0.05)
        start_shutdown(server)
        sock.sendall(b"st: example.org\r\n\r\n")
        response = read_response(sock, buf)
        assert (response.status, response.body, response.header(b"connection")) == (200, b"done /second", b"close")
        assert wait_closed(sock) == b""


def test_pipelined_requests_after_shutdown_get_one_answer(server: RunningServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        assert read_response(sock, buf).status == 200
        start_shutdown(server)
        sock.sendall(b"GET /second HTTP/1.1\r\n" + H + b"\r\nGET /third HTTP/1.1\r\n" + H + b"\r\n")
        response = read_response(sock, buf)
        assert (response.body, response.header(b"connection")) == (b"done /second", b"close")
        assert wait_closed(sock) + bytes(buf) == b""


def test_new_connection_sending_its_first_request_during_shutdown_is_served(server: RunningServer) -> None:
    # A client that connected just before shutdown and sends its first request a moment later must get
    # its answer (Uvicorn closes such a connection at once, and the request fails).
    with server.connect() as sock:
        for _ in range(500):  # wait until the server has accepted it
            if connections(server):
                break
            time.sleep(0.01)
        start_shutdown(server)
        sock.sendall(b"GET /late HTTP/1.1\r\n" + H + b"\r\n")
        response = read_response(sock)
        assert (response.status, response.body, response.header(b"connection")) == (200, b"done /late", b"close")
        assert wait_closed(sock) == b""


def test_new_connection_without_bytes_closes_when_the_window_ends(server: RunningServer) -> None:
    with server.connect() as sock:
        for _ in range(500):
            if connections(server):
                break
            time.sleep(0.01)
        start_shutdown(server)
        assert wait_closed(sock, timeout=4) == b""


def _server_stops(server: RunningServer) -> bool:
    """True once the server's serve() has returned (its listeners are gone and it stopped ticking)."""
    for _ in range(500):
        if not connections(server) and not server.server.server_state.tasks:
            return True
        time.sleep(0.01)
    return False


def test_websocket_upgrade_on_a_draining_connection_is_refused(server: RunningServer) -> None:
    pytest.importorskip("wsproto")
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\n" + H + b"\r\n")
        buf = bytearray()
        assert read_response(sock, buf).status == 200
        start_shutdown(server)
        sock.sendall(
            b"GET /ws HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = read_response(sock, buf)
        assert (response.status, response.header(b"connection")) == (503, b"close")
        assert wait_closed(sock) == b""
