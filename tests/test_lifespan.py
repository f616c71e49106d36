from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import pytest

from pounce.config import Config
from pounce.lifespan.off import LifespanOff
from pounce.lifespan.on import STATE_TRANSITION_ERROR, LifespanOn
from tests.middleware._server import serving

App = Callable[..., Awaitable[None]]


def make(app: Any, lifespan: str = "on") -> LifespanOn:
    # log_config=None: leave process-wide logging alone so caplog sees the records.
    mode: Literal["auto", "on", "off"] = "auto" if lifespan == "auto" else "on"
    return LifespanOn(Config(app=app, lifespan=mode, log_config=None))


def error_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "uvicorn.error" and r.levelno == logging.ERROR]


def info_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "uvicorn.error" and r.levelno == logging.INFO]


def full_cycle_app(events: list[str]) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        events.append("startup")
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        events.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    return app


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_lifespan_full_cycle(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    events: list[str] = []

    async def main() -> None:
        lifespan = make(full_cycle_app(events), mode)
        assert events == []
        await lifespan.startup()
        assert events == ["startup"]
        assert not lifespan.should_exit
        await lifespan.shutdown()
        assert events == ["startup", "shutdown"]
        assert not lifespan.should_exit
        assert not lifespan.error_occurred and not lifespan.error_occured

    asyncio.run(main())
    assert info_messages(caplog) == [
        "Waiting for application startup.",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
    ]


def test_lifespan_off() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("lifespan off must not call the app")

    async def main() -> None:
        config = Config(app=app, lifespan="off", log_config=None)
        config.load()
        lifespan = LifespanOff(config)
        await lifespan.startup()
        await lifespan.shutdown()
        assert lifespan.should_exit is False
        assert lifespan.state == {}

    asyncio.run(main())


def test_lifespan_auto_tolerates_app_raising(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"

    async def main() -> None:
        lifespan = make(app, "auto")
        await lifespan.startup()
        assert lifespan.error_occurred
        assert not lifespan.should_exit
        await lifespan.shutdown()
        assert not lifespan.should_exit

    asyncio.run(main())
    assert info_messages(caplog) == [
        "Waiting for application startup.",
        "ASGI 'lifespan' protocol appears unsupported.",
        "Application startup complete.",
    ]
    assert error_messages(caplog) == []


def test_lifespan_on_treats_app_raising_as_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("no lifespan here")

    async def main() -> None:
        lifespan = make(app, "on")
        await lifespan.startup()
        assert lifespan.error_occurred
        assert lifespan.should_exit
        await lifespan.shutdown()

    asyncio.run(main())
    errors = [r for r in caplog.records if r.name == "uvicorn.error" and r.levelno == logging.ERROR]
    assert errors[0].getMessage() == "Exception in 'lifespan' protocol\n"
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
    assert errors[1].getMessage() == "Application startup failed. Exiting."


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize("raise_exception", [True, False])
def test_lifespan_with_failed_startup(mode: str, raise_exception: bool, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "the lifespan event failed"})
        if raise_exception:
            raise RuntimeError()  # re-raising after reporting failure is allowed

    async def main() -> None:
        lifespan = make(app, mode)
        await lifespan.startup()
        assert lifespan.startup_failed
        assert lifespan.error_occurred is raise_exception
        assert lifespan.should_exit
        await lifespan.shutdown()

    asyncio.run(main())
    # The reported failure is logged once; the exception is not logged on top of it.
    assert error_messages(caplog) == ["the lifespan event failed", "Application startup failed. Exiting."]


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize("raise_exception", [True, False])
def test_lifespan_with_failed_shutdown(mode: str, raise_exception: bool, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.failed", "message": "the lifespan event failed"})
        if raise_exception:
            raise RuntimeError()

    async def main() -> None:
        lifespan = make(app, mode)
        await lifespan.startup()
        assert not lifespan.startup_failed
        await lifespan.shutdown()
        assert lifespan.shutdown_failed
        assert lifespan.error_occurred is raise_exception
        assert lifespan.should_exit

    asyncio.run(main())
    assert error_messages(caplog) == ["the lifespan event failed", "Application shutdown failed. Exiting."]


def test_failed_startup_without_message_logs_only_the_exit_line(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": ""})

    async def main() -> None:
        lifespan = make(app, "on")
        await lifespan.startup()
        assert lifespan.should_exit

    asyncio.run(main())
    assert error_messages(caplog) == ["Application startup failed. Exiting."]


def test_lifespan_scope_asgi3() -> None:
    scopes: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)

    async def main() -> None:
        lifespan = make(app, "on")
        await lifespan.startup()
        # Returning without raising is not an error: startup simply completes.
        assert not lifespan.startup_failed
        assert not lifespan.error_occurred
        assert not lifespan.should_exit
        await lifespan.shutdown()
        assert not lifespan.should_exit

    asyncio.run(main())
    assert scopes == [{"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}]


def test_lifespan_scope_asgi2() -> None:
    scopes: list[Any] = []

    def asgi2app(scope: Any) -> Any:
        scopes.append(scope)

        async def instance(receive: Any, send: Any) -> None:
            pass

        return instance

    async def main() -> None:
        lifespan = make(asgi2app, "on")  # interface auto-detected as asgi2
        await lifespan.startup()
        await lifespan.shutdown()
        assert not lifespan.should_exit

    asyncio.run(main())
    assert scopes == [{"type": "lifespan", "asgi": {"version": "2.0", "spec_version": "2.0"}, "state": {}}]


def test_lifespan_state_is_shared() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        scope["state"]["foo"] = 123
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        lifespan = make(app, "on")
        await lifespan.startup()
        assert lifespan.state == {"foo": 123}
        await lifespan.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{"type": "lifespan.startup.complete"}, {"type": "lifespan.startup.complete"}], STATE_TRANSITION_ERROR),
        ([{"type": "lifespan.shutdown.complete"}], STATE_TRANSITION_ERROR),
        ([{"type": "http.response.start"}], "Unexpected ASGI message type 'http.response.start'"),
    ],
)
def test_protocol_violations_reach_the_app(messages: list[dict[str, str]], error: str) -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            for message in messages:
                await send(message)
        except RuntimeError as exc:
            raised.append(exc)
            raise

    async def main() -> None:
        lifespan = make(app, "on")
        await asyncio.wait_for(lifespan.startup(), 5)
        assert lifespan.error_occurred
        assert lifespan.should_exit

    asyncio.run(main())
    assert len(raised) == 1 and error in str(raised[0])


