"""Server behaviour that does not depend on the HTTP implementation: limits, sockets, the date header."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from pounce import Config, Server
from tests.apps.basic import hello
from tests.utils import run_server


def _serve_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    return thread


def test_limit_max_requests_stops_a_single_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = Config(app=hello, port=port, limit_max_requests=3, lifespan="off", log_level="warning")
    server = Server(config)
    thread = _serve_in_thread(server)
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    thread.join(5)
    assert not thread.is_alive()
    assert server.server_state.total_requests == 3


def test_limit_max_requests_jitter_stays_in_range() -> None:
    config = Config(app=hello, limit_max_requests=10, limit_max_requests_jitter=5)
    limits = {Server(config).limit_max_requests for _ in range(50)}
    assert limits <= set(range(10, 16)) and len(limits) > 1


def test_serves_on_an_inherited_file_descriptor() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = Config(app=hello, fd=listener.fileno(), lifespan="off", log_level="warning")
    server = Server(config)
    thread = _serve_in_thread(server)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_date_header_and_custom_headers_on_every_response() -> None:
    with run_server(hello, headers=[("X-Served-By", "pounce-test")], date_header=True) as running:
        with httpx.Client() as client:
            first = client.get(running.url)
            second = client.get(running.url)
    for response in (first, second):
        assert response.headers["x-served-by"] == "pounce-test"
        assert response.headers["date"].endswith(" GMT")
        assert response.headers["server"] == "pounce"


def test_no_date_and_no_server_header() -> None:
    with run_server(hello, date_header=False, server_header=False) as running:
        response = httpx.get(running.url)
    assert "date" not in response.headers and "server" not in response.headers


def test_limit_concurrency_answers_503() -> None:
    with run_server(hello, limit_concurrency=1) as running:
        # One idle connection already uses the only slot.
        with running.connect() as idle:
            idle.sendall(b"")
            time.sleep(0.1)
            response = httpx.get(running.url)
    assert response.status_code == 503
    assert response.text == "Service Unavailable"


def test_a_forced_exit_closes_open_connections_instead_of_abandoning_them() -> None:
    # After a forced quit (a second Ctrl+C, or a supervisor killing a worker that overran its drain) the
    # loop stops at once. A keep-alive connection it still had must be closed, so its client sees the
    # end at once instead of hanging on a socket that nothing will ever serve or close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = Config(app=hello, lifespan="off", log_level="warning")
        server = Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=3) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200 OK")
            server.force_exit = True
            server.should_exit = True
            thread.join(10)
            assert not thread.is_alive()
            assert client.recv(4096) == b""  # EOF, not a timeout
