"""Request and connection events from thread workers and process workers (``python -m pounce --workers 2``).

The subscriber is ``--event-handler tests.observability.apps:record_to_file``: each worker calls it in its
own event loop (thread mode: threads of one process, process mode: a process each) and it appends one
line per event to one file, which the test reads back once the server has stopped.
"""

from __future__ import annotations

import http.client
import signal
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.observability.clients import H2Client
from tests.observability.test_worker_events import parse
from tests.supervisors.serving import serve, wait_for, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

LOAD = 24  # requests on connections of their own, from 4 client threads
KEEP_ALIVE = 5  # requests on one keep-alive connection


def get_new_connection(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_every_worker_reports_its_requests_and_connections(mode: str, tmp_path: Path) -> None:
    log = tmp_path / "events.txt"
    served_by: Counter[str] = Counter()
    lock = threading.Lock()
    with serve(
        "--workers", "2", "--worker-mode", mode, "--http2", "--no-access-log",
        "--event-handler", "tests.observability.apps:record_to_file",
        app="tests.observability.apps:app", tmp_path=tmp_path, env={"POUNCE_TEST_EVENTS": str(log)},
    ) as server:
        pids = worker_pids(server, 2) if mode == "process" else set()
        # Both workers serving, so that both take part in the load (and neither is stopped in its startup).
        assert wait_for(lambda: Counter(e["event"] for e in parse(log))["ServerStarted"] == 2, 20), server.output()

        def client() -> None:
            for _ in range(LOAD // 4):
                status, body = get_new_connection(server.port, "/load")
                assert status == 200, body
                with lock:
                    served_by[body.split("worker=")[1]] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sum(served_by.values()) == LOAD, served_by

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(KEEP_ALIVE):
            conn.request("GET", "/kept")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        conn.close()
        assert get_new_connection(server.port, "/error")[0] == 500
        with H2Client("127.0.0.1", server.port) as h2client:
            streams = [h2client.request(b"GET", b"/over-h2") for _ in range(3)]
            assert [h2client.response(stream)[0] for stream in streams] == [200] * 3

        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()
    events = parse(log)

    # Who emitted what: the two workers, with their own pids in process mode.
    started = [e for e in events if e["event"] == "WorkerStarted"]
    assert sorted(e["worker"] for e in started) == ["1", "2"]
    assert {e["mode"] for e in started} == {mode}
    if mode == "process":
        assert {int(e["pid"]) for e in started} == pids
    else:
        assert len({e["pid"] for e in started}) == 1

    # Every request: started, response started, then completed (the failing one with its failure first).
    requests: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for event in events:
        if "request_id" in event:
            requests[(event["worker"], event["request_id"])].append(event)
    by_path: dict[str, list[list[dict[str, str]]]] = defaultdict(list)
    for mine in requests.values():
        by_path[mine[0]["path"]].append(mine)
        assert {e["connection_id"] for e in mine} == {mine[0]["connection_id"]}
        names = [e["event"] for e in mine]
        if mine[0]["path"] == "/error":
            assert names == ["RequestStarted", "RequestFailed", "ResponseStarted", "ResponseCompleted"], mine
            assert (mine[1]["exception_type"], mine[1]["sent_500"], mine[3]["status"]) == ("RuntimeError", "True", "500")
        else:
            assert names == ["RequestStarted", "ResponseStarted", "ResponseCompleted"], mine
            assert mine[2]["status"] == "200"
            assert int(mine[2]["body_bytes"]) == len(f"worker={mine[0]['worker']}")
    assert len(by_path["/load"]) == LOAD
    assert len(by_path["/kept"]) == KEEP_ALIVE
    assert len(by_path["/error"]) == 1
    # Each worker reported exactly the requests it answered (the body says which worker that was).
    assert Counter(mine[0]["worker"] for mine in by_path["/load"]) == served_by
    h2_requests = by_path["/over-h2"]
    assert sorted(int(mine[0]["stream_id"]) for mine in h2_requests) == [1, 3, 5]
    assert {(mine[0]["worker"], mine[0]["connection_id"], mine[0]["http_version"]) for mine in h2_requests} == {
        (h2_requests[0][0]["worker"], h2_requests[0][0]["connection_id"], "2")}
    assert {mine[0]["http_version"] for mine in by_path["/load"]} == {"1.1"}
    assert {mine[0]["stream_id"] for mine in by_path["/load"]} == {"None"}

    # Connections pair up per worker, and count the requests they carried.
    opened: dict[tuple[str, str], dict[str, str]] = {}
    closed: dict[tuple[str, str], dict[str, str]] = {}
    for event in events:
        key = (event["worker"], event.get("connection_id", ""))
        if event["event"] == "ConnectionOpened":
            assert key not in opened
            opened[key] = event
        elif event["event"] == "ConnectionClosed":
            assert key in opened and key not in closed
            closed[key] = event
    assert opened.keys() == closed.keys()
    carried = Counter((mine[0]["worker"], mine[0]["connection_id"]) for mine in requests.values())
    assert {key: int(event["requests_served"]) for key, event in closed.items() if key in carried} == dict(carried)
    h2_key = (h2_requests[0][0]["worker"], h2_requests[0][0]["connection_id"])
    assert opened[h2_key]["protocol"] == closed[h2_key]["protocol"] == "h2"
    assert closed[h2_key]["requests_served"] == "3"
    keep_alive = {(mine[0]["worker"], mine[0]["connection_id"]) for mine in by_path["/kept"]}
    assert len(keep_alive) == 1 and closed[keep_alive.pop()]["requests_served"] == str(KEEP_ALIVE)

    # Request events sit between each worker's ServerStarted and WorkerStopped.
    for worker in ("1", "2"):
        names = [e["event"] for e in events if e["worker"] == worker]
        first_request = min((i for i, n in enumerate(names) if n == "RequestStarted"), default=None)
        if first_request is not None:
            assert names.index("ServerStarted") < first_request
        assert names[-1] == "WorkerStopped"
