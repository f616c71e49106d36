"""A server without the ``ws`` extra answers WebSocket handshakes with a clear 400 (or, with
``--ws none``, passes them to the app as plain HTTP, as Uvicorn does)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.utils import read_response

ROOT = Path(__file__).resolve().parent.parent

# Runs the real CLI in a fresh interpreter where importing wsproto fails, as on an install without it.
LAUNCHER = "import sys; sys.modules['wsproto'] = None; from pounce.main import main; main()"

HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: example.org\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def _serve(port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "tests.apps.basic:hello", "--port", str(port), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(port: int, proc: subprocess.Popen[str]) -> socket.socket:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
    raise AssertionError("server did not start")


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_handshake_without_websocket_support_gets_a_clear_400(http: str) -> None:
    port = _free_port()
    proc = _serve(port, "--http", http)
    try:
        with _connect(port, proc) as sock:
            sock.sendall(HANDSHAKE)
            response = read_response(sock)
        assert response.status == 400
        assert b"pip install 'pounce-asgi[ws]'" in response.body
        assert response.header(b"connection") == b"close"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "Unsupported upgrade request." in output
    assert "No supported WebSocket library detected." in output


def test_with_ws_none_the_app_gets_the_request() -> None:
    port = _free_port()
    proc = _serve(port, "--ws", "none")
    try:
        with _connect(port, proc) as sock:
            sock.sendall(HANDSHAKE)
            response = read_response(sock)
        assert (response.status, response.body) == (200, b"Hello, world!")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
