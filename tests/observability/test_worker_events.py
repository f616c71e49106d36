"""Worker lifecycle events from real supervisors: ids, generations, start and drain reasons."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.supervisors.serving import serve, wait_for, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# A worker's own life; every request served (the readiness probe's included) adds request and
# connection events in between, which these tests leave out.
LIFECYCLE = {"WorkerStarted", "ServerStarted", "WorkerDraining", "ServerStopping", "WorkerStopped"}


def parse(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        name, *fields = line.split()
        events.append({"event": name, **dict(field.split("=", 1) for field in fields)})
    return events


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_rolling_restart_and_scaling_are_reported(mode: str, tmp_path: Path) -> None:
    log = tmp_path / "events.txt"
    with serve(
        "--workers", "2", "--worker-mode", mode, "--timeout-graceful-shutdown", "10",
        "--event-handler", "tests.observability.apps:record_to_file",
        app="tests.observability.apps:app", tmp_path=tmp_path, env={"POUNCE_TEST_EVENTS": str(log)},
    ) as server:
        assert wait_for(lambda: Counter(e["event"] for e in parse(log))["ServerStarted"] == 2, 20), server.output()
        started = [e for e in parse(log) if e["event"] == "WorkerStarted"]
        assert sorted(e["worker"] for e in started) == ["1", "2"]
        assert {(e["mode"], e["generation"], e["reason"]) for e in started} == {(mode, "0", "initial")}
        if mode == "process":
            assert {int(e["pid"]) for e in started} == worker_pids(server, 2)

        server.signal(signal.SIGHUP)
        assert server.wait_log("Finished server process", count=2, timeout=60), server.output()
        assert wait_for(lambda: Counter(e["event"] for e in parse(log))["WorkerStopped"] == 2, 20)
        events = parse(log)
        restarted = [e for e in events if e["event"] == "WorkerStarted" and e["reason"] == "restart"]
        assert sorted(e["worker"] for e in restarted) == ["3", "4"]
        assert {e["generation"] for e in restarted} == {"1"}
        draining = [e for e in events if e["event"] == "WorkerDraining"]
        assert sorted(e["worker"] for e in draining) == ["1", "2"]
        assert {(e["reason"], e["generation"]) for e in draining} == {("restart", "0")}
        # Each retired worker: draining, then stopping, then stopped.
        for worker in ("1", "2"):
            mine = [e["event"] for e in events if e["worker"] == worker and e["event"] in LIFECYCLE]
            assert mine == ["WorkerStarted", "ServerStarted", "WorkerDraining", "ServerStopping", "WorkerStopped"]

        server.signal(signal.SIGTTIN)
        assert wait_for(lambda: any(e.get("reason") == "scale_up" for e in parse(log)), 20), server.output()
        server.signal(signal.SIGTTOU)
        assert wait_for(lambda: any(e.get("reason") == "scale_down" for e in parse(log)), 20), server.output()

        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
    events = parse(log)
    # A whole-server stop is ServerStopping without WorkerDraining; every worker stopped in the end.
    counts = Counter(e["event"] for e in events)
    assert counts["WorkerStarted"] == counts["WorkerStopped"] == 5
    assert counts["WorkerDraining"] == 3
