"""The middlewares as Config.load() wires them, behind a real server on a real socket."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pounce._types import Environ, Scope, StartResponse
from pounce.config import Config
from pounce.logging import TRACE_LOG_LEVEL, AccessFormatter
from tests.middleware._server import serving


async def client_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    host, port = scope["client"]
    body = f"{scope['scheme']}://{host}:{port}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("kwargs", "expected_prefix"),
    [
        ({}, "https://1.2.3.4:0"),  # defaults: proxy_headers on, 127.0.0.1 trusted
        ({"forwarded_allow_ips": "10.0.0.1"}, "http://127.0.0.1:"),
        ({"proxy_headers": False}, "http://127.0.0.1:"),
    ],
)
def test_proxy_headers_via_server(kwargs: dict[str, Any], expected_prefix: str) -> None:
    async def main() -> str:
        config = Config(app=client_app, port=0, lifespan="off", log_config=None, **kwargs)
        async with serving(config) as (_, url):
            async with httpx.AsyncClient() as client:
                response = await client.get(url, headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
        return response.text

    assert asyncio.run(main()).startswith(expected_prefix)


def test_wsgi_via_server_streams_response() -> None:
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")], None)
        yield b"first:" + body
        # The first chunk must reach the client while the app is still running.
        release.wait(5)
        yield b":second"

    async def main() -> list[bytes]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            config = Config(app=app, interface="wsgi", port=0, lifespan="off", log_config=None)
            config.load()
        chunks: list[bytes] = []
        async with serving(config) as (_, url):
            async with httpx.AsyncClient() as client:
                async with client.stream("POST", url, content=b"payload") as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        chunks.append(chunk)
                        release.set()
        return chunks

    chunks = asyncio.run(main())
    assert b"".join(chunks) == b"first:payload:second"
    assert chunks[0] == b"first:payload"


def test_wsgi_via_server_app_error_is_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("boom")

    async def main() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            config = Config(app=app, interface="wsgi", port=0, lifespan="off", log_config=None)
            config.load()
        async with serving(config) as (_, url):
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code

    assert asyncio.run(main()) == 500
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_trace_logging_via_server(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        config = Config(app=client_app, port=0, lifespan="auto", log_level="trace", log_config=None)
        async with serving(config) as (_, url):
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).status_code == 200

    caplog.set_level(TRACE_LOG_LEVEL, logger="uvicorn.asgi")
    try:
        asyncio.run(main())
    finally:
        for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    messages = [r.getMessage() for r in caplog.records if r.name == "uvicorn.asgi"]
    assert "ASGI [1] Started scope=" in messages[0]  # the lifespan scope
    assert "ASGI [1] Completed" in messages[1]
    assert "ASGI [2] Started scope=" in messages[2]
    assert sum("ASGI [2] Send " in m for m in messages) == 2
    assert "ASGI [2] Completed" in messages[-1]


def test_access_log_format_via_server() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                                         use_colors=False))  # fmt: skip
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)

    async def main() -> int:
        config = Config(app=client_app, port=0, lifespan="off", log_config=None, log_level="info")
        async with serving(config) as (_, url):
            async with httpx.AsyncClient() as client:
                response = await client.get(url + "/some/path?q=1")
        return int(response.text.rsplit(":", 1)[1])

    try:
        client_port = asyncio.run(main())
    finally:
        access.removeHandler(handler)
        for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert lines == [f'INFO:     127.0.0.1:{client_port} - "GET /some/path?q=1 HTTP/1.1" 200 OK']
