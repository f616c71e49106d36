"""Attack tests' harness: a real ``pounce`` process to attack, and the resources it uses.

The server runs in its own process (``python -m pounce --fd N``, on a socket bound here to 127.0.0.1
port 0), so its RSS and CPU time can be read from /proc while a test attacks it, and nothing the test
does in its own process is counted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)

    def rss(self) -> int:
        """Resident set size in bytes."""
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not answer in time")


@contextlib.contextmanager
def serve(app: str, *args: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """Run ``pounce APP ARGS`` in a subprocess until the block ends; the app must answer GET /health."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    log = tmp_path / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pounce", app, "--fd", str(sock.fileno()), "--no-access-log", *args],
            pass_fds=[sock.fileno()],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    sock.close()
    try:
        _ready(port, time.monotonic() + 30)
        yield ServerProcess(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def probe_latency(server: ServerProcess, path: str = "/health", timeout: float = 5.0) -> float:
    """Seconds a fresh client waits for a complete answer to one GET (raises if it gets none)."""
    start = time.monotonic()
    with server.connect(timeout) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"probe got {data[:100]!r}")
    return time.monotonic() - start


_PROBER = r"""
import json, socket, sys, time
host, port, path, count, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
out = []
for _ in range(count):
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    out.append((time.monotonic() - start, data[:12].decode("latin-1")))
    time.sleep(interval)
print(json.dumps(out))
"""


def probe_latencies(server: ServerProcess, count: int = 5, interval: float = 0.1, path: str = "/health") -> list[float]:
    """Like ``probe_latency``, ``count`` times, from a separate process.

    An attack driven by threads of the test process competes with an in-process probe for the GIL,
    which would be measured as server latency; a process of its own measures only the server.
    """
    import json

    result = subprocess.run(
        [sys.executable, "-c", _PROBER, "127.0.0.1", str(server.port), path, str(count), str(interval)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    probes = json.loads(result.stdout)
    for _, status in probes:
        if status != "HTTP/1.1 200":
            raise AssertionError(f"probe got {status!r}")
    return [latency for latency, _ in probes]
