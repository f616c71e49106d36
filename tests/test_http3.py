"""HTTP/3 (``--http3``) through a real UDP socket, with aioquic's own HTTP/3 client (tests/h3client.py)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aioquic", reason="HTTP/3 needs aioquic: pip install 'pounce-asgi[h3]'")
import httpx
import trustme

from tests.h3client import H3Client, h3_connect
from tests.utils import RunningServer, run_server

pytestmark = pytest.mark.timeout(60)

MB = 1_000_000


@dataclass(frozen=True)
class Certs:
    ca_pem: str
    cert: str
    key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("h3certs"))


def write_certs(d: Path) -> Certs:
    """A test CA, and a certificate for 127.0.0.1 and localhost it issued, as files in ``d``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(d / "ca.pem")
    server.private_key_pem.write_to_path(d / "key.pem")
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(d / "cert.pem", append=i > 0)
    return Certs(str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/echo: hash and size of the body; /download?N: N bytes in 64 KiB chunks; /slow: 5 chunks, 0.1 s
    apart; /fail: fails after the first chunk; /trailers: a trailer; /hold: waits 0.5 s before reading."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hold":
        await asyncio.sleep(0.5)
    if path in ("/echo", "/hold"):
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            digest.update(message.get("body", b""))
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"%d %s" % (size, digest.hexdigest().encode())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/download":
        size = int(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        chunk = b"x" * 65536
        while size > 0:
            piece = chunk[: min(size, len(chunk))]
            size -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": size > 0})
    elif path == "/slow":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for i in range(5):
                await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
                await asyncio.sleep(0.1)
            await send({"type": "http.response.body", "body": b"done"})
        except OSError:
            scope["state"]["events"].append("disconnected")
            raise
    elif path == "/fail":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"%s %s" % (scope["http_version"].encode(), scope["scheme"].encode())})


