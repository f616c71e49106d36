"""ASGI type aliases shared by the server, the protocols and the middleware.

Kept loose on purpose (messages are plain dicts): the protocols validate what the
application sends at run time, and precise TypedDicts here would only move those
checks into casts.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Optional, Protocol, Union

if sys.version_info >= (3, 10):
    from typing import TypeAlias
else:  # pragma: no cover
    from typing_extensions import TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
# Kept as aliases of Scope/Message so code written against Uvicorn's names type-checks.
HTTPScope: TypeAlias = Scope
WebSocketScope: TypeAlias = Scope
LifespanScope: TypeAlias = Scope
WWWScope: TypeAlias = Scope

ASGIReceiveEvent: TypeAlias = Message
ASGISendEvent: TypeAlias = Message
ASGIReceiveCallable: TypeAlias = Callable[[], Awaitable[Message]]
ASGISendCallable: TypeAlias = Callable[[Message], Awaitable[None]]

ASGI3Application: TypeAlias = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class ASGI2Protocol(Protocol):
    def __init__(self, scope: Scope) -> None: ...

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None: ...


ASGI2Application: TypeAlias = type[ASGI2Protocol]
ASGIApplication: TypeAlias = Union[ASGI2Application, ASGI3Application]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, Optional[TracebackType]]
Environ: TypeAlias = MutableMapping[str, Any]
StartResponse: TypeAlias = Callable[[str, Iterable[tuple[str, str]], Optional[ExcInfo]], None]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]

# Uvicorn's per-message TypedDict names, as plain aliases: code (and the compat shim) that
# imports them from Uvicorn's _types keeps importing and type-checking.
ASGIVersions: TypeAlias = MutableMapping[str, Any]
HTTPRequestEvent: TypeAlias = Message
HTTPResponseDebugEvent: TypeAlias = Message
HTTPResponseEarlyHintEvent: TypeAlias = Message
HTTPResponseStartEvent: TypeAlias = Message
HTTPResponseBodyEvent: TypeAlias = Message
HTTPResponseTrailersEvent: TypeAlias = Message
HTTPServerPushEvent: TypeAlias = Message
HTTPDisconnectEvent: TypeAlias = Message
WebSocketConnectEvent: TypeAlias = Message
WebSocketAcceptEvent: TypeAlias = Message
WebSocketReceiveEvent: TypeAlias = Message
WebSocketSendEvent: TypeAlias = Message
WebSocketResponseStartEvent: TypeAlias = Message
WebSocketResponseBodyEvent: TypeAlias = Message
WebSocketDisconnectEvent: TypeAlias = Message
WebSocketCloseEvent: TypeAlias = Message
WebSocketEvent: TypeAlias = Message
LifespanStartupEvent: TypeAlias = Message
LifespanShutdownEvent: TypeAlias = Message
LifespanStartupCompleteEvent: TypeAlias = Message
LifespanStartupFailedEvent: TypeAlias = Message
LifespanShutdownCompleteEvent: TypeAlias = Message
LifespanShutdownFailedEvent: TypeAlias = Message
