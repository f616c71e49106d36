"""HTTP/2 (``--http2``): httpx and a raw h2 client against a real server, over TLS (ALPN) and cleartext."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import trustme
from click.testing import CliRunner

from pounce.config import Config, ConfigError
from pounce.main import main
from pounce.protocols.http.fast_impl import FastHTTPProtocol
from pounce.protocols.http.h2_impl import H2Protocol
from pounce.protocols.http.negotiate import PREFACE, FastOrH2Protocol, H11OrH2Protocol
from tests.test_cli import _free_port, _rest_of_output, _wait_for_line, pounce_process
from tests.h2client import H2Client as RawH2Client
from tests.utils import RunningServer, captured_logs, read_response, run_server

pytestmark = pytest.mark.timeout(30)

Scope = dict[str, Any]


# Apps
async def echo_info(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with what the server told the app: version, path, body length and digest."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    text = "%s %s %s %d %s" % (
        scope["http_version"],
        scope["scheme"],
        scope["path"],
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})


def make_app(handler: Callable[[Scope, Any, Any], Any]) -> Callable[[Scope, Any, Any], Any]:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await handler(scope, receive, send)

    return app


# A raw HTTP/2 client, for what httpx does not show (frames, trailers, resets, windows); these tests
# read response headers as a dict.
class H2Client(RawH2Client):
    def __init__(self, running: RunningServer, settings: dict[int, int] | None = None) -> None:
        super().__init__(running.host, running.port, settings)

    def response(self, stream_id: int) -> tuple[int, dict[bytes, bytes], bytes]:  # type: ignore[override]
        status, headers, body = super().response(stream_id)
        return status, dict(headers), body


@pytest.fixture
def h2client() -> Iterator[Callable[..., H2Client]]:
    clients: list[H2Client] = []

    def connect(running: RunningServer, settings: dict[int, int] | None = None) -> H2Client:
        client = H2Client(running, settings)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    d = tmp_path_factory.mktemp("h2certs")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(d / "ca.pem")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    return str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem")


def h2c() -> httpx.Client:
    """httpx speaking HTTP/2 in cleartext, with prior knowledge."""
    return httpx.Client(http1=False, http2=True, timeout=10)


# Negotiation
def test_tls_alpn_h2_and_http11_on_one_port(tls: tuple[str, str, str]) -> None:
    ca, cert, key = tls
    with run_server(echo_info, http2=True, ssl_certfile=cert, ssl_keyfile=key) as running:
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca)) as client:
            response = client.get(running.url + "/tls")
            assert response.http_version == "HTTP/2"
            assert response.text.startswith("2 https /tls 0 ")
        with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as client:
            response = client.get(running.url + "/tls")
            assert response.http_version == "HTTP/1.1"
            assert response.text.startswith("1.1 https /tls 0 ")


def test_tls_without_http2_offers_only_http11(tls: tuple[str, str, str]) -> None:
    ca, cert, key = tls
    with run_server(echo_info, ssl_certfile=cert, ssl_keyfile=key) as running:
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca)) as client:
            assert client.get(running.url).http_version == "HTTP/1.1"


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_cleartext_prior_knowledge_and_http11_on_one_port(http: str) -> None:
    with run_server(echo_info, http2=True, http=http) as running:
        with h2c() as client:
            for _ in range(3):
                response = client.post(running.url + "/a%20b?q=1", content=b"hello")
                assert response.http_version == "HTTP/2"
                assert response.text == "2 http /a b 5 " + hashlib.sha256(b"hello").hexdigest()
                assert response.headers["server"] == "pounce"
                assert response.headers["content-length"] == str(len(response.content))
        response = httpx.post(running.url + "/one", content=b"hi")
        assert response.http_version == "HTTP/1.1"
        assert response.text.startswith("1.1 http /one 2 ")
        with running.connect() as sock:
            # Starts like the preface, then is not: HTTP/1.1 (a method named PRIX is just an unknown method).
            sock.sendall(b"PRIX / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            assert read_response(sock).status == 200


def test_preface_split_across_packets(h2client: Callable[..., H2Client]) -> None:
    with run_server(echo_info, http2=True) as running:
        with running.connect() as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
            client.initiate_connection()
            stream_id = client.get_next_available_stream_id()
            client.send_headers(
                stream_id,
                [(b":method", b"GET"), (b":path", b"/split"), (b":scheme", b"http"), (b":authority", b"x")],
                end_stream=True,
            )
            data = client.data_to_send()
            assert data.startswith(PREFACE)
            for part in (data[:3], data[3:10], data[10:23], data[23:]):
                sock.sendall(part)
                time.sleep(0.02)  # separate packets where the network allows; the test holds either way
            events: list[h2.events.Event] = []
            deadline = time.monotonic() + 5
            while not any(isinstance(e, h2.events.StreamEnded) for e in events) and time.monotonic() < deadline:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                events += client.receive_data(sock.recv(65536))
            body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            assert body.startswith(b"2 http /split 0 ")


def test_stalled_preface_is_closed_by_the_head_timeout() -> None:
    with run_server(echo_info, http2=True, timeout_request_header=0.2) as running:
        with running.connect() as sock:
            sock.sendall(PREFACE[:10])
            sock.settimeout(5)
            assert sock.recv(100) == b""


# Requests and responses
def test_multiplexed_concurrent_requests_on_one_connection() -> None:
    count = 10
    arrived: list[Any] = []
    all_here = asyncio.Event()

    async def together(scope: Scope, receive: Any, send: Any) -> None:
        arrived.append(scope["client"])
        if len(arrived) == count:
            all_here.set()
        try:
            await asyncio.wait_for(all_here.wait(), 5)
            status = 200
        except asyncio.TimeoutError:
            status = 504  # served one after another: not multiplexed
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
            return await asyncio.gather(*(client.get(f"{url}/{i}") for i in range(count)))

    with run_server(make_app(together), http2=True) as running:
        responses = asyncio.run(run(running.url))
    assert [r.status_code for r in responses] == [200] * count
    assert sorted(r.text for r in responses) == sorted(f"/{i}" for i in range(count))
    assert len(set(arrived)) == 1  # one connection


def test_large_bodies_both_ways() -> None:
    upload = bytes(range(256)) * 20_000  # 5 MB
    download = hashlib.sha256(upload).digest() * 100_000  # 3.2 MB

    async def big(scope: Scope, receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            await echo_info(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for offset in range(0, len(download), 500_000):
            await send({"type": "http.response.body", "body": download[offset : offset + 500_000], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(make_app(big), http2=True) as running, h2c() as client:
        response = client.post(running.url + "/up", content=upload)
        assert response.text == "2 http /up %d %s" % (len(upload), hashlib.sha256(upload).hexdigest())
        response = client.get(running.url + "/down")
        assert response.content == download


def test_send_waits_for_the_peer_window(h2client: Callable[..., H2Client]) -> None:
    chunk = b"x" * 65536
    sent: list[int] = []

    async def producer(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(20):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    with run_server(make_app(producer), http2=True) as running:
        # The client's windows stay at 64 KiB - 1 until it says otherwise.
        client = h2client(running)
        stream_id = client.request()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            connections = [c for c in running.server.server_state.connections if isinstance(c, H2Protocol)]
            cycle = connections[0].streams.get(stream_id) if connections else None
            if cycle is not None and cycle.flow.write_paused:
                break
            time.sleep(0.01)
        else:
            client.close()
            pytest.fail("the app's send never waited for the client's window")
        # One window (64 KiB) on the wire, at most one more than the bound (64 KiB) buffered.
        assert len(sent) <= 3
        acknowledged = 0

        def done() -> bool:
            # Read like a client that consumes what arrives: give every DATA frame's window back.
            nonlocal acknowledged
            frames = client.of(h2.events.DataReceived, stream_id)
            for event in frames[acknowledged:]:
                client.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            acknowledged = len(frames)
            client.flush()
            return client.ended(stream_id)

        client.read(done)
        assert sum(len(e.data) for e in client.of(h2.events.DataReceived, stream_id)) == 20 * len(chunk)
        assert len(sent) == 20


def test_unread_request_bodies_do_not_use_up_the_connection_window() -> None:
    async def ignore_body(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})

    body = b"x" * 60_000
    with run_server(make_app(ignore_body), http2=True) as running, h2c() as client:
        # 12 MB over one connection: far more than its receive window unless unread bytes are given back.
        for _ in range(200):
            assert client.post(running.url, content=body).text == "ignored"


def test_expect_100_continue(h2client: Callable[..., H2Client]) -> None:
    with run_server(echo_info, http2=True) as running:
        client = h2client(running)
        stream_id = client.request(b"POST", headers=[(b"expect", b"100-continue")], end=False)
        client.read(lambda: bool(client.of(h2.events.InformationalResponseReceived, stream_id)))
        assert dict(client.of(h2.events.InformationalResponseReceived, stream_id)[0].headers)[b":status"] == b"100"
        client.conn.send_data(stream_id, b"payload", end_stream=True)
        client.flush()
        status, _, body = client.response(stream_id)
        assert (status, body) == (200, b"2 http / 7 " + hashlib.sha256(b"payload").hexdigest().encode())


def test_streaming_response_arrives_in_order() -> None:
    async def stream(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with run_server(make_app(stream), http2=True) as running, h2c() as client:
        with client.stream("GET", running.url) as response:
            assert "content-length" not in response.headers
            assert b"".join(response.iter_bytes()) == b"part0;part1;part2;part3;part4;"


def test_streaming_request_body_reaches_the_app() -> None:
    def parts() -> Iterator[bytes]:
        for i in range(50):
            yield b"%04d" % i * 1000

    with run_server(echo_info, http2=True) as running, h2c() as client:
        body = b"".join(parts())
        response = client.post(running.url, content=parts())
        assert response.text == "2 http / %d %s" % (len(body), hashlib.sha256(body).hexdigest())


def test_head_and_204_have_no_body(h2client: Callable[..., H2Client]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        status = 204 if scope["path"] == "/nothing" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello" if status == 200 else b""})

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        head = client.request(b"HEAD")
        status, headers, body = client.response(head)
        assert (status, headers[b"content-length"], body) == (200, b"5", b"")
        nothing = client.request(b"GET", b"/nothing")
        status, headers, body = client.response(nothing)
        assert (status, body) == (204, b"")
        get = client.request(b"GET")
        assert client.response(get)[2] == b"hello"


def test_scope(h2client: Callable[..., H2Client]) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(make_app(app), http2=True, root_path="/root") as running:
        client = h2client(running)
        client.response(client.request(b"GET", b"/p%2Fq?x=1", headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")]))
    scope = scopes[0]
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["path"] == "/root/p/q"
    assert scope["raw_path"] == b"/root/p%2Fq"
    assert scope["query_string"] == b"x=1"
    assert scope["scheme"] == "http"
    assert scope["headers"][0] == (b"host", b"example.org")
    assert (b"cookie", b"a=1; b=2") in scope["headers"]
    assert not any(name.startswith(b":") for name, _ in scope["headers"])
    assert "http.response.trailers" in scope["extensions"]


def test_connection_specific_response_headers_are_stripped(h2client: Callable[..., H2Client]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [
            (b"Connection", b"close"), (b"Keep-Alive", b"timeout=5"), (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"), (b"TE", b"gzip"), (b"X-Custom", b"kept"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        stream_id = client.request()
        status, headers, body = client.response(stream_id)
        assert (status, body) == (200, b"ok")
        assert not {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te"} & set(headers)
        assert headers[b"x-custom"] == b"kept"
        # The app's "connection: close" closed nothing: the connection serves the next stream.
        assert client.response(client.request())[0] == 200


def test_response_field_values_lose_surrounding_whitespace(h2client: Callable[..., H2Client]) -> None:
    # HTTP/1.1 tolerates OWS around a value; RFC 9113 §8.2.1 does not (a client must treat the response
    # as malformed), so it is trimmed on the way out, trailers included.
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-padded", b"  v \t")], "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b" abc ")]})

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        stream_id = client.request(headers=[(b"te", b"trailers")])
        status, headers, body = client.response(stream_id)
        assert (status, headers[b"x-padded"], body) == (200, b"v", b"ok")
        assert [dict(e.headers) for e in client.of(h2.events.TrailersReceived, stream_id)] == [{b"x-sum": b"abc"}]


@pytest.mark.parametrize("te", [True, False])
def test_response_trailers(te: bool, h2client: Callable[..., H2Client]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abc")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-more", b"1")], "more_trailers": False})

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        stream_id = client.request(headers=[(b"te", b"trailers")] if te else [])
        status, _, body = client.response(stream_id)
        assert (status, body) == (200, b"data")
        trailers = [dict(e.headers) for e in client.of(h2.events.TrailersReceived, stream_id)]
        assert trailers == ([{b"x-checksum": b"abc", b"x-more": b"1"}] if te else [])


def test_early_hints(h2client: Callable[..., H2Client]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        stream_id = client.request()
        assert client.response(stream_id)[0] == 200
        hints = client.of(h2.events.InformationalResponseReceived, stream_id)
        assert [dict(e.headers)[b":status"] for e in hints] == [b"103"]
        assert dict(hints[0].headers)[b"link"] == b"</style.css>; rel=preload; as=style"


# Errors
def test_app_errors_reset_only_their_stream(h2client: Callable[..., H2Client]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/before":
            raise RuntimeError("broken before the response")
        if scope["path"] == "/after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("broken in the middle")
        if scope["path"] == "/short":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"short"})
            return
        if scope["path"] == "/nothing":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    with run_server(make_app(app), http2=True) as running, captured_logs() as logs:
        client = h2client(running)
        before = client.request(b"GET", b"/before")
        status, _, body = client.response(before)
        assert (status, body) == (500, b"Internal Server Error")
        for path in (b"/after", b"/short"):
            stream_id = client.request(b"GET", path)
            client.read(lambda: client.ended(stream_id))
            assert [e.error_code for e in client.of(h2.events.StreamReset, stream_id)] == [2]  # INTERNAL_ERROR
            assert not client.of(h2.events.StreamEnded, stream_id)
        assert client.response(client.request(b"GET", b"/nothing"))[0] == 500
        assert client.response(client.request())[2] == b"fine"  # the connection is still there
        assert not client.closed
    assert sum("Exception in ASGI application" in m for m in logs) == 3
    assert "ASGI callable returned without starting response." in logs


def test_client_reset_disconnects_the_app(h2client: Callable[..., H2Client]) -> None:
    got: list[Any] = []
    done = threading.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        got.append(await receive())
        got.append(await receive())
        done.set()

    with run_server(make_app(app), http2=True) as running:
        client = h2client(running)
        stream_id = client.request(b"POST", body=b"abc", end=False)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        client.conn.reset_stream(stream_id)
        client.flush()
        assert done.wait(5)
    assert got == [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]


def test_limit_concurrency_answers_503() -> None:
    with run_server(echo_info, http2=True, limit_concurrency=1) as running, h2c() as client:
        response = client.get(running.url)
        assert (response.status_code, response.text) == (503, "Service Unavailable")
        assert "connection" not in response.headers


def test_client_goaway_closes_the_connection(h2client: Callable[..., H2Client]) -> None:
    with run_server(echo_info, http2=True) as running:
        client = h2client(running)
        assert client.response(client.request())[0] == 200
        client.conn.close_connection()
        client.flush()
        client.read(lambda: client.closed)
        assert not running.server.server_state.connections or all(
            c.transport.is_closing() for c in running.server.server_state.connections
        )


def test_invalid_frames_close_the_connection() -> None:
    with run_server(echo_info, http2=True) as running, captured_logs() as logs:
        with running.connect() as sock:
            # The preface, then a DATA frame on stream 0 (a connection error).
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
            client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            client.initiate_connection()
            events: list[h2.events.Event] = []
            sock.settimeout(5)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            events = client.receive_data(data)
            assert any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code != 0 for e in events)
    assert any(m.startswith("Invalid HTTP/2 frame received") for m in logs)


# Timers and shutdown
def test_keep_alive_timeout_closes_an_idle_connection(h2client: Callable[..., H2Client]) -> None:
    with run_server(echo_info, http2=True, timeout_keep_alive=0.2) as running:
        client = h2client(running)
        assert client.response(client.request())[0] == 200
        client.read(lambda: client.closed)
        goaway = client.of(h2.events.ConnectionTerminated)
        assert [e.error_code for e in goaway] == [0]


def test_shutdown_finishes_open_streams_and_refuses_new_ones(h2client: Callable[..., H2Client]) -> None:
    release = threading.Event()
    started = threading.Event()

    async def slow(scope: Scope, receive: Any, send: Any) -> None:
        started.set()
        for _ in range(500):
            if release.is_set():
                break
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    with run_server(make_app(slow), http2=True) as running:
        client = h2client(running)
        first = client.request()
        assert started.wait(5)
        running.server.should_exit = True
        client.read(lambda: bool(client.of(h2.events.ConnectionTerminated)))
        goaway = client.of(h2.events.ConnectionTerminated)[0]
        assert (goaway.error_code, goaway.last_stream_id) == (0, first)
        # A stream the client opened after the GOAWAY is refused, not served.
        client.conn = _reopened(client.conn)
        late = client.request()
        client.read(lambda: client.ended(late))
        assert [e.error_code for e in client.of(h2.events.StreamReset, late)] == [7]  # REFUSED_STREAM
        release.set()
        status, _, body = client.response(first)
        assert (status, body) == (200, b"finished")
        client.read(lambda: client.closed)


def _reopened(conn: h2.connection.H2Connection) -> h2.connection.H2Connection:
    """h2 refuses to open streams after a GOAWAY; a client that sent one before seeing it is what we mimic."""
    conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
    return conn


def test_idle_connection_closes_at_shutdown(h2client: Callable[..., H2Client]) -> None:
    with run_server(echo_info, http2=True) as running:
        client = h2client(running)
        assert client.response(client.request())[0] == 200
        running.server.should_exit = True
        client.read(lambda: client.closed)
        assert [e.error_code for e in client.of(h2.events.ConnectionTerminated)] == [0]


# Configuration and CLI
def test_config_selects_the_negotiating_protocols() -> None:
    config = Config(app=echo_info, http2=True)
    config.load()
    assert config.http_protocol_class is FastOrH2Protocol
    assert issubclass(FastOrH2Protocol, FastHTTPProtocol)
    config = Config(app=echo_info, http2=True, http="h11")
    config.load()
    assert config.http_protocol_class is H11OrH2Protocol
    config = Config(app=echo_info, http2=True, http="httptools")  # Uvicorn's name maps to ours
    config.load()
    assert config.http_protocol_class is FastOrH2Protocol
    config = Config(app=echo_info)
    config.load()
    assert config.http_protocol_class is FastHTTPProtocol


def test_config_offers_h2_in_alpn(tls: tuple[str, str, str]) -> None:
    _, cert, key = tls
    config = Config(app=echo_info, http2=True, ssl_certfile=cert, ssl_keyfile=key)
    config.load()
    assert FastOrH2Protocol.alpn_protocols == ["h2", "http/1.1"]


def test_custom_http_class_with_http2_is_a_config_error() -> None:
    class Custom(FastHTTPProtocol):
        pass

    with pytest.raises(ConfigError, match="--http2 works with --http auto, fast or h11"):
        Config(app=echo_info, http2=True, http=Custom).load()


def test_http2_without_h2_installed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    # Uninstalling h2 is not possible here; only the lookup for it is made to fail.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h2" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'pounce-asgi\[h2\]'"):
        Config(app=echo_info, http2=True).load()
    result = CliRunner().invoke(main, ["tests.apps.basic:hello", "--http2"])
    assert result.exit_code == 2
    assert "pip install 'pounce-asgi[h2]'" in result.output


def test_cli_http2_end_to_end() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:hello", "--http2", "--port", str(port)) as proc:
        _wait_for_line(proc, "Pounce running on")
        with h2c() as client:
            response = client.get(f"http://127.0.0.1:{port}/")
            assert (response.http_version, response.text) == ("HTTP/2", "Hello, world!")
        assert httpx.get(f"http://127.0.0.1:{port}/").http_version == "HTTP/1.1"
        proc.send_signal(signal.SIGINT)
        output = _rest_of_output(proc)
        assert proc.returncode == 0
        assert '"GET / HTTP/2" 200' in output
        assert '"GET / HTTP/1.1" 200' in output
