"""Apps and handlers the observability tests serve and subscribe, in-process and in ``python -m pounce``."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from pounce.observability.bus import events_extension
from pounce.observability.events import Event, RequestStarted


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: ``/error`` raises; ``/sleep`` sleeps 0.1 s first; anything answers ``worker=<id>`` (from its lifespan)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                source = events_extension(scope)
                if source is not None:
                    scope["state"]["events"] = source
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    source = scope["state"].get("events")
    if scope["path"] == "/error":
        raise RuntimeError("boom")
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.1)
    body = f"worker={source.worker_id if source is not None else '?'}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


_file_lock = threading.Lock()


# What record_to_file writes of an event, where it has it (values without spaces: one line, "name=value").
RECORDED_FIELDS = (
    "mode", "generation", "reason", "pid", "connection_id", "request_id", "protocol", "requests_served", "method",
    "http_version", "stream_id", "status", "body_bytes", "exception_type", "sent_500", "error_code", "initiator",
)


def record_to_file(event: Event) -> None:
    """``--event-handler tests.observability.apps:record_to_file``: one line per event in $POUNCE_TEST_EVENTS."""
    fields = [type(event).__name__, f"worker={event.worker_id}"]
    for name in RECORDED_FIELDS:
        if hasattr(event, name):
            fields.append(f"{name}={getattr(event, name)}")
    request = event if isinstance(event, RequestStarted) else getattr(event, "request", None)
    if isinstance(request, RequestStarted):
        fields.append(f"path={request.path}")
    with _file_lock, open(os.environ["POUNCE_TEST_EVENTS"], "a") as file:
        file.write(" ".join(fields) + "\n")


not_callable = 42


async def coroutine_handler(event: Event) -> None:
    pass
