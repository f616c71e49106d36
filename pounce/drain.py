"""``scope["extensions"]["pounce.drain"]``: the worker is draining, and the app can see it.

When a worker starts draining (shutdown, a SIGHUP rolling restart, a ``--limit-max-requests``
recycle, SIGTTOU), it stops accepting and waits for what is in flight, up to
``--timeout-graceful-shutdown``. A long-lived response (server-sent events, a long poll, a
WebSocket) would only end when that timeout cuts it; with this extension the app ends it itself,
cleanly, the moment the drain begins::

    drain = scope["extensions"].get("pounce.drain")
    if drain is not None and drain.draining: ...   # a flag, to check
    await drain.wait()                             # or an awaitable, to race against the next event

One object per worker (per ``ServerState``), put in every HTTP and WebSocket scope's extensions by
the dicts each connection builds once: a request pays nothing for it. Its event is made on first
``wait()``, in the loop of the worker that serves the request (thread workers each have their own).

WebSockets still open when the drain begins are told 1012 (Service Restart) by the server at
``--timeout-graceful-shutdown`` minus ``websocket_close_delay``'s margin, so the app has most of the
grace period to say goodbye first and the client still gets a proper close; without a graceful
timeout the server would wait for them forever, so they are closed with 1012 at once, as before.
"""

from __future__ import annotations

import asyncio

DRAIN_KEY = "pounce.drain"


class Drain:
    __slots__ = ("draining", "_event")

    def __init__(self) -> None:
        self.draining = False
        self._event: asyncio.Event | None = None

    def start(self) -> None:
        """The worker drains from now on (idempotent); called on its own event loop."""
        self.draining = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Return once the worker drains (at once if it already does)."""
        if self.draining:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def __repr__(self) -> str:
        return f"<pounce.drain draining={self.draining}>"


def websocket_close_delay(graceful: float | None) -> float:
    """Seconds after the drain begins at which open WebSockets are closed with 1012.

    The margin (a quarter of the grace period, at most 2 s) leaves time for the closing handshake and the
    app's disconnect handling before the graceful timeout cancels what is left.
    """
    if graceful is None or graceful <= 0:
        return 0.0
    return graceful - min(2.0, graceful / 4)


__all__ = ["DRAIN_KEY", "Drain", "websocket_close_delay"]
