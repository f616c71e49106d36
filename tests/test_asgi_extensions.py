"""ASGI extensions (asgiref docs/extensions.rst, specs/tls.rst) through real sockets, on every protocol.

``http.response.pathsend`` (Starlette's FileResponse uses it when offered), ``http.response.trailers``,
``http.response.early_hint`` and ``tls``: what each protocol offers in ``scope["extensions"]``, and what
goes on the wire when an app uses it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from starlette.responses import FileResponse

from pounce.observability.events import ResponseCompleted
from pounce.protocols.http import pathsend
from pounce.protocols.http.cycle import PATHSEND
from tests.utils import RunningServer, captured_logs, read_response, run_server, wait_closed

pytestmark = pytest.mark.timeout(60)

Scope = dict[str, Any]
HTTP1 = ["fast", "h11"]
SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("files") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(SIZE // (1024 * 1024)):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            f.write(block)
    return path, digest.hexdigest()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "small.txt"
    path.write_bytes(b"0123456789" * 1000)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("client@example.com", common_name="Client #1", organization_name="Example, Inc.")
    ca.cert_pem.write_to_path(d / "ca.pem")
    server.cert_chain_pems[0].write_to_path(d / "cert.pem")
    server.private_key_pem.write_to_path(d / "key.pem")
    client.private_key_and_cert_chain_pem.write_to_path(d / "client.pem")
    client.cert_chain_pems[0].write_to_path(d / "client-cert.pem")
    return {name: str(d / f"{name}.pem") for name in ("ca", "cert", "key", "client", "client-cert")}


def client_context(tls: dict[str, str], alpn: list[str] | None = None, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls["ca"])
    if cert:
        ctx.load_cert_chain(tls["client"])
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def http_app(handler: Callable[[Scope, Any, Any], Any]) -> Callable[[Scope, Any, Any], Any]:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await handler(scope, receive, send)

    return app


def file_app(path: Path, *, pathsend_offered: bool = True) -> Callable[[Scope, Any, Any], Any]:
    """Starlette's FileResponse for ``path``; without pathsend it streams the file itself."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if pathsend_offered:
            assert PATHSEND in scope["extensions"]  # else FileResponse would stream the file itself
        else:
            scope = {**scope, "extensions": {k: v for k, v in scope["extensions"].items() if k != PATHSEND}}
        await FileResponse(path)(scope, receive, send)

    return http_app(app)


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Byte counts handed to the kernel's sendfile path (the server runs in this process)."""
    calls: list[int] = []
    real = pathsend._sendfile

    async def counting(transport: Any, flow: Any, file: Any, count: int) -> int | None:
        calls.append(count)
        return await real(transport, flow, file, count)

    monkeypatch.setattr(pathsend, "_sendfile", counting)
    return calls


def sha256_of(response: httpx.Response) -> str:
    digest = hashlib.sha256()
    for chunk in response.iter_bytes():
        digest.update(chunk)
    return digest.hexdigest()


def recv_until(sock: socket.socket, needle: bytes, timeout: float = 5.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


# ----------------------------------------------------------------------------- scope["extensions"]


def _extensions_seen(running: RunningServer, request: bytes) -> list[str]:
    with running.connect() as sock:
        sock.sendall(request)
        response = read_response(sock)
    return sorted(response.body.decode().split())


async def list_extensions(scope: Scope, receive: Any, send: Any) -> None:
    names = " ".join(name for name in scope["extensions"] if not name.startswith("pounce."))  # ours: events, drain
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(names))]})
    await send({"type": "http.response.body", "body": names.encode()})


