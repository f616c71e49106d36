"""One scrape sees the whole server: real HTTP load over 4 thread workers, 4 process workers, a SIGHUP
rolling restart and a --reload, each checked with a real scrape parsed by prometheus-client's parser.

The load is POST requests, each on a connection of its own so that the workers share it; the
readiness probes of ``serve()`` are GETs, so the POST counts must be exactly what the test sent.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prometheus_client")

from tests.observability.clients import sample as metric  # noqa: E402
from tests.supervisors.serving import Server, free_port, serve  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WORKERS = 4
METHOD = "POST"
ACCESS_LINE = '"POST /load HTTP/1.1" 200'


def posts(text: str) -> float:
    return metric(text, "pounce_http_requests_total", http_request_method=METHOD)


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


def load(port: int, count: int, clients: int = 4) -> Counter[str]:
    """``count`` POST /load requests on new connections from ``clients`` threads; who served how many."""
    served_by: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def client(share: int) -> None:
        for _ in range(share):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request(METHOD, "/load", body=b"x", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode()
                with lock:
                    if response.status == 200:
                        served_by[body.split("worker=")[1]] += 1
                    else:
                        failures.append(f"{response.status}: {body}")
            except OSError as exc:
                with lock:
                    failures.append(repr(exc))
            finally:
                conn.close()

    shares = [count // clients + (1 if n < count % clients else 0) for n in range(clients)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert sum(served_by.values()) == count
    return served_by


def load_every_worker(port: int, workers: int, batch: int = 20, limit: int = 400) -> Counter[str]:
    """Load in batches until every worker has served some of it (at most ``limit`` requests)."""
    served_by: Counter[str] = Counter()
    while len(served_by) < workers and sum(served_by.values()) < limit:
        served_by += load(port, batch)
    assert len(served_by) == workers, f"the load reached only workers {dict(served_by)}"
    return served_by


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_one_scrape_counts_every_worker_exactly_and_a_rolling_restart_loses_nothing(mode: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serve(
        "--workers", str(WORKERS), "--worker-mode", mode, "--timeout-graceful-shutdown", "10",
        "--metrics", f"127.0.0.1:{metrics_port}", app="tests.observability.apps:app", tmp_path=tmp_path,
    ) as server:
        text = wait_for_scrape(url, lambda t: metric(t, "pounce_workers", mode=mode) == WORKERS, server)
        assert metric(text, "pounce_worker_restarts_total") == 0
        assert posts(text) == 0

        served_by = load_every_worker(server.port, WORKERS)
        sent = sum(served_by.values())
        assert set(served_by) == {str(n) for n in range(1, WORKERS + 1)}, served_by
        # Exact: N requests spread over the workers are N in one scrape, in every series they feed.
        text = wait_for_scrape(url, lambda t: posts(t) >= sent, server, timeout=10)
        assert posts(text) == sent
        assert metric(text, "pounce_http_requests_total", http_request_method=METHOD, status_class="2xx",
                      protocol="http/1.1") == sent
        assert metric(text, "http_server_request_duration_seconds_count", http_request_method=METHOD,
                      http_response_status_code="200", network_protocol_version="1.1", url_scheme="http") == sent
        assert metric(text, "http_server_response_body_size_bytes_sum", http_request_method=METHOD) == sent * len(
            "worker=1")
        text = wait_for_scrape(url, lambda t: metric(t, "http_server_active_requests") == 0, server, timeout=10)
        assert metric(text, "pounce_connections_total", protocol="http/1.1") >= sent

        server.signal(signal.SIGHUP)
        assert server.wait_log("Finished server process", count=WORKERS, timeout=60), server.output()
        # The replaced workers' counts are all still there.
        text = wait_for_scrape(
            url,
            lambda t: metric(t, "pounce_workers", mode=mode) == WORKERS
            and metric(t, "pounce_worker_drains_total", reason="restart") == WORKERS,
            server,
        )
        assert posts(text) == sent
        assert metric(text, "pounce_worker_restarts_total", reason="restart") == WORKERS
        assert metric(text, "http_server_request_duration_seconds_count", http_request_method=METHOD) == sent

        new_served_by = load(server.port, 8)
        assert all(int(worker) > WORKERS for worker in new_served_by), new_served_by
        text = wait_for_scrape(url, lambda t: posts(t) >= sent + 8, server, timeout=10)
        assert posts(text) == sent + 8
        assert metric(text, "http_server_response_body_size_bytes_sum", http_request_method=METHOD) == (
            (sent + 8) * len("worker=1"))
        # The app's port never serves the scrape.
        assert "pounce_workers" not in httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
        # The access log, another built-in subscriber shared by the workers: one line per request, exactly.
        assert server.wait_log(ACCESS_LINE, count=sent + 8, timeout=10), server.output()[-3000:]
        assert server.output().count(ACCESS_LINE) == sent + 8


def test_reload_keeps_the_counts_of_the_old_code(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = Path(__file__).with_name("apps.py").read_text()
    (app_dir / "reloadable.py").write_text(source)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serve(
        "--reload", "--reload-dir", str(app_dir), "--app-dir", str(app_dir), "--metrics", f"127.0.0.1:{metrics_port}",
        app="reloadable:app", tmp_path=tmp_path,
    ) as server:
        wait_for_scrape(url, lambda t: metric(t, "pounce_workers") == 1, server)
        load(server.port, 5)
        wait_for_scrape(url, lambda t: posts(t) == 5, server)
        (app_dir / "reloadable.py").write_text(source + "\n# changed\n")
        assert server.wait_log("Finished server process", timeout=30), server.output()
        wait_for_scrape(url, lambda t: posts(t) == 5 and metric(t, "pounce_workers") == 1, server)
        load(server.port, 5)
        wait_for_scrape(url, lambda t: posts(t) == 10, server)
