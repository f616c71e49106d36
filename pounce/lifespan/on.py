"""The ASGI lifespan protocol: startup/shutdown events run in one long-lived app task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pounce._types import Message, Scope

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.observability.bus import EventSource

STATE_TRANSITION_ERROR = "Got invalid state transition on lifespan protocol."

_SEND_TYPES = frozenset(
    {
        "lifespan.startup.complete",
        "lifespan.startup.failed",
        "lifespan.shutdown.complete",
        "lifespan.shutdown.failed",
    }
)


class LifespanOn:
    """Drives ``lifespan.startup`` / ``lifespan.shutdown`` for ``--lifespan auto|on``.

    With "auto" an app that raises on the lifespan scope is taken not to support it
    and the server carries on; with "on" that is a fatal startup error.
    """

    # Set by the server before startup: offered to the app as scope["extensions"]["pounce.events"].
    event_source: EventSource | None = None

    def __init__(self, config: Config) -> None:
        if not getattr(config, "loaded", True):
            config.load()

        self.config = config
        self.logger = logging.getLogger("uvicorn.error")
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[Message] = asyncio.Queue()
        self.error_occurred = False
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self._main_task: asyncio.Task[None] | None = None

    @property
    def error_occured(self) -> bool:
        """Misspelt alias of ``error_occurred`` kept for callers that use it."""
        return self.error_occurred

    async def startup(self) -> None:
        self.logger.info("Waiting for application startup.")

        # Keep a reference on self: the loop holds tasks only weakly, and this one must
        # outlive startup() to receive the shutdown event later.
        self._main_task = asyncio.get_running_loop().create_task(self.main())

        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()

        if self.startup_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occurred:
            return
        self.logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()

        if self.shutdown_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application shutdown complete.")

    async def main(self) -> None:
        try:
            app = self.config.loaded_app
            scope: Scope = {
                "type": "lifespan",
                "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
                "state": self.state,
            }
            if self.event_source is not None:
                from pounce.observability.bus import EXTENSION_KEY

                scope["extensions"] = {EXTENSION_KEY: self.event_source}
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            self.asgi = None
            self.error_occurred = True
            # The app already reported the failure with a *.failed message; that was logged.
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                self.logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            # Whatever happened, nobody may be left waiting on an event that will never come.
            self.startup_event.set()
            self.shutdown_event.set()

    def _check(self, condition: bool) -> None:
        # Explicit rather than `assert`, so the protocol is still enforced under `python -O`.
        if not condition:
            raise RuntimeError(STATE_TRANSITION_ERROR)

    async def send(self, message: Message) -> None:
        message_type = message.get("type") if isinstance(message, Mapping) else None
        if message_type not in _SEND_TYPES:
            raise RuntimeError(f"Unexpected ASGI message type {message_type!r} sent on lifespan protocol.")

        if message_type == "lifespan.startup.complete":
            self._check(not self.startup_event.is_set() and not self.shutdown_event.is_set())
            self.startup_event.set()

        elif message_type == "lifespan.startup.failed":
            self._check(not self.startup_event.is_set() and not self.shutdown_event.is_set())
            self.startup_event.set()
            self.startup_failed = True
            if message.get("message"):
                self.logger.error(message["message"])

        elif message_type == "lifespan.shutdown.complete":
            self._check(self.startup_event.is_set() and not self.shutdown_event.is_set())
            self.shutdown_event.set()

        elif message_type == "lifespan.shutdown.failed":
            self._check(self.startup_event.is_set() and not self.shutdown_event.is_set())
            self.shutdown_event.set()
            self.shutdown_failed = True
            if message.get("message"):
                self.logger.error(message["message"])

    async def receive(self) -> Message:
        return await self.receive_queue.get()
