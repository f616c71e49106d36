"""Test helpers: run a real Pounce server on 127.0.0.1, port 0, in a background thread."""

from __future__ import annotations

import contextlib
import logging
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
def run_server(app: Any, *, telemetry: Any = None, **kwargs: Any) -> Iterator[RunningServer]:
    """Serve ``app`` with ``Config(app, **kwargs)`` on a fresh port until the block ends.

    ``telemetry``: a ``pounce.observability.runtime.Telemetry`` for the server (a tracer of the test's own).
    """
    kwargs.setdefault("lifespan", "off")
    kwargs.setdefault("log_level", "warning")
    config = Config(app, host="127.0.0.1", port=0, **kwargs)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = Server(config, telemetry=telemetry)
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


class HTTPResponse:
    """One HTTP/1.x response as read off a raw socket by ``read_response``."""

    def __init__(self, status: int, http_version: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.http_version = http_version
        self.headers = headers  # names lower-cased, in order
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.headers if key == name]
        return b", ".join(values) if values else None

    def __repr__(self) -> str:
        return f"HTTPResponse({self.status}, {self.headers!r}, {self.body[:80]!r})"


def _recv_into(sock: socket.socket, buf: bytearray, deadline: float) -> bool:
    """Append what the socket has to ``buf``; False at EOF (or reset). Raises TimeoutError past ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no response in time")
    sock.settimeout(remaining)
    try:
        chunk = sock.recv(65536)
    except socket.timeout:
        raise TimeoutError("no response in time") from None
    except ConnectionResetError:
        return False
    buf += chunk
    return bool(chunk)


def read_response(
    sock: socket.socket, buf: bytearray | None = None, *, head_request: bool = False, timeout: float = 5.0
) -> HTTPResponse:
    """Read one response from ``sock``; ``buf`` carries bytes over between pipelined responses.

    Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; then chunked, then
    Content-Length, else the body runs to the end of the connection.
    """
    buf = bytearray() if buf is None else buf
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if not _recv_into(sock, buf, deadline):
            raise ConnectionError(f"connection closed before a full response head: {bytes(buf)!r}")
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).split(b"\r\n")
    del buf[: end + 4]
    version, status, *_ = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    response = HTTPResponse(int(status), version.decode(), headers, b"")
    code = response.status
    if head_request or code < 200 or code in (204, 304):
        return response
    if (response.header(b"transfer-encoding") or b"").lower() == b"chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                if not _recv_into(sock, buf, deadline):
                    raise ConnectionError("connection closed inside a chunked body")
            size_end = buf.index(b"\r\n")
            size = int(bytes(buf[:size_end]).split(b";")[0], 16)
            while len(buf) < size_end + 2 + size + 2:
                if not _recv_into(sock, buf, deadline):
                    raise ConnectionError("connection closed inside a chunk")
            body += buf[size_end + 2 : size_end + 2 + size]
            del buf[: size_end + 2 + size + 2]
            if size == 0:
                response.body = bytes(body)
                return response
    length = response.header(b"content-length")
    if length is not None:
        while len(buf) < int(length):
            if not _recv_into(sock, buf, deadline):
                raise ConnectionError("connection closed inside the body")
        response.body = bytes(buf[: int(length)])
        del buf[: int(length)]
        return response
    while _recv_into(sock, buf, deadline):
        pass
    response.body = bytes(buf)
    buf.clear()
    return response


def wait_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection; return what arrived. TimeoutError if it stays open."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while _recv_into(sock, buf, deadline):
        pass
    return bytes(buf)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_logs(name: str = "uvicorn.error") -> Iterator[list[str]]:
    """Collect the messages logged to ``name`` in the block, whatever propagation the server's logging config set."""
    handler = _ListHandler()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