def test_shutdown_after_error_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError()

    async def main() -> None:
        lifespan = make(app, "auto")
        await lifespan.startup()
        caplog.clear()
        await lifespan.shutdown()

    asyncio.run(main())
    assert info_messages(caplog) == []


def test_loads_config_when_not_loaded() -> None:
    calls: list[str] = []

    class Lazy:
        loaded = False
        lifespan = "on"
        asgi_version = "3.0"

        def load(self) -> None:
            calls.append("load")
            self.loaded = True

            async def app(scope: Any, receive: Any, send: Any) -> None:
                pass

            self.loaded_app = app

    async def main() -> None:
        lifespan = LifespanOn(Lazy())  # type: ignore[arg-type]
        await lifespan.startup()
        await lifespan.shutdown()

    asyncio.run(main())
    assert calls == ["load"]


# ---- through a real server on a real socket ----


def test_server_runs_lifespan_and_shares_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "connected"
            events.append("startup")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = scope["state"]["db"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        config = Config(app=app, port=0, lifespan="on", log_config=None)
        async with serving(config) as (_, url):
            assert events == ["startup"]
            async with httpx.AsyncClient() as client:
                response = await client.get(url)
            assert response.text == "connected"
        assert events == ["startup", "shutdown"]

    asyncio.run(main())
    messages = info_messages(caplog)
    assert messages.index("Application startup complete.") < messages.index("Waiting for application shutdown.")
    assert messages[-2:] == ["Application shutdown complete.", f"Finished server process [{os.getpid()}]"]


def test_server_exits_with_startup_failure_code() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    async def main() -> None:
        async with serving(Config(app=app, port=0, lifespan="on", log_config=None)):
            raise AssertionError("must not start serving")

    # asyncio re-raises SystemExit from a task out of the loop itself, not into awaiters.
    with pytest.raises(SystemExit) as exc_info:
        asyncio.run(main())
    assert exc_info.value.code == 3


def test_server_with_lifespan_auto_serves_apps_without_lifespan() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        async with serving(Config(app=app, port=0, lifespan="auto", log_config=None)) as (_, url):
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).status_code == 204

    asyncio.run(main())
