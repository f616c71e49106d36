"""What thread workers log at startup: Uvicorn's "Started server process [pid]" once for the process,
then one line per worker thread (each used to log the process line again, with the same pid)."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.supervisors.serving import serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

PYTHON = os.environ.get("POUNCE_TEST_PYTHON") or sys.executable
THREAD = ("--worker-mode", "thread", "--timeout-graceful-shutdown", "10")


def test_the_process_line_once_then_one_line_per_worker_thread(tmp_path: Path) -> None:
    with serve("--workers", "3", *THREAD, tmp_path=tmp_path, python=PYTHON) as server:
        assert server.wait_log("Application startup complete.", count=3)
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
        output = server.output()
    assert len(re.findall(r"Started server process \[\d+\]", output)) == 1, output
    assert sorted(re.findall(r"Started worker thread (\d/\d)", output)) == ["1/3", "2/3", "3/3"], output
    # The process line comes first, as in Uvicorn, and no "thread supervisor" start line.
    assert output.index("Started server process") < output.index("Started worker thread")
    assert "Started thread supervisor" not in output


def test_a_replacement_thread_says_why_it_started(tmp_path: Path) -> None:
    with serve("--workers", "1", *THREAD, tmp_path=tmp_path, python=PYTHON) as server:
        assert server.wait_log("Started worker thread 1/1")
        server.signal(signal.SIGHUP)
        assert server.wait_log("Started worker thread 2 (restart)"), server.output()
        assert server.output().count("Started server process") == 1
