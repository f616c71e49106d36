"""Pounce as a container's PID 1 (``unshare --fork --pid --mount-proc``): orphans and killed workers are
reaped, SIGTERM drains and exits 0; and ``--pid-file`` is written once bound and removed on exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pounce.container import zombie_children
from tests.supervisors.serving import ROOT, children, cmdline, free_port, get, serve, wait_for

APP = "tests.deploy.orphan_app:app"


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(sys.platform != "linux" or not _unshare_works(), reason="needs unshare with PID namespaces (root)")
@pytest.mark.parametrize("args", [(), ("--workers", "2")])
def test_pid_1_reaps_and_exits_cleanly(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()
    pid_file = tmp_path / "pounce.pid"
    log_path = tmp_path / "pid1.log"
    with log_path.open("wb") as log:
        outer = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount-proc", sys.executable, "-m", "pounce", APP, "--port", str(port),
             "--pid-file", str(pid_file), *args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert wait_for(lambda: pid_file.exists(), 30.0), log_path.read_text()
            assert pid_file.read_text().strip() == "1"  # in its namespace, the server is PID 1
            (init,) = children(outer.pid)  # the server's pid as seen from here
            assert wait_for(lambda: _ok(port), 20.0), log_path.read_text()
            for _ in range(6):
                assert get(port, "/orphan")[0] == 200
            time.sleep(1.0)  # the orphaned sleeps (0.3 s) exit; as PID 1's children, they are ours to reap
            if args:
                assert wait_for(lambda: not zombie_children(init), 5.0), (zombie_children(init), log_path.read_text())
                workers = children(init)
                victim = next(pid for pid in workers if "resource_tracker" not in cmdline(pid))
                os.kill(victim, signal.SIGKILL)
                assert wait_for(lambda: victim not in children(init) and len(children(init)) == len(workers), 20.0)
                assert wait_for(lambda: _ok(port), 20.0)
            if args:  # the killed worker was reaped too
                assert wait_for(lambda: not zombie_children(init), 5.0), (zombie_children(init), log_path.read_text())
            os.kill(init, signal.SIGTERM)
            assert outer.wait(30) == 0, log_path.read_text()
        finally:
            if outer.poll() is None:
                outer.kill()
                outer.wait()
    assert not pid_file.exists()


def _ok(port: int) -> bool:
    try:
        return get(port, timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize(
    "args", [(), ("--workers", "2"), ("--workers", "2", "--worker-mode", "thread"), ("--reload",)]
)
def test_pid_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    pid_file = tmp_path / "run" / "pounce.pid"
    pid_file.parent.mkdir()
    with serve("--pid-file", str(pid_file), *args, tmp_path=tmp_path) as server:
        assert wait_for(pid_file.exists, 10.0)
        assert int(pid_file.read_text()) == server.pid
        server.signal(signal.SIGTERM)
        server.wait()
    assert not pid_file.exists()


def test_pid_file_from_environment(tmp_path: Path) -> None:
    pid_file = tmp_path / "pounce.pid"
    with serve(tmp_path=tmp_path, env={"POUNCE_PID_FILE": str(pid_file)}) as server:
        assert wait_for(pid_file.exists, 10.0)
        assert int(pid_file.read_text()) == server.pid
