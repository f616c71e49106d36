"""The "ceiling" reference of issue 14: the least a pure-Python asyncio HTTP/1.1 server can do.

It answers every request with one canned 200 and validates nothing: no parsing beyond finding the
end of each head, no request body support, no timers, no ASGI, no app. What a real server does on
top of this (parsing and validating, a scope, an app task, framing, limits, timeouts) is what the
ratio ``pounce / ceiling`` in ``http_bench.py --ceiling`` measures. Never serve anything with it.

    python3 benchmarks/ceiling_server.py --host 127.0.0.1 --port 8000 [--body "Hello, world!"]
"""

from __future__ import annotations

import argparse
import asyncio
import signal


def canned_response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


class CeilingProtocol(asyncio.Protocol):
    """Finds b"\\r\\n\\r\\n", answers one canned response per head found, keeps the connection open."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers = 0
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            answers += 1
            start = end + 4
        self.buffer = buffer[start:]
        if answers and self.transport is not None:
            self.transport.write(self.response * answers)


async def serve(host: str, port: int, body: bytes) -> None:
    loop = asyncio.get_running_loop()
    response = canned_response(body)
    server = await loop.create_server(lambda: CeilingProtocol(response), host, port, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--body", default="Hello, world!", help="the body of every response")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.body.encode()))


if __name__ == "__main__":
    main()
