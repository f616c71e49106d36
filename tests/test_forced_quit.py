"""A second Ctrl+C (forced quit) with a request in flight: the client gets a 500 and the access log a line.

As Uvicorn: the forced quit cancels the app's task, which answers 500 (its response had not started) and
is logged like any other response, instead of the client seeing the connection drop without a reply.
"""

from __future__ import annotations

import signal
import socket

import h2.events
import pytest

from tests.h2client import H2Client
from tests.test_cli import _free_port, _rest_of_output, _wait_for_line, pounce_process
from tests.test_http2 import _reopened


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_forced_quit_answers_500_and_logs_it(http: str) -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:slow", "--port", str(port), "--http", http) as proc:
        _wait_for_line(proc, "Pounce running on")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /slow?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
            proc.send_signal(signal.SIGINT)
            _wait_for_line(proc, "Waiting for connections to close")
            proc.send_signal(signal.SIGINT)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
        output = _rest_of_output(proc)
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), reply
    assert b"\r\nconnection: close\r\n" in reply.lower()
    assert b"Internal Server Error" in reply.partition(b"\r\n\r\n")[2]  # h11 sends it chunked, as Uvicorn's
    assert '"GET /slow?s=30 HTTP/1.1" 500' in output
    assert "Exception in ASGI application" in output


def test_forced_quit_answers_500_on_http2() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:slow", "--port", str(port), "--http2") as proc:
        _wait_for_line(proc, "Pounce running on")
        with H2Client("127.0.0.1", port) as client:
            stream_id = client.request(path=b"/slow?s=30")
            proc.send_signal(signal.SIGINT)
            _wait_for_line(proc, "Waiting for connections to close")
            client.read(lambda: bool(client.of(h2.events.ConnectionTerminated)))  # the shutdown's GOAWAY
            client.conn = _reopened(client.conn)  # h2 would take no more frames after it
            proc.send_signal(signal.SIGINT)
            status, _, body = client.response(stream_id)
        output = _rest_of_output(proc)
    assert (status, body) == (500, b"Internal Server Error")
    assert '"GET /slow?s=30 HTTP/2" 500' in output
