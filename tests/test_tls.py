"""TLS: ``pounce.tls.create_ssl_context`` and HTTPS/WSS through a real server, with trustme certificates."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from websockets.sync.client import connect

from pounce.tls import TLSConfigError, create_ssl_context
from tests.utils import run_server

pytestmark = pytest.mark.timeout(30)

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    ca_pem: str
    cert: str  # server certificate chain
    key: str
    key_and_chain: str
    encrypted_key: str
    other_key: str  # a key that does not match ``cert``
    client_pem: str  # client certificate + key, issued by ``ca``
    stranger_pem: str  # client certificate + key from another CA

    def client_context(self, client_cert: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_pem)
        if client_cert is not None:
            ctx.load_cert_chain(client_cert)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    stranger = trustme.CA().issue_cert("stranger@example.com")
    other = ca.issue_cert("other.example")
    ca.cert_pem.write_to_path(d / "ca.pem")
    server.cert_chain_pems[0].write_to_path(d / "cert.pem")
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(d / "cert.pem", append=True)
    server.private_key_pem.write_to_path(d / "key.pem")
    server.private_key_and_cert_chain_pem.write_to_path(d / "both.pem")
    other.private_key_pem.write_to_path(d / "other-key.pem")
    client.private_key_and_cert_chain_pem.write_to_path(d / "client.pem")
    stranger.private_key_and_cert_chain_pem.write_to_path(d / "stranger.pem")
    key = load_pem_private_key(server.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    (d / "encrypted-key.pem").write_bytes(encrypted)
    return Certs(
        ca=ca, ca_pem=str(d / "ca.pem"), cert=str(d / "cert.pem"), key=str(d / "key.pem"),
        key_and_chain=str(d / "both.pem"), encrypted_key=str(d / "encrypted-key.pem"),
        other_key=str(d / "other-key.pem"), client_pem=str(d / "client.pem"), stranger_pem=str(d / "stranger.pem"),
    )


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope's scheme (and the client certificate's subject, if any)."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": scope["scheme"].encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["scheme"]})
        await send({"type": "websocket.close"})


def _tls(certs: Certs, **kwargs: Any) -> dict[str, Any]:
    return {"ssl_certfile": certs.cert, "ssl_keyfile": certs.key, **kwargs}


# ----------------------------------------------------------------------------- serving


@pytest.mark.parametrize("http_impl", ["fast", "h11"])
def test_https_scheme_and_alpn(certs: Certs, http_impl: str) -> None:
    with run_server(scope_app, http=http_impl, **_tls(certs)) as running:
        assert running.url.startswith("https://")
        with httpx.Client(verify=certs.client_context()) as client:
            response = client.get(running.url)
        assert (response.status_code, response.text) == (200, "https")

        ctx = certs.client_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with ctx.wrap_socket(running.connect(), server_hostname="127.0.0.1") as tls:
            # Only HTTP/1.1 is served, so that is what ALPN may pick, even when h2 is offered first.
            assert tls.selected_alpn_protocol() == "http/1.1"


def test_wss_scheme(certs: Certs) -> None:
    with run_server(scope_app, **_tls(certs)) as running:
        with connect(f"wss://127.0.0.1:{running.port}/", ssl=certs.client_context()) as ws:
            assert ws.recv(timeout=5) == "wss"


@pytest.mark.parametrize("variant", ["chain-with-key", "encrypted-key"])
def test_key_variants(certs: Certs, variant: str) -> None:
    if variant == "chain-with-key":
        options: dict[str, Any] = {"ssl_certfile": certs.key_and_chain}
    else:
        options = {"ssl_certfile": certs.cert, "ssl_keyfile": certs.encrypted_key, "ssl_keyfile_password": PASSWORD}
    with run_server(scope_app, **options) as running:
        response = httpx.get(running.url, verify=certs.client_context())
    assert response.text == "https"


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    """Do a TLS handshake plus one request; return the body, or the error's class name."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        return data.rpartition(b"\r\n\r\n")[2].decode()
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


def test_client_certificate_required(certs: Certs) -> None:
    with run_server(scope_app, **_tls(certs, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=certs.ca_pem)) as running:
        assert _handshake(running.port, certs.client_context(certs.client_pem)) == "https"
        assert _handshake(running.port, certs.client_context()) != "https"  # no certificate
        assert _handshake(running.port, certs.client_context(certs.stranger_pem)) != "https"  # unknown issuer


def test_client_certificate_optional(certs: Certs) -> None:
    with run_server(scope_app, **_tls(certs, ssl_cert_reqs=ssl.CERT_OPTIONAL, ssl_ca_certs=certs.ca_pem)) as running:
        assert _handshake(running.port, certs.client_context()) == "https"
        assert _handshake(running.port, certs.client_context(certs.client_pem)) == "https"
        assert _handshake(running.port, certs.client_context(certs.stranger_pem)) != "https"