@pytest.mark.parametrize("http", HTTP1)
def test_http11_extensions_depend_on_the_request(http: str) -> None:
    with run_server(http_app(list_extensions), http=http) as running:
        plain = _extensions_seen(running, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain == ["http.response.early_hint", "http.response.pathsend"]
        # Trailers are offered only to a request that accepts them (TE: trailers, any case, in a list).
        te = _extensions_seen(running, b"GET / HTTP/1.1\r\nHost: x\r\nTE: deflate;q=0.5, Trailers\r\n\r\n")
        assert te == ["http.response.early_hint", "http.response.pathsend", "http.response.trailers"]
        assert _extensions_seen(running, b"GET / HTTP/1.1\r\nHost: x\r\nTE: deflate\r\n\r\n") == plain
        # No early hints (nor trailers) for HTTP/1.0: it knows neither 1xx responses nor chunked bodies.
        old = _extensions_seen(running, b"GET / HTTP/1.0\r\nTE: trailers\r\n\r\n")
        assert old == ["http.response.pathsend"]


def test_http2_offers_trailers_early_hints_and_pathsend() -> None:
    with run_server(http_app(list_extensions), http2=True) as running:
        with httpx.Client(http1=False, http2=True) as client:
            names = client.get(running.url).text.split()
    assert sorted(names) == ["http.response.early_hint", "http.response.pathsend", "http.response.trailers"]


# ----------------------------------------------------------------------------- early hints


async def early_hints(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style", b"</a.js>; rel=preload"]})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"page"})


@pytest.mark.parametrize("http", HTTP1)
def test_http11_early_hints_go_out_as_103_before_the_response(http: str) -> None:
    with run_server(http_app(early_hints), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        hint = read_response(sock, buf)
        final = read_response(sock, buf)
    assert (hint.status, final.status, final.body) == (103, 200, b"page")
    assert [value for name, value in hint.headers if name == b"link"] == [
        b"</style.css>; rel=preload; as=style",
        b"</a.js>; rel=preload",
    ]


@pytest.mark.parametrize("http", HTTP1)
def test_http10_gets_no_early_hints(http: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if "http.response.early_hint" in scope["extensions"]:
            await early_hints(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"no hints"})

    with run_server(http_app(app), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = wait_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"no hints") and b" 103 " not in reply


# ----------------------------------------------------------------------------- trailers


async def with_trailers(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-checksum")], "trailers": True})
    await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world"})
    await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abc")], "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"x-more", b"1"), (b"content-length", b"5")]})


@pytest.mark.parametrize("http", HTTP1)
def test_http11_trailers_follow_a_chunked_body_when_asked_for(http: str) -> None:
    with run_server(http_app(with_trailers), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        reply = recv_until(sock, b"\r\n0\r\n")
        reply += recv_until(sock, b"\r\n\r\n") if not reply.endswith(b"\r\n\r\n") else b""
        head, _, body = reply.partition(b"\r\n\r\n")
        # The connection stays usable: the trailer section ended the response.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        again = read_response(sock)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.lower() == b"6\r\nhello \r\n5\r\nworld\r\n0\r\nx-checksum: abc\r\nx-more: 1\r\n\r\n"
    assert (again.status, again.body) == (200, b"hello world")


@pytest.mark.parametrize("http", HTTP1)
def test_http11_trailers_are_dropped_when_not_asked_for(http: str) -> None:
    with run_server(http_app(with_trailers), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = recv_until(sock, b"\r\n0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body.lower() == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"  # the body, and no trailer section


@pytest.mark.parametrize("http", HTTP1)
def test_http11_trailers_cannot_follow_a_content_length(http: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")], "trailers": True})
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    with run_server(http_app(app), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n" * 2)
        buf = bytearray()
        responses = [read_response(sock, buf), read_response(sock, buf)]
    assert [(r.status, r.body) for r in responses] == [(200, b"ok"), (200, b"ok")]
    assert not buf


# ----------------------------------------------------------------------------- pathsend


@pytest.mark.parametrize("http", HTTP1)
def test_pathsend_50mb_over_plain_http11_goes_through_sendfile(
    http: str, big_file: tuple[Path, str], sendfile_calls: list[int]
) -> None:
    path, digest = big_file
    completed: list[ResponseCompleted] = []
    handler = lambda event: completed.append(event) if isinstance(event, ResponseCompleted) else None  # noqa: E731
    with run_server(file_app(path), http=http, event_handlers=[handler]) as running:
        with httpx.Client(timeout=30) as client:
            for _ in range(2):  # keep-alive: the connection serves on after a sendfile
                with client.stream("GET", running.url) as response:
                    assert response.headers["content-length"] == str(SIZE)
                    assert sha256_of(response) == digest
    assert sendfile_calls == [SIZE, SIZE]
    deadline = time.monotonic() + 5
    while len(completed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [event.body_bytes for event in completed] == [SIZE, SIZE]


@pytest.mark.parametrize("http", HTTP1)
def test_pathsend_50mb_over_tls_in_chunks(
    http: str, big_file: tuple[Path, str], tls: dict[str, str], sendfile_calls: list[int]
) -> None:
    path, digest = big_file
    with run_server(file_app(path), http=http, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]) as running:
        with httpx.Client(verify=client_context(tls), timeout=30) as client:
            with client.stream("GET", running.url) as response:
                assert response.headers["content-length"] == str(SIZE)
                assert sha256_of(response) == digest
    assert sendfile_calls == []  # TLS: the bytes must pass through Python to be encrypted


@pytest.mark.parametrize("over_tls", [False, True])
def test_pathsend_50mb_over_http2(big_file: tuple[Path, str], tls: dict[str, str], over_tls: bool) -> None:
    path, digest = big_file
    options: dict[str, Any] = {"ssl_certfile": tls["cert"], "ssl_keyfile": tls["key"]} if over_tls else {}
    with run_server(file_app(path), http2=True, **options) as running:
        verify: Any = client_context(tls) if over_tls else True
        with httpx.Client(http1=over_tls, http2=True, verify=verify, timeout=60) as client:
            with client.stream("GET", running.url) as response:
                assert response.http_version == "HTTP/2"
                assert response.headers["content-length"] == str(SIZE)
                assert sha256_of(response) == digest


@pytest.mark.parametrize("http", HTTP1)
def test_pathsend_respects_the_apps_content_length_and_head(http: str, small_file: Path) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"25")] if scope["path"] == "/part" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(small_file)})

    with run_server(http_app(app), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET /part HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        part, whole = read_response(sock, buf), read_response(sock, buf)
        head = read_response(sock, buf, head_request=True)
    assert (part.header(b"content-length"), part.body) == (b"25", small_file.read_bytes()[:25])
    assert whole.body == small_file.read_bytes()
    assert whole.header(b"content-length") == b"10000" or whole.header(b"transfer-encoding") == b"chunked"
    assert head.status == 200 and not buf


@pytest.mark.parametrize("http", HTTP1)
def test_pathsend_of_a_missing_file_is_an_app_error(http: str, tmp_path: Path) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(tmp_path / "missing")})

    with run_server(http_app(app), http=http) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_closed(sock)  # the response cannot be completed: the connection is closed


