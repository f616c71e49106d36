"""Process workers, end to end: a real ``python -m pounce --workers N --worker-mode process`` and real signals."""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from tests.supervisors.serving import (
    children,
    get,
    is_alive,
    serve,
    steady_load,
    wait_for,
    worker_pids,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

PROCESS = ("--worker-mode", "process", "--timeout-graceful-shutdown", "10")


def test_worker_killed_with_sigkill_comes_back(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        before = worker_pids(server, 2)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: victim not in children(server.pid), 10)
        after = worker_pids(server, 2)
        assert victim not in after
        assert server.wait_log(f"Child process [{victim}] died")
        assert wait_for(lambda: get(server.port)[0] == 200, 10)


def test_sighup_under_keepalive_load_replaces_every_worker_without_errors(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        original = worker_pids(server, 2)
        with steady_load(server.port, clients=4) as load:
            assert wait_for(lambda: load.ok > 50, 10)
            server.signal(signal.SIGHUP)
            # Every original worker is retired and gone while the clients keep going...
            assert wait_for(lambda: not (original & children(server.pid)), 30), server.output()
            served_before = load.ok
            # ...and the new ones serve for a while longer.
            assert wait_for(lambda: load.ok > served_before + 200, 10)
        assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
        new = worker_pids(server, 2)
        assert not (new & original)
        # Keep-alive clients stick to their connections, so not every new worker need get one.
        served_pids = {who.split()[0] for who in load.served_by}
        assert {f"pid={pid}" for pid in new} & served_pids
        assert "Received SIGHUP, restarting processes." in server.output()


def test_sigterm_lets_a_slow_request_finish(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        worker_pids(server, 2)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        conn.request("GET", "/slow?s=1.5")
        response = conn.getresponse()  # headers are sent before the app sleeps: the request is in flight
        server.signal(signal.SIGTERM)
        body = response.read().decode()
        conn.close()
        assert response.status == 200
        assert body.startswith("slow started; done pid="), body
        assert server.wait(20) == 0
        assert "Received SIGTERM, exiting." in server.output()


def test_no_orphans_after_sigterm(tmp_path: Path) -> None:
    with serve("--workers", "3", *PROCESS, tmp_path=tmp_path) as server:
        assert len(worker_pids(server, 3)) == 3
        kids = children(server.pid)
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
        assert wait_for(lambda: not any(is_alive(pid) for pid in kids), 10)
        assert "Stopping parent process" in server.output()


def test_no_orphans_when_the_parent_is_killed(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        workers = worker_pids(server, 2)
        server.signal(signal.SIGKILL)
        server.wait(10)
        # The workers see their heartbeat pipe close and shut down on their own.
        assert wait_for(lambda: not any(is_alive(pid) for pid in workers), 15), server.output()


def test_sigttin_and_sigttou_resize_the_pool(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        worker_pids(server, 2)
        server.signal(signal.SIGTTIN)
        assert len(worker_pids(server, 3)) == 3
        server.signal(signal.SIGTTOU)
        worker_pids(server, 2)
        server.signal(signal.SIGTTOU)
        worker_pids(server, 1)
        server.signal(signal.SIGTTOU)
        assert server.wait_log("Already reached one process, cannot decrease the number of processes anymore.")
        assert get(server.port)[0] == 200


def test_limit_max_requests_recycles_instead_of_stopping(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, "--limit-max-requests", "10", tmp_path=tmp_path) as server:
        first = worker_pids(server, 2)
        statuses = []
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(60):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            if response.will_close:
                conn.close()
            time.sleep(0.02)
        conn.close()
        assert statuses == [200] * 60
        # At least one worker served its 10 requests and was replaced; the server itself keeps running.
        assert wait_for(lambda: first - children(server.pid), 15), server.output()
        assert server.proc.poll() is None
        assert "Maximum request limit of 10 exceeded." in server.output()
        worker_pids(server, 2)
        assert get(server.port)[0] == 200


def test_a_worker_that_cannot_start_stops_the_server_with_exit_code_3(tmp_path: Path) -> None:
    with serve(
        "--workers", "2", *PROCESS, app="tests.supervisors.apps:failing_lifespan", tmp_path=tmp_path, ready=False
    ) as server:
        assert server.wait(30) == 3
        assert "failed to start, stopping the parent process." in server.output()


def test_a_worker_whose_loop_is_stuck_is_replaced(tmp_path: Path) -> None:
    with serve("--workers", "2", *PROCESS, "--timeout-worker-healthcheck", "1", tmp_path=tmp_path) as server:
        original = worker_pids(server, 2)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        conn.request("GET", "/block?s=30")
        # The heartbeat thread still runs, but the worker's event loop does not: it is killed and replaced.
        assert server.wait_log("did not answer its health check", timeout=15), server.output()
        assert wait_for(lambda: len(original & children(server.pid)) == 1, 10)
        assert len(worker_pids(server, 2)) == 2
        assert wait_for(lambda: get(server.port, timeout=2)[0] == 200, 15)
        conn.close()


def test_sighup_to_the_whole_process_group_restarts_without_casualties(tmp_path: Path) -> None:
    # A terminal hang-up signals every process of the group, workers included.
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path, new_session=True) as server:
        original = worker_pids(server, 2)
        os.killpg(server.pid, signal.SIGHUP)
        assert wait_for(lambda: not (original & children(server.pid)), 20), server.output()
        assert len(worker_pids(server, 2)) == 2
        output = server.output()
        assert output.count("Replacing child process") == 2, output
        assert "died" not in output and "resource_tracker" not in output, output
        # The old workers were not killed by the hang-up: they drained and finished as usual.
        for pid in original:
            assert server.wait_log(f"Finished server process [{pid}]"), output
        assert get(server.port)[0] == 200


def test_sighup_under_connection_per_request_load_has_no_errors(tmp_path: Path) -> None:
    # Every request on a new connection: the draining worker may accept one just before it stops.
    with serve("--workers", "2", *PROCESS, tmp_path=tmp_path) as server:
        original = worker_pids(server, 2)
        with steady_load(server.port, clients=4, keep_alive=False) as load:
            assert wait_for(lambda: load.ok > 50, 10)
            server.signal(signal.SIGHUP)
            assert wait_for(lambda: not (original & children(server.pid)), 30), server.output()
            served_before = load.ok
            assert wait_for(lambda: load.ok > served_before + 200, 10)
        assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
