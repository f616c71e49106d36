"""Certificate rotation through a real server: after SIGHUP (or a changed file with --ssl-reload-interval),
a new TLS connection sees the new certificate's serial while an established one goes on; a bad new pair
is logged and the old certificate stays."""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from tests.supervisors.serving import Server, serve, wait_for


def _write(ca: trustme.CA, directory: Path) -> int:
    """Issue a new certificate for 127.0.0.1 into cert.pem/key.pem (replaced atomically); its serial."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    for name, blob in (("key.pem", cert.private_key_pem), ("cert.pem", cert.cert_chain_pems[0])):
        tmp = directory / f".{name}.tmp"
        blob.write_to_path(str(tmp))
        tmp.replace(directory / name)
    from cryptography import x509

    serial: int = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number
    return serial


def _client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _serial(port: int, ctx: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return int(tls.getpeercert()["serialNumber"], 16)  # type: ignore[index,arg-type]


def _https(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)


def _up(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        _serial(port, ctx)
        return True
    except OSError:
        return False


@contextmanager
def tls_server(tmp_path: Path, args: tuple[str, ...]) -> Iterator[tuple[Server, trustme.CA, ssl.SSLContext, int]]:
    """A server on cert.pem/key.pem from a new CA, once it shakes hands; with the CA, a client context, the serial."""
    ca = trustme.CA()
    serial = _write(ca, tmp_path)
    ctx = _client(ca)
    tls = ("--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem"))
    with serve(*tls, *args, tmp_path=tmp_path, ready=False) as server:
        assert wait_for(lambda: _up(server.port, ctx), 20.0), server.output()
        yield server, ca, ctx, serial


@pytest.mark.parametrize(
    "args",
    [(), ("--ssl-reload-interval", "0.2"), ("--workers", "2"), ("--workers", "2", "--worker-mode", "thread")],
)
def test_new_connections_get_the_new_certificate(tmp_path: Path, args: tuple[str, ...]) -> None:
    with tls_server(tmp_path, args) as (server, ca, ctx, old_serial):
        assert _serial(server.port, ctx) == old_serial
        # An established connection, mid-response (and, with one server, kept alive after it).
        old = _https(server.port, ctx)
        old.request("GET", "/slow?s=1.5")
        response = old.getresponse()
        assert response.status == 200
        new_serial = _write(ca, tmp_path)
        if "--ssl-reload-interval" not in args:
            server.signal(signal.SIGHUP)
        assert wait_for(lambda: _serial(server.port, ctx) == new_serial, 15.0), server.output()
        assert response.read().startswith(b"slow started; done")
        if not args or "--ssl-reload-interval" in args:
            old.request("GET", "/")
            assert old.getresponse().read().startswith(b"pid=")
            assert old.sock is not None
            assert int(old.sock.getpeercert()["serialNumber"], 16) == old_serial  # type: ignore[index,arg-type]
        old.close()
        assert "Traceback" not in server.output()


@pytest.mark.parametrize("args", [(), ("--workers", "2"), ("--workers", "2", "--worker-mode", "thread")])
def test_a_bad_new_certificate_keeps_the_old_one(tmp_path: Path, args: tuple[str, ...]) -> None:
    with tls_server(tmp_path, args) as (server, ca, ctx, old_serial):
        # A key that does not match the certificate: the half-done rotation a SIGHUP may find.
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
        server.signal(signal.SIGHUP)
        assert server.wait_log("does not match", 15.0), server.output()
        time.sleep(0.5)
        assert server.proc.poll() is None
        for _ in range(3):
            assert _serial(server.port, ctx) == old_serial
        conn = _https(server.port, ctx)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
