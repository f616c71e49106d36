from __future__ import annotations

import asyncio
import io
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from pounce._types import Environ, Message, Scope, StartResponse
from pounce.middleware import wsgi
from pounce.middleware.wsgi import WSGIMiddleware, build_environ

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make(app: Any, workers: int = 4) -> WSGIMiddleware:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return WSGIMiddleware(app, workers=workers)


def client_for(app: Any, **kw: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make(app), **kw)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def http_scope(**overrides: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(overrides)
    return scope


def hello_world(environ: Environ, start_response: StartResponse) -> list[bytes]:
    output = b"Hello World!\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(output)))], None)
    return [output]


def echo_body(environ: Environ, start_response: StartResponse) -> list[bytes]:
    output = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(output)))], None)
    return [output]


def raise_exception(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("Something went wrong")


def return_exc_info(environ: Environ, start_response: StartResponse) -> list[bytes]:
    try:
        raise RuntimeError("Something went wrong")
    except RuntimeError:
        output = b"Internal Server Error"
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(output)))],
            sys.exc_info(),  # type: ignore[arg-type]
        )
        return [output]


def test_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"native WSGI implementation is deprecated.*a2wsgi"):
        WSGIMiddleware(hello_world)


async def test_wsgi_get() -> None:
    async with client_for(hello_world) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello World!\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_wsgi_post() -> None:
    async with client_for(echo_body) as client:
        response = await client.post("/", json={"example": 123})
    assert response.status_code == 200
    assert response.text == '{"example":123}'


async def test_wsgi_put_more_body_spills_to_disk() -> None:
    # 2 MiB: bigger than the in-memory spool, arriving in many http.request messages.
    async def generate_body() -> AsyncIterator[bytes]:
        for _ in range(2048):
            yield b"123456789abcdef\n" * 64

    async with client_for(echo_body) as client:
        response = await client.put("/", content=generate_body())
    assert response.status_code == 200
    assert response.content == b"123456789abcdef\n" * 64 * 2048


async def test_wsgi_exception() -> None:
    async with client_for(raise_exception) as client:
        with pytest.raises(RuntimeError, match="Something went wrong"):
            await client.get("/")


async def test_wsgi_exc_info_sends_response_then_reraises() -> None:
    async with client_for(return_exc_info, raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    async with client_for(return_exc_info) as client:
        with pytest.raises(RuntimeError, match="Something went wrong"):
            await client.get("/")


async def test_exc_info_replaces_unsent_headers() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("X-First", "1")], None)
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())  # type: ignore[arg-type]
        yield b"sorry"

    async with client_for(app, raise_app_exceptions=False) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert "x-first" not in response.headers
    assert response.headers["x-second"] == "2"
    assert response.text == "sorry"


async def test_exc_info_after_headers_sent_is_reraised_into_app() -> None:
    seen: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [], None)
        yield b"partial"
        try:
            raise ValueError("too late")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())  # type: ignore[arg-type]
            except ValueError as exc:
                seen.append(exc)
                raise

    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    with pytest.raises(ValueError, match="too late"):
        await make(app)(http_scope(), receive, send)
    assert len(seen) == 1
    assert messages[0] == {"type": "http.response.start", "status": 200, "headers": []}
    assert messages[1]["body"] == b"partial"


async def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [], None)
        start_response("201 Created", [], None)
        return [b""]

    async with client_for(app) as client:
        with pytest.raises(RuntimeError, match="second time without exc_info"):
            await client.get("/")


@pytest.mark.parametrize("status", ["200", "OK", "2000 Big", ""])
async def test_bad_status_line_is_a_clear_error(status: str) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, [], None)
        return [b""]

    async with client_for(app) as client:
        with pytest.raises(ValueError, match="Invalid WSGI status"):
            await client.get("/")


async def test_str_body_chunk_is_a_clear_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[str]:
        start_response("200 OK", [], None)
        return ["text"]

    async with client_for(app) as client:
        with pytest.raises(TypeError, match="must be bytes"):
            await client.get("/")


