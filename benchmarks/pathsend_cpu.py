"""Server CPU time for serving a large file with Starlette's FileResponse, with and without pathsend.

With ``http.response.pathsend`` offered, FileResponse hands the path to the server, which sends it by
``os.sendfile`` on plain TCP and in chunks under TLS and HTTP/2. Without it (the extension hidden from
the app), FileResponse reads the file itself, 64 KiB at a time through a worker thread, and sends each
chunk as a body message. The server runs as a subprocess; its user+system CPU time
(``/proc/<pid>/stat``) is read before and after ``--requests`` downloads, each checked by SHA-256.

    python3 benchmarks/pathsend_cpu.py                 # 50 MB, 5 downloads per case
    python3 benchmarks/pathsend_cpu.py --size-mb 100 --requests 10 --cases http1 tls
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PATHSEND = "http.response.pathsend"


# The app the server subprocess serves: ``python -m pounce benchmarks.pathsend_cpu:app``.
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from starlette.responses import FileResponse

    if scope["type"] != "http":
        return
    if os.environ.get("PATHSEND_OFFERED") != "1":
        scope = {**scope, "extensions": {k: v for k, v in scope.get("extensions", {}).items() if k != PATHSEND}}
    await FileResponse(os.environ["PATHSEND_FILE"])(scope, receive, send)


CASES: dict[str, dict[str, Any]] = {
    "http1": {"args": [], "tls": False, "http2": False},
    "tls": {"args": [], "tls": True, "http2": False},
    "h2c": {"args": ["--http2"], "tls": False, "http2": True},
    "h2-tls": {"args": ["--http2"], "tls": True, "http2": True},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def make_certs(directory: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(directory / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
    cert.private_key_pem.write_to_path(directory / "key.pem")
    return str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem")


def measure(case: str, offered: bool, file: Path, digest: str, requests: int, certs: tuple[str, str, str]) -> float:
    import httpx

    spec = CASES[case]
    port = free_port()
    args = [sys.executable, "-m", "pounce", "benchmarks.pathsend_cpu:app", "--port", str(port)]
    args += ["--no-access-log", "--log-level", "warning", "--lifespan", "off", *spec["args"]]
    if spec["tls"]:
        args += ["--ssl-certfile", certs[1], "--ssl-keyfile", certs[2]]
    env = {**os.environ, "PATHSEND_FILE": str(file), "PATHSEND_OFFERED": "1" if offered else "0"}
    server = subprocess.Popen(args, cwd=REPO_ROOT, env=env)
    scheme = "https" if spec["tls"] else "http"
    url = f"{scheme}://127.0.0.1:{port}/"
    try:
        verify: Any = certs[0] if spec["tls"] else False
        http1 = not spec["http2"] or spec["tls"]  # cleartext HTTP/2 is prior knowledge
        with httpx.Client(http1=http1, http2=spec["http2"], verify=verify, timeout=120) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    download(client, url, digest, spec["http2"])  # also the warm-up
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            before = cpu_seconds(server.pid)
            for _ in range(requests):
                download(client, url, digest, spec["http2"])
            return cpu_seconds(server.pid) - before
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def download(client: Any, url: str, digest: str, http2: bool) -> None:
    hasher = hashlib.sha256()
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1"), response.http_version
        for chunk in response.iter_raw():
            hasher.update(chunk)
    if hasher.hexdigest() != digest:
        raise SystemExit(f"{url}: the body differs from the file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        file = directory / "file.bin"
        digest = make_file(file, args.size_mb * 1024 * 1024)
        certs = make_certs(directory)
        print(f"{args.size_mb} MB file, {args.requests} downloads per case; server CPU seconds (user+system)")
        print(f"{'case':8} {'pathsend':>9} {'chunked':>9} {'saved':>7}")
        for case in args.cases:
            with_pathsend = measure(case, True, file, digest, args.requests, certs)
            without = measure(case, False, file, digest, args.requests, certs)
            saved = 100 * (1 - with_pathsend / without) if without else 0.0
            print(f"{case:8} {with_pathsend:9.2f} {without:9.2f} {saved:6.0f}%", flush=True)


if __name__ == "__main__":
    main()
