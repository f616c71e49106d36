"""Apps and handlers the observability tests serve and subscribe, in-process and in ``python -m pounce``."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pounce.observability.bus import EventBus, EventSource, events_extension
from pounce.observability.events import Event, RequestStarted, ResponseCompleted

# Synthetic requests (until the protocols emit real ones) use a method no test client sends, so their
# counts stay exact whatever the server itself reports for the test's own requests.
SYNTHETIC_METHOD = "OPTIONS"


def _bus(source: EventSource) -> EventBus:
    return source._bus  # the tests play protocol: they emit, which framework code never does


def emit_synthetic_requests(source: EventSource, count: int, status: int = 200, body_bytes: int = 10) -> None:
    """What the protocols will emit for ``count`` requests: RequestStarted, then ResponseCompleted."""
    bus = _bus(source)
    for _ in range(count):
        now = time.monotonic()
        scope = {"type": "http", "method": SYNTHETIC_METHOD, "path": "/synthetic", "scheme": "http",
                 "http_version": "1.1", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}
        request_id = bus.next_request_id()
        started = RequestStarted(time=now, worker_id=bus.worker_id, connection_id=1, request_id=request_id,
                                 method=SYNTHETIC_METHOD, path="/synthetic", http_version="1.1", stream_id=None,
                                 scope=scope)
        bus.emit(started)
        bus.emit(ResponseCompleted(time=now, worker_id=bus.worker_id, connection_id=1, request_id=request_id,
                                   status=status, body_bytes=body_bytes, queue_seconds=0.0, first_byte_seconds=0.001,
                                   total_seconds=0.002, request=started))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Lifespan: emits ``$POUNCE_TEST_SYNTHETIC`` synthetic requests per worker at startup.

    HTTP: ``/emit?n=K`` emits K synthetic requests in the worker that serves it; ``/error`` raises;
    anything else answers ``worker=<id>``.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                source = events_extension(scope)
                if source is not None:
                    scope["state"]["events"] = source
                    emit_synthetic_requests(source, int(os.environ.get("POUNCE_TEST_SYNTHETIC", "0")))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    source = scope["state"].get("events")
    path = scope["path"]
    if path == "/error":
        raise RuntimeError("boom")
    if path == "/emit":
        count = int(scope["query_string"].decode().partition("=")[2] or "1")
        emit_synthetic_requests(source, count)
        body = f"emitted={count} worker={source.worker_id}".encode()
    else:
        body = f"worker={source.worker_id if source is not None else '?'}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


_file_lock = threading.Lock()


def record_to_file(event: Event) -> None:
    """``--event-handler tests.observability.apps:record_to_file``: one line per event in $POUNCE_TEST_EVENTS."""
    fields = [type(event).__name__, f"worker={event.worker_id}"]
    for name in ("mode", "generation", "reason", "pid"):
        if hasattr(event, name):
            fields.append(f"{name}={getattr(event, name)}")
    with _file_lock, open(os.environ["POUNCE_TEST_EVENTS"], "a") as file:
        file.write(" ".join(fields) + "\n")


not_callable = 42


async def coroutine_handler(event: Event) -> None:
    pass
