"""Apps that watch ``scope["extensions"]["pounce.drain"]``: an event stream that says goodbye when the
worker drains, a WebSocket that is told, and ``/drain`` reporting the object (the same for every scope)."""

from __future__ import annotations

import asyncio
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    drain = scope["extensions"]["pounce.drain"]
    if scope["path"] == "/events":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": f"data: hello {os.getpid()}\n\n".encode(), "more_body": True})
        wait = asyncio.ensure_future(drain.wait())
        while not wait.done():
            await asyncio.wait([wait], timeout=0.1)
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"event: bye\ndata: draining\n\n"})
        return
    body = f"id={id(drain)} draining={int(drain.draining)} pid={os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    drain = scope["extensions"]["pounce.drain"]
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await drain.wait()
    await send({"type": "websocket.send", "text": "draining"})
    # Stays open: the server closes it with 1012 before the graceful timeout.
    while (await receive())["type"] != "websocket.disconnect":
        pass
