"""``--server-timing`` through real sockets: HTTP/1.1 with both parsers and HTTP/2."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from pounce.observability.events import ResponseCompleted
from pounce.observability.timing import APP_DESCRIPTION, QUEUE_DESCRIPTION
from tests.observability.clients import H2Client, Recorder
from tests.utils import RunningServer, read_response, run_server

pytestmark = pytest.mark.timeout(30)

APPS_OWN = b'db;dur=53, cache;desc="Cache Read";dur=23.2'
METRIC = re.compile(r'^(?P<name>[a-z]+);dur=(?P<dur>\d+\.\d{3});desc="(?P<desc>[^"]*)"$')


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.2)  # before the first byte: the app's time
    if scope["path"] == "/own":
        headers.append((b"Server-Timing", APPS_OWN))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def pounce_metrics(value: bytes) -> dict[str, float]:
    """Pounce's field, parsed: ``{"queue": ms, "app": ms}``, in that order, with their descriptions."""
    parts = [part.strip() for part in value.decode().split(", ")]
    found = {}
    for part, (name, desc) in zip(parts, [("queue", QUEUE_DESCRIPTION), ("app", APP_DESCRIPTION)], strict=True):
        match = METRIC.match(part)
        assert match is not None, value
        assert (match["name"], match["desc"]) == (name, desc)
        found[name] = float(match["dur"])
    return found


def fetch(server: RunningServer, http: str, path: str) -> list[bytes]:
    """The response's server-timing field values, in order."""
    if http == "h2":
        with H2Client(server.host, server.port) as client:
            status, headers, _ = client.response(client.request(b"GET", path.encode()))
    else:
        with server.connect() as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nhost: a\r\n\r\n" % path.encode())
            response = read_response(sock)
            status, headers = response.status, response.headers
    assert status == 200
    return [value for name, value in headers if name == b"server-timing"]


def serving(http: str, **kwargs: Any) -> Any:
    extra: dict[str, Any] = {"http2": True} if http == "h2" else {"http": http}
    return run_server(app, access_log=False, **extra, **kwargs)


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_the_header_names_queue_and_app_with_plausible_values(http: str) -> None:
    recorder = Recorder()
    with serving(http, server_timing=True, event_handlers=[recorder]) as server:
        (quick,) = fetch(server, http, "/")
        (slow,) = fetch(server, http, "/sleep")
        recorder.wait_for(ResponseCompleted, 2)
    quick_metrics, slow_metrics = pounce_metrics(quick), pounce_metrics(slow)
    assert 0 <= quick_metrics["queue"] < 1000 and 0 <= quick_metrics["app"] < 1000
    # The app slept 0.2 s before its first byte; the value is taken when the head leaves.
    assert 200 <= slow_metrics["app"] < 2000
    assert 0 <= slow_metrics["queue"] < 1000
    quick_done, slow_done = recorder.of(ResponseCompleted)
    assert slow_done.first_byte_seconds >= 0.2
    if http != "h2":
        # HTTP/1.1: the event's first byte is the moment the header was written, so both tell one story.
        for metrics, done in ((quick_metrics, quick_done), (slow_metrics, slow_done)):
            assert metrics["queue"] == pytest.approx(done.queue_seconds * 1000, abs=0.002)
            assert metrics["app"] == pytest.approx(done.first_byte_seconds * 1000, abs=0.002)


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_an_apps_own_server_timing_is_kept_and_pounces_added_next_to_it(http: str) -> None:
    with serving(http, server_timing=True) as server:
        own, ours = fetch(server, http, "/own")
    assert own == APPS_OWN
    assert set(pounce_metrics(ours)) == {"queue", "app"}


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_off_by_default(http: str) -> None:
    with serving(http) as server:
        assert fetch(server, http, "/") == []
        assert fetch(server, http, "/own") == [APPS_OWN]
