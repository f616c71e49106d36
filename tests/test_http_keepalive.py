"""Keep-alive timeouts through real sockets, for both HTTP/1.1 protocols."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.utils import read_response, run_server, wait_closed

H = b"Host: example.org\r\n"


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_a_connection_in_steady_use_is_never_closed(http: str) -> None:
    # Requests every 0.1 s over three keep-alive periods: the timer must see the activity.
    with run_server(app, http=http, timeout_keep_alive=1) as server, server.connect() as sock:
        buf = bytearray()
        for _ in range(30):
            sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
            response = read_response(sock, buf)
            assert (response.status, response.body) == (200, b"ok")
            time.sleep(0.1)


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_an_idle_connection_closes_after_the_timeout_and_not_before(http: str) -> None:
    with run_server(app, http=http, timeout_keep_alive=1) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).status == 200
        idle_since = time.monotonic()
        assert wait_closed(sock, timeout=5) == b""
        idle = time.monotonic() - idle_since
    assert 0.9 <= idle <= 3.0
