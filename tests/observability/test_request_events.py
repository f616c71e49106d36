"""Request and connection events from real servers, through real sockets: HTTP/1.1 with both parsers, HTTP/2.

Each test subscribes a ``Recorder`` (``Config(event_handlers=...)``) to an in-process server and checks
what a subscriber may build on (``pounce.observability.events``): the order RequestStarted ->
ResponseStarted -> ResponseCompleted (or ClientDisconnected), RequestFailed before the 500, the
durations, the ids that pair requests with their connections, and ConnectionOpened/Closed in pairs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import h2.events
import httpx
import pytest

from pounce.observability.bus import EXTENSION_KEY, EventSource, events_extension, handler_failures
from pounce.observability.events import (
    ClientDisconnected,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    RequestFailed,
    RequestStarted,
    ResponseCompleted,
    ResponseStarted,
    StreamReset,
)
from tests.observability.clients import H2Client, Recorder, connections_pair, wait_until
from tests.utils import captured_logs, read_response, run_server

pytestmark = pytest.mark.timeout(30)

Scope = dict[str, Any]
STREAM_CHUNK = b"x" * 1000


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """``/`` echoes ``hello <body>``; the other paths fail, stream or wait in the ways the tests need."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/wait":
        # Waits for the client to go away: the response never starts.
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if path == "/error":
        raise RuntimeError("boom")
    if path == "/no-response":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if path == "/error-after-start":
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("half way")
    if path == "/stream":
        # Streams until the client leaves (send raises then); bounded in case it never does.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.body", "body": b"hello " + body})


def check_request(recorder: Recorder, started: RequestStarted, status: int, body_bytes: int) -> ResponseCompleted:
    """One request's events: started, response started, completed, with sane fields and durations."""
    mine = recorder.of_request(started)
    assert [type(e) for e in mine] == [RequestStarted, ResponseStarted, ResponseCompleted], mine
    _, response, done = mine
    assert isinstance(response, ResponseStarted) and isinstance(done, ResponseCompleted)
    assert response.status == done.status == status
    assert done.body_bytes == body_bytes
    assert done.request is started
    assert response.connection_id == done.connection_id == started.connection_id
    assert started.time <= response.time <= done.time
    assert done.queue_seconds >= 0 and done.first_byte_seconds >= 0
    assert done.queue_seconds + done.first_byte_seconds <= done.total_seconds + 1e-6
    assert done.total_seconds == pytest.approx(done.time - started.time, abs=1e-6)
    assert done.total_seconds < 5
    return done


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_http11_requests_and_their_connections(http: str) -> None:
    recorder = Recorder()
    with run_server(app, http=http, event_handlers=[recorder], access_log=False) as server:
        # Two requests on one keep-alive connection, then one on a connection of its own.
        with server.connect() as sock:
            peer = sock.getsockname()
            buf = bytearray()
            sock.sendall(b"GET /one?x=1 HTTP/1.1\r\nhost: a\r\n\r\n")
            assert read_response(sock, buf).body == b"hello "
            sock.sendall(b"POST /two HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nbody")
            assert read_response(sock, buf).body == b"hello body"
        assert httpx.post(server.url + "/three", content=b"abc").text == "hello abc"
        recorder.wait_for(ConnectionClosed, 2)
    events = recorder.events
    pairs = connections_pair(events)
    assert len(pairs) == 2
    (first_open, first_close), (_, second_close) = pairs.values()
    assert first_open.protocol == "http/1.1" and first_open.peer == peer and first_open.tls is False
    assert (first_close.requests_served, second_close.requests_served) == (2, 1)
    assert first_close.upgraded_to is None
    started = recorder.of(RequestStarted)
    assert [(s.method, s.path, s.http_version, s.stream_id) for s in started] == [
        ("GET", "/one", "1.1", None), ("POST", "/two", "1.1", None), ("POST", "/three", "1.1", None)]
    assert [s.request_id for s in started] == [1, 2, 3]
    assert [s.connection_id for s in started] == [first_open.connection_id] * 2 + [second_close.connection_id]
    assert started[0].scope["query_string"] == b"x=1"
    assert {e.worker_id for e in events} == {0}
    for request, body in zip(started, (b"hello ", b"hello body", b"hello abc")):
        check_request(recorder, request, 200, len(body))
    times = [e.time for e in events]
    assert times == sorted(times)


