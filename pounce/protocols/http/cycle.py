"""One HTTP request/response cycle as the ASGI app sees it, shared by both HTTP/1.1 protocols.

The ASGI side (``receive``/``send`` message validation, the response state machine, 100-continue,
disconnects, errors turned into 500s, access logging) lives here once. How a response is framed
on the wire is the protocol's business: each protocol subclasses ``RequestResponseCycle`` and
implements the three ``write_*`` hooks.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pounce._types import ASGI3Application, Message, Scope
from pounce.protocols.http.flow_control import FlowControl
from pounce.protocols.utils import ClientDisconnected

if TYPE_CHECKING:
    from pounce.observability.request import RequestObserver

# RFC 9110 §5.1/§5.5: names are tokens; values carry no CTL but HTAB (CR/LF would split the response).
INVALID_HEADER_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\[\]={} \t\\"]')
INVALID_HEADER_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(status_code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status_code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status_code, phrase)


# How much request body counts as progress for the body deadline (one flow-control window's worth).
BODY_PROGRESS = 65536

STATUS_LINE = {status_code: _status_line(status_code) for status_code in range(100, 600)}


def status_phrase(status_code: int) -> bytes:
    try:
        return http.HTTPStatus(status_code).phrase.encode()
    except ValueError:
        return b""


class RequestResponseCycle:
    """The ASGI ``receive``/``send`` pair of one request, and the state of its response."""

    # State every cycle starts with, as class attributes: the constructor runs once per request.
    disconnected = False
    # Request state: body bytes not yet handed to the app, and whether more will come.
    more_body = True
    _final_body_delivered = False
    # Response state
    response_started = False
    response_complete = False
    # The task running the app and the server's task set (set by the protocol), and whether run_asgi ended.
    task: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] | None = None
    finished = False
    # Wakes receive(); created only when receive() has to wait (most requests never do).
    _wakeup: asyncio.Event | None = None
    # Request-body deadline (``--timeout-request-body``): the body must progress by BODY_PROGRESS bytes,
    # or end, within every ``body_timeout`` seconds while the app waits for it. Armed only on a wait.
    body_timeout: float | None = None
    # What the protocol does when the deadline passes (answer 408 and close, reset a stream, ...).
    on_body_timeout: Callable[[], None] | None = None
    # Events, tracing, Server-Timing (pounce/observability/request.py); None while nothing observes.
    observer: RequestObserver | None = None
    # Whether the response's body goes out at all (not for HEAD, 1xx, 204, 304: the protocol drops what
    # the app sends); the protocols' framing sets it. The observer counts only body bytes that are sent.
    _body_allowed = True
    _body_deadline = 0.0
    _body_progress = 0
    _body_timed_out = False

    def __init__(
        self,
        scope: Scope,
        transport: asyncio.Transport,
        flow: FlowControl,
        logger: logging.Logger,
        on_response: Callable[[], None],
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.on_response = on_response
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()

    # ASGI exception wrapper
    async def run_asgi(self, app: ASGI3Application) -> None:
        observer = self.observer
        error: BaseException | None = None
        if observer is not None:
            observer.app_started(self.scope)
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except BaseException as exc:
            error = exc
            if self.disconnected and noticed_disconnect(exc):
                # The client left and the app noticed (our ClientDisconnected, or a framework's own
                # exception raised from it, as Starlette's StreamingResponse does): not an app error.
                self.logger.debug("The client disconnected before the response was complete.")
            else:
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                sends_500 = not self.disconnected and not self.response_started
                if observer is not None:
                    observer.failed(exc, "Exception in ASGI application", sends_500)
                if self.disconnected:
                    pass  # Nobody left to answer (and send() would raise ClientDisconnected).
                elif sends_500:
                    await self.send_500_response()
                elif not self.response_complete:
                    # A response cut short cannot be repaired: only closing tells the client.
                    self.transport.close()
                # A response that went out complete keeps its connection (FastAPI raises after its
                # 500 went out): the client's next keep-alive request must not be reset.
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if result is not None:
                self._app_misbehaved(f"ASGI callable should return None, but returned '{result}'.", False)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self._app_misbehaved("ASGI callable returned without starting response.", True)
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected:
                self._app_misbehaved("ASGI callable returned without completing response.", False)
                self.transport.close()
        finally:
            self.on_response = _noop
            self.finished = True
            if self.task is not None and self.tasks is not None:
                self.tasks.discard(self.task)
            if observer is not None:
                observer.app_finished(error)
            # The traceback refers to this frame: holding the exception here would make a cycle that
            # keeps the app's frames (an unfinished async generator, say) alive until the next GC.
            error = None

    def _app_misbehaved(self, message: str, sends_500: bool) -> None:
        self.logger.error(message)
        if self.observer is not None:
            self.observer.failed(None, message, sends_500)

    async def send_500_response(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})

    # ASGI interface
    async def send(self, message: Message) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()

        message_type = message["type"]
        if self.disconnected:
            if message_type == "http.response.body":
                # ASGI HTTP spec 2.4: sending on a closed connection raises an OSError subclass.
                raise ClientDisconnected("The client disconnected before the response was complete.")
            return

        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self.response_started = True
            if self.waiting_for_100_continue:
                self.waiting_for_100_continue = False
                if self.more_body:
                    # RFC 9110 §10.1.1: answered without "100 Continue", the client may send the body or
                    # may not; we cannot tell where its next request would start, so close after this one.
                    self.keep_alive = False

            status = message["status"]
            headers = message.get("headers", [])
            if self.observer is not None:
                self.observer.response_started(status)
            self.write_response_start(status, headers)

        elif not self.response_complete:
            if message_type != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            # Framed first: a body that contradicts its Content-Length raises here, and a response
            # that did not go out complete must not count as complete (its connection is closed).
            self.write_body(body, more_body)
            observer = self.observer
            if observer is not None and self._body_allowed:
                observer.body_bytes += len(body)
            if not more_body:
                self.response_complete = True
                self.notify()
                if observer is not None:
                    observer.response_completed()

        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")

        if self.response_complete:
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    async def receive(self) -> Message:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.write_continue()
            self.waiting_for_100_continue = False

        if not self.disconnected and not self.response_complete:
            if self.more_body:
                # Reading was paused because the app had a window of body unread; it wants more now.
                # Without more body to come, a pause is the protocol's (pipelined requests): keep it.
                self.flow.resume_reading()
            # Wait only when there is nothing to hand over yet; a bodyless request answers at once.
            if not self.body and (self.more_body or self._final_body_delivered):
                if self._wakeup is None:
                    self._wakeup = asyncio.Event()
                if self.more_body and self.body_timeout is not None:
                    await self._wait_for_body(self._wakeup)
                else:
                    await self._wakeup.wait()
                self._wakeup.clear()

        if self.disconnected or self.response_complete or self._final_body_delivered:
            return {"type": "http.disconnect"}

        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        if self.body_timeout is not None:
            self._body_progress += len(self.body)
            if self._body_progress >= BODY_PROGRESS:
                self._body_progress = 0
                self._body_deadline = 0.0  # re-armed, a full period, at the next wait
        self.body = bytearray()
        # What woke us has been handed over; the next wait must be for something new.
        if self._wakeup is not None:
            self._wakeup.clear()
        if not self.more_body:
            self._final_body_delivered = True
        return message

    async def _wait_for_body(self, wakeup: asyncio.Event) -> None:
        """Wait for body bytes, no longer than the body deadline allows; past it, ``on_body_timeout``."""
        assert self.body_timeout is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._body_deadline:
            self._body_deadline = now + self.body_timeout
        timer = loop.call_at(self._body_deadline, self._body_deadline_passed)
        try:
            await wakeup.wait()
        finally:
            timer.cancel()
        if self._body_timed_out and not self.disconnected and not self.response_complete:
            if self.on_body_timeout is not None:
                self.on_body_timeout()
            else:
                self.transport.close()
            self.disconnected = True

    def _body_deadline_passed(self) -> None:
        self._body_timed_out = True
        self.notify()

    def notify(self) -> None:
        """Wake a waiting ``receive()``: body bytes arrived, the body ended or the client left."""
        if self._wakeup is not None:
            self._wakeup.set()

    # Framing hooks, implemented by each protocol.
    def write_continue(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def write_response_start(self, status: int, headers: Any) -> None:
        raise NotImplementedError  # pragma: no cover

    def write_body(self, body: bytes, more_body: bool) -> None:
        raise NotImplementedError  # pragma: no cover


def noticed_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` is an app noticing that its client left, rather than an error of its own.

    That is an ``OSError`` (our ``ClientDisconnected`` is one), a cancellation, or an exception raised
    while handling one (frameworks translate ours into theirs), also inside an exception group.
    """
    seen = 0
    todo: list[BaseException] = [exc]
    while todo and seen < 32:  # bounded: exception chains can be cyclic in principle
        current = todo.pop()
        seen += 1
        if isinstance(current, (OSError, asyncio.CancelledError)):
            return True
        # An exception group (3.11+, or the exceptiongroup backport anyio uses on 3.10).
        members = getattr(current, "exceptions", None)
        if isinstance(members, (list, tuple)):
            todo.extend(member for member in members if isinstance(member, BaseException))
        cause = current.__cause__ or current.__context__
        if cause is not None:
            todo.append(cause)
    return False


def _noop() -> None:
    return None
