"""The bus: dispatch in order, zero cost when unused, failures logged once, runtime subscription."""

from __future__ import annotations

import logging
import threading

import pytest

from pounce.observability.bus import EXTENSION_KEY, EventBus, EventSource, events_extension, handler_failures
from pounce.observability.events import Event, ServerStopping
from pounce.server import ServerState


def stopping(worker: int = 1) -> ServerStopping:
    return ServerStopping(time=0.0, worker_id=worker, open_connections=0)


def test_emit_calls_handlers_in_subscription_order() -> None:
    calls: list[tuple[str, Event]] = []
    bus = EventBus(worker_id=3)
    bus.subscribe(lambda e: calls.append(("a", e)))
    bus.subscribe(lambda e: calls.append(("b", e)))
    event = stopping(3)
    bus.emit(event)
    assert calls == [("a", event), ("b", event)]


def test_server_state_events_is_none_until_someone_listens() -> None:
    state = ServerState()
    assert state.events is None
    assert isinstance(state.event_bus.source, EventSource)
    unsubscribe = state.event_bus.subscribe(lambda e: None)
    assert state.events is state.event_bus
    second = state.event_bus.subscribe(lambda e: None)
    unsubscribe()
    assert state.events is state.event_bus
    second()
    assert state.events is None
    second()  # twice is harmless
    assert state.event_bus.handlers == ()


def test_unsubscribe_removes_one_subscription_of_a_handler_subscribed_twice() -> None:
    seen: list[Event] = []
    bus = EventBus()
    first = bus.subscribe(seen.append)
    bus.subscribe(seen.append)
    first()
    bus.emit(stopping())
    assert len(seen) == 1


def test_a_raising_handler_is_logged_once_per_exception_type_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Event] = []
    kinds = iter([ValueError, ValueError, ValueError, KeyError, KeyError])

    def broken(event: Event) -> None:
        raise next(kinds)("bad handler")

    bus = EventBus()
    bus.subscribe(broken)
    bus.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        for _ in range(5):
            bus.emit(stopping())
    assert len(seen) == 5
    logged = [r for r in caplog.records if "Event handler" in r.getMessage()]
    assert [r.exc_info[0] for r in logged if r.exc_info] == [ValueError, KeyError]
    assert "further ValueError from this handler are not logged" in logged[0].getMessage()
    assert handler_failures(broken) == {ValueError: 3, KeyError: 2}


def test_failures_are_remembered_per_process_not_per_worker(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("x")

    buses = [EventBus(worker_id=n, handlers=[broken]) for n in range(1, 5)]
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        for bus in buses:
            bus.emit(stopping(bus.worker_id))
    assert len([r for r in caplog.records if "Event handler" in r.getMessage()]) == 1


def test_base_exceptions_are_not_swallowed() -> None:
    def interrupt(event: Event) -> None:
        raise KeyboardInterrupt

    bus = EventBus(handlers=[interrupt])
    with pytest.raises(KeyboardInterrupt):
        bus.emit(stopping())


def test_handlers_must_be_synchronous_callables() -> None:
    async def handler(event: Event) -> None:
        pass

    class AsyncCallable:
        async def __call__(self, event: Event) -> None:
            pass

    bus = EventBus()
    for bad in (handler, AsyncCallable(), 42):
        with pytest.raises(TypeError):
            bus.subscribe(bad)  # type: ignore[arg-type]
    assert bus.handlers == ()


def test_subscribing_from_many_threads_while_emitting_loses_nothing() -> None:
    state = ServerState()
    bus = state.event_bus
    counts = [0] * 8
    lock = threading.Lock()
    stop = threading.Event()

    def emitter() -> None:
        while not stop.is_set():
            bus.emit(stopping())

    def subscriber(n: int) -> None:
        def handler(event: Event) -> None:
            with lock:
                counts[n] += 1

        for _ in range(200):
            bus.subscribe(handler)()
        bus.subscribe(handler)

    emit_thread = threading.Thread(target=emitter)
    emit_thread.start()
    threads = [threading.Thread(target=subscriber, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    emit_thread.join()
    assert len(bus.handlers) == 8
    assert state.events is bus
    before = list(counts)
    bus.emit(stopping())
    assert [after - b for after, b in zip(counts, before)] == [1] * 8


def test_scope_extensions_are_built_once_per_base_and_carry_the_source() -> None:
    bus = EventBus(worker_id=2)
    plain = bus.scope_extensions()
    assert plain == {EXTENSION_KEY: bus.source}
    assert bus.scope_extensions() is plain
    base = {"http.response.trailers": {}}
    merged = bus.scope_extensions(base)
    assert merged is bus.scope_extensions(base)
    assert merged == {"http.response.trailers": {}, EXTENSION_KEY: bus.source}
    assert base == {"http.response.trailers": {}}  # the protocol's own dict is not touched
    assert events_extension({"extensions": merged}) is bus.source
    assert events_extension({"type": "http"}) is None
    assert bus.source.worker_id == 2


def test_event_source_subscribes_to_its_worker() -> None:
    seen: list[Event] = []
    bus = EventBus(worker_id=5)
    unsubscribe = bus.source.subscribe(seen.append)
    bus.emit(stopping(5))
    unsubscribe()
    bus.emit(stopping(5))
    assert len(seen) == 1
    assert "worker=5" in repr(bus.source)