def test_http2_requests_carry_their_stream_ids() -> None:
    recorder = Recorder()
    with run_server(app, http2=True, event_handlers=[recorder], access_log=False) as server:
        with H2Client(server.host, server.port) as client:
            first = client.request(b"GET", b"/a")
            second = client.request(b"POST", b"/b", body=b"12345")
            assert client.response(first)[2] == b"hello "
            assert client.response(second)[2] == b"hello 12345"
        # The same port still speaks HTTP/1.1: a connection of the other protocol.
        assert httpx.get(server.url + "/c").status_code == 200
        recorder.wait_for(ConnectionClosed, 2)
    pairs = connections_pair(recorder.events)
    protocols = [(opened.protocol, closed.requests_served) for opened, closed in pairs.values()]
    assert protocols == [("h2", 2), ("http/1.1", 1)]
    started = recorder.of(RequestStarted)
    assert [(s.method, s.path, s.http_version, s.stream_id) for s in started] == [
        ("GET", "/a", "2", first), ("POST", "/b", "2", second), ("GET", "/c", "1.1", None)]
    h2_connection = next(iter(pairs))
    assert {s.connection_id for s in started[:2]} == {h2_connection}
    check_request(recorder, started[0], 200, 6)
    check_request(recorder, started[1], 200, 11)
    assert not recorder.of(StreamReset)


def failures(recorder: Recorder, started: RequestStarted) -> tuple[RequestFailed, ResponseCompleted]:
    mine = recorder.of_request(started)
    assert [type(e) for e in mine] == [RequestStarted, RequestFailed, ResponseStarted, ResponseCompleted], mine
    failed, completed = mine[1], mine[3]
    assert isinstance(failed, RequestFailed) and isinstance(completed, ResponseCompleted)
    assert failed.sent_500 and completed.status == 500
    assert failed.request is started and completed.body_bytes == len(b"Internal Server Error")
    return failed, completed


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_an_app_error_is_a_request_failed_then_a_500(http: str) -> None:
    recorder = Recorder()
    kwargs: dict[str, Any] = {"http2": True} if http == "h2" else {"http": http}
    # Logs captured once the server is up: its Config applies the logging config, handlers included.
    with run_server(app, event_handlers=[recorder], access_log=False, **kwargs) as server, captured_logs() as logs:
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                assert client.response(client.request(b"GET", b"/error"))[0] == 500
                assert client.response(client.request(b"GET", b"/no-response"))[0] == 500
                assert client.response(client.request(b"GET", b"/"))[0] == 200
        else:
            for path in ("/error", "/no-response", "/"):
                with server.connect() as sock:
                    sock.sendall(b"GET %s HTTP/1.1\r\nhost: a\r\n\r\n" % path.encode())
                    assert read_response(sock).status == (200 if path == "/" else 500)
        recorder.wait_for(ResponseCompleted, 3)
    raised, returned, fine = recorder.of(RequestStarted)
    failed, _ = failures(recorder, raised)
    assert failed.exception_type == "RuntimeError" and isinstance(failed.error, RuntimeError)
    assert failed.message == "Exception in ASGI application"
    failed, _ = failures(recorder, returned)
    assert failed.exception_type is None and failed.error is None
    assert failed.message == "ASGI callable returned without starting response."
    check_request(recorder, fine, 200, 6)
    assert sum("Exception in ASGI application" in m for m in logs) == 1


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_an_error_after_the_response_started_is_failed_then_cut_off(http: str) -> None:
    recorder = Recorder()
    with run_server(app, http=http, event_handlers=[recorder], access_log=False) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /error-after-start HTTP/1.1\r\nhost: a\r\n\r\n")
            with pytest.raises(ConnectionError):
                read_response(sock)  # chunked, never finished: the connection closes inside it
        recorder.wait_for(ClientDisconnected)
    (started,) = recorder.of(RequestStarted)
    kinds = [type(e) for e in recorder.of_request(started)]
    assert kinds == [RequestStarted, ResponseStarted, RequestFailed, ClientDisconnected]
    failed, gone = recorder.of(RequestFailed)[0], recorder.of(ClientDisconnected)[0]
    assert failed.exception_type == "ValueError" and not failed.sent_500
    assert gone.status == 200 and gone.response_started and gone.body_bytes == 4
    assert not recorder.of(ResponseCompleted)


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_a_client_leaving_mid_stream_or_before_the_response(http: str) -> None:
    recorder = Recorder()
    with run_server(app, http=http, event_handlers=[recorder], access_log=False) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n")
            received = b""
            while len(received) < 3 * len(STREAM_CHUNK):
                received += sock.recv(65536)
        gone = recorder.wait_for(ClientDisconnected)[0]
        with server.connect() as sock:
            sock.sendall(b"GET /wait HTTP/1.1\r\nhost: a\r\n\r\n")
            recorder.wait_for(RequestStarted, 2)
        recorder.wait_for(ClientDisconnected, 2)
        recorder.wait_for(ConnectionClosed, 2)
    streamed, waited = recorder.of(RequestStarted)
    assert [type(e) for e in recorder.of_request(streamed)] == [RequestStarted, ResponseStarted, ClientDisconnected]
    assert gone.request is streamed and gone.status == 200
    assert gone.body_bytes >= 3 * len(STREAM_CHUNK) and gone.body_bytes % len(STREAM_CHUNK) == 0
    assert [type(e) for e in recorder.of_request(waited)] == [RequestStarted, ClientDisconnected]
    never = recorder.of(ClientDisconnected)[1]
    assert never.status is None and not never.response_started and never.body_bytes == 0
    # The app noticed the disconnect (send raised, receive said so): not an app error.
    assert not recorder.of(RequestFailed) and not recorder.of(ResponseCompleted)
    connections_pair(recorder.events)


