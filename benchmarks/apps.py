"""ASGI apps used by the benchmarks: the same bytes for every server.

Each app is plain ASGI 3 with no framework, so the numbers measure the server and
not a framework.  Every app answers lifespan events itself so that no server takes
a different code path ("lifespan unsupported") at start-up.

- ``hello``     13-byte ``text/plain`` body ("Hello, world!"), the classic plaintext test.
- ``json_app``  a small JSON object serialised on every request, as TechEmpower does.
- ``large``     a 64 KiB ``application/octet-stream`` body, sent in one ``http.response.body``.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"
LARGE_BODY = bytes(range(256)) * 256  # 64 KiB, not all one byte so compression games don't help
assert len(LARGE_BODY) == 64 * 1024


async def _lifespan(receive: Receive, send: Send) -> None:
    # Loop is bounded by the protocol: startup then shutdown, then we return.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(content_type: bytes, length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(length).encode("ascii"))]


async def _respond(send: Send, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _headers(content_type, len(body))})
    await send({"type": "http.response.body", "body": body})


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _respond(send, b"text/plain", HELLO_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def json_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        # Serialised per request on purpose: the work is part of the test.
        body = json.dumps({"message": "Hello, world!"}).encode("utf-8")
        await _respond(send, b"application/json", body)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def large(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _respond(send, b"application/octet-stream", LARGE_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


# What a correct server must send back for each app: checked once per server start so
# that a server returning errors quickly can't win the benchmark.
EXPECTED_BODIES: dict[str, bytes] = {
    "hello": HELLO_BODY,
    "json_app": json.dumps({"message": "Hello, world!"}).encode("utf-8"),
    "large": LARGE_BODY,
}
