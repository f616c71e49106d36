"""``scope["extensions"]["pounce.drain"]`` through a real server: an SSE stream ends itself when the worker
drains (SIGTERM, SIGHUP), a WebSocket is told and then closed with 1012 before the graceful timeout."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.supervisors.serving import get, serve

APP = "tests.deploy.drain_app:app"


def test_same_object_for_every_scope(tmp_path: Path) -> None:
    with serve(app=APP, tmp_path=tmp_path) as server:
        first, second = get(server.port, "/drain")[1], get(server.port, "/drain")[1]
    assert first == second and "draining=0" in first


def _stream(port: int, chunks: list[str], opened: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", "/events")
    response = conn.getresponse()
    opened.set()
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        chunks.append(chunk.decode())
    conn.close()


@pytest.mark.parametrize("args, sig", [((), signal.SIGTERM), (("--workers", "2"), signal.SIGHUP)])
def test_event_stream_ends_when_draining(tmp_path: Path, args: tuple[str, ...], sig: int) -> None:
    with serve("--timeout-graceful-shutdown", "20", *args, app=APP, tmp_path=tmp_path) as server:
        chunks: list[str] = []
        opened = threading.Event()
        reader = threading.Thread(target=_stream, args=(server.port, chunks, opened))
        reader.start()
        assert opened.wait(10)
        time.sleep(0.5)
        signalled = time.monotonic()
        server.signal(sig)
        reader.join(15)
        assert not reader.is_alive()
        # The stream ended cleanly (the body's end, not a cut) well before the 20 s graceful timeout.
        assert time.monotonic() - signalled < 8
        text = "".join(chunks)
        assert text.startswith("data: hello") and text.endswith("event: bye\ndata: draining\n\n"), text
        if sig == signal.SIGHUP:
            assert get(server.port, "/drain")[0] == 200  # the new workers serve; they are not draining
            assert "draining=0" in get(server.port, "/drain")[1]


def test_websocket_told_then_closed_1012(tmp_path: Path) -> None:
    with serve("--timeout-graceful-shutdown", "4", app=APP, tmp_path=tmp_path) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            assert ws.recv(timeout=3) == "draining"
            told = time.monotonic() - signalled
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            closed_after = time.monotonic() - signalled
        assert server.wait() in (0, -signal.SIGTERM)
    assert told < 1.5
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    # 4 s graceful timeout, 1 s margin: 1012 at about 3 s, before the timeout would cancel the app.
    assert 2.5 <= closed_after < 4.0, closed_after


def test_websocket_closed_at_once_without_graceful_timeout(tmp_path: Path) -> None:
    with serve(app=APP, tmp_path=tmp_path) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
            signalled = time.monotonic()
            server.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=10)
            assert time.monotonic() - signalled < 2
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
