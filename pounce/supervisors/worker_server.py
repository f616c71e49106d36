"""The server a supervised worker runs: a ``Server`` that lets its supervisor recycle it.

A plain ``Server`` stops when ``--limit-max-requests`` is reached. Under a supervisor that
would leave a gap (and, with one worker, nobody accepting) until a replacement has started.
A ``WorkerServer`` instead raises its hand (``recycle_requested``) and keeps serving; the
supervisor starts a replacement, waits until it is healthy, and only then stops this one --
the same rolling replacement as SIGHUP.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from pounce.config import Config
from pounce.server import Server

logger = logging.getLogger("uvicorn.error")


class WorkerServer(Server):
    def __init__(self, config: Config, on_recycle: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.recycle_requested = False
        self.on_recycle = on_recycle
        # The loop this server runs on, so a supervisor thread can post health checks to it.
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    async def on_tick(self, counter: int) -> bool:
        limit = self.limit_max_requests
        if limit is not None and not self.should_exit and self.server_state.total_requests >= limit:
            if not self.recycle_requested:
                self.recycle_requested = True
                logger.info("Maximum request limit of %d exceeded. Replacing this worker.", limit)
                if self.on_recycle is not None:
                    self.on_recycle()
            # Hide the limit from the base check so it does not stop us before the replacement is up.
            # (limit_max_requests is a cached_property: an instance value takes precedence.)
            self.__dict__["limit_max_requests"] = None
        should_exit = await super().on_tick(counter)
        # Belt and braces, should the base class ever compute the limit another way.
        return should_exit and (self.should_exit or not self.recycle_requested)
