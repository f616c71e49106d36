"""Server and worker lifecycle events from a real server, and subscribing to them every supported way."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any
from unittest import mock

import httpx
import pytest
from click.testing import CliRunner

import pounce
from pounce.config import Config, ConfigError
from pounce.main import main
from pounce.observability.bus import events_extension
from pounce.observability.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    RequestStarted,
    ResponseCompleted,
    ResponseStarted,
    ServerStarted,
    ServerStopping,
    WorkerDraining,
    WorkerStarted,
    WorkerStopped,
)
from tests.utils import run_server

# The events of a server's and its workers' lives; the tests about those leave out the request and
# connection events every served request adds.
LIFECYCLE = (WorkerStarted, ServerStarted, WorkerDraining, ServerStopping, WorkerStopped)
LIFECYCLE_NAMES = {cls.__name__ for cls in LIFECYCLE}


def lifecycle(events: list[Event]) -> list[Event]:
    return [event for event in events if isinstance(event, LIFECYCLE)]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_server_reports_its_life_in_order() -> None:
    seen: list[Event] = []
    with run_server(hello, event_handlers=[seen.append]) as server:
        assert httpx.get(server.url).text == "hello"
        assert httpx.get(server.url).text == "hello"
    life = lifecycle(seen)
    assert [type(e) for e in life] == [WorkerStarted, ServerStarted, ServerStopping, WorkerStopped]
    started, listening, stopping, stopped = life
    assert isinstance(started, WorkerStarted) and isinstance(stopped, WorkerStopped)
    assert (started.worker_id, started.mode, started.generation, started.reason) == (0, "single", 0, "initial")
    assert started.pid == os.getpid()
    assert isinstance(listening, ServerStarted)
    assert listening.addresses == (f"http://127.0.0.1:{server.port}",)
    assert stopped.requests_served == 2
    times = [e.time for e in seen]
    assert times == sorted(times)
    # The two requests in between, each on its own connection (httpx.get opens one per call), inside
    # the server's life: after ServerStarted, before ServerStopping.
    between = seen[seen.index(listening) + 1 : seen.index(stopping)]
    assert [type(e) for e in between] == [ConnectionOpened, RequestStarted, ResponseStarted, ResponseCompleted,
                                          ConnectionClosed] * 2


def test_handlers_given_as_import_strings_are_imported_by_load(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "events.txt"
    monkeypatch.setenv("POUNCE_TEST_EVENTS", str(log))
    with run_server(hello, event_handlers=["tests.observability.apps:record_to_file"]) as server:
        httpx.get(server.url)
    names = [line.split()[0] for line in log.read_text().splitlines()]
    assert [name for name in names if name in LIFECYCLE_NAMES] == [
        "WorkerStarted", "ServerStarted", "ServerStopping", "WorkerStopped"]
    # The handler got the request too, between ServerStarted and ServerStopping.
    assert names[2:-2] == ["ConnectionOpened", "RequestStarted", "ResponseStarted", "ResponseCompleted",
                           "ConnectionClosed"]


def test_bad_handlers_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Config(hello, event_handlers=[42])  # type: ignore[list-item]
    config = Config(hello, event_handlers=["tests.observability.apps:nope"])
    with pytest.raises(ConfigError, match="nope"):
        config.load()


def test_a_raising_handler_does_not_break_serving(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise ZeroDivisionError

    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        with run_server(hello, event_handlers=[broken], log_level="error") as server:
            assert httpx.get(server.url).text == "hello"
    assert len([r for r in caplog.records if "Event handler" in r.getMessage()]) == 1


def test_a_framework_subscribes_from_the_lifespan_scope_and_unsubscribes() -> None:
    seen: list[Event] = []

    async def framework(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            source = events_extension(scope)
            assert source is not None
            unsubscribe = source.subscribe(seen.append)
            while True:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    unsubscribe()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await hello(scope, receive, send)

    # No access log: the framework's handler is the only one, so the bus is on exactly while it is subscribed.
    with run_server(framework, lifespan="on", access_log=False) as server:
        assert server.server.server_state.events is not None
        httpx.get(server.url)
    # Subscribed during startup: it sees the server start, the request, the server stop, and nothing
    # after unsubscribing (WorkerStopped).
    assert [type(e) for e in lifecycle(seen)] == [ServerStarted, ServerStopping]
    assert [type(e) for e in seen[1:-1]] == [ConnectionOpened, RequestStarted, ResponseStarted, ResponseCompleted,
                                             ConnectionClosed]
    assert server.server.server_state.events is None


def test_run_passes_event_handlers_to_config() -> None:
    handler = lambda event: None  # noqa: E731
    with mock.patch("pounce.main.Server") as server_class:
        pounce.run(hello, event_handlers=[handler])
    config = server_class.call_args.kwargs["config"]
    assert config.event_handlers == [handler]


def test_cli_event_handler_is_imported_and_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock.patch("pounce.main.run") as run:
        result = CliRunner().invoke(
            main, ["tests.observability.apps:app", "--event-handler", "tests.observability.apps:record_to_file",
                   "--event-handler", "tests.observability.apps:record_to_file"]
        )
    assert result.exit_code == 0, result.output
    assert run.call_args.kwargs["event_handlers"] == ["tests.observability.apps:record_to_file"] * 2


@pytest.mark.parametrize(
    "spec",
    ["tests.observability.apps:missing", "no_such_module_here:x", "nocolon", "tests.observability.apps:not_callable",
     "tests.observability.apps:coroutine_handler"],
)
def test_cli_bad_event_handler_is_a_usage_error(spec: str) -> None:
    with mock.patch("pounce.main.run") as run:
        result = CliRunner().invoke(main, ["tests.observability.apps:app", "--event-handler", spec])
    assert result.exit_code == 2, result.output
    assert "--event-handler" in result.output
    run.assert_not_called()


def test_events_off_means_no_bus_work_on_the_state() -> None:
    # The access log is a subscriber: with it on (the default) events are on. Off, and with no handler,
    # nobody listens.
    with run_server(hello, access_log=False) as server:
        state = server.server.server_state
        assert state.events is None
        assert state.tracer is None
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert b"hello" in sock.recv(4096)
        assert state.events is None
        # Nothing was observed: no connection or request ids were handed out.
        assert state.event_bus.next_connection_id() == 1
        assert state.event_bus.next_request_id() == 1


def test_the_default_access_log_turns_events_on() -> None:
    with run_server(hello) as server:
        state = server.server.server_state
        assert state.events is state.event_bus
        assert [type(handler).__name__ for handler in state.event_bus.handlers] == ["AccessLogSubscriber"]
