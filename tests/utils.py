"""Test helpers: run a real Pounce server on 127.0.0.1, port 0, in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from pounce import Config, Server


class RunningServer:
    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.host, self.port = sock.getsockname()[:2]

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.is_ssl else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


@contextlib.contextmanager
def run_server(app: Any, **kwargs: Any) -> Iterator[RunningServer]:
    """Serve ``app`` with ``Config(app, **kwargs)`` on a fresh port until the block ends."""
    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_level", "warning")
    config = Config(app, host="127.0.0.1", port=0, **kwargs)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError(f"server did not start: {errors!r}")
    try:
        yield RunningServer(server, sock)
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "server did not stop within 10 s"


def raw_request(running: RunningServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection (or ``timeout``)."""
    with running.connect(timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
