"""pounce.systemd: sd_notify datagrams received by a real Unix socket, and sockets passed the way
systemd passes them (descriptors from 3, LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES) to a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pounce.systemd import Notifier, listen_fds, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent


def receiver(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_notifications_arrive_one_datagram_each_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = receiver(path)
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("2 workers")
    assert notifier.reloading()
    assert notifier.status("serving")
    assert notifier.watchdog()
    assert notifier.stopping()
    got = [sock.recv(4096).decode() for _ in range(5)]
    assert got[0] == "READY=1\nSTATUS=2 workers"
    reloading, monotonic = got[1].split("\n")
    assert reloading == "RELOADING=1" and monotonic.startswith("MONOTONIC_USEC=")
    assert abs(int(monotonic.split("=")[1]) - time.monotonic_ns() // 1000) < 5_000_000
    assert got[2:] == ["STATUS=serving", "WATCHDOG=1", "STOPPING=1"]
    notifier.close()
    sock.close()


def test_an_abstract_notify_socket() -> None:
    name = f"pounce-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    notifier = Notifier("@" + name)
    assert notifier.ready()
    assert sock.recv(100) == b"READY=1"
    notifier.close()
    sock.close()


def test_without_notify_socket_nothing_is_sent_and_a_gone_manager_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and not Notifier().ready()
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert not gone.ready() and not gone.stopping()
    assert sum("NOTIFY_SOCKET" in message for message in caplog.messages) == 1


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_listen_fds_ignores_what_is_not_for_this_process_and_refuses_what_is_malformed() -> None:
    assert listen_fds({}) == []
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert listen_fds(env) == [] and env == {}  # unset once read, like sd_listen_fds(1)
    with pytest.raises(ValueError, match="LISTEN_PID"):
        listen_fds({"LISTEN_FDS": "1"})
    with pytest.raises(ValueError, match="not a number"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"})


CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    sys.path.insert(0, sys.argv[1])
    from pounce.systemd import listen_fds
    found = listen_fds()
    print(json.dumps([[a.name, a.sock.family.name, a.sock.type.name, a.sock.fileno()] for a in found]))
    print(json.dumps(sorted(k for k in os.environ if k.startswith("LISTEN_"))))
    """
)


def test_sockets_passed_by_systemd_socket_activate(tmp_path: Path) -> None:
    """The real tool (Debian's systemd package) passes a TCP and a Unix socket with their names."""
    tool = "/usr/bin/systemd-socket-activate"
    if not os.path.exists(tool):
        pytest.skip("systemd-socket-activate is not installed (apt-get install systemd)")
    import json

    sock_path = tmp_path / "app.sock"
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    tcp.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [tool, "-l", f"127.0.0.1:{port}", "-l", str(sock_path), "--fdname=web:local",
         sys.executable, str(script), str(ROOT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # systemd-socket-activate starts the service when the first connection arrives.
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    lines = out.strip().splitlines()
    assert len(lines) == 2, err
    assert json.loads(lines[0]) == [["web", "AF_INET", "SOCK_STREAM", 3], ["local", "AF_UNIX", "SOCK_STREAM", 4]]
    assert json.loads(lines[1]) == []