def test_http2_resets_by_the_client_and_by_the_server() -> None:
    recorder = Recorder()
    with run_server(app, http2=True, event_handlers=[recorder], access_log=False) as server:
        with H2Client(server.host, server.port) as client:
            waiting = client.request(b"POST", b"/wait", body=b"abc", end=False)
            recorder.wait_for(RequestStarted)
            client.reset(waiting, error_code=8)  # CANCEL
            recorder.wait_for(ClientDisconnected)
            failing = client.request(b"GET", b"/error-after-start")
            client.read(lambda: client.ended(failing))
            streaming = client.request(b"GET", b"/stream")
            client.read(lambda: bool(client.of(h2.events.DataReceived, streaming)))
            client.reset(streaming, error_code=8)
            recorder.wait_for(ClientDisconnected, 3)
            # The connection is still there for the next stream.
            assert client.response(client.request(b"GET", b"/"))[0] == 200
        recorder.wait_for(ConnectionClosed)
    waited, failed_request, streamed, fine = recorder.of(RequestStarted)
    resets = recorder.of(StreamReset)
    assert [(r.stream_id, r.request_id, r.error_code, r.initiator) for r in resets] == [
        (waiting, waited.request_id, 8, "client"),
        (failing, failed_request.request_id, 2, "server"),  # INTERNAL_ERROR: the app failed mid-response
        (streaming, streamed.request_id, 8, "client"),
    ]
    assert {r.connection_id for r in resets} == {waited.connection_id}
    assert [type(e) for e in recorder.of_request(waited)] == [RequestStarted, ClientDisconnected]
    assert [type(e) for e in recorder.of_request(failed_request)] == [
        RequestStarted, ResponseStarted, RequestFailed, ClientDisconnected]
    assert [type(e) for e in recorder.of_request(streamed)] == [RequestStarted, ResponseStarted, ClientDisconnected]
    # The reset comes first, then the request's end.
    events = recorder.events
    for reset in resets:
        end = next(e for e in events if isinstance(e, ClientDisconnected) and e.request_id == reset.request_id)
        assert events.index(reset) < events.index(end)
    check_request(recorder, fine, 200, 6)
    connections_pair(events)