async def test_streams_chunks_and_closes_iterable() -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"one"
            yield b""  # empty chunks are not sent
            yield b"two"

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")], None)
        return Body()

    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await make(app)(http_scope(), receive, send)
    assert messages == [
        {"type": "http.response.start", "status": 200, "headers": [(b"Content-Type", b"text/plain")]},
        {"type": "http.response.body", "body": b"one", "more_body": True},
        {"type": "http.response.body", "body": b"two", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    assert closed.is_set()


async def test_write_callable() -> None:
    # _types.StartResponse omits PEP 3333's write() return value, hence Any here.
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [], None)
        write(b"via write, ")
        return [b"via iterable"]

    async with client_for(app) as client:
        response = await client.get("/")
    assert response.text == "via write, via iterable"


async def test_empty_response_still_sends_headers() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("204 No Content", [("X-A", "b")], None)
        return []

    async with client_for(app) as client:
        response = await client.get("/")
    assert response.status_code == 204
    assert response.headers["x-a"] == "b"


async def test_failed_send_stops_the_app_and_closes_iterable() -> None:
    produced: list[int] = []
    closed = threading.Event()

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            for i in range(10_000):
                produced.append(i)
                yield b"x"

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Endless:
        start_response("200 OK", [], None)
        return Endless()

    sent = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal sent
        sent += 1
        if sent > 3:
            raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        await make(app)(http_scope(), receive, send)
    assert closed.is_set()
    # Back-pressure: the app did not run ahead of the failed send.
    assert len(produced) <= 4


async def test_send_raising_timeout_error_propagates() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        raise TimeoutError("write timed out")

    with pytest.raises(TimeoutError, match="write timed out"):
        await asyncio.wait_for(make(hello_world)(http_scope(), receive, send), 5)


async def test_cancelled_request_stops_the_worker_thread() -> None:
    closed = threading.Event()
    release = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"first"
            release.wait(5)
            yield b"second"  # this send must fail: the request was cancelled

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [], None)
        return Body()

    got_first = asyncio.Event()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message.get("body") == b"first":
            got_first.set()

    task = asyncio.ensure_future(make(app)(http_scope(), receive, send))
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    for _ in range(100):
        if closed.is_set():
            break
        await asyncio.sleep(0.05)
    assert closed.is_set()


async def test_disconnect_before_body_complete() -> None:
    bodies: list[bytes] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        bodies.append(environ["wsgi.input"].read())
        start_response("200 OK", [], None)
        return [b""]

    incoming: list[Message] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        pass

    await make(app)(http_scope(method="POST"), receive, send)
    assert bodies == [b"part"]


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
async def test_non_http_scope_is_rejected(scope_type: str) -> None:
    async def receive() -> Message:
        raise AssertionError("not reached")

    async def send(message: Message) -> None:
        raise AssertionError("not reached")

    with pytest.raises(RuntimeError, match="only handle 'http' scopes"):
        await make(hello_world)({"type": scope_type}, receive, send)


async def test_environ_through_client() -> None:
    captured: dict[str, Any] = {}

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        captured.update(environ)
        start_response("200 OK", [], None)
        return [b""]

    transport = httpx.ASGITransport(app=make(app), client=("10.1.2.3", 4567), root_path="/mnt")
    async with httpx.AsyncClient(transport=transport, base_url="https://example.org:8443") as client:
        await client.post(
            "/mnt/a%20b?x=1&y=2",
            content=b"data",
            headers=[("Content-Type", "text/x"), ("X-Multi", "a"), ("X-Multi", "b"), ("Accept-Language", "en")],
        )
    assert captured["REQUEST_METHOD"] == "POST"
    assert captured["SCRIPT_NAME"] == "/mnt"
    assert captured["PATH_INFO"] == "/a b"
    assert captured["QUERY_STRING"] == "x=1&y=2"
    assert captured["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert captured["SERVER_NAME"] == "example.org"
    assert captured["SERVER_PORT"] == "8443"
    assert captured["REMOTE_ADDR"] == "10.1.2.3"
    assert captured["CONTENT_TYPE"] == "text/x"
    assert captured["CONTENT_LENGTH"] == "4"
    assert "HTTP_CONTENT_TYPE" not in captured
    assert captured["HTTP_X_MULTI"] == "a,b"
    assert captured["HTTP_ACCEPT_LANGUAGE"] == "en"
    assert captured["wsgi.url_scheme"] == "https"
    assert captured["wsgi.version"] == (1, 0)
    assert captured["wsgi.multithread"] is True
    assert captured["wsgi.run_once"] is False
    assert captured["wsgi.errors"] is sys.stderr


def test_build_environ_encoding() -> None:
    scope = http_scope(
        raw_path=b"/\xe6\x96\x87%2Fall",
        path="/文/all",
        root_path="/文",
        client=None,
        server=None,
        query_string=b"a=123&b=456",
        headers=[(b"key", b"value1"), (b"key", b"value2")],
    )
    environ = build_environ(scope, {"type": "http.request", "body": b"", "more_body": False}, io.BytesIO(b""))
    assert environ["SCRIPT_NAME"] == "/文".encode().decode("latin-1")
    assert environ["PATH_INFO"] == "/all"
    assert environ["HTTP_KEY"] == "value1,value2"
    assert environ["SERVER_NAME"] == "localhost"
    assert environ["SERVER_PORT"] == "80"
    assert "REMOTE_ADDR" not in environ


def test_module_exports() -> None:
    assert wsgi.WSGIMiddleware is wsgi._WSGIMiddleware
