"""``--metrics``: the Prometheus handler and the /metrics listener, in one process."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

pytest.importorskip("prometheus_client")

from click.testing import CliRunner  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from pounce.config import Config, ConfigError  # noqa: E402
from pounce.main import main  # noqa: E402
from pounce.observability import events as ev  # noqa: E402
from pounce.observability.metrics import MetricsEndpoint, PrometheusMetrics, parse_address  # noqa: E402
from tests.observability.clients import sample  # noqa: E402
from tests.supervisors.serving import free_port  # noqa: E402
from tests.utils import run_server  # noqa: E402


def scrape(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def record(recorder: Any, method: str = "GET", status: int = 200, version: str = "1.1", size: int = 100,
           duration: float = 0.02) -> None:
    """One request through a worker's recorder, as the request observer reports it."""
    key = recorder.started(method, "http")
    recorder.completed(key, method, status, version, "http", duration, size)


def test_requests_become_semantic_convention_histograms_and_pounce_counters() -> None:
    metrics = PrometheusMetrics()
    recorder = metrics.recorder()
    for method, status, version in [("GET", 200, "1.1"), ("GET", 200, "1.1"), ("POST", 503, "2"), ("BREW", 418, "1.1")]:
        record(recorder, method, status, version)
    recorder.started("GET", "http")  # still in flight
    text = scrape(metrics.registry)
    assert sample(text, "http_server_request_duration_seconds_count") == 4
    assert sample(text, "http_server_request_duration_seconds_count", http_request_method="GET",
                  http_response_status_code="200", network_protocol_version="1.1", url_scheme="http") == 2
    assert sample(text, "http_server_request_duration_seconds_bucket", http_request_method="POST", le="0.025") == 1
    assert sample(text, "http_server_request_duration_seconds_bucket", http_request_method="POST", le="0.01") == 0
    assert sample(text, "http_server_request_duration_seconds_bucket", http_request_method="POST", le="+Inf") == 1
    assert sample(text, "http_server_response_body_size_bytes_sum") == 400
    assert sample(text, "http_server_response_body_size_bytes_bucket", le="100.0") == 4
    assert sample(text, "http_server_response_body_size_bytes_bucket", le="0.0") == 0
    assert sample(text, "pounce_http_requests_total", http_request_method="GET", status_class="2xx",
                  protocol="http/1.1") == 2
    assert sample(text, "pounce_http_requests_total", status_class="5xx", protocol="h2") == 1
    assert sample(text, "pounce_http_requests_total", http_request_method="_OTHER", status_class="4xx") == 1
    assert sample(text, "http_server_active_requests", http_request_method="GET") == 1


def test_request_series_are_the_same_in_multiprocess_form() -> None:
    """Process workers record through prometheus-client's own metrics: the same names and values."""
    local, direct = PrometheusMetrics(), PrometheusMetrics(multiprocess=True)
    for metrics in (local, direct):
        recorder = metrics.recorder()
        for method, status, version in [("GET", 200, "1.1"), ("POST", 503, "2"), ("BREW", 418, "1.1")]:
            record(recorder, method, status, version, size=150, duration=0.3)
        recorder.disconnected(recorder.started("GET", "https"), "2")
        recorder.failed("ValueError")
        recorder.failed(None)
    texts = [scrape(m.registry) for m in (local, direct)]
    for name, labels in [
        ("http_server_request_duration_seconds_count", {}),
        ("http_server_request_duration_seconds_bucket", {"le": "0.5"}),
        ("http_server_request_duration_seconds_bucket", {"le": "0.25"}),
        ("http_server_request_duration_seconds_sum", {}),
        ("http_server_response_body_size_bytes_bucket", {"le": "1000.0"}),
        ("pounce_http_requests_total", {"status_class": "4xx", "http_request_method": "_OTHER"}),
        ("http_server_active_requests", {}),
        ("pounce_client_disconnects_total", {"protocol": "h2"}),
        ("pounce_app_errors_total", {"error_type": "ValueError"}),
        ("pounce_app_errors_total", {"error_type": "asgi_protocol"}),
    ]:
        assert sample(texts[0], name, **labels) == sample(texts[1], name, **labels), (name, labels)
    assert sample(texts[0], "http_server_request_duration_seconds_count") == 3
    assert sample(texts[0], "http_server_active_requests") == 0


