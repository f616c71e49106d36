"""Serve a WSGI (PEP 3333) application over ASGI.

The WSGI app runs in a thread pool. Each response message is handed to the event loop
and the worker thread waits for it to be sent before producing more, so a slow client
applies back-pressure to the app instead of the response piling up in memory.
Deprecated, as in Uvicorn: a2wsgi is the maintained alternative.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable
from typing import IO, Any, Callable, Optional

from pounce._types import ASGIReceiveCallable, ASGISendCallable, Environ, ExcInfo, Message, Scope, WSGIApp

# Request bodies up to this size stay in memory; bigger ones spill to a temporary file.
_SPOOL_MAX_SIZE = 1024 * 1024
# How often a worker thread blocked on a send re-checks whether the request was abandoned.
_ABORT_POLL_S = 0.25


class _ResponseAborted(OSError):
    """Raised in the worker thread when the ASGI side has gone away (client gone, task cancelled)."""


def build_environ(scope: Scope, message: Message, body: IO[bytes]) -> Environ:
    """Translate an ASGI HTTP scope into a WSGI environ (``message`` is kept for Uvicorn's signature)."""
    # WSGI wants "bytes as latin-1 str" for paths; ASGI gives decoded UTF-8 text.
    script_name = scope.get("root_path", "").encode("utf8").decode("latin1")
    path_info = scope["path"].encode("utf8").decode("latin1")
    if path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]

    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope["query_string"].decode("latin1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "SERVER_NAME": server[0],
        # PEP 3333 requires every CGI variable to be a native string.
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }

    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]

    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin1")
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin1")
        # Repeated headers are folded the way CGI does it: one comma-joined value.
        if key in environ:
            value = environ[key] + "," + value
        environ[key] = value
    return environ


class _WSGIMiddleware:
    def __init__(self, app: WSGIApp, workers: int = 10) -> None:
        warnings.warn(
            "Pounce's native WSGI implementation is deprecated, you should switch to a2wsgi (`pip install a2wsgi`).",
            DeprecationWarning,
            stacklevel=2,
        )
        self.app = app
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pounce-wsgi")

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            # Raising (rather than returning) makes lifespan="auto" report the protocol
            # as unsupported, and a websocket handshake get rejected.
            raise RuntimeError(f"WSGI applications only handle 'http' scopes, not {scope['type']!r}.")
        responder = WSGIResponder(self.app, self.executor, scope)
        await responder(receive, send)


class WSGIResponder:
    """One request: buffers the body, runs the app in the pool, relays its output."""

    def __init__(self, app: WSGIApp, executor: concurrent.futures.Executor, scope: Scope) -> None:
        self.app = app
        self.executor = executor
        self.scope = scope
        self.loop: asyncio.AbstractEventLoop | None = None
        self.send: ASGISendCallable | None = None
        # Pending status/headers; sent with the first non-empty body chunk (PEP 3333),
        # so an app may still replace them via start_response(..., exc_info).
        self.status: int | None = None
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self.response_started = False
        self.exc_info: ExcInfo | None = None
        # Set from the loop side; read by the worker thread while it waits on a send.
        self._aborted = threading.Event()

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self.loop = asyncio.get_running_loop()
        self.send = send
        body = await self._read_body(receive)
        try:
            environ = build_environ(self.scope, {"type": "http.request"}, body)
            try:
                await self.loop.run_in_executor(self.executor, self.run_wsgi, environ)
            except BaseException:
                # Cancelled or failed: stop the worker at its next send instead of
                # letting it stream into a dead connection.
                self._aborted.set()
                raise
        finally:
            body.close()
        if self.exc_info is not None:
            # The app reported an error through start_response; surface it to the
            # server's error log once the error response has gone out.
            raise self.exc_info[1].with_traceback(self.exc_info[2])

    async def _read_body(self, receive: ASGIReceiveCallable) -> IO[bytes]:
        body: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_SIZE)
        try:
            more_body = True
            while more_body:
                message = await receive()
                if message["type"] != "http.request":
                    # http.disconnect: the client left; the app sees whatever arrived.
                    break
                body.write(message.get("body", b""))
                more_body = message.get("more_body", False)
            body.seek(0)
        except BaseException:
            body.close()
            raise
        return body

    # ---- everything below runs in the worker thread ----

    def _send_from_thread(self, message: Message) -> None:
        assert self.loop is not None and self.send is not None
        if self._aborted.is_set():
            raise _ResponseAborted("the request was abandoned")
        future = asyncio.run_coroutine_threadsafe(self._call_send(message), self.loop)
        # Bounded waits: if the loop side is cancelled or stops, this thread must not
        # block forever on a future nobody will complete.
        while True:
            try:
                future.result(timeout=_ABORT_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if future.done():
                    # send() itself raised TimeoutError (the same class on 3.11+).
                    raise
                if self._aborted.is_set() or self.loop.is_closed():
                    future.cancel()
                    raise _ResponseAborted("the request was abandoned") from None

    async def _call_send(self, message: Message) -> None:
        assert self.send is not None
        await self.send(message)

    def _send_headers(self) -> None:
        if self.status is None or self.response_headers is None:
            raise RuntimeError("The WSGI application did not call start_response() before producing a body.")
        self.response_started = True
        self._send_from_thread(
            {"type": "http.response.start", "status": self.status, "headers": self.response_headers}
        )

    def _write(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"WSGI response body chunks must be bytes, got {type(data).__name__}.")
        if not data:
            return
        if not self.response_started:
            self._send_headers()
        self._send_from_thread({"type": "http.response.body", "body": bytes(data), "more_body": True})

    def start_response(
        self,
        status: str,
        response_headers: Iterable[tuple[str, str]],
        exc_info: Optional[ExcInfo] = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.response_started:
                # PEP 3333: too late to change the response; re-raise into the app.
                raise exc_info[1].with_traceback(exc_info[2])
            self.exc_info = exc_info
        elif self.status is not None:
            raise RuntimeError("start_response() was called a second time without exc_info.")

        code_str, space, _ = status.partition(" ")
        if not (space and len(code_str) == 3 and code_str.isdigit()):
            raise ValueError(f"Invalid WSGI status {status!r}: expected e.g. '200 OK'.")
        headers: list[tuple[bytes, bytes]] = []
        for name, value in response_headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"WSGI response headers must be (str, str) pairs, got {(name, value)!r}.")
            headers.append((name.encode("latin1"), value.encode("latin1")))
        self.status = int(code_str)
        self.response_headers = headers
        return self._write

    def run_wsgi(self, environ: Environ) -> None:
        iterable = self.app(environ, self.start_response)  # type: ignore[arg-type]
        try:
            for chunk in iterable:
                self._write(chunk)
            if not self.response_started:
                self._send_headers()
            self._send_from_thread({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # PEP 3333: the server must call close() on the iterable, even on error.
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


WSGIMiddleware = _WSGIMiddleware
