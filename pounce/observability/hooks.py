"""What the protocols call to report a connection, a request, a WebSocket or a stream: one function each.

Every function takes the worker's bus, and the caller has already checked that events are on::

    events = self.server_state.events        # None while nobody listens
    if events is not None:
        self.request = hooks.request_started(events, self.connection_id, scope, head_parsed)

With nobody listening that is the whole cost: one attribute load and one ``is None``; no event, no
timestamp, no id. Each function builds its event (stamping ``time.monotonic()`` unless given a
reading the protocol already took) and emits it; the ones that open something return what the
matching close needs (an id, or the ``RequestStarted`` event that later events carry). Events are
built with ``fast_constructor`` (positional, slots set directly): the same frozen objects as the
classes' keyword constructors make, for about a third of the cost.

Pairing is the caller's part of the contract (see ``pounce.observability.events``): a connection
reported opened is reported closed, a started request ends with exactly one ``response_completed``
or ``client_disconnected``; a connection or request that began while events were off (no id, no
``RequestStarted`` kept) is not reported when it ends.
"""

from __future__ import annotations

import time

from pounce._types import Scope
from pounce.observability.bus import EventBus
from pounce.observability.events import (
    Address,
    ClientDisconnected,
    ConnectionClosed,
    ConnectionOpened,
    Initiator,
    ProtocolName,
    RequestFailed,
    RequestStarted,
    ResponseCompleted,
    ResponseStarted,
    StreamReset,
    WebSocketAccepted,
    WebSocketClosed,
    WebSocketRejected,
    exception_type_name,
    fast_constructor,
)

_connection_opened = fast_constructor(ConnectionOpened)
_connection_closed = fast_constructor(ConnectionClosed)
_request_started = fast_constructor(RequestStarted)
_response_started = fast_constructor(ResponseStarted)
_response_completed = fast_constructor(ResponseCompleted)
_client_disconnected = fast_constructor(ClientDisconnected)
_request_failed = fast_constructor(RequestFailed)
_websocket_accepted = fast_constructor(WebSocketAccepted)
_websocket_rejected = fast_constructor(WebSocketRejected)
_websocket_closed = fast_constructor(WebSocketClosed)
_stream_reset = fast_constructor(StreamReset)
_monotonic = time.monotonic


def connection_opened(
    events: EventBus, protocol: ProtocolName, peer: Address | None, tls: bool, connection_id: int | None = None
) -> int:
    """Report a new connection; returns its id (keep it on the protocol instance).

    ``connection_id``: the id it had under the protocol it was upgraded from (WebSocket), else a new one.
    """
    if connection_id is None:
        connection_id = events.next_connection_id()
    # Field order: time, worker_id, connection_id, protocol, peer, tls.
    events.emit(_connection_opened(_monotonic(), events.worker_id, connection_id, protocol, peer, tls))
    return connection_id


def connection_closed(
    events: EventBus,
    connection_id: int,
    protocol: ProtocolName,
    requests_served: int,
    upgraded_to: ProtocolName | None = None,
) -> None:
    events.emit(
        _connection_closed(_monotonic(), events.worker_id, connection_id, protocol, requests_served, upgraded_to)
    )


def request_started(
    events: EventBus, connection_id: int, scope: Scope, head_parsed: float | None = None, stream_id: int | None = None
) -> RequestStarted:
    """Report a parsed request head (``head_parsed``: when, by ``time.monotonic()``); keep the returned event."""
    started = _request_started(
        _monotonic() if head_parsed is None else head_parsed,
        events.worker_id,
        connection_id,
        events.next_request_id(),
        scope["method"],
        scope["path"],
        scope["http_version"],
        stream_id,
        scope,
    )
    events.emit(started)
    return started


def response_started(events: EventBus, request: RequestStarted, status: int) -> None:
    events.emit(_response_started(_monotonic(), events.worker_id, request.connection_id, request.request_id, status))


def response_completed(
    events: EventBus,
    request: RequestStarted,
    status: int,
    body_bytes: int,
    app_called: float,
    first_byte: float,
    now: float | None = None,
) -> None:
    """Report the last response byte handed to the connection; the durations start at ``request.time``."""
    end = _monotonic() if now is None else now
    head_parsed = request.time
    events.emit(
        _response_completed(
            end,
            events.worker_id,
            request.connection_id,
            request.request_id,
            status,
            body_bytes,
            max(app_called - head_parsed, 0.0),  # queue_seconds
            max(first_byte - app_called, 0.0),  # first_byte_seconds
            max(end - head_parsed, 0.0),  # total_seconds
            request,
        )
    )


def client_disconnected(events: EventBus, request: RequestStarted, status: int | None, body_bytes: int) -> None:
    """The connection or stream ended first; ``status``: of the response that had started, else None."""
    events.emit(
        _client_disconnected(
            _monotonic(), events.worker_id, request.connection_id, request.request_id, status, body_bytes, request
        )
    )


def request_failed(
    events: EventBus, request: RequestStarted, error: BaseException | None, message: str, sent_500: bool
) -> None:
    events.emit(
        _request_failed(
            _monotonic(),
            events.worker_id,
            request.connection_id,
            request.request_id,
            exception_type_name(error) if error is not None else None,
            error,
            message,
            sent_500,
            request,
        )
    )


def websocket_accepted(events: EventBus, connection_id: int, scope: Scope, subprotocol: str | None) -> int:
    """Report an accepted WebSocket; returns its request id (for ``websocket_closed``)."""
    request_id = events.next_request_id()
    events.emit(
        _websocket_accepted(_monotonic(), events.worker_id, connection_id, request_id, scope["path"], subprotocol, scope)
    )
    return request_id


def websocket_rejected(events: EventBus, connection_id: int, scope: Scope, status: int) -> None:
    events.emit(
        _websocket_rejected(
            _monotonic(), events.worker_id, connection_id, events.next_request_id(), scope["path"], status
        )
    )


def websocket_closed(
    events: EventBus,
    connection_id: int,
    request_id: int,
    close_code: int,
    initiator: Initiator,
    messages_received: int,
    messages_sent: int,
) -> None:
    events.emit(
        _websocket_closed(
            _monotonic(),
            events.worker_id,
            connection_id,
            request_id,
            close_code,
            initiator,
            messages_received,
            messages_sent,
        )
    )


def stream_reset(
    events: EventBus,
    connection_id: int,
    stream_id: int,
    request_id: int | None,
    error_code: int,
    initiator: Initiator,
) -> None:
    events.emit(
        _stream_reset(_monotonic(), events.worker_id, connection_id, stream_id, request_id, error_code, initiator)
    )


__all__ = [
    "client_disconnected",
    "connection_closed",
    "connection_opened",
    "request_failed",
    "request_started",
    "response_completed",
    "response_started",
    "stream_reset",
    "websocket_accepted",
    "websocket_closed",
    "websocket_rejected",
]
