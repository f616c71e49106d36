"""Observability: one typed event stream, and the access log, metrics, tracing and Server-Timing on it.

* ``pounce.observability.events`` -- the events (frozen, slotted dataclasses);
* ``pounce.observability.bus`` -- ``EventBus`` (one per worker event loop) and ``EventSource``, what
  ``scope["extensions"]["pounce.events"]`` holds;
* ``pounce.observability.access`` -- ``--access-log-format`` and the access-log subscriber;
* ``pounce.observability.metrics`` -- ``--metrics`` (extra ``pounce-asgi[metrics]``);
* ``pounce.observability.tracing`` -- ``--otel`` (extra ``pounce-asgi[otel]``);
* ``pounce.observability.timing`` -- ``--server-timing``;
* ``pounce.observability.runtime`` -- who owns what per worker mode.

The metrics and tracing modules import their extras only when used; importing this package does not.
"""

from __future__ import annotations

from pounce.observability.access import AccessEntry, AccessLogFormat, AccessLogSubscriber
from pounce.observability.bus import EXTENSION_KEY, EventBus, EventHandler, EventSource, events_extension
from pounce.observability.events import (
    EVENT_TYPES,
    REQUEST_END_TYPES,
    AnyEvent,
    ClientDisconnected,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    RequestEvent,
    RequestFailed,
    RequestStarted,
    ResponseCompleted,
    ResponseStarted,
    ServerStarted,
    ServerStopping,
    StreamReset,
    WebSocketAccepted,
    WebSocketClosed,
    WebSocketRejected,
    WorkerDraining,
    WorkerStarted,
    WorkerStopped,
)
from pounce.observability.runtime import WorkerIdentity
from pounce.observability.timing import server_timing_header, server_timing_value

__all__ = [
    "AccessEntry",
    "AccessLogFormat",
    "AccessLogSubscriber",
    "AnyEvent",
    "ClientDisconnected",
    "ConnectionClosed",
    "ConnectionOpened",
    "EVENT_TYPES",
    "EXTENSION_KEY",
    "Event",
    "EventBus",
    "EventHandler",
    "EventSource",
    "REQUEST_END_TYPES",
    "RequestEvent",
    "RequestFailed",
    "RequestStarted",
    "ResponseCompleted",
    "ResponseStarted",
    "ServerStarted",
    "ServerStopping",
    "StreamReset",
    "WebSocketAccepted",
    "WebSocketClosed",
    "WebSocketRejected",
    "WorkerDraining",
    "WorkerIdentity",
    "WorkerStarted",
    "WorkerStopped",
    "events_extension",
    "server_timing_header",
    "server_timing_value",
]