def test_a_retired_workers_counts_stay_and_its_in_flight_requests_leave() -> None:
    metrics = PrometheusMetrics()
    old, new = metrics.recorder(), metrics.recorder()
    for _ in range(3):
        record(old)
    old.started("GET", "http")  # cut off by its worker's end
    record(new)
    old.retire()
    old.retire()  # harmless
    text = scrape(metrics.registry)
    assert sample(text, "pounce_http_requests_total") == 4
    assert sample(text, "http_server_request_duration_seconds_count") == 4
    assert sample(text, "http_server_active_requests") == 0


def test_the_metrics_handler_takes_no_request_events() -> None:
    """With --metrics alone, the protocols build no request events (the recorder has them)."""
    from pounce.observability.bus import wants_request_events
    from pounce.server import ServerState

    metrics = PrometheusMetrics()
    assert not wants_request_events(metrics)
    state = ServerState()
    unsubscribe = state.event_bus.subscribe(metrics)
    assert state.events is state.event_bus and state.request_events is None
    undo = state.event_bus.subscribe(lambda event: None)
    assert state.request_events is state.event_bus and state.observing
    undo()
    unsubscribe()
    assert state.events is None and state.request_events is None and not state.observing


def test_connections_websockets_streams_errors_and_workers() -> None:
    metrics = PrometheusMetrics()
    for cid, protocol in [(1, "http/1.1"), (2, "h2"), (3, "http/1.1")]:
        metrics(ev.ConnectionOpened(time=0, worker_id=1, connection_id=cid, protocol=protocol, peer=None, tls=False))  # type: ignore[arg-type]
    metrics(ev.ConnectionClosed(time=0, worker_id=1, connection_id=3, protocol="http/1.1", requests_served=1,
                                upgraded_to="websocket"))
    metrics(ev.ConnectionOpened(time=0, worker_id=1, connection_id=3, protocol="websocket", peer=None, tls=False))
    metrics(ev.WebSocketAccepted(time=0, worker_id=1, connection_id=3, request_id=1, path="/ws", subprotocol=None,
                                 scope={}))
    metrics(ev.WebSocketClosed(time=0, worker_id=1, connection_id=3, request_id=1, close_code=1000, initiator="client",
                               messages_received=5, messages_sent=7))
    metrics(ev.StreamReset(time=0, worker_id=1, connection_id=2, stream_id=3, request_id=None, error_code=8,
                           initiator="client"))
    for wid, reason in [(1, "initial"), (2, "initial"), (3, "restart")]:
        metrics(ev.WorkerStarted(time=0, worker_id=wid, mode="thread", generation=0, pid=1, reason=reason))  # type: ignore[arg-type]
    metrics(ev.WorkerDraining(time=0, worker_id=1, mode="thread", generation=0, reason="restart"))
    metrics(ev.WorkerStopped(time=0, worker_id=1, mode="thread", generation=0, requests_served=0))
    text = scrape(metrics.registry)
    assert sample(text, "pounce_open_connections", protocol="http/1.1") == 1
    assert sample(text, "pounce_open_connections", protocol="h2") == 1
    assert sample(text, "pounce_open_connections", protocol="websocket") == 1
    assert sample(text, "pounce_connections_total") == 4
    assert sample(text, "pounce_websocket_connections") == 0
    assert sample(text, "pounce_websocket_messages_total", direction="received") == 5
    assert sample(text, "pounce_websocket_messages_total", direction="sent") == 7
    assert sample(text, "pounce_http2_stream_resets_total", initiator="client") == 1
    assert sample(text, "pounce_workers", mode="thread") == 2
    assert sample(text, "pounce_worker_restarts_total", reason="restart") == 1
    assert sample(text, "pounce_worker_drains_total", reason="restart") == 1


