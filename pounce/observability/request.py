"""What one request reports while anything observes it: events, its span and its Server-Timing value.

Every protocol's request cycle (HTTP/1.1 with either parser, HTTP/2 streams) carries one
``RequestObserver`` in ``cycle.observer`` when request events, ``--metrics``, ``--otel`` or
``--server-timing`` are on, and None otherwise; the cycle's code tests that one attribute at each
point below and does nothing else when it is None. The protocols create it when a head is parsed
(``ServerState.observing`` says whether to).

At each point the observer emits the request's event (while a handler takes request events),
records its metrics (``--metrics``: plain values to the worker's recorder, see
``pounce.observability.request_metrics``) and drives its span.

The points, in the order they happen:

* ``app_started`` — in the app's task, just before the app is called: the span starts (and is
  current while the app runs, so the app's own spans are its children);
* ``response_started`` — ``http.response.start`` accepted;
* ``head_sent`` — the response head is framed to leave now (Pounce holds a head back until the first
  body message, so this is the true time to first byte); returns the ``Server-Timing`` field to add;
* ``response_completed`` / ``client_disconnected`` — exactly one of them, once;
* ``failed`` — the app raised, or broke the ASGI protocol (the 500, if any, is reported after it);
* ``app_finished`` — in the app's task, when it returned or raised: the span ends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pounce._types import Scope
from pounce.observability import hooks
from pounce.observability.events import exception_type_name
from pounce.observability.timing import server_timing_header

if TYPE_CHECKING:
    from pounce.observability.events import RequestStarted
    from pounce.server import ServerState
    from pounce.observability.tracing import RequestTracer, TracedRequest

_monotonic = time.monotonic
_NO_KEY = ("", "")


class RequestObserver:
    """One request's observation state (see the module docstring for when each method is called)."""

    __slots__ = (
        "bus",
        "scope",
        "request",
        "metrics",
        "active_key",
        "tracer",
        "traced",
        "server_timing",
        "head_parsed",
        "app_called",
        "first_byte",
        "status",
        "body_bytes",
        "ended",
    )

    def __init__(
        self, state: ServerState, connection_id: int, scope: Scope, server_timing: bool, stream_id: int | None = None
    ) -> None:
        self.head_parsed = self.app_called = _monotonic()
        self.bus = state.event_bus
        self.scope = scope
        # Only with a handler listening: a request seen by the tracer or Server-Timing alone emits nothing.
        events = state.request_events
        self.request: RequestStarted | None = (
            hooks.request_started(events, connection_id, scope, self.head_parsed, stream_id) if events is not None else None
        )
        self.metrics = metrics = state.request_metrics
        self.active_key = metrics.started(scope["method"], scope["scheme"]) if metrics is not None else _NO_KEY
        self.tracer = state.tracer
        self.traced: TracedRequest | None = None
        self.server_timing = server_timing
        self.first_byte = 0.0
        self.status: int | None = None
        self.body_bytes = 0
        self.ended = False

    def app_started(self, scope: Scope) -> None:
        self.app_called = _monotonic()
        if self.tracer is not None:
            self.traced = self.tracer.start_request(scope, started=self.head_parsed)

    def response_started(self, status: int) -> None:
        self.status = status
        if self.request is not None:
            hooks.response_started(self.bus, self.request, status)

    def head_sent(self) -> tuple[bytes, bytes] | None:
        """The head leaves now; the ``Server-Timing`` field to add to it, if that is on."""
        self.first_byte = _monotonic()
        if self.server_timing:
            return server_timing_header(self.head_parsed, self.app_called, self.first_byte)
        return None

    def response_completed(self) -> None:
        if self.ended:
            return
        self.ended = True
        now = _monotonic()
        status = self.status
        assert status is not None
        metrics = self.metrics
        if metrics is not None:
            scope = self.scope
            metrics.completed(
                self.active_key, scope["method"], status, scope["http_version"], scope["scheme"],
                now - self.head_parsed, self.body_bytes,
            )
        if self.request is not None:
            hooks.response_completed(
                self.bus, self.request, status, self.body_bytes, self.app_called, self.first_byte or now, now
            )

    def client_disconnected(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.metrics is not None:
            self.metrics.disconnected(self.active_key, self.scope["http_version"])
        if self.request is not None:
            hooks.client_disconnected(self.bus, self.request, self.status, self.body_bytes)

    def failed(self, error: BaseException | None, message: str, sent_500: bool) -> None:
        if self.metrics is not None:
            self.metrics.failed(exception_type_name(error) if error is not None else None)
        if self.request is not None:
            hooks.request_failed(self.bus, self.request, error, message, sent_500)

    def app_finished(self, error: BaseException | None) -> None:
        if self.traced is not None:
            traced, self.traced = self.traced, None
            traced.end(self.status, error)


__all__ = ["RequestObserver"]