def test_a_raising_handler_is_logged_once_per_exception_type_and_serving_goes_on() -> None:
    calls = 0

    def flaky(event: Event) -> None:
        nonlocal calls
        calls += 1
        if isinstance(event, RequestStarted):
            raise KeyError("started")
        if isinstance(event, ResponseCompleted):
            raise ValueError("completed")

    def always(event: Event) -> None:
        raise ValueError("always")

    recorder = Recorder()
    requests = 20
    # log_config=None: the test's log handler stays on from the server's first event (WorkerStarted) on.
    with captured_logs() as logs, run_server(app, event_handlers=[flaky, always, recorder], access_log=False,
                                             http2=True, log_config=None) as server:
        with httpx.Client() as client:
            for n in range(requests // 2):
                assert client.get(f"{server.url}/", params={"n": n}).text == "hello "
        with H2Client(server.host, server.port) as h2client:
            for _ in range(requests // 2):
                assert h2client.response(h2client.request())[0] == 200
        recorder.wait_for(ConnectionClosed, 2)
    reports = [m for m in logs if m.startswith("Event handler")]
    # flaky: once for KeyError, once for ValueError; always: once for ValueError (its first event).
    assert len(reports) == 3, reports
    assert sum("flaky" in m and "KeyError" in m for m in reports) == 1
    assert sum("flaky" in m and "ValueError" in m for m in reports) == 1
    assert sum("always" in m for m in reports) == 1
    assert handler_failures(flaky) == {KeyError: requests, ValueError: requests}
    # The handler after the failing ones still got every event; every request was answered.
    assert len(recorder.of(ResponseCompleted)) == requests
    assert handler_failures(always)[ValueError] == len(recorder.events)
    assert calls == len(recorder.events)


def test_a_framework_subscribes_from_a_request_at_runtime_and_unsubscribes() -> None:
    seen = Recorder()
    unsubscribe: list[Any] = []
    extensions: list[Any] = []

    async def framework(scope: Scope, receive: Any, send: Any) -> None:
        source = events_extension(scope)
        extensions.append((scope["http_version"], scope["extensions"][EXTENSION_KEY]))
        if scope["path"] == "/subscribe":
            assert isinstance(source, EventSource) and source.worker_id == 0
            unsubscribe.append(source.subscribe(seen))
        elif scope["path"] == "/unsubscribe":
            unsubscribe.pop()()
            unsubscribe.clear()
        await app(scope, receive, send)

    with run_server(framework, access_log=False, http2=True) as server:
        state = server.server.server_state
        assert state.events is None
        with httpx.Client() as client:
            client.get(server.url + "/before")
            client.get(server.url + "/subscribe")
            assert state.events is not None
            client.get(server.url + "/kept-alive")  # same connection, opened before the subscription
        with httpx.Client() as client:
            client.get(server.url + "/new")
        with H2Client(server.host, server.port) as h2client:
            h2client.response(h2client.request(b"GET", b"/h2"))
            h2client.response(h2client.request(b"GET", b"/unsubscribe"))
            assert state.events is None
            h2client.response(h2client.request(b"GET", b"/after"))
    # Neither the request that subscribed (it began while nobody listened) nor anything after the
    # unsubscription; the first connection was opened before, so neither its open nor its close.
    started = seen.of(RequestStarted)
    assert [s.path for s in started] == ["/kept-alive", "/new", "/h2", "/unsubscribe"]
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds == [
        "RequestStarted", "ResponseStarted", "ResponseCompleted",  # /kept-alive
        "ConnectionOpened", "RequestStarted", "ResponseStarted", "ResponseCompleted", "ConnectionClosed",  # /new
        "ConnectionOpened", "RequestStarted", "ResponseStarted", "ResponseCompleted",  # /h2
        "RequestStarted",  # /unsubscribe: its handler went away while the request ran
    ], kinds
    # The scope offered the same source on every request, HTTP/1.1 and HTTP/2.
    assert {version for version, _ in extensions} == {"1.1", "2"}
    assert {id(source) for _, source in extensions} == {id(state.event_bus.source)}


@pytest.mark.parametrize("http", ["auto", "h11", "h2"])
def test_body_bytes_counts_what_was_sent_not_what_a_head_request_dropped(http: str) -> None:
    recorder = Recorder()
    kwargs: dict[str, Any] = {"http2": True} if http == "h2" else {"http": http}
    with run_server(app, event_handlers=[recorder], access_log=False, **kwargs) as server:
        if http == "h2":
            with H2Client(server.host, server.port) as client:
                assert client.response(client.request(b"HEAD", b"/"))[2] == b""
                assert client.response(client.request(b"GET", b"/"))[2] == b"hello "
        else:
            with server.connect() as sock:
                buf = bytearray()
                sock.sendall(b"HEAD / HTTP/1.1\r\nhost: a\r\n\r\n")
                assert read_response(sock, buf, head_request=True).body == b""
                sock.sendall(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
                assert read_response(sock, buf).body == b"hello "
        recorder.wait_for(ResponseCompleted, 2)
    head, get = recorder.of(RequestStarted)
    assert head.method == "HEAD"
    check_request(recorder, head, 200, 0)  # the app sent "hello ", the protocol dropped it (RFC 9110 §9.3.2)
    check_request(recorder, get, 200, 6)
