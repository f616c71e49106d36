"""Back-pressure between a transport and one request/response cycle, in both directions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pounce._types import ASGIReceiveCallable, ASGISendCallable, Scope

CLOSE_HEADER = (b"connection", b"close")

# Buffered request body above which we stop reading from the socket until the app consumes it.
HIGH_WATER_LIMIT = 65536

logger = logging.getLogger("uvicorn.error")


class FlowControl:
    """Read pausing, write waiting, and the write-stall deadline (``--timeout-write``).

    While the transport says its write buffer is full, the peer is not reading. If that lasts
    ``write_timeout`` seconds, ``on_stall`` runs (by default the transport is aborted): a client that
    stops reading must not hold a connection, its buffers and an app task forever.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        write_timeout: float | None = None,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        # Made only when a writer has to wait: an Event and its deque of waiters are ~860 bytes, and two
        # objects the garbage collector walks, on every connection otherwise.
        self._is_writable_event: asyncio.Event | None = None
        self.write_timeout = write_timeout
        self._on_stall = on_stall
        self._stall_timer: asyncio.TimerHandle | None = None

    async def drain(self) -> None:
        if not self.write_paused:
            return
        event = self._is_writable_event
        if event is None:
            event = self._is_writable_event = asyncio.Event()
        await event.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            if self._is_writable_event is not None:
                self._is_writable_event.clear()
            if self.write_timeout is not None and self._stall_timer is None:
                loop = asyncio.get_running_loop()
                self._stall_timer = loop.call_later(self.write_timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self.write_paused:
            self.write_paused = False
            if self._is_writable_event is not None:
                self._is_writable_event.set()

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.write_paused:
            self.give_up()

    def give_up(self) -> None:
        """The client has taken no data for ``write_timeout`` seconds: end its connection."""
        logger.info("Client accepted no data for %s seconds; closing the connection.", self.write_timeout)
        if self._on_stall is not None:
            self._on_stall()
        else:
            self._transport.abort()
        # Whoever waits to write must learn the connection is gone (abort reports it on the next turn).
        self.resume_writing()


async def service_unavailable(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The app that answers instead of the user's when ``--limit-concurrency`` is exceeded."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"19"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable", "more_body": False})
