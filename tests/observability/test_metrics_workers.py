"""One scrape sees the whole server: 4 thread workers, 4 process workers, and after a SIGHUP rolling restart.

Until the protocols emit request events (phase 2 of the observability work), each worker emits
synthetic requests (``tests.observability.apps``): ``$POUNCE_TEST_SYNTHETIC`` at its lifespan startup,
so every worker contributes, and one per ``/emit`` request, in whichever worker serves it.
"""

from __future__ import annotations

import http.client
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.observability.apps import SYNTHETIC_METHOD  # noqa: E402
from tests.supervisors.serving import Server, free_port, serve  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WORKERS = 4
AT_STARTUP = 25
REQUESTS = 40


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def synthetic(text: str) -> float:
    return metric(text, "pounce_http_requests_total", http_request_method=SYNTHETIC_METHOD)


def wait_for_scrape(url: str, ready: Callable[[str], bool], server: Server, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            text = ""
        if text and ready(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"scrape never got there:\n{text[-3000:]}\n--- server ---\n{server.output()[-3000:]}")


def emit_over_new_connections(port: int, count: int) -> set[str]:
    served_by = set()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/emit?n=1", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        assert response.status == 200, body
        served_by.add(body.split("worker=")[1])
    return served_by


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_one_scrape_counts_every_worker_and_a_rolling_restart_loses_nothing(mode: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serve(
        "--workers", str(WORKERS), "--worker-mode", mode, "--timeout-graceful-shutdown", "10",
        "--metrics", f"127.0.0.1:{metrics_port}",
        app="tests.observability.apps:app", tmp_path=tmp_path, env={"POUNCE_TEST_SYNTHETIC": str(AT_STARTUP)},
    ) as server:
        text = wait_for_scrape(url, lambda t: synthetic(t) == WORKERS * AT_STARTUP, server)
        assert metric(text, "pounce_workers", mode=mode) == WORKERS
        assert metric(text, "pounce_worker_restarts_total") == 0

        served_by = emit_over_new_connections(server.port, REQUESTS)
        assert served_by <= {str(n) for n in range(1, WORKERS + 1)}, served_by
        text = wait_for_scrape(url, lambda t: synthetic(t) == WORKERS * AT_STARTUP + REQUESTS, server, timeout=10)
        assert metric(text, "http_server_request_duration_seconds_count", http_request_method=SYNTHETIC_METHOD) == (
            WORKERS * AT_STARTUP + REQUESTS
        )
        assert metric(text, "http_server_active_requests") == 0

        server.signal(signal.SIGHUP)
        assert server.wait_log("Finished server process", count=WORKERS, timeout=60), server.output()
        # Every replaced worker's counts are still there, plus what the new ones emitted at startup.
        expected = 2 * WORKERS * AT_STARTUP + REQUESTS
        text = wait_for_scrape(
            url,
            lambda t: synthetic(t) == expected
            and metric(t, "pounce_workers", mode=mode) == WORKERS
            and metric(t, "pounce_worker_drains_total", reason="restart") == WORKERS,
            server,
        )
        assert metric(text, "pounce_worker_restarts_total", reason="restart") == WORKERS
        assert metric(text, "http_server_response_body_size_bytes_sum", http_request_method=SYNTHETIC_METHOD) == (
            expected * 10
        )
        new_served_by = emit_over_new_connections(server.port, 8)
        assert all(int(worker) > WORKERS for worker in new_served_by), new_served_by
        wait_for_scrape(url, lambda t: synthetic(t) == expected + 8, server, timeout=10)
        # The app's port never serves the scrape.
        assert "pounce_workers" not in httpx.get(f"http://127.0.0.1:{server.port}/metrics").text


def test_reload_keeps_the_counts_of_the_old_code(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = Path(__file__).with_name("apps.py").read_text()
    (app_dir / "reloadable.py").write_text(source)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serve(
        "--reload", "--reload-dir", str(app_dir), "--app-dir", str(app_dir), "--metrics", f"127.0.0.1:{metrics_port}",
        app="reloadable:app", tmp_path=tmp_path, env={"POUNCE_TEST_SYNTHETIC": "5"},
    ) as server:
        wait_for_scrape(url, lambda t: synthetic(t) == 5 and metric(t, "pounce_workers") == 1, server)
        (app_dir / "reloadable.py").write_text(source + "\n# changed\n")
        assert server.wait_log("Finished server process", timeout=30), server.output()
        wait_for_scrape(url, lambda t: synthetic(t) == 10 and metric(t, "pounce_workers") == 1, server)
