"""ASGI apps the worker tests serve: each response says which process and thread served it."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from typing import Any

_instances = itertools.count(1)


def _who() -> bytes:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"pid={os.getpid()} thread={threading.current_thread().name} gil={int(gil)}".encode()


class App:
    """Serves ``/`` (who am I), ``/slow?s=N`` (sleeps), ``/instance`` (which app object)."""

    def __init__(self) -> None:
        self.instance = next(_instances)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # A loop-bound resource, as a database pool would be.
                    scope["state"]["loop"] = asyncio.get_running_loop()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/slow":
            # Headers and a first chunk at once, so a client knows the request is in flight.
            seconds = float(scope["query_string"].decode().partition("=")[2] or "1")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"slow started; ", "more_body": True})
            await asyncio.sleep(seconds)
            await send({"type": "http.response.body", "body": b"done " + _who()})
            return
        if path == "/block":
            # Blocks this worker's event loop (a CPU-bound or sync-I/O app bug): its health check goes unanswered.
            time.sleep(float(scope["query_string"].decode().partition("=")[2] or "3"))
            body = b"unblocked " + _who()
        elif path == "/instance":
            body = f"instance={self.instance}".encode()
        elif path == "/loop":
            same = scope["state"].get("loop") is asyncio.get_running_loop()
            body = f"lifespan-loop-is-request-loop={int(same)}".encode()
        else:
            body = _who()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


app = App()


def create_app() -> App:
    """For --factory: every call is a new app instance."""
    return App()


class _FailingLifespan(App):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
            return
        await super().__call__(scope, receive, send)


failing_lifespan = _FailingLifespan()
