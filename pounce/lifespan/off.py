"""``--lifespan off``: never send lifespan events to the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.observability.bus import EventSource


class LifespanOff:
    # Set by the server like LifespanOn's; unused, since no lifespan scope is ever sent.
    event_source: EventSource | None = None

    def __init__(self, config: Config) -> None:
        self.should_exit = False
        # Still a dict so the server can hand the same (empty) state to every request scope.
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
