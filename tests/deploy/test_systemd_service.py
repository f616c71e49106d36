"""systemd wiring through real processes: socket activation by ``systemd-socket-activate``, and the
``NOTIFY_SOCKET`` messages a service manager receives, read from a real datagram socket."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.supervisors.serving import APP, ROOT, free_port, get, serve, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="systemd's protocols are Linux's")


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                break
            for line in data.decode().split("\n"):
                self.messages.append((time.monotonic(), line))
        return [line for _, line in self.messages]

    def wait_for(self, line: str, count: int = 1, timeout: float = 20.0) -> bool:
        return wait_for(lambda: self.drain().count(line) >= count, timeout)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path / "notify.sock")
    try:
        yield notify
    finally:
        notify.close()


def keys(lines: list[str], *wanted: str) -> list[str]:
    return [line for line in lines if line.split("=", 1)[0] in wanted]


@pytest.mark.parametrize("args", [(), ("--workers", "2"), ("--workers", "2", "--worker-mode", "thread")])
def test_notifications_arrive_in_order(tmp_path: Path, args: tuple[str, ...]) -> None:
    with listener(tmp_path) as notify:
        env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
        with serve(*args, tmp_path=tmp_path, env=env) as server:
            assert notify.wait_for("READY=1"), notify.drain()
            # Ready means serving: a request is answered (every worker took its socket by then).
            assert get(server.port)[0] == 200
            if args:  # supervisors: a SIGHUP rolling restart is RELOADING=1 ... READY=1
                server.signal(signal.SIGHUP)
                assert notify.wait_for("READY=1", count=2), notify.drain()
            notify.drain()
            start = time.monotonic()
            while time.monotonic() < start + 3.0:
                notify.drain()  # timestamps the pings as they arrive
            server.signal(signal.SIGTERM)
            # A single server re-raises SIGTERM once drained, as Uvicorn; systemd counts that a clean stop.
            assert server.wait() in ((0,) if args else (0, -signal.SIGTERM)), server.output()
        assert notify.wait_for("STOPPING=1"), notify.drain()
        lines = notify.drain()
        expected = ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"] if args else ["READY=1", "STOPPING=1"]
        assert keys(lines, "READY", "RELOADING", "STOPPING") == expected
        assert any(line.startswith("MONOTONIC_USEC=") for line in lines) == bool(args)
        assert any(line.startswith("STATUS=") and "serving" in line for line in lines), lines
        assert lines.index("STOPPING=1") > max(i for i, line in enumerate(lines) if line == "READY=1")
        # WATCHDOG_USEC=1s: a ping every half second (the supervisor's tick is half a second too).
        pings = [t for t, line in notify.messages if line == "WATCHDOG=1" and start <= t <= start + 3.0]
        assert 4 <= len(pings) <= 8, (len(pings), lines)


def test_workers_do_not_notify(tmp_path: Path) -> None:
    """Only the supervisor speaks to systemd: one READY=1 for two workers, however many there are."""
    with listener(tmp_path) as notify:
        with serve("--workers", "2", tmp_path=tmp_path, env={"NOTIFY_SOCKET": str(notify.path)}):
            assert notify.wait_for("READY=1")
            time.sleep(1.0)
        assert notify.wait_for("STOPPING=1")
        assert notify.drain().count("READY=1") == 1


@contextmanager
def activated(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (Debian's systemd package)")
    port = free_port()
    log_path = tmp_path / "activated.log"
    extra = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    setenv = [f"-E{name}={value}" for name, value in extra.items()]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [tool, "-l", f"127.0.0.1:{port}", "--fdname=web", *setenv, sys.executable, "-m", "pounce", APP, *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield port, proc, log_path
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.mark.parametrize("args", [(), ("--workers", "2"), ("--workers", "2", "--worker-mode", "thread")])
def test_socket_activation(tmp_path: Path, args: tuple[str, ...]) -> None:
    with activated(tmp_path, "--port", "1", *args) as (port, proc, log_path):
        # The first connection makes systemd-socket-activate start pounce on the socket it holds;
        # it is answered by pounce, which never bound (--port 1 would have failed) and took it over.
        assert wait_for(lambda: _get_ok(port), 30.0, step=0.2), log_path.read_text()
        for _ in range(5):
            assert get(port)[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in ((0,) if args else (0, -signal.SIGTERM))
    output = log_path.read_text()
    assert f"Pounce running on socket tcp://127.0.0.1:{port} activated by systemd (web)" in output


def test_socket_activation_notifies(tmp_path: Path) -> None:
    with listener(tmp_path) as notify:
        with activated(tmp_path, "--workers", "2", env={"NOTIFY_SOCKET": str(notify.path)}) as (port, proc, log_path):
            assert wait_for(lambda: _get_ok(port), 30.0, step=0.2), log_path.read_text()
            assert notify.wait_for("READY=1"), (notify.drain(), log_path.read_text())


def _get_ok(port: int) -> bool:
    try:
        return get(port, timeout=2)[0] == 200
    except OSError:
        return False


def test_malformed_activation_stops(tmp_path: Path) -> None:
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": "not-a-pid"}
    command = [sys.executable, "-m", "pounce", APP, "--port", str(free_port())]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=30)
    assert proc.returncode == 3
    assert b"LISTEN_PID" in proc.stderr or b"LISTEN_FDS" in proc.stderr
