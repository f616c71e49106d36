"""TRACE-level logging of every ASGI message that crosses the app boundary (``--log-level trace``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pounce._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Message, Scope
from pounce.logging import TRACE_LOG_LEVEL

# Payloads are summarised, not dumped: bodies can be huge or binary, and headers may
# carry credentials.
PLACEHOLDER_FORMAT: dict[str, str] = {
    "body": "<{length} bytes>",
    "bytes": "<{length} bytes>",
    "text": "<{length} chars>",
    "headers": "<...>",
}


def message_with_placeholders(message: Any) -> Any:
    """Return a shallow copy of an ASGI message/scope with payload fields replaced by placeholders."""
    new_message = message.copy()
    for attr, placeholder in PLACEHOLDER_FORMAT.items():
        content = message.get(attr)
        if content is not None:
            new_message[attr] = placeholder.format(length=len(content))
    return new_message


class MessageLoggerMiddleware:
    def __init__(self, app: ASGI3Application) -> None:
        self.task_counter = 0
        self.app = app
        self.logger = logging.getLogger("uvicorn.asgi")
        # The app may be called from several event-loop threads (free-threaded worker
        # mode); the counter must still hand out unique numbers.
        self._counter_lock = threading.Lock()

    def _trace(self, msg: str, *args: Any) -> None:
        self.logger.log(TRACE_LOG_LEVEL, msg, *args)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        with self._counter_lock:
            self.task_counter += 1
            task_counter = self.task_counter
        client = scope.get("client")
        prefix = "%s:%d - ASGI" % (client[0], client[1]) if client else "ASGI"
        logger = self.logger

        async def inner_receive() -> Message:
            message = await receive()
            # The placeholder copy is only worth building when TRACE is actually enabled.
            if logger.isEnabledFor(TRACE_LOG_LEVEL):
                self._trace("%s [%d] Receive %s", prefix, task_counter, message_with_placeholders(message))
            return message

        async def inner_send(message: Message) -> None:
            if logger.isEnabledFor(TRACE_LOG_LEVEL):
                self._trace("%s [%d] Send %s", prefix, task_counter, message_with_placeholders(message))
            await send(message)

        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            self._trace("%s [%d] Started scope=%s", prefix, task_counter, message_with_placeholders(scope))
        try:
            await self.app(scope, inner_receive, inner_send)
        except BaseException:
            self._trace("%s [%d] Raised exception", prefix, task_counter)
            raise
        else:
            self._trace("%s [%d] Completed", prefix, task_counter)
