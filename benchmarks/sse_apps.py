"""The server-sent-events app of ``sse_bench.py``: plain ASGI 3, lifespan answered (by pounce.bench.apps).

Every server imports it as ``benchmarks.sse_apps:sse`` from the checkout, so each runs the same bytes.

- ``GET /`` answers ``PROBE_BODY`` (13 bytes, Content-Length): the harness's readiness probe.
- ``GET /sse?n=N&ms=T`` answers ``text/event-stream`` and pushes N events, one ``http.response.body``
  each, T milliseconds apart (T = 0: back to back, yielding to the loop once between events). Each
  event is ``data: <time.time_ns() just before send>\\n\\n``, so a client on the same machine measures
  the latency from the app's ``send`` to its own read.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from pounce.bench.apps import Receive, Scope, Send, _lifespan

PROBE_BODY = b"sse bench ok\n"
MAX_EVENTS = 100_000
MAX_INTERVAL_MS = 10_000
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def sse(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] != "/sse":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(PROBE_BODY))]})
        await send({"type": "http.response.body", "body": PROBE_BODY})
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    count = max(1, min(MAX_EVENTS, int(query.get("n", ["100"])[0])))
    interval = max(0, min(MAX_INTERVAL_MS, int(query.get("ms", ["20"])[0]))) / 1000.0
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for _ in range(count):
        await send({"type": "http.response.body", "body": b"data: %d\n\n" % time.time_ns(), "more_body": True})
        await asyncio.sleep(interval)
    await send({"type": "http.response.body", "body": b""})
