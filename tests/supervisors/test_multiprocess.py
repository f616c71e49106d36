"""``Process`` and ``Multiprocess`` driven directly (Uvicorn's interface), with real spawned workers."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from pounce.config import Config
from pounce.supervisors import Multiprocess
from pounce.supervisors.multiprocess import Process

pytestmark = pytest.mark.timeout(60)


async def app(scope: Any, receive: Any, send: Any) -> None:
    pass  # pragma: no cover - the workers here serve no sockets


def run_in_thread(supervisor: Multiprocess) -> threading.Thread:
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_process_ping_pong() -> None:
    process = Process(Config(app=app), sockets=[])
    threading.Thread(target=process.always_pong, daemon=True).start()
    assert process.ping()
    assert process.ping()  # sequence numbers keep answers apart


def test_process_ping_timeout() -> None:
    process = Process(Config(app=app), sockets=[])
    assert not process.ping(0.1)


def test_process_ping_broken_pipe() -> None:
    process = Process(Config(app=app), sockets=[])
    process.parent_conn.close()
    process.child_conn.close()
    assert not process.ping(0.1)


def test_late_answer_to_a_timed_out_ping_is_not_taken_for_the_next_one() -> None:
    process = Process(Config(app=app), sockets=[])
    assert not process.ping(0.05)  # nobody answers ping 1
    process.pong()  # ...until now: the answer to ping 1 sits in the pipe
    answered = threading.Event()

    def pong_later() -> None:
        process.pong()  # answers ping 2 (and only after ping 1's stale answer was skipped)
        answered.set()

    threading.Thread(target=pong_later, daemon=True).start()
    assert process.status(5) in ("starting", "ready")
    assert answered.wait(5)


def test_process_ready_reflects_server_started() -> None:
    process = Process(Config(app=app), sockets=[])
    threading.Thread(target=process.always_pong, daemon=True).start()
    assert process.ping()
    assert not process.is_ready()
    process.server.started = True
    assert process.is_ready()


def test_multiprocess_run_stops_on_sigint() -> None:
    supervisor = Multiprocess(Config(app=app, workers=2), sockets=[])
    thread = run_in_thread(supervisor)
    supervisor.signal_queue.append(signal.SIGINT)
    thread.join(30)
    assert not thread.is_alive()
    assert supervisor.exit_code == 0
    assert all(not process.is_running() for process in supervisor.processes)


def test_multiprocess_health_check_replaces_a_killed_worker() -> None:
    supervisor = Multiprocess(Config(app=app, workers=2), sockets=[])
    try:
        supervisor.init_processes()
        victim = supervisor.processes[0]
        victim.kill()
        victim.join()
        supervisor.keep_subprocess_alive()
        assert victim not in supervisor.processes
        assert len(supervisor.processes) == 2
        assert all(process.is_alive() for process in supervisor.processes)
    finally:
        supervisor.terminate_all()
        supervisor.join_all()


def test_multiprocess_worker_dies_on_startup_stops_the_parent() -> None:
    config = Config(app="tests.supervisors.test_multiprocess:does_not_exist", workers=2)
    supervisor = Multiprocess(config, sockets=[])
    thread = run_in_thread(supervisor)
    assert wait_for(supervisor.should_exit.is_set, 20)
    thread.join(30)
    assert not thread.is_alive()
    assert supervisor.exit_code == 3


def test_multiprocess_sigterm() -> None:
    supervisor = Multiprocess(Config(app=app, workers=2), sockets=[])
    thread = run_in_thread(supervisor)
    assert wait_for(lambda: len(supervisor.processes) == 2)
    supervisor.signal_queue.append(signal.SIGTERM)
    thread.join(30)
    assert not thread.is_alive()


def test_multiprocess_sighup_replaces_every_worker() -> None:
    supervisor = Multiprocess(Config(app=app, workers=2), sockets=[])
    try:
        supervisor.init_processes()
        pids = [process.pid for process in supervisor.processes]
        supervisor.signal_queue.append(signal.SIGHUP)
        supervisor.handle_signals()
        new_pids = [process.pid for process in supervisor.processes]
        assert not set(pids) & set(new_pids)
        assert all(process.is_alive() for process in supervisor.processes)
    finally:
        supervisor.terminate_all()
        supervisor.join_all()


def test_restart_aborts_when_the_replacement_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Multiprocess(Config(app=app, workers=2, timeout_worker_healthcheck=1), sockets=[])
    try:
        supervisor.init_processes()
        original = [process.pid for process in supervisor.processes]
        # A replacement that never reports ready (no real worker can be made to hang on cue).
        monkeypatch.setattr(Process, "is_ready", lambda self, timeout=1: False)
        supervisor.restart_all()
        assert [process.pid for process in supervisor.processes] == original
        assert all(process.is_alive() for process in supervisor.processes)
    finally:
        supervisor.terminate_all()
        supervisor.join_all()


def test_wait_until_ready_bails_on_shutdown_or_dead_worker() -> None:
    process = Process(Config(app=app), sockets=[])
    should_exit = threading.Event()
    should_exit.set()
    assert process.wait_until_ready(timeout=1, should_exit=should_exit) is False
    assert process.wait_until_ready(timeout=0.5) is False


def test_restart_does_nothing_when_shutting_down() -> None:
    supervisor = Multiprocess(Config(app=app, workers=1), sockets=[])
    supervisor.processes = [Process(supervisor.config, [])]
    supervisor.should_exit.set()
    supervisor.restart_all()
    assert len(supervisor.processes) == 1


def test_sigttin_and_sigttou() -> None:
    supervisor = Multiprocess(Config(app=app, workers=2), sockets=[])
    thread = run_in_thread(supervisor)
    supervisor.signal_queue.append(signal.SIGTTIN)
    assert wait_for(lambda: len(supervisor.processes) == 3)
    assert supervisor.processes_num == 3
    supervisor.signal_queue.append(signal.SIGTTOU)
    assert wait_for(lambda: len(supervisor.processes) == 2)
    supervisor.signal_queue.append(signal.SIGTTOU)
    assert wait_for(lambda: len(supervisor.processes) == 1)
    supervisor.signal_queue.append(signal.SIGTTOU)
    time.sleep(0.6)  # one main-loop tick: the last worker is kept
    assert len(supervisor.processes) == 1
    supervisor.signal_queue.append(signal.SIGINT)
    thread.join(30)
    assert not thread.is_alive()
