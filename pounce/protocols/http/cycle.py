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
from typing import TYPE_CHECKING, Any, BinaryIO

from pounce._types import ASGI3Application, Message, Scope
from pounce.protocols.http.flow_control import FlowControl
from pounce.protocols.http.parser import te_accepts_trailers
from pounce.protocols.http.pathsend import send_path, write_file_in_chunks
from pounce.protocols.utils import ClientDisconnected

if TYPE_CHECKING:
    from pounce.observability.request import RequestObserver

# ASGI extensions (asgiref docs/extensions.rst) the shared cycle implements; each protocol offers in
# scope["extensions"] those it can carry, and the cycle accepts an extension's messages only when offered.
PATHSEND = "http.response.pathsend"
TRAILERS = "http.response.trailers"
EARLY_HINT = "http.response.early_hint"
BODY = "http.response.body"
# Messages that carry response body: sending one to a client that left raises (ASGI HTTP spec 2.4).
_BODY_MESSAGES = frozenset((BODY, PATHSEND))
# Fields a trailer section must not carry (RFC 9110 §6.5.1: framing, routing, connection-specific).
_NOT_IN_TRAILERS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te", b"content-length", b"host")
)

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
    # Whether receive() is waiting for body now: what arrives then is taken before the next read, so a
    # protocol need not pause reading for it (see FastHTTPProtocol._deliver_body).
    receiving = False
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
    # The message type taken as body: "http.response.body"; None once the body is done and, as the
    # response's start said ("trailers": True), trailers are to come. Any other message is an extension's
    # (pathsend, trailers) or a mistake; see _send_extension.
    _body_message: str | None = BODY
    _trailers_expected = False
    # Whether the trailers go out: the client asked for them (TE: trailers) where the protocol offers them.
    send_trailers = False
    _trailers: list[tuple[bytes, bytes]] | None = None

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
        # Request body not handed to the app yet. A protocol may put one received bytes object here as it
        # is (receive() then hands it over without a copy); anything it appends to must be a bytearray.
        self.body: bytes | bytearray = bytearray()

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
                    self.write_held()
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
                self.write_held()
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
            if message_type in _BODY_MESSAGES:
                # ASGI HTTP spec 2.4: sending on a closed connection raises an OSError subclass.
                raise ClientDisconnected("The client disconnected before the response was complete.")
            return

        if not self.response_started:
            if message_type != "http.response.start":
                if message_type == EARLY_HINT and EARLY_HINT in self.scope["extensions"]:
                    self._send_early_hint(message)
                    return
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
            if message.get("trailers", False):
                self._expect_trailers()
            if self.observer is not None:
                self.observer.response_started(status)
            self.write_response_start(status, headers)

        elif not self.response_complete:
            if message_type != self._body_message:
                await self._send_extension(message_type, message)
            else:
                body = message.get("body", b"")
                more_body = message.get("more_body", False)
                if not more_body and self._trailers_expected:
                    # The body is done; the response ends with the trailers message still to come.
                    more_body = True
                    self._body_message = None
                # Framed first: a body that contradicts its Content-Length raises here, and a response
                # that did not go out complete must not count as complete (its connection is closed).
                self.write_body(body, more_body)
                observer = self.observer
                if observer is not None:
                    if self._body_allowed:
                        observer.body_bytes += len(body)
                    if not more_body:
                        self._completed()
                elif not more_body:
                    # _completed() without an observer, inlined: this runs once per response.
                    self.response_complete = True
                    if self._wakeup is not None:
                        self._wakeup.set()

        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")

        if self.response_complete:
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _completed(self) -> None:
        self.response_complete = True
        self.notify()
        if self.observer is not None:
            self.observer.response_completed()

    # Extensions: none of this runs for a response that uses none.
    def _send_early_hint(self, message: Message) -> None:
        """``http.response.early_hint``: a 103 with the links as Link fields (RFC 8297)."""
        links = [(b"link", bytes(link).strip()) for link in message.get("links", [])]
        for _, value in links:
            if INVALID_HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value in early hint links.")
        if links:
            self.write_informational(103, links)

    def _expect_trailers(self) -> None:
        self._trailers_expected = True
        # The ASGI spec: trailers go out only to a client that asked for them ("TE: trailers").
        self.send_trailers = TRAILERS in self.scope["extensions"] and any(
            name == b"te" and te_accepts_trailers(value) for name, value in self.scope["headers"]
        )

    async def _send_extension(self, message_type: str, message: Message) -> None:
        """A message other than the body message the response takes next: an extension's, or a mistake."""
        if message_type == TRAILERS and self._body_message is None:
            trailers = self._trailers if self._trailers is not None else []
            for name, value in message.get("headers", []):
                lname = name.lower()
                if lname.startswith(b":"):
                    raise RuntimeError("Pseudo headers are not allowed in HTTP response trailers")
                if INVALID_HEADER_NAME.search(lname) or INVALID_HEADER_VALUE.search(value):
                    raise RuntimeError("Invalid HTTP header in response trailers.")
                if self.send_trailers and lname not in _NOT_IN_TRAILERS:
                    trailers.append((lname, value))
            self._trailers = trailers
            if not message.get("more_trailers", False):
                self.write_trailers(trailers)
                self._completed()
        elif message_type == PATHSEND and self._body_message == BODY and PATHSEND in self.scope["extensions"]:
            await send_path(self, message.get("path"))
            # The file was the whole body: the response ends here, or with its trailers.
            if self._trailers_expected:
                self._body_message = None
            else:
                self.write_body(b"", False)
                self._completed()
        else:
            raise RuntimeError(f"Expected ASGI message '{self._body_message or TRAILERS}', but got '{message_type}'.")

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
                self.receiving = True
                try:
                    if self.more_body and self.body_timeout is not None:
                        await self._wait_for_body(self._wakeup)
                    else:
                        await self._wakeup.wait()
                finally:
                    self.receiving = False
                self._wakeup.clear()

        if self.disconnected or self.response_complete or self._final_body_delivered:
            return {"type": "http.disconnect"}

        body = self.body
        # One bytes object as received goes to the app as it is; only an accumulated bytearray is copied.
        message = {"type": "http.request", "body": body if type(body) is bytes else bytes(body), "more_body": self.more_body}
        if self.body_timeout is not None:
            self._body_progress += len(body)
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
    def write_held(self) -> None:
        """Write response bytes the protocol holds back (to coalesce writes) now: the connection closes."""

    def write_continue(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def write_response_start(self, status: int, headers: Any) -> None:
        raise NotImplementedError  # pragma: no cover

    def write_body(self, body: bytes, more_body: bool) -> None:
        raise NotImplementedError  # pragma: no cover

    # Hooks of the extensions, with what a protocol that has nothing better does.
    def write_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """An interim (1xx) response before the final one: early hints."""
        raise NotImplementedError  # pragma: no cover

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """End the response with ``trailers`` (empty when none go out); a body framed so that no
        trailer section can follow (Content-Length) just ends."""
        self.write_body(b"", False)

    def frame_file(self, size: int) -> int:
        """The body is a file of ``size`` bytes (pathsend): complete the framing, return how much of it
        to send (nothing where no body goes out; no more than a Content-Length the app declared)."""
        return size if self._body_allowed else 0

    async def write_file(self, file: BinaryIO, count: int) -> int:
        """Send ``count`` bytes of ``file`` as body; return how many there were. This default reads it
        in chunks through ``write_body``, under the same flow control as any body."""
        return await write_file_in_chunks(self, file, count)


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
