"""Dispatch: one ``EventBus`` per worker event loop, and what frameworks subscribe through.

Zero cost when unused: ``ServerState.events`` is the bus while it has at least one handler and
``None`` otherwise, so an emission point is::

    events = self.server_state.events
    if events is not None:
        events.emit(RequestStarted(time=..., worker_id=events.worker_id, ...))

and with nobody listening that is one attribute load and one comparison: no event is built. The
events of single requests (RequestStarted ... RequestFailed, built several times per request) have a
gate of their own, ``ServerState.request_events``: a handler that ignores them says so with
``wants_request_events = False`` (the metrics handler does), and while only such handlers listen
they are not built.

Handlers are plain synchronous callables taking one event; what they return is ignored. ``emit``
calls them one after the other in the emitting worker's event-loop thread, so a handler must be
quick and must not block (hand slow work to a queue or a thread of its own). With thread workers,
and above all on a free-threaded build, several workers call a handler subscribed to all of them
at the same time: such a handler must be thread-safe (the built-in ones are).

A handler that raises never breaks the request or the server: the exception is logged on
``uvicorn.error``, with its traceback, the first time that handler raises that exception type in
this process; later exceptions of the same type from the same handler are counted, not logged
(a handler that fails on every request would otherwise flood the log). The handler stays
subscribed: a metrics exporter that hiccups once keeps counting afterwards. ``BaseException``
that is not an ``Exception`` (KeyboardInterrupt, SystemExit) is not caught.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pounce.observability.events import Event

EventHandler = Callable[[Event], object]
Unsubscribe = Callable[[], None]

EXTENSION_KEY = "pounce.events"

logger = logging.getLogger("uvicorn.error")

# Handlers whose exceptions were logged, per exception type, for the whole process. The handler is
# kept (strongly) next to its id so that the id cannot be reused by another object meanwhile.
_MAX_REMEMBERED_FAILURES = 1024
_failures_lock = threading.Lock()
_failures: dict[tuple[int, type[BaseException]], tuple[EventHandler, int]] = {}


def handler_failures(handler: EventHandler) -> dict[type[BaseException], int]:
    """How often ``handler`` raised, per exception type, in this process (what was not logged included)."""
    with _failures_lock:
        return {exc_type: count for (ident, exc_type), (_, count) in _failures.items() if ident == id(handler)}


def _report_failure(handler: EventHandler, event: Event, exc: Exception) -> None:
    key = (id(handler), type(exc))
    with _failures_lock:
        seen = _failures.get(key)
        if seen is not None:
            _failures[key] = (handler, seen[1] + 1)
            return
        if len(_failures) < _MAX_REMEMBERED_FAILURES:
            _failures[key] = (handler, 1)
    logger.error(
        "Event handler %r raised %s on %s; further %s from this handler are not logged.",
        handler,
        type(exc).__name__,
        type(event).__name__,
        type(exc).__name__,
        exc_info=exc,
    )


def wants_request_events(handler: EventHandler) -> bool:
    """False for a handler that says (``handler.wants_request_events = False``) it ignores the events of
    single requests (RequestStarted ... RequestFailed): while only such handlers listen, the protocols
    do not build those events at all. The metrics handler is one: it records requests another way."""
    return bool(getattr(handler, "wants_request_events", True))


def check_handler(handler: object) -> EventHandler:
    """``handler`` if it can be a handler; TypeError if it is not callable or is a coroutine function."""
    if not callable(handler):
        raise TypeError(f"An event handler must be callable, not {type(handler).__name__}.")
    call = handler if inspect.isfunction(handler) or inspect.ismethod(handler) else getattr(handler, "__call__", None)
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call):
        raise TypeError(
            f"Event handler {handler!r} is a coroutine function; handlers are called synchronously in the "
            "worker's event loop (schedule a task from a plain function if you need to await)."
        )
    return handler


class EventBus:
    """The handlers of one worker event loop, and ``emit`` to call them."""

    __slots__ = ("worker_id", "_handlers", "_lock", "_on_change", "_connection_ids", "_request_ids", "source", "_extensions")

    def __init__(
        self,
        worker_id: int = 0,
        handlers: Iterable[EventHandler] = (),
        on_change: Callable[[bool, bool], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        # Copy-on-write: emit() reads one tuple, subscribe()/unsubscribe() from any thread replace it.
        self._handlers: tuple[EventHandler, ...] = ()
        self._lock = threading.Lock()
        self._on_change = on_change
        self._connection_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self.source = EventSource(self)
        self._extensions: dict[int, tuple[Mapping[str, Any] | None, dict[str, Any]]] = {}
        for handler in handlers:
            self.subscribe(handler)

    def __reduce__(self) -> tuple[type[EventBus], tuple[int, tuple[EventHandler, ...], Callable[[bool, bool], None] | None]]:
        # A Server travels to a --reload child by pickle (its bound run method): rebuild the bus there.
        return (EventBus, (self.worker_id, self._handlers, self._on_change))

    @property
    def handlers(self) -> tuple[EventHandler, ...]:
        return self._handlers

    @property
    def active(self) -> bool:
        """Whether anyone listens (``ServerState.events`` is this bus exactly then)."""
        return bool(self._handlers)

    def emit(self, event: Event) -> None:
        """Call every handler with ``event``, in this thread, in subscription order."""
        for handler in self._handlers:
            try:
                handler(event)
            except Exception as exc:
                _report_failure(handler, event, exc)

    @property
    def wants_requests(self) -> bool:
        """Whether a handler takes request events (``ServerState.request_events`` is this bus exactly then)."""
        return any(wants_request_events(handler) for handler in self._handlers)

    def subscribe(self, handler: EventHandler) -> Unsubscribe:
        """Add ``handler``; the returned callable removes it again (calling it twice is harmless)."""
        check_handler(handler)
        with self._lock:
            self._handlers = self._handlers + (handler,)
            self._changed()
        done = False

        def unsubscribe() -> None:
            nonlocal done
            with self._lock:
                if done:
                    return
                done = True
                handlers = list(self._handlers)
                for index, candidate in enumerate(handlers):
                    if candidate is handler:
                        del handlers[index]
                        break
                self._handlers = tuple(handlers)
                self._changed()

        return unsubscribe

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(bool(self._handlers), self.wants_requests)

    # Ids, for the protocols: counted per worker, from 1, only while events are on.
    def next_connection_id(self) -> int:
        return next(self._connection_ids)

    def next_request_id(self) -> int:
        return next(self._request_ids)

    def scope_extensions(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``scope["extensions"]`` dict for this worker: ``base``'s entries plus ``"pounce.events"``.

        Built once per ``base`` (compared by identity) and returned again on every later call, so a
        protocol may call it per request without allocating; the same dict is shared by the scopes
        that get it (as a protocol's module-level extensions dict already is).
        """
        key = id(base)
        cached = self._extensions.get(key)
        if cached is not None and cached[0] is base:
            return cached[1]
        extensions = dict(base or {})
        extensions[EXTENSION_KEY] = self.source
        self._extensions[key] = (base, extensions)
        return extensions


class EventSource:
    """What framework code finds under ``scope["extensions"]["pounce.events"]`` (HTTP, WebSocket, lifespan).

    It subscribes to the worker serving that scope; in lifespan (which runs once per worker), subscribe
    in each worker's startup to see every worker.
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    @property
    def worker_id(self) -> int:
        return self._bus.worker_id

    def subscribe(self, handler: EventHandler) -> Unsubscribe:
        """Call ``handler(event)`` for every event of this worker from now on; returns the unsubscribe callable."""
        return self._bus.subscribe(handler)

    def __repr__(self) -> str:
        return f"<pounce.events worker={self._bus.worker_id} handlers={len(self._bus.handlers)}>"


def events_extension(scope: Mapping[str, Any]) -> EventSource | None:
    """The ``pounce.events`` object of ``scope``, or None when the server is not Pounce (for framework code)."""
    extensions = scope.get("extensions") or {}
    source = extensions.get(EXTENSION_KEY)
    return source if isinstance(source, EventSource) else None


__all__ = [
    "EXTENSION_KEY",
    "EventBus",
    "EventHandler",
    "EventSource",
    "Unsubscribe",
    "check_handler",
    "wants_request_events",
    "events_extension",
    "handler_failures",
]
