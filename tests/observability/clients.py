"""What the end-to-end observability tests share: an event recorder, bounded waits, the raw
HTTP/2 client of ``tests/h2client.py``, and reading one value out of a Prometheus scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pounce.observability.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    RequestEvent,
    RequestStarted,
)

from tests.h2client import H2Client

__all__ = ["H2Client", "Recorder", "connections_pair", "sample", "wait_until"]

E = TypeVar("E", bound=Event)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


class Recorder:
    """An event handler that keeps every event; safe to read from the test thread while workers emit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    def wait_for(self, kind: type[E], count: int = 1, timeout: float = 5.0) -> list[E]:
        wait_until(lambda: len(self.of(kind)) >= count, timeout, f"{count} x {kind.__name__}")
        return self.of(kind)

    def of_request(self, started: RequestStarted) -> list[Event]:
        """The events of one request (``started``'s and the later ones with its ids), in order."""
        return [
            event for event in self.events
            if isinstance(event, RequestEvent)
            and (event.worker_id, event.request_id) == (started.worker_id, started.request_id)
        ]


def connections_pair(events: list[Event]) -> dict[int, tuple[ConnectionOpened, ConnectionClosed]]:
    """Check that every connection opened was closed once, after it, with the requests it carried counted.

    Every request event must belong to an opened connection, between its open and its close. Returns
    the pairs by connection id.
    """
    opened: dict[int, ConnectionOpened] = {}
    closed: dict[int, ConnectionClosed] = {}
    requests: dict[int, int] = {}
    for event in events:
        if isinstance(event, ConnectionOpened):
            assert event.connection_id not in opened, f"connection {event.connection_id} opened twice"
            opened[event.connection_id] = event
        elif isinstance(event, ConnectionClosed):
            assert event.connection_id in opened, f"connection {event.connection_id} closed, never opened"
            assert event.connection_id not in closed, f"connection {event.connection_id} closed twice"
            assert event.protocol == opened[event.connection_id].protocol
            closed[event.connection_id] = event
        elif isinstance(event, RequestEvent):
            assert event.connection_id in opened, f"{event} on a connection never opened"
            assert event.connection_id not in closed, f"{event} after its connection closed"
            if isinstance(event, RequestStarted):
                requests[event.connection_id] = requests.get(event.connection_id, 0) + 1
    assert opened.keys() == closed.keys(), "connections opened but not closed"
    for connection_id, done in closed.items():
        assert done.requests_served == requests.get(connection_id, 0), done
        assert opened[connection_id].time <= done.time
    return {cid: (opened[cid], closed[cid]) for cid in opened}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape (parsed by prometheus-client's own parser), 0 if absent;
    labels not given are summed over."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
