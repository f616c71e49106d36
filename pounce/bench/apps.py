"""The built-in workloads' ASGI apps: plain ASGI 3, standard library only.

No framework, so the figures measure the server. Every app answers lifespan itself, so no server
takes a different path ("lifespan unsupported") at start-up. ``pounce bench`` copies this file
next to the run as ``pounce_bench_apps.py`` and every server (peers included, from their own
venvs) imports the same bytes from there, without importing Pounce.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"
JSON_BODY = json.dumps({"message": "Hello, world!"}).encode("utf-8")
LARGE_BODY = bytes(range(256)) * 256  # 64 KiB, not all one byte so compression games don't help
DOWNLOAD_BODY = bytes(range(256)) * 4096  # 1 MiB
STREAM_CHUNKS = 64
STREAM_CHUNK = bytes(range(256)) * 4  # 1 KiB per chunk, 64 KiB in all
WS_HTTP_BODY = b"websocket echo\n"


async def _lifespan(receive: Receive, send: Send) -> None:
    # Bounded by the protocol: startup, then shutdown, then return.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(content_type: bytes, length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(length).encode("ascii"))]


async def _respond(send: Send, content_type: bytes, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _headers(content_type, len(body))})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """13-byte text/plain, the classic plaintext test."""
    if scope["type"] == "http":
        await _respond(send, b"text/plain", HELLO_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def json_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A small JSON object, serialised per request on purpose (as TechEmpower does)."""
    if scope["type"] == "http":
        await _respond(send, b"application/json", json.dumps({"message": "Hello, world!"}).encode("utf-8"))
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends the request body back (POST of 1 KiB in the echo-1k workload)."""
    if scope["type"] == "http":
        await _respond(send, b"application/octet-stream", await _read_body(receive))
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    """64 chunks of 1 KiB, each its own ``http.response.body`` message (chunked on HTTP/1.1)."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(STREAM_CHUNKS - 1):
            await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": STREAM_CHUNK})
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def download(scope: Scope, receive: Receive, send: Send) -> None:
    """1 MiB in one ``http.response.body``."""
    if scope["type"] == "http":
        await _respond(send, b"application/octet-stream", DOWNLOAD_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def upload(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole request body (1 MiB in upload-1m) and answers with its length."""
    if scope["type"] == "http":
        body = await _read_body(receive)
        await _respond(send, b"text/plain", str(len(body)).encode("ascii"))
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def large(scope: Scope, receive: Receive, send: Send) -> None:
    """64 KiB in one ``http.response.body`` (the benchmark scripts' ``large``)."""
    if scope["type"] == "http":
        await _respond(send, b"application/octet-stream", LARGE_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Echoes every WebSocket message; plain HTTP gets a short answer (the readiness probe)."""
    if scope["type"] == "websocket":
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
            elif kind == "websocket.connect":
                await send({"type": "websocket.accept"})
            else:
                return
    elif scope["type"] == "http":
        await _respond(send, b"text/plain", WS_HTTP_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
