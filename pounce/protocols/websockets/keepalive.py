"""Our keepalive pings (``--ws-ping-interval``) and the deadline for their pongs (``--ws-ping-timeout``).

RFC 6455 5.5.2 lets either side ping; a pong answers it (5.5.3). A peer that does not answer
within ``ws_ping_timeout`` is gone or stuck: the protocol closes with 1011. A random payload
identifies each ping, so a late pong for an older ping, or an unsolicited one, satisfies nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class Keepalive:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float | None,
        timeout: float | None,
        send_ping: Callable[[bytes], bool],
        on_timeout: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.interval = interval if interval is not None and interval > 0 else None
        self.timeout = timeout if timeout is not None and timeout > 0 else None
        self.send_ping = send_ping  # writes the ping; False if the connection is closing
        self.on_timeout = on_timeout
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.pending: bytes | None = None  # the payload of the ping in flight
        self.sent_at = 0.0
        self.rtt = 0.0

    def start(self) -> None:
        if self.interval is not None:
            self.schedule()

    def stop(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending = None

    def pong(self, payload: bytes) -> None:
        """A pong arrived: if it answers the ping in flight, the next ping is scheduled."""
        if self.pending is None or payload != self.pending:
            return
        self.rtt = self.loop.time() - self.sent_at
        self.pending = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.schedule()

    def schedule(self) -> None:
        assert self.interval is not None
        # The interval runs from ping to ping: the last round trip is part of it.
        self.ping_timer = self.loop.call_later(max(0.0, self.interval - self.rtt), self.ping)

    def ping(self) -> None:
        self.ping_timer = None
        payload = os.urandom(4)
        if not self.send_ping(payload):
            return
        self.pending = payload
        self.sent_at = self.loop.time()
        if self.timeout is not None:
            self.pong_timer = self.loop.call_later(self.timeout, self.timed_out)
        else:
            self.schedule()

    def timed_out(self) -> None:
        self.pong_timer = None
        self.pending = None
        self.on_timeout()