def test_pathsend_to_a_client_that_stops_reading_ends_at_the_write_timeout(big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    with run_server(file_app(path), timeout_write=1.0) as running, running.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(3)  # not reading: the kernel's buffers fill and the server's slice cannot go out
        received = 0
        started = time.monotonic()
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        # What the buffers held arrives, then the end: not the whole file, and no wait for it.
        assert received < SIZE
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("http", HTTP1)
def test_pathsend_to_a_client_that_leaves_is_no_app_error(http: str, big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    # (Captured once the server has started: its logging set-up replaces the handlers.)
    with run_server(file_app(path), http=http) as running, captured_logs() as logs:
        with running.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # The server notices and serves the next client.
        with httpx.Client(timeout=30) as client, client.stream("GET", running.url) as response:
            assert sum(len(chunk) for chunk in response.iter_bytes()) == SIZE
        time.sleep(0.2)
    assert not [line for line in logs if "Exception in ASGI application" in line]


@pytest.mark.parametrize("http", HTTP1)
def test_trailers_message_without_trailers_announced_is_an_app_error(http: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.trailers", "headers": []})

    with run_server(http_app(app), http=http) as running, captured_logs() as logs, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        wait_closed(sock)
    assert any("Exception in ASGI application" in line for line in logs)


# ----------------------------------------------------------------------------- tls


def test_tls_extension_reports_the_connection(tls: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"].get("tls"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    options = {"ssl_certfile": tls["cert"], "ssl_keyfile": tls["key"], "ssl_ca_certs": tls["ca"], "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    with run_server(http_app(app), **options) as running:
        with client_context(tls, cert=True).wrap_socket(running.connect(), server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).status == 200
            version, cipher = sock.version(), sock.cipher()
        with client_context(tls).wrap_socket(running.connect(), server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).status == 200
    with_cert, without = seen
    server_pem = Path(tls["cert"]).read_text()
    assert ssl.PEM_cert_to_DER_cert(with_cert["server_cert"]) == ssl.PEM_cert_to_DER_cert(server_pem)
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in with_cert["client_cert_chain"]][:1] == [
        ssl.PEM_cert_to_DER_cert(Path(tls["client-cert"]).read_text())
    ]
    client_cert = x509.load_pem_x509_certificate(Path(tls["client-cert"]).read_bytes())
    assert with_cert["client_cert_name"] == client_cert.subject.rfc4514_string()
    assert with_cert["client_cert_name"].startswith("CN=Client #1,")
    assert with_cert["client_cert_error"] is None
    assert with_cert["tls_version"] == {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}[version]
    ids = {c["name"]: c["id"] & 0xFFFF for c in ssl.create_default_context().get_ciphers()}
    assert with_cert["cipher_suite"] == ids[cipher[0]]
    assert (without["client_cert_chain"], without["client_cert_name"]) == ([], None)
    assert without["server_cert"] == with_cert["server_cert"]


def test_tls_extension_only_on_tls_connections_and_on_http2(tls: dict[str, str]) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        info = scope["extensions"].get("tls")
        body = b"none" if info is None else b"%d" % info["tls_version"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with run_server(http_app(app)) as running:
        assert httpx.get(running.url).text == "none"
    with run_server(http_app(app), http2=True, ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]) as running:
        with httpx.Client(http2=True, verify=client_context(tls)) as client:
            response = client.get(running.url)
    assert response.http_version == "HTTP/2" and int(response.text) in (0x0303, 0x0304)
