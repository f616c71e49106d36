"""HTTP/1.1: one client must not be able to hurt the server or other clients.

Each test replays an attack that once worked, over real sockets on 127.0.0.1, bounded in count and
time. Resource attacks run against a server in its own process (``harness.serve``) and assert on its
RSS or CPU time, and on a second client being served promptly while the attack goes on.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.security.harness import ServerProcess, probe_latencies, serve
from tests.utils import captured_logs, read_response, run_server, wait_closed

PROTOCOLS = ["auto", "h11"]
MiB = 1024 * 1024


def _probe_while(server: ServerProcess, attacking: threading.Event, count: int = 5) -> list[float]:
    """Latencies of ``count`` fresh clients (from another process) while the attack runs."""
    assert attacking.is_set()
    return probe_latencies(server, count)


@pytest.mark.parametrize("http", PROTOCOLS)
def test_pipelining_client_that_reads_keeps_memory_flat(http: str, tmp_path: Path) -> None:
    # Row 1: requests pipelined as fast as one connection can send them while it reads the answers.
    # Reading resumed after every response however much was buffered: 29 MB -> 640 MB in 4 s.
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    burst = request * 2000
    with serve("pounce.demo:app", "--http", http, tmp_path=tmp_path) as server:
        before = server.rss()
        attacking = threading.Event()
        attacking.set()
        sock = server.connect()
        received = [0]

        def reader() -> None:
            sock.settimeout(1)
            while attacking.is_set():
                try:
                    chunk = sock.recv(1 << 20)
                except (socket.timeout, OSError):
                    continue
                if not chunk:
                    return
                received[0] += len(chunk)

        def writer() -> None:
            deadline = time.monotonic() + 3
            try:
                while time.monotonic() < deadline:
                    sock.sendall(burst)
            except OSError:
                pass

        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        latencies = _probe_while(server, attacking)
        peak = server.rss()
        threads[1].join(10)
        peak = max(peak, server.rss())
        attacking.clear()
        threads[0].join(5)
        sock.close()
    assert received[0] > 0, "the attacking connection was served"
    assert peak - before < 40 * MiB, f"RSS grew {(peak - before) / MiB:.0f} MiB"
    assert statistics.median(latencies) < 0.1, latencies


def test_crlf_flood_costs_linear_cpu_and_others_are_served(tmp_path: Path) -> None:
    # Row 5: empty lines before a request were skipped again on every read and never dropped:
    # three connections flooding CRLFs made another client wait 5 s.
    flood = b"\r\n" * 32768
    with serve("pounce.demo:app", "--timeout-request-header", "2", tmp_path=tmp_path) as server:
        attacking = threading.Event()
        attacking.set()
        closed_by_server = []

        def attacker() -> None:
            with server.connect() as sock:
                deadline = time.monotonic() + 4
                try:
                    while time.monotonic() < deadline:
                        sock.sendall(flood)
                except OSError:
                    closed_by_server.append(True)  # the header deadline ended the flood

        cpu_before = server.cpu_seconds()
        threads = [threading.Thread(target=attacker) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        latencies = _probe_while(server, attacking)
        for thread in threads:
            thread.join(10)
        attacking.clear()
        cpu = server.cpu_seconds() - cpu_before
    assert statistics.median(latencies) < 0.1, latencies
    assert len(closed_by_server) == 3, "a connection sending only empty lines outlived the header deadline"
    # Each flood is refused (400) after 1 KiB of empty lines, not read for as long as it lasts.
    assert cpu < 1.0, cpu


def _ok_app_factory() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("http", PROTOCOLS)
def test_head_arriving_as_keep_alive_expires_is_served(http: str) -> None:
    # Row 9: the keep-alive timer closed the connection although the next head had started to arrive.
    with run_server(_ok_app_factory(), http=http, timeout_keep_alive=1) as running, running.connect() as sock:
        buf = bytearray()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buf).status == 200
        time.sleep(0.7)
        sock.sendall(b"GET / HTTP/1.1\r\nHo")  # started inside the keep-alive period...
        time.sleep(2.0)  # ...and finished after it (and after the lazy timer's second period)
        sock.sendall(b"st: x\r\n\r\n")
        assert read_response(sock, buf).status == 200


@pytest.mark.parametrize("http", PROTOCOLS)
def test_slow_request_body_gets_408(http: str) -> None:
    # Row 11: a body trickling in at 1 byte/s held the connection and its app task forever.
    with run_server(_ok_app_factory(), http=http, timeout_request_body=1) as running:
        with running.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            start = time.monotonic()
            answer = bytearray()
            sock.settimeout(0.25)
            while time.monotonic() - start < 5:
                try:
                    sock.sendall(b"x")
                    chunk = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
            elapsed = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408 "), bytes(answer)
        assert elapsed < 3, elapsed
        deadline = time.monotonic() + 2
        while running.server.server_state.tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running.server.server_state.tasks, "the app task outlived its connection"


def test_fast_body_is_not_timed_out() -> None:
    # The deadline is for progress, not for the whole body: 64 KiB per period keeps it going.
    with run_server(_ok_app_factory(), timeout_request_body=0.5) as running, running.connect() as sock:
        size = 8 * 65536
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(8):
            sock.sendall(b"x" * 65536)
            time.sleep(0.3)  # the whole body takes 2.4 s, well past one period
        assert read_response(sock).status == 200


@pytest.mark.parametrize("http", PROTOCOLS)
def test_client_that_never_reads_is_dropped_after_write_timeout(http: str) -> None:
    # Row 11: a client that stops reading held its connection, buffers and app task forever.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        for _ in range(2000):  # 128 MiB: far more than the socket buffers hold
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http, timeout_write=1) as running:
        sock = running.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        state = running.server.server_state
        deadline = time.monotonic() + 6
        while (state.connections or state.tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            assert not state.connections, "the stalled connection is still open"
            assert not state.tasks, "the app task of the stalled connection is still running"
        finally:
            sock.close()


@pytest.mark.parametrize("http", PROTOCOLS)
def test_request_body_limit(http: str) -> None:
    with run_server(_ok_app_factory(), http=http, limit_request_body=1000) as running:
        with running.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
            assert read_response(sock).status == 200
        with running.connect() as sock:
            # Declared too large: refused before a byte of it is read (and before the app runs).
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
            response = read_response(sock)
            assert response.status == 413 and response.header(b"connection") == b"close"
        with running.connect() as sock:
            # Chunked: refused once the bytes that arrived pass the limit.
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            sock.sendall(b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n")
            assert read_response(sock).status == 413
            wait_closed(sock)


@pytest.mark.parametrize("http", PROTOCOLS)
def test_error_after_complete_response_keeps_the_connection(http: str) -> None:
    # Issue 8, item 5: Starlette's ServerErrorMiddleware sends its 500 and then re-raises (as FastAPI's
    # error path does). The connection was closed without "connection: close", so the client's next
    # keep-alive request was reset.
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def boom(request: Any) -> Any:
        raise ValueError("app bug")

    async def fine(request: Any) -> Any:
        return PlainTextResponse("fine")

    app = Starlette(routes=[Route("/boom", boom), Route("/fine", fine)])
    with run_server(app, http=http) as running, running.connect() as sock, captured_logs() as logs:
        buf = bytearray()
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_response(sock, buf)
        assert first.status == 500
        if first.header(b"connection") != b"close":
            sock.sendall(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
            second = read_response(sock, buf)
            assert (second.status, second.body) == (200, b"fine")
    assert any("Exception in ASGI application" in message for message in logs), "the app error is still logged"


@pytest.mark.parametrize("http", PROTOCOLS)
def test_client_leaving_a_streaming_response_is_not_an_app_error(http: str) -> None:
    # Issue 8, item 5: a client hanging up during a StreamingResponse logged "Exception in ASGI
    # application" and a long traceback every time (Starlette turns our OSError into its own
    # ClientDisconnect). Uvicorn logs nothing.
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    finished = threading.Event()

    async def numbers() -> Any:
        try:
            for i in range(10_000):
                yield b"line %d\n" % i * 100
                await asyncio.sleep(0.005)
        finally:
            finished.set()

    async def stream(request: Any) -> Any:
        return StreamingResponse(numbers())

    app = Starlette(routes=[Route("/stream", stream)])
    with run_server(app, http=http, log_level="debug") as running, captured_logs() as logs:
        with running.connect() as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.1)
        assert finished.wait(5)
        time.sleep(0.2)
    errors = [message for message in logs if "Exception in ASGI application" in message]
    assert not errors, errors
