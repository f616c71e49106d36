"""Rate limits shared by the protocols: how often a client may make the server do unpaid work.

Size and time bounds are plain numbers read from ``ServerConfig`` where they are enforced (see the
README's resource model); what needs a little state of its own lives here, once, for every protocol.
"""

from __future__ import annotations

import time

__all__ = ["RateBudget"]


class RateBudget:
    """A token bucket: ``rate`` events a second on average, in bursts of at most ``rate``.

    Used for what a peer can ask of us for free (HTTP/2 stream resets and control frames, WebSocket
    pings): honest clients stay far below the rate, and a flood runs the budget dry within a second.
    """

    __slots__ = ("rate", "_tokens", "_stamp")

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._tokens = self.rate
        self._stamp = time.monotonic()

    def spend(self, count: int = 1) -> bool:
        """Take ``count`` events from the budget; False once it is overdrawn."""
        now = time.monotonic()
        tokens = self._tokens + (now - self._stamp) * self.rate
        self._tokens = (self.rate if tokens > self.rate else tokens) - count
        self._stamp = now
        return self._tokens >= 0
