"""``pounce.workers.PounceWorker`` under a real Gunicorn (skipped where Gunicorn is not installed)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.supervisors.serving import ROOT, children, free_port, get, is_alive, wait_for

pytest.importorskip("gunicorn")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@contextmanager
def gunicorn(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tests.supervisors.apps:app", "-b", f"127.0.0.1:{port}",
             "-k", "pounce.workers.PounceWorker", "--graceful-timeout", "10", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            def up() -> bool:
                try:
                    return get(port, timeout=1)[0] == 200
                except OSError:
                    return proc.poll() is not None

            assert wait_for(up, 20) and proc.poll() is None, log.read_text()
            yield proc, port, log
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def test_gunicorn_serves_with_pounce_workers(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "-w", "2") as (proc, port, log):
        status, body = get(port)
        assert status == 200
        assert body.startswith("pid=")
        assert int(body.split()[0].removeprefix("pid=")) in children(proc.pid)
        assert "Application startup complete." in log.read_text()


def test_gunicorn_sigterm_lets_a_slow_request_finish(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "-w", "1") as (proc, port, log):
        workers = children(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request("GET", "/slow?s=1.5")
        response = conn.getresponse()
        os.kill(proc.pid, signal.SIGTERM)
        body = response.read().decode()
        conn.close()
        assert response.status == 200
        assert body.startswith("slow started; done"), body
        assert proc.wait(20) == 0
        assert wait_for(lambda: not any(is_alive(pid) for pid in workers), 10)
