"""``--metrics`` on one server fed by real traffic, HTTP/1.1 and HTTP/2, read with a real scrape."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("prometheus_client")


from pounce.observability.events import ClientDisconnected, ConnectionClosed  # noqa: E402
from tests.observability.clients import H2Client, Recorder, sample, wait_until  # noqa: E402
from tests.observability.test_request_events import app  # noqa: E402
from tests.supervisors.serving import free_port  # noqa: E402
from tests.utils import run_server  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def test_real_requests_over_both_protocols_land_in_their_series() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    recorder = Recorder()
    with run_server(app, metrics=f"127.0.0.1:{port}", http2=True, access_log=False,
                    event_handlers=[recorder]) as server:
        with httpx.Client() as client:
            for _ in range(3):
                assert client.post(server.url + "/", content=b"1234").status_code == 200
            assert client.get(server.url + "/error").status_code == 500
        with H2Client(server.host, server.port) as h2client:
            assert [h2client.response(h2client.request(b"GET", b"/"))[0] for _ in range(2)] == [200, 200]
            waiting = h2client.request(b"POST", b"/wait", body=b"x", end=False)
            wait_until(lambda: sample(httpx.get(url).text, "http_server_active_requests") == 1)
            h2client.reset(waiting)
            recorder.wait_for(ClientDisconnected)
            text = httpx.get(url).text
            # The HTTP/2 connection is still open, the HTTP/1.1 one closed.
            assert sample(text, "pounce_open_connections", protocol="h2") == 1
        recorder.wait_for(ConnectionClosed, 2)
        text = httpx.get(url).text
    assert sample(text, "pounce_http_requests_total", http_request_method="POST", status_class="2xx",
                  protocol="http/1.1") == 3
    assert sample(text, "pounce_http_requests_total", http_request_method="GET", status_class="5xx",
                  protocol="http/1.1") == 1
    assert sample(text, "pounce_http_requests_total", http_request_method="GET", status_class="2xx",
                  protocol="h2") == 2
    assert sample(text, "pounce_http_requests_total") == 6
    assert sample(text, "http_server_request_duration_seconds_count", network_protocol_version="2") == 2
    assert sample(text, "http_server_request_duration_seconds_count", http_response_status_code="500") == 1
    # "hello 1234" three times, "hello " twice, "Internal Server Error" once.
    assert sample(text, "http_server_response_body_size_bytes_sum") == 3 * 10 + 2 * 6 + 21
    assert sample(text, "pounce_app_errors_total", error_type="RuntimeError") == 1
    assert sample(text, "pounce_client_disconnects_total", protocol="h2") == 1
    assert sample(text, "pounce_http2_stream_resets_total", initiator="client") == 1
    assert sample(text, "pounce_connections_total", protocol="http/1.1") == 1
    assert sample(text, "pounce_connections_total", protocol="h2") == 1
    assert sample(text, "pounce_open_connections") == 0
    assert sample(text, "http_server_active_requests") == 0
