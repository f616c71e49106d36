"""Small apps that subprocess-based tests serve with ``python -m pounce tests.apps.basic:<name>``."""

from __future__ import annotations

import asyncio
from typing import Any


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after ``?s=`` seconds (default 1): a request that is in flight when a signal arrives."""
    if scope["type"] != "http":
        return
    seconds = float(scope["query_string"].decode().partition("=")[2] or 1)
    await asyncio.sleep(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"finished"})


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database is down"})


def factory() -> Any:
    return hello