class StatefulApp:
    """``app``, with a per-test list the /slow handler reports disconnects into (through scope state)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        scope["state"]["events"] = self.events
        await app(scope, receive, send)


@pytest.fixture
def served(certs: Certs) -> Iterator[tuple[RunningServer, StatefulApp]]:
    the_app = StatefulApp()
    with run_server(the_app, http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        yield running, the_app


def h3_port(running: RunningServer) -> int:
    return int(running.server.http3.port)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_get_and_alt_svc(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("uvicorn.access").addHandler(handler)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)  # conftest restores it
    port = h3_port(running)
    assert port == running.port  # the TLS port, by default

    async def go() -> Any:
        async with h3_connect(port, certs.ca_pem) as client:
            return await client.request("GET", "/")

    try:
        response = run(go())
        deadline = time.monotonic() + 2
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert response.status == 200
    assert bytes(response.body) == b"3 https"
    assert response.header(b"alt-svc") == b'h3=":%d"; ma=86400' % port
    assert any('"GET / HTTP/3" 200' in line for line in lines), lines  # the access log
    # Over TCP too: that is how a browser learns of the HTTP/3 port.
    tcp = httpx.get(running.url + "/", verify=ssl.create_default_context(cafile=certs.ca_pem))
    assert tcp.headers["alt-svc"] == f'h3=":{port}"; ma=86400'


def test_upload_download_and_sequential(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served
    upload = bytes(range(256)) * (5 * MB // 256)

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            response = await client.request("POST", "/echo", body=upload, timeout=40)
            assert response.status == 200
            assert bytes(response.body) == b"%d %s" % (len(upload), hashlib.sha256(upload).hexdigest().encode())
            download = await client.request("GET", "/download?%d" % (20 * MB), timeout=40)
            assert download.status == 200 and len(download.body) == 20 * MB
            assert download.header(b"content-length") == b"%d" % (20 * MB)
            for i in range(200):
                response = await client.request("GET", "/")
                assert response.status == 200 and bytes(response.body) == b"3 https", i

    run(go())


def test_concurrent_streams(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            responses = [client.start("POST", "/echo", body=b"%d" % i * 1000) for i in range(50)]
            await asyncio.wait_for(asyncio.gather(*(r.done for r in responses)), 20)
            for i, response in enumerate(responses):
                body = b"%d" % i * 1000
                assert response.status == 200
                assert bytes(response.body) == b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())

    run(go())


def test_client_reset_leaves_other_streams(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, the_app = served

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            doomed = client.start("GET", "/slow")
            other = client.start("GET", "/slow")
            await asyncio.sleep(0.15)
            client.reset(doomed.stream_id)
            await asyncio.wait_for(other.done, 10)
            assert other.status == 200 and bytes(other.body) == b"01234done"
            assert not doomed.done.done() or doomed.reset is not None or len(doomed.body) < 9
            # The connection still serves.
            assert (await client.request("GET", "/")).status == 200

    run(go())
    deadline = time.monotonic() + 2
    while not the_app.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert the_app.events == ["disconnected"]


def test_app_error_resets_only_its_stream(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            failing = client.start("GET", "/fail")
            other = client.start("GET", "/slow")
            await asyncio.wait_for(failing.done, 10)
            assert failing.reset == 0x102  # H3_INTERNAL_ERROR
            await asyncio.wait_for(other.done, 10)
            assert bytes(other.body) == b"01234done"

    run(go())


def test_trailers(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            response = await client.request("GET", "/trailers", headers=[(b"te", b"trailers")])
            assert bytes(response.body) == b"body"
            assert response.trailers == [(b"x-checksum", b"abc")]

    run(go())


def test_unread_body_is_bounded(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    """An app that does not read yet: the client can send one stream window, not the whole body."""
    running, _ = served
    upload = b"y" * (3 * MB)

    async def go() -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            response = client.start("POST", "/hold", body=upload)
            await asyncio.sleep(0.3)
            sender = client._quic._streams[response.stream_id].sender
            assert sender.highest_offset <= 300_000  # STREAM_WINDOW (256 KiB) plus HTTP/3 framing
            await asyncio.wait_for(response.done, 30)
            assert bytes(response.body).startswith(b"%d " % len(upload))

    run(go())


def test_junk_datagrams_are_dropped(served: tuple[RunningServer, StatefulApp], certs: Certs) -> None:
    running, _ = served
    endpoint = running.server.http3
    before = endpoint.dropped
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for junk in (b"\x40" + b"\x00" * 40, b"\xc0\x00\x00\x00\x01\x08" + b"\x00" * 30, b"\xc0\x00\x00\x00\x01\x08" + b"\x01" * 1300):
            sock.sendto(junk, ("127.0.0.1", h3_port(running)))
        with pytest.raises(socket.timeout):
            sock.recvfrom(2048)
    deadline = time.monotonic() + 2
    while endpoint.dropped < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert endpoint.dropped >= before + 2
    assert not endpoint.live


def test_shutdown_mid_stream(certs: Certs) -> None:
    """GOAWAY, the stream in flight completes, then CONNECTION_CLOSE (H3_NO_ERROR)."""
    the_app = StatefulApp()

    async def go(running: RunningServer) -> H3Client:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            response = client.start("GET", "/slow")
            await asyncio.sleep(0.15)
            running.server.should_exit = True
            await asyncio.wait_for(response.done, 10)
            assert response.status == 200 and bytes(response.body) == b"01234done"
            await asyncio.wait_for(client.closed_event.wait(), 5)
            return client

    with run_server(the_app, http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key) as running:
        client = run(go(running))
    assert client.goaway
    assert client.terminated is not None and client.terminated.error_code == 0x100
    assert the_app.events == []


def test_limit_concurrency(certs: Certs) -> None:
    """--limit-concurrency counts HTTP/3 connections and request tasks as on TCP: past it, 503."""

    async def go(running: RunningServer) -> None:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            slow = [client.start("GET", "/slow") for _ in range(3)]
            await asyncio.sleep(0.15)
            refused = await client.request("GET", "/")  # 3 tasks running: at the limit
            assert refused.status == 503
            await asyncio.wait_for(asyncio.gather(*(r.done for r in slow)), 10)
            assert all(r.status == 200 and bytes(r.body) == b"01234done" for r in slow)
            served = await client.request("GET", "/")
            assert served.status == 200 and bytes(served.body) == b"3 https"
            async with h3_connect(h3_port(running), certs.ca_pem), h3_connect(h3_port(running), certs.ca_pem) as third:
                assert (await third.request("GET", "/")).status == 503  # 3 connections

    with run_server(StatefulApp(), http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key, limit_concurrency=3) as running:
        run(go(running))


def test_idle_timeout(certs: Certs) -> None:
    """--timeout-keep-alive: a connection without streams is closed after it (CONNECTION_CLOSE, H3_NO_ERROR);
    a response that takes longer than it is not cut off (PINGs keep QUIC's idle timer from firing)."""

    async def go(running: RunningServer) -> tuple[H3Client, float]:
        async with h3_connect(h3_port(running), certs.ca_pem) as client:
            response = await client.request("GET", "/slow")  # 0.5 s, longer than half the timeout
            assert response.status == 200 and bytes(response.body) == b"01234done"
            started = time.monotonic()
            await asyncio.wait_for(client.closed_event.wait(), 5)
            return client, time.monotonic() - started

    with run_server(StatefulApp(), http3=True, ssl_certfile=certs.cert, ssl_keyfile=certs.key, timeout_keep_alive=1) as running:
        client, idle = run(go(running))
    assert 0.5 < idle < 3, idle
    assert client.terminated is not None and client.terminated.error_code == 0x100


# zoomies runs where it can (Python >= 3.14 with bengal-zoomies; tests/test_http3_zoomies.py); elsewhere
# choosing it is a usage error that says why.
ZOOMIES_MISSING = sys.version_info < (3, 14) or importlib.util.find_spec("zoomies") is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--http3"], "--http3 needs --ssl-certfile and --ssl-keyfile"),
        pytest.param(
            ["--http3", "--http3-backend", "zoomies", "--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}"],
            "Python >= 3.14" if sys.version_info < (3, 14) else "needs the bengal-zoomies package",
            marks=pytest.mark.skipif(not ZOOMIES_MISSING, reason="zoomies is installed: the backend runs"),
        ),
    ],
)
def test_cli_errors(certs: Certs, args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from pounce.main import main

    args = [arg.format(cert=certs.cert, key=certs.key) for arg in args]
    result = CliRunner().invoke(main, ["tests.test_http3:app", *args])
    assert result.exit_code == 2
    assert message in result.output