def test_many_workers_counting_at_once_while_scraped_count_exactly() -> None:
    """Thread workers each count into their own recorder; scrapes meanwhile never fail or overcount."""
    metrics = PrometheusMetrics()
    per_thread = 2000
    barrier = threading.Barrier(8)
    done = threading.Event()
    seen: list[float] = []

    def worker(n: int) -> None:
        recorder = metrics.recorder()
        barrier.wait()
        for i in range(per_thread):
            record(recorder, status=200 + (i % 3) * 100)
        if n % 2:
            recorder.retire()

    def scraper() -> None:
        while not done.is_set():
            seen.append(sample(scrape(metrics.registry), "pounce_http_requests_total"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    watcher = threading.Thread(target=scraper)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    text = scrape(metrics.registry)
    assert sample(text, "pounce_http_requests_total") == 8 * per_thread
    assert sample(text, "http_server_request_duration_seconds_count") == 8 * per_thread
    assert sample(text, "http_server_active_requests") == 0
    assert seen and all(0 <= value <= 8 * per_thread for value in seen)
    assert seen == sorted(seen)  # counters never go back, retirements included


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_address(":9100") == ("0.0.0.0", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", "host:0", "host:99999", "::1:9100", "h:p"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_the_endpoint_serves_metrics_only_at_slash_metrics() -> None:
    metrics = PrometheusMetrics()
    record(metrics.recorder())
    endpoint = MetricsEndpoint("127.0.0.1", 0, metrics.registry)
    try:
        response = httpx.get(endpoint.url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert sample(response.text, "pounce_http_requests_total") == 1
        base = endpoint.url.removesuffix("/metrics")
        assert httpx.get(base + "/").status_code == 404
        assert httpx.get(base + "/other").status_code == 404
        openmetrics = httpx.get(endpoint.url, headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    finally:
        endpoint.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint.url, timeout=2)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_single_server_serves_metrics_on_its_own_port_and_closes_it() -> None:
    port = free_port()
    with run_server(hello, metrics=f"127.0.0.1:{port}") as server:
        assert server.port != port
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert sample(text, "pounce_workers", mode="single") == 1
        # The app's port does not answer /metrics with metrics: the app does.
        assert httpx.get(f"{server.url}/metrics").text == "hello"
        # The app's own prometheus-client metrics (default registry) are in the same scrape.
        assert "python_info" in text or "process_" in text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
        except httpx.ConnectError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the metrics listener outlived the server")


def test_metrics_option_errors() -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        Config(hello, metrics="nope")
    with pytest.raises(ConfigError, match="own address"):
        Config(hello, port=8000, metrics="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="own address"):
        Config(hello, host="0.0.0.0", port=8000, metrics="127.0.0.1:8000")
    assert Config(hello, port=8000, metrics="127.0.0.1:8001").metrics_address == ("127.0.0.1", 8001)


@pytest.mark.parametrize("value", ["nope", "127.0.0.1:8000", "[::1"])
def test_metrics_cli_errors_exit_2(value: str) -> None:
    result = CliRunner().invoke(main, ["tests.observability.apps:app", "--port", "8000", "--metrics", value])
    assert result.exit_code == 2, result.output
    assert "metrics" in result.output


def test_metrics_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from unittest import mock

    monkeypatch.setenv("POUNCE_METRICS", "127.0.0.1:9999")
    with mock.patch("pounce.main.run") as run:
        assert CliRunner().invoke(main, ["tests.observability.apps:app"]).exit_code == 0
    assert run.call_args.kwargs["metrics"] == "127.0.0.1:9999"