def test_client_certificates_verified_against_the_system_store(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --ssl-ca-certs: the system store decides (here pointed at our CA through SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca_pem)
    with run_server(scope_app, **_tls(certs, ssl_cert_reqs=ssl.CERT_REQUIRED)) as running:
        assert _handshake(running.port, certs.client_context(certs.client_pem)) == "https"
        assert _handshake(running.port, certs.client_context(certs.stranger_pem)) != "https"


def test_truststore_used_where_the_system_store_is_not_a_file(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    truststore = pytest.importorskip("truststore")
    monkeypatch.setattr(sys, "platform", "darwin")
    ctx = create_ssl_context(certs.cert, certs.key, None, ssl.PROTOCOL_TLS_SERVER, ssl.CERT_REQUIRED, None, None)
    assert isinstance(ctx, truststore.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    # With a CA file given, or no client certificates asked for, the plain context is used.
    monkeypatch.setattr(sys, "platform", "darwin")
    plain = create_ssl_context(
        certs.cert, certs.key, None, ssl.PROTOCOL_TLS_SERVER, ssl.CERT_REQUIRED, certs.ca_pem, None
    )
    assert type(plain) is ssl.SSLContext


def test_stalled_handshake_does_not_block_other_connections(certs: Certs) -> None:
    with run_server(scope_app, **_tls(certs)) as running:
        stalled = [running.connect() for _ in range(5)]  # TCP only: no ClientHello ever comes
        half = running.connect()
        half.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        try:
            started = time.monotonic()
            response = httpx.get(running.url, verify=certs.client_context(), timeout=5)
            assert response.text == "https"
            assert time.monotonic() - started < 5
        finally:
            for sock in [*stalled, half]:
                sock.close()


def test_ciphers(certs: Certs) -> None:
    ctx = create_ssl_context(certs.cert, certs.key, None, ssl.PROTOCOL_TLS_SERVER, 0, None, "ECDHE+AESGCM")
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all("GCM" in name and "ECDHE" in name for name in tls12)
    with run_server(scope_app, **_tls(certs, ssl_ciphers="ECDHE+AESGCM")) as running:
        client = certs.client_context()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers("ECDHE+CHACHA20:ECDHE+AESGCM")
        with client.wrap_socket(running.connect(), server_hostname="127.0.0.1") as tls:
            cipher = tls.cipher()
        assert cipher is not None and "GCM" in cipher[0]


# ----------------------------------------------------------------------------- configuration errors


@pytest.fixture
def files(certs: Certs, tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    yield {
        "missing": str(tmp_path / "missing.pem"),
        "dir": str(tmp_path),
        "garbage": str(tmp_path / "garbage.pem"),
        "cert": certs.cert,
        "key": certs.key,
        "encrypted": certs.encrypted_key,
        "other_key": certs.other_key,
        "ca": certs.ca_pem,
    }


@pytest.mark.parametrize(
    ("args", "message", "names"),
    [
        (("missing", "key", None, None), "SSL certificate file not found", "missing"),
        (("cert", "missing", None, None), "SSL key file not found", "missing"),
        (("dir", "key", None, None), "is a directory", "dir"),
        (("garbage", "key", None, None), "contains no PEM certificate", "garbage"),
        (("cert", "garbage", None, None), "contains no PEM private key", "garbage"),
        (("cert", None, None, None), "no --ssl-keyfile given", "cert"),
        (("cert", "encrypted", None, None), "encrypted and no password", "encrypted"),
        (("cert", "encrypted", "wrong", None), "wrong password", "encrypted"),
        (("cert", "other_key", None, None), "does not match the certificate", "other_key"),
        (("cert", "key", None, "missing"), "SSL CA certificates file not found", "missing"),
        (("cert", "key", None, "garbage"), "no usable PEM certificate", "garbage"),
    ],
)
def test_file_errors_name_the_file_and_the_reason(
    files: dict[str, str], args: tuple[str, str | None, str | None, str | None], message: str, names: str
) -> None:
    cert, key, password, ca = args
    with pytest.raises(TLSConfigError) as info:
        create_ssl_context(
            files[cert], files[key] if key else None, password, ssl.PROTOCOL_TLS_SERVER,
            ssl.CERT_REQUIRED if ca else ssl.CERT_NONE, files[ca] if ca else None, None,
        )
    assert message in str(info.value)
    assert repr(files[names]) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ciphers": "NO-SUCH-CIPHER"}, "invalid --ssl-ciphers"),
        ({"cert_reqs": 7}, "invalid --ssl-cert-reqs"),
        ({"ssl_version": 99}, "invalid --ssl-version"),
    ],
)
def test_option_errors(certs: Certs, kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {
        "certfile": certs.cert, "keyfile": certs.key, "password": None, "ssl_version": ssl.PROTOCOL_TLS_SERVER,
        "cert_reqs": ssl.CERT_NONE, "ca_certs": None, "ciphers": None, **kwargs,
    }
    with pytest.raises(TLSConfigError, match=message):
        create_ssl_context(**options)


def test_alpn_protocols_can_be_chosen(certs: Certs) -> None:
    ctx = create_ssl_context(certs.cert, certs.key, None, ssl.PROTOCOL_TLS_SERVER, 0, None, None, ["h2", "http/1.1"])
    server_sock, client_sock = socket.socketpair()
    client_ctx = certs.client_context()
    client_ctx.check_hostname = False
    client_ctx.set_alpn_protocols(["h2"])
    with server_sock, client_sock:
        result: list[str | None] = []

        def serve() -> None:
            with ctx.wrap_socket(server_sock, server_side=True) as tls:
                result.append(tls.selected_alpn_protocol())

        thread = threading.Thread(target=serve)
        thread.start()
        with client_ctx.wrap_socket(client_sock, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
        thread.join(5)
    assert result == ["h2"]


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_certificate_fails_at_startup_with_exit_code_3(tmp_path: Path, workers: int) -> None:
    missing = tmp_path / "nope.pem"
    argv = [
        sys.executable, "-m", "pounce", "tests.test_tls:scope_app", "--port", "0", "--lifespan", "off",
        "--ssl-certfile", str(missing), "--workers", str(workers),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=os.getcwd())
    output = done.stdout + done.stderr
    assert done.returncode == 3, output[-2000:]
    assert f"SSL certificate file not found: {str(missing)!r}" in output
    assert "Traceback" not in output
