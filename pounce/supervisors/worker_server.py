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
from pounce.observability.runtime import Telemetry, WorkerIdentity
from pounce.server import Server

logger = logging.getLogger("uvicorn.error")


class WorkerServer(Server):
    def __init__(
        self,
        config: Config,
        on_recycle: Callable[[], None] | None = None,
        *,
        worker: WorkerIdentity | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(config, worker=worker, telemetry=telemetry)
        self.recycle_requested = False
        self.on_recycle = on_recycle
        # The loop this server runs on, so a supervisor thread can post health checks to it.
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    def max_requests_exceeded(self) -> bool:
        limit = self.limit_max_requests
        if limit is None or self.server_state.total_requests < limit:
            return False
        if not self.recycle_requested:
            self.recycle_requested = True
            logger.info("Maximum request limit of %d exceeded. Replacing this worker.", limit)
            if self.on_recycle is not None:
                self.on_recycle()
        # Keep serving: the supervisor stops us (should_exit) once the replacement is up.
        return False
