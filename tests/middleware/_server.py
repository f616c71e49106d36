"""Run a real pounce Server on 127.0.0.1:0 inside the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pounce.config import Config
from pounce.server import Server


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[tuple[Server, str]]:
    """Yield (server, base_url) once the server listens; always stop it, bounded in time."""
    server = Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):  # up to ~5 s to start
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # startup failed: surface the reason
        raise RuntimeError("server exited during startup")
    assert server.started, "server did not start in time"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
