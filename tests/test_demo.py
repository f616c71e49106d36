"""The demo app shipped in the package, served by a real server."""

from __future__ import annotations

import httpx

from pounce.demo import app
from tests.utils import run_server


def test_index_shows_runtime_and_resolved_config() -> None:
    with run_server(app, root_path="/demo") as running:
        page = httpx.get(running.url + "/").text
    assert "<h2>Runtime</h2>" in page and "<th>GIL</th>" in page
    assert "<th>root_path</th><td>/demo</td>" in page
    assert "pounce.protocols.http.fast_impl.FastHTTPProtocol" in page


def test_index_names_the_url_it_was_asked_for() -> None:
    # The page showed a literal "{host}" in its curl example.
    with run_server(app) as running:
        page = httpx.get(running.url + "/").text
        behind = httpx.get(running.url + "/", headers={"host": "demo.example:8443"}).text
    assert "{host}" not in page
    assert f"<code>curl -d hello {running.url}/echo</code>" in page
    assert "<code>curl -d hello http://demo.example:8443/echo</code>" in behind
    with run_server(app, root_path="/demo") as running:  # behind a proxy that strips /demo
        page = httpx.get(running.url + "/").text
    assert f"<code>curl -d hello {running.url}/demo/echo</code>" in page
    assert '<a href="/demo/stream">' in page


def test_echo_and_stream_and_health() -> None:
    with run_server(app, http="h11") as running, httpx.Client(base_url=running.url) as client:
        echoed = client.post("/echo?a=1", content=b"hello").json()
        assert echoed["method"] == "POST" and echoed["body"] == "hello" and echoed["query_string"] == "a=1"
        with client.stream("GET", "/stream?n=3") as response:
            lines = list(response.iter_lines())
        assert lines == ["line 1 of 3", "line 2 of 3", "line 3 of 3"]
        assert response.headers["transfer-encoding"] == "chunked"
        assert client.get("/health").text == "ok"
        assert client.get("/nope").status_code == 404
        assert client.get("/stream?n=x").status_code == 400
