from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pounce._types import Scope
from pounce.logging import TRACE_LOG_LEVEL
from pounce.middleware.message_logger import MessageLoggerMiddleware, message_with_placeholders

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def asgi_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logger = logging.getLogger("uvicorn.asgi")
    old_propagate, old_level = logger.propagate, logger.level
    logger.propagate = False
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(TRACE_LOG_LEVEL)
    logger.setLevel(TRACE_LOG_LEVEL)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate, logger.level = old_propagate, old_level


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "uvicorn.asgi"]


async def test_message_logger(asgi_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-secret", b"token")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": False})

    transport = httpx.ASGITransport(app=MessageLoggerMiddleware(app), client=("10.0.0.9", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/", content=b"0123456789")
    assert response.status_code == 200
    logged = messages(asgi_log)
    assert all(r.levelno == TRACE_LOG_LEVEL for r in asgi_log.records)
    assert [m.split(" ", 5)[:5] for m in logged] == [
        ["10.0.0.9:4321", "-", "ASGI", "[1]", "Started"],
        ["10.0.0.9:4321", "-", "ASGI", "[1]", "Receive"],
        ["10.0.0.9:4321", "-", "ASGI", "[1]", "Send"],
        ["10.0.0.9:4321", "-", "ASGI", "[1]", "Send"],
        ["10.0.0.9:4321", "-", "ASGI", "[1]", "Completed"],
    ]
    assert "'headers': '<...>'" in logged[0]
    assert "'body': '<10 bytes>'" in logged[1]
    assert "token" not in "".join(logged)
    assert "'body': '<5 bytes>'" in logged[3]


async def test_message_logger_exception(asgi_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise RuntimeError()

    middleware = MessageLoggerMiddleware(app)
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with pytest.raises(RuntimeError):
            await client.get("/")
        with pytest.raises(RuntimeError):
            await client.get("/")
    logged = messages(asgi_log)
    assert sum("ASGI [1] Started" in m for m in logged) == 1
    assert sum("ASGI [1] Raised exception" in m for m in logged) == 1
    assert sum("ASGI [2] Raised exception" in m for m in logged) == 1
    assert not any("Completed" in m or "Send" in m or "Receive" in m for m in logged)
    assert middleware.task_counter == 2


async def test_no_client_prefix(asgi_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        pass

    async def receive() -> Any:
        raise AssertionError

    async def send(message: Any) -> None:
        raise AssertionError

    await MessageLoggerMiddleware(app)({"type": "lifespan"}, receive, send)
    assert messages(asgi_log) == ["ASGI [1] Started scope={'type': 'lifespan'}", "ASGI [1] Completed"]


async def test_nothing_logged_above_trace(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.DEBUG, logger="uvicorn.asgi")
    transport = httpx.ASGITransport(app=MessageLoggerMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).status_code == 204
    assert messages(caplog) == []


def test_placeholders() -> None:
    message = {"type": "websocket.send", "text": "héllo", "bytes": None, "headers": [(b"a", b"b")]}
    assert message_with_placeholders(message) == {
        "type": "websocket.send",
        "text": "<5 chars>",
        "bytes": None,
        "headers": "<...>",
    }
    assert message["text"] == "héllo"  # the original is not modified
