"""Run ``python -m pounce`` as a real process for the worker tests, and drive it with real clients."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.supervisors.apps:app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``, read from /proc."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces, so split after the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry))
    return found


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate: object, timeout: float, step: float = 0.05) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def worker_pids(server: Server, count: int, timeout: float = 20.0) -> set[int]:
    """The server's worker processes, once there are ``count`` of them (the resource tracker excluded)."""
    found: set[int] = set()

    def enough() -> bool:
        nonlocal found
        found = {pid for pid in children(server.pid) if "resource_tracker" not in cmdline(pid)}
        return len(found) == count

    assert wait_for(enough, timeout), f"expected {count} workers, found {found}\n{server.output()}"
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def wait_log(self, text: str, timeout: float = 15.0, count: int = 1) -> bool:
        return wait_for(lambda: self.output().count(text) >= count, timeout)


@contextmanager
def serve(*args: str, app: str = APP, tmp_path: Path, ready: bool = True, env: dict[str, str] | None = None,
          python: str | None = None, new_session: bool = False) -> Iterator[Server]:
    """Start ``python -m pounce APP --port P ARGS``; yield once it answers HTTP; never leave it running."""
    last_output = ""
    for attempt in range(3):  # a free port can be taken between our probe and the server's bind
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [python or sys.executable, "-m", "pounce", app, "--port", str(port), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=new_session,
        )
        server = Server(proc, port, log_path)
        try:
            if ready and not _wait_ready(server):
                last_output = server.output()
                if "address already in use" in last_output.lower() and attempt < 2:
                    continue
                raise AssertionError(f"server did not start:\n{last_output}")
            yield server
            return
        finally:
            _stop(server)
            log.close()
    raise AssertionError(f"could not start a server:\n{last_output}")


def _wait_ready(server: Server, timeout: float = 20.0) -> bool:
    def up() -> bool:
        if server.proc.poll() is not None:
            return True
        try:
            return get(server.port, timeout=1)[0] == 200
        except OSError:
            return False

    return wait_for(up, timeout, step=0.1) and server.proc.poll() is None


def _stop(server: Server) -> None:
    """Stop the server and every process it started, whatever state the test left it in."""
    if server.proc.poll() is None:
        kids = children(server.pid)
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(5)
        for pid in kids:
            if is_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def steady_load(
    port: int, clients: int = 4, path: str = "/", max_requests: int = 200_000, keep_alive: bool = True
) -> Iterator[LoadResult]:
    """Keep-alive clients sending requests back to back until the block ends; every failure is recorded.

    ``http.client`` is deliberately strict: it does not probe a pooled connection before reuse, so
    a server that closes an idle keep-alive connection under a client shows up as a failure.
    """
    result = LoadResult()
    stop = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sent = 0
        while not stop.is_set() and sent < max_requests:
            sent += 1
            try:
                conn.request("GET", path, headers={} if keep_alive else {"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {body[:200]}")
                who = body.split(" gil=")[0]
                with result.lock:
                    result.ok += 1
                    result.served_by[who] = result.served_by.get(who, 0) + 1
                if response.will_close:
                    conn.close()  # the next request opens a new connection
            except Exception as exc:  # every failure counts, whatever it is
                with result.lock:
                    result.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield result
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads), "load clients did not stop"
