"""Config -> ServerConfig: resolution of options, the frozen runtime view, and the Python API."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import httpx
import pytest

import pounce
from pounce.config import Config, OptionValueError, ServerConfig
from pounce.protocols.http.fast_impl import FastHTTPProtocol
from pounce.protocols.http.h11_impl import H11Protocol
from tests.apps.basic import hello
from tests.utils import run_server


def test_load_freezes_a_typed_server_config() -> None:
    config = Config(app=hello, port=1234, root_path="/api", headers=[("X-Extra", "1")])
    config.load()
    frozen = config.server_config
    assert isinstance(frozen, ServerConfig)
    assert frozen.port == 1234 and frozen.root_path == "/api"
    assert frozen.default_headers == ((b"server", b"pounce"), (b"x-extra", b"1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.port = 80  # type: ignore[misc]
    # Changing the Config after load() does not reach the running server.
    config.port = 9999
    assert config.server_config.port == 1234


@pytest.mark.parametrize(
    "http, expected", [("auto", FastHTTPProtocol), ("fast", FastHTTPProtocol), ("h11", H11Protocol)]
)
def test_http_implementations(http: str, expected: type) -> None:
    config = Config(app=hello, http=http)
    config.load()
    assert config.server_config.http_protocol_class is expected


@pytest.mark.parametrize(
    "option, value, expected",
    [("http", "httptools", FastHTTPProtocol), ("http", "zttp", FastHTTPProtocol)],
)
def test_uvicorn_implementation_names_map_to_ours(
    option: str, value: str, expected: type, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Config(app=hello, **{option: value})  # type: ignore[arg-type]
    config.load()
    assert config.http_protocol_class is expected
    err = capsys.readouterr().err
    assert f"--http {value} is a Uvicorn implementation; Pounce uses its own 'fast' instead." in err


def test_websockets_name_maps_to_wsproto() -> None:
    pytest.importorskip("wsproto")
    config = Config(app=hello, ws="websockets")
    config.load()
    assert config.ws_protocol_class is not None
    assert config.ws_protocol_class.__module__ == "pounce.protocols.websockets.wsproto_impl"


def test_http2_serves_http1_and_http2_on_one_protocol() -> None:
    from pounce.protocols.http.negotiate import FastOrH2Protocol, H11OrH2Protocol

    config = Config(app=hello, http2=True)
    config.load()
    assert config.server_config.http_protocol_class is FastOrH2Protocol
    assert FastOrH2Protocol.alpn_protocols == ["h2", "http/1.1"]
    config = Config(app=hello, http2=True, http="h11")
    config.load()
    assert config.server_config.http_protocol_class is H11OrH2Protocol


def test_server_header_can_be_replaced_or_dropped() -> None:
    config = Config(app=hello, headers=[("Server", "mine")])
    config.load()
    assert config.server_config.default_headers == ((b"server", b"mine"),)
    config = Config(app=hello, server_header=False)
    config.load()
    assert config.server_config.default_headers == ()


def test_web_concurrency_sets_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Config(app=hello).workers == 3
    assert Config(app=hello, workers=2).workers == 2


def test_zero_or_fewer_workers_is_one_as_in_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    # The attribute reads as in Uvicorn ("workers or 1"; WEB_CONCURRENCY as given); what runs is one server.
    assert Config(app=hello, workers=0).workers == 1
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    config = Config(app=hello)
    assert config.workers == 0
    config.load()
    assert config.server_config.workers == 1


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"backlog": 2**31}, "backlog"),
        ({"fd": -1}, "fd"),
        ({"limit_max_requests_jitter": -1}, "limit_max_requests_jitter"),
        ({"limit_request_line": -1}, "limit_request_line"),
    ],
)
def test_values_that_could_only_crash_later_are_refused_at_once(kwargs: dict[str, int], option: str) -> None:
    # Config(port=70000) started the lifespan and then failed to bind with an OverflowError.
    with pytest.raises(OptionValueError) as info:
        Config(app=hello, **kwargs)
    assert info.value.option == option


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("POUNCE_TEST_VALUE=from-file\n")
    monkeypatch.delenv("POUNCE_TEST_VALUE", raising=False)
    Config(app=hello, env_file=str(env))
    import os

    assert os.environ["POUNCE_TEST_VALUE"] == "from-file"
    monkeypatch.delenv("POUNCE_TEST_VALUE")


def test_interface_auto_detection() -> None:
    def wsgi_app(environ: object, start_response: object) -> list[bytes]:
        return [b""]

    class ASGI2:
        def __init__(self, scope: object) -> None:
            pass

        async def __call__(self, receive: object, send: object) -> None:
            pass

    for app, interface in [(hello, "asgi3"), (ASGI2, "asgi2")]:
        config = Config(app=app)
        config.load()
        assert config.interface == interface
    config = Config(app=wsgi_app, interface="wsgi")
    config.load()
    assert config.server_config.ws_protocol_class is None


def test_run_serves_a_uds(tmp_path: Path) -> None:
    path = str(tmp_path / "pounce.sock")
    config = Config(app=hello, uds=path, lifespan="off", log_level="warning")
    server = pounce.Server(config)
    import threading
    import time

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            assert client.get("http://localhost/").text == "Hello, world!"
    finally:
        server.should_exit = True
        thread.join(10)


def test_bind_socket_logs_and_returns_an_inheritable_socket() -> None:
    config = Config(app=hello, port=0)
    sock = config.bind_socket()
    try:
        assert sock.get_inheritable()
        assert sock.family == socket.AF_INET
    finally:
        sock.close()


def test_server_api_serves_through_run_server() -> None:
    with run_server(hello) as running:
        response = httpx.get(running.url)
    assert response.status_code == 200
    assert response.text == "Hello, world!"


def test_app_wrapped_in_proxy_headers_middleware_is_detected_as_asgi3() -> None:
    from pounce.middleware.proxy_headers import ProxyHeadersMiddleware

    config = Config(app=ProxyHeadersMiddleware(hello, trusted_hosts="*"))
    config.load()
    assert config.interface == "asgi3"
    with run_server(ProxyHeadersMiddleware(hello, trusted_hosts="*")) as running:
        assert httpx.get(running.url).text == "Hello, world!"
