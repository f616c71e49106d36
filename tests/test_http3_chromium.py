"""A real browser over HTTP/3: Debian's headless ``chromium``, forced onto QUIC for the test origin, loads the
demo page from ``pounce pounce.demo:app --http3`` and the access log shows ``HTTP/3``. Skipped where chromium
is not installed (``apt-get install chromium``)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("aioquic", reason="HTTP/3 needs aioquic: pip install 'pounce-asgi[h3]'")
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.supervisors.serving import serve
from tests.test_http3 import write_certs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
]


def spki_hash(cert_pem: str) -> str:
    """What --ignore-certificate-errors-spki-list takes: base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(Path(cert_pem).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_loads_the_demo_page_over_http3(tmp_path: Path) -> None:
    certs = write_certs(tmp_path)
    args = ("--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key, "--http3")
    with serve(*args, app="pounce.demo:app", tmp_path=tmp_path, ready=False) as server:
        assert server.wait_log("Serving HTTP/3 on udp", timeout=30), server.output()
        origin = f"127.0.0.1:{server.port}"  # the UDP port is the TLS port
        assert CHROMIUM is not None
        browser = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-quic",
             f"--origin-to-force-quic-on={origin}", f"--ignore-certificate-errors-spki-list={spki_hash(certs.cert)}",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"https://{origin}/"],
            capture_output=True, text=True, timeout=60,
        )
        assert browser.returncode == 0, browser.stderr[-2000:]
        assert "Pounce is serving this page" in browser.stdout, (browser.stdout[:2000], browser.stderr[-2000:])
        assert server.wait_log('"GET / HTTP/3" 200', timeout=5), server.output()
        assert "HTTP/1.1" not in server.output() and "HTTP/2" not in server.output()  # QUIC from the start
