"""WebSocket over HTTP/1.1: wsproto for the handshake, a lean RFC 6455 frame codec for the traffic.

The HTTP protocol hands over the connection on an upgrade request: it builds this protocol,
calls ``connection_made(transport)``, replays the raw request head (plus any bytes already
read) through ``data_received`` and switches the transport to us. ``handshake`` (wsproto) checks
the request, negotiates permessage-deflate and writes the 101/4xx/500 answers; then frames go
through ``frames.FrameReader`` and ``frames.encode_frame``, about six times cheaper per small
message than Uvicorn's wsproto path (1.3x at 64 KiB, where unmasking dominates both).

Behaviour follows Uvicorn's wsproto implementation (ASGI events, close codes, log lines), with
``--ws-max-queue`` bounding the received messages that wait for the app as Uvicorn's websockets
implementation does: once the queue is full, reading stops (back-pressure: TCP holds the rest; nothing is
dropped). Differences, all on purpose:

* ``websocket.send`` output is coalesced: what the app sends before it next yields to the event
  loop goes out in one ``write``, flushed at once past 64 KiB so that flow control still applies;
* protocol errors are answered with a close frame carrying the right code (1002/1007/1009)
  instead of a bare TCP close, once the app has the messages that came before the bad frame;
  a send after that raises ``ClientDisconnected`` like a send after the peer left;
* ``receive()`` after the disconnect message returns it again instead of waiting forever;
* wsproto drops ``sec-websocket-protocol`` and ``sec-websocket-extensions`` from the request
  headers; they are put back in the scope.

What one connection can hold (see also ``frames``): at most ``ws_max_queue`` messages, and no more
than ``ws_max_size`` bytes of them, wait for the app (past either, reading pauses; a read is parsed
at most that many frames a turn); a message being assembled is at most ``ws_max_size`` bytes; while the peer does not take our writes we
stop reading, keep one pong, and drop it after ``--timeout-write``, which also bounds a close
whose last bytes the peer never reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Literal, cast

from pounce._types import ASGI3Application, ASGISendEvent, Message, Scope
from pounce.logging import TRACE_LOG_LEVEL
from pounce.observability import hooks
from pounce.drain import DRAIN_KEY
from pounce.observability.bus import EXTENSION_KEY
from pounce.observability.events import Initiator
from pounce.protocols.http.flow_control import FlowControl
from pounce.protocols.websockets.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Deflate,
    FrameEvent,
    FrameReader,
    FrameSkipper,
    ProtocolViolation,
    close_payload,
    encode_frame,
    frame_header,
)
from pounce.protocols.websockets.handshake import Handshake, RemoteProtocolError, build_scope
from pounce.protocols.websockets.keepalive import Keepalive
from pounce.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

# How long to wait for the peer to answer our close frame before dropping the TCP connection
# (RFC 6455 7.1.1 lets the server give up on a peer that never replies).
CLOSE_TIMEOUT = 10.0

# Bytes a client may send after its upgrade request and before the app accepts; beyond this we
# stop reading until the handshake is decided, so a flood cannot grow memory without bound.
_EARLY_DATA_LIMIT = 64 * 1024

# After failing a connection we read and discard, until the peer's close frame, for at most this
# long before closing: see fail().
FAIL_DRAIN_TIMEOUT = 2.0

# Frames parsed per event-loop turn at most (fewer if ws_max_queue is lower): a read of tiny
# frames (256 KiB of empty pings is 43690 of them) is worked through a slice at a time, so one
# client cannot hold the loop for long, and the rest waits (reading paused) for the next turn.
FRAMES_PER_TURN = 1024

# Coalesced websocket.send output is written at once past this size, so that the transport
# sees the data (and can pause us) before an app that never yields fills memory.
_FLUSH_AT = 64 * 1024

_RECEIVE = "websocket.receive"

_monotonic = time.monotonic

class WSProtocol(asyncio.Protocol):
    # The connection's id in events. The HTTP protocol that hands a connection over sets it first (the
    # id its ConnectionClosed(upgraded_to="websocket") carried), so the WebSocket's ConnectionOpened
    # continues it; 0: none yet (a new one is drawn if events need one).
    connection_id = 0

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        # The frozen ServerConfig when the Config provides one; Uvicorn-style attribute names
        # otherwise (both spell the websocket settings the same way).
        settings = getattr(config, "server_config", None)
        if settings is not None:
            self.app = cast(ASGI3Application, settings.app)
        else:
            settings = config
            self.app = cast(ASGI3Application, config.loaded_app)
        self.config = config
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path: str = settings.root_path
        self.asgi_version: str = settings.asgi_version
        self.app_state = app_state
        self.max_size: int = settings.ws_max_size
        self.max_queue: int = settings.ws_max_queue
        # ws_max_queue: messages wait for the app only when the inbox is empty, at most this many a turn.
        self.frame_budget = max(1, min(self.max_queue, FRAMES_PER_TURN))
        self.parse_scheduled = False
        self.per_message_deflate: bool = settings.ws_per_message_deflate
        self.ping_interval: float | None = settings.ws_ping_interval
        self.ping_timeout: float | None = settings.ws_ping_timeout
        # The write-stall deadline (--timeout-write); Uvicorn-style configs have none.
        self.write_timeout: float | None = getattr(settings, "timeout_write", None)

        # Shared server state
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks

        # Connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.scope: Scope = {}

        # Handshake (wsproto), then frames (FrameReader, encode_frame)
        self.handshake = Handshake()
        self.reader: FrameReader | None = None
        self.deflate: Deflate | None = None
        self.request_seen = False
        self.handshake_complete = False
        self.response_started = False
        self.close_sent = False
        self.peer_closed = False  # the peer's close frame arrived, or the peer broke the protocol
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.close_timeout = CLOSE_TIMEOUT
        self.linger_timer: asyncio.TimerHandle | None = None
        self.draining = False  # failed: our close frame is out, what still comes is discarded
        # Set at a protocol violation: reads the framing of what follows, to see the peer's close frame
        self.skipper: FrameSkipper | None = None
        # A protocol violation that waits for the app to take the messages that came before it
        self.deferred_failure: tuple[int, str] | None = None
        self.early_data = bytearray()

        # Messages for the app. A deque and one shared wake-up future are much cheaper per
        # message than asyncio.Queue, and the app is the only consumer.
        self.inbox: deque[Message] = deque()
        self.inbox_waiter: asyncio.Future[None] | None = None
        # Payload bytes (characters, for text) of the websocket.receive messages in the inbox: with the
        # count, what decides whether reading goes on (see _inbox_full).
        self.queued_bytes = 0
        self.read_paused = False
        self.disconnect_queued = False
        self.final_message: Message | None = None

        # Write flow control (pause/resume, the write-stall deadline), and websocket.send output
        # waiting for the end of this loop turn
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.outbox: list[bytes] = []
        self.outbox_size = 0

        self.keepalive = Keepalive(self.loop, self.ping_interval, self.ping_timeout, self._send_ping, self.keepalive_timeout)
        self.pong_due: bytes | None = None  # the latest ping left unanswered while writes were paused

        # Events (pounce.observability): reported opened (then closed too); the accepted WebSocket's
        # request id (0: not reported, so its close is not either); how it ended, recorded only for a
        # reported one; messages counted either way (an increment each).
        self._announced = False
        self.request_id = 0
        self.ended: tuple[int, Initiator] | None = None
        self.messages_received = 0
        self.messages_sent = 0
        self.status: int | None = None  # the handshake's answer (101, 403, the app's, 500), for the span
        self.started = 0.0  # when the upgrade request was complete, while --otel traces

    # Uvicorn's names for the keepalive state (its tests read them)
    @property
    def ping_timer(self) -> asyncio.TimerHandle | None:
        """The timer of the next keepalive ping: None while none is due (or --ws-ping-interval is off)."""
        return self.keepalive.ping_timer

    @property
    def ping_sent_at(self) -> float:
        """When (``loop.time()``) the last keepalive ping went out; 0.0 before the first."""
        return self.keepalive.sent_at

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(self.transport, self.write_timeout, self._write_stalled)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"
        events = self.server_state.events
        if events is not None:
            self.connection_id = hooks.connection_opened(
                events, "websocket", self.client, self.scheme == "wss", self.connection_id or None
            )
            self._announced = True
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self._prefix())

    def connection_lost(self, exc: Exception | None) -> None:
        self.keepalive.stop()
        self.outbox.clear()
        # Uvicorn's codes: 1006 before the handshake completed, 1005 ("no status") after.
        self._put_disconnect({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
        self.connections.discard(self)
        if self.request_id:
            self._report_closed()
        if self._announced:
            self._announced = False
            hooks.connection_closed(
                self.server_state.event_bus, self.connection_id, "websocket", 1 if self.request_seen else 0
            )
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._prefix())
        self.handshake_complete = True
        self.disconnected = True
        self.deferred_failure = None
        # asyncio never calls resume_writing() on a transport lost while paused: wake send().
        self.flow.resume_writing()
        self._cancel_close_timer()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            skipper = self.skipper
            if skipper is not None:  # failed or failing: nothing more is parsed (see fail())
                if skipper.feed(data) and self.draining:
                    self._close_transport()  # the peer's close frame: it sends nothing more
                return
            if self.peer_closed or (self.close_sent and self.close_timer is None):
                # Bytes after the closing handshake (a late pong, say): the session is over.
                self._close_transport()
                return
            self.feed(reader, data)
        elif self.request_seen:
            if not self.handshake_complete:
                # The client spoke before our 101: hold the bytes until the app decides.
                self.early_data += data
                if len(self.early_data) > _EARLY_DATA_LIMIT:
                    self._pause_reading()
            # else: a denial response is under way; whatever the client sends is moot.
        else:
            self.handle_handshake_data(data)

    def feed(self, reader: FrameReader, data: bytes) -> None:
        try:
            frames = reader.feed(data, self.frame_budget)
        except ProtocolViolation as violation:
            # The frames before the bad one count (a message completed in this read is the app's);
            # nothing after it is even parsed.
            self.skipper = violation.skipper or FrameSkipper()
            if violation.events:
                self.handle_frames(violation.events)
            self.fail_after_queued(violation.code, violation.reason)
            return
        if frames:
            self.handle_frames(frames)
        if reader.has_held:
            # The budget ran out: no more reads until the held frames are parsed, on a later turn
            # (once the app has taken the messages, if any; see _maybe_resume_reading).
            self._pause_reading()
            self._maybe_resume_reading()

    def _parse_held(self) -> None:
        self.parse_scheduled = False
        reader = self.reader
        if reader is None or self.peer_closed or self.disconnected:
            return
        self.feed(reader, b"")
        self._maybe_resume_reading()

    def pause_writing(self) -> None:
        # The peer is not taking what we send (the transport's buffer is past its high-water mark):
        # stop reading too, so that it cannot make us answer more (pongs, echoes) meanwhile, and
        # start the write-stall deadline (FlowControl): --timeout-write later it is dropped.
        self.flow.pause_writing()
        self._pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self.pong_due is not None:
            payload, self.pong_due = self.pong_due, None
            if not self.close_sent:
                self._write(encode_frame(OP_PONG, payload))
        self._maybe_resume_reading()

    def _write_stalled(self) -> None:
        """--timeout-write passed with the peer taking nothing: not even a close frame would get
        through, so the connection is dropped (the app sees 1006, abnormal closure)."""
        self.keepalive.stop()
        self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
        if self.request_id:
            self._ending(1006, "server")
        self.disconnected = True  # send() raises from now on, before connection_lost comes
        self.transport.abort()

    def drain_open(self) -> bool:
        """Whether the server should leave this connection to its app for now, when draining begins: an
        accepted WebSocket nobody has started closing (pounce/drain.py)."""
        return self.handshake_complete and not (self.close_sent or self.disconnected or self.peer_closed)

    def shutdown(self) -> None:
        """Server shutdown: close open WebSockets with 1012 (service restart)."""
        self.keepalive.stop()
        if self.close_sent or self.disconnected or self.peer_closed:
            self._cancel_close_timer()
            self._close_transport()
            return
        if self.response_started:
            pass  # a denial response is being written: it ends with the transport
        elif self.handshake_complete:
            self._put_disconnect({"type": "websocket.disconnect", "code": 1012})
            if self.request_id:
                self._ending(1012, "server")
            self.close_sent = True
            self._write(encode_frame(OP_CLOSE, close_payload(1012)))
        else:
            self.send_500_response()
        self._close_transport()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)

    # ------------------------------------------------------------------ the handshake

    def handle_handshake_data(self, data: bytes) -> None:
        try:
            request = self.handshake.receive(data)
        except RemoteProtocolError as err:
            # A malformed upgrade request: wsproto's status (400 or 426) and the reason.
            self.logger.warning("Invalid WebSocket upgrade request: %s", self.handshake.reason(err))
            output = self.handshake.reject(err)
            if output:
                self._write(output)
            self._close_transport()
            return
        if request is None:
            return
        self.early_data += self.handshake.trailing_data()
        self.start(
            build_scope(
                request,
                scheme=self.scheme,
                server=self.server,
                client=self.client,
                root_path=self.root_path,
                asgi_version=self.asgi_version,
                state=self.app_state.copy(),
            )
        )

    def start(self, scope: Scope) -> asyncio.Task[None]:
        """The opening request is in (an upgrade, or an extended CONNECT on a stream): run the app."""
        self.request_seen = True
        self.scope = scope
        scope["extensions"][EXTENSION_KEY] = self.server_state.event_bus.source
        scope["extensions"][DRAIN_KEY] = self.server_state.drain
        if self.server_state.tracer is not None:
            self.started = _monotonic()
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)
        return task

    # ------------------------------------------------------------------ incoming frames

    def handle_frames(self, frames: list[FrameEvent]) -> None:
        pings: list[bytes] | None = None
        for frame in frames:
            kind = frame[0]
            if kind == "message":
                if self.close_sent:
                    continue  # crossing our close frame: RFC 6455 lets us drop it
                data = frame[1]
                self._put({"type": _RECEIVE, "text": data} if type(data) is str else {"type": _RECEIVE, "bytes": data})
                self.messages_received += 1
                self.queued_bytes += len(data)
                # Back-pressure as in Uvicorn's websockets implementation: stop reading once the queue
                # is full (--ws-max-queue), and the client's sends block in TCP instead.
                if not self.read_paused and self._inbox_full():
                    self._pause_reading()
            elif kind == "ping":
                if pings is None:
                    pings = [frame[1]]
                else:
                    pings.append(frame[1])
            elif kind == "pong":
                self.keepalive.pong(frame[1])
            else:
                if pings is not None:
                    self.answer_pings(pings)  # before our close frame: nothing may follow it
                    pings = None
                self.handle_close(cast(int, frame[1]), cast(str, frame[2]))
        if pings is not None:
            self.answer_pings(pings)

    def answer_pings(self, payloads: list[bytes]) -> None:
        """Pongs for one read's pings (RFC 6455 5.5.2), in one write."""
        if self.close_sent:
            return
        if self.flow.write_paused:
            # The peer is not reading. RFC 6455 5.5.3 lets an endpoint that still owes pongs answer
            # only the most recent ping: that one is all we keep, sent when writing resumes.
            self.pong_due = payloads[-1]
            return
        self.pong_due = None  # superseded by the answers to these newer pings
        if len(payloads) == 1:
            self._write(encode_frame(OP_PONG, payloads[0]))
        else:
            self._write(b"".join([encode_frame(OP_PONG, payload) for payload in payloads]))

    def handle_close(self, code: int, reason: str) -> None:
        if self.close_sent:
            # The peer answered our close frame: the closing handshake is complete.
            self.peer_closed = True
            self._cancel_close_timer()
            self._close_transport()
            return
        # The peer started the close: echo its code (RFC 6455 5.5.1), then drop TCP, as the
        # server should (RFC 6455 7.1.1).
        self.keepalive.stop()
        self.peer_closed = True
        self._write(encode_frame(OP_CLOSE, close_payload(code)))
        self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.request_id:
            self._ending(code, "client")
        self._close_transport()

    def fail_after_queued(self, code: int, reason: str) -> None:
        """Fail for a bad frame once the app has the messages that came before it.

        RFC 6455 7.1.7 fails the connection at the bad frame, not before: a message completed
        earlier in the same read is delivered, and the app's answer to it goes out ahead of our
        close frame. Reading stays paused meanwhile (a message waits), so nothing after the bad
        frame is read, and the reader would parse none of it anyway.
        """
        if self.inbox and not self.close_sent:
            self.deferred_failure = (code, reason)
            self._pause_reading()
        else:
            self.fail(code, reason)

    def _fail_deferred(self) -> None:
        if self.deferred_failure is not None:
            code, reason = self.deferred_failure
            self.deferred_failure = None
            self.fail(code, reason)

    def fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or sent too much): close with ``code`` and drop TCP."""
        self.keepalive.stop()
        if code != 1009:
            self.logger.debug("WebSocket protocol error from %s: %s", self._prefix() or "peer", reason)
        if not self.close_sent:
            self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
            if self.request_id:
                self._ending(code, "server")
            self.close_sent = True
            self._write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.peer_closed = True
        self.deferred_failure = None
        self._cancel_close_timer()
        skipper = self.skipper
        if self.transport.is_closing() or skipper is None or skipper.closed:
            self._close_transport()
            return
        # A peer that broke the protocol may well still be sending. Closing the socket with its
        # bytes unread makes the kernel answer with a RST, and a RST can destroy our close frame
        # before the peer has read it, code and all (RFC 6455 7.1.7 wants it to learn why). So
        # read on, discarding (FrameSkipper reads only the framing), and close once the peer's own
        # close frame starts (its last bytes: RFC 6455 5.5.1), it closes, or FAIL_DRAIN_TIMEOUT
        # passes. No half-close first: a FIN while the peer is still writing makes an asyncio
        # client close its transport with data buffered, and CPython's transport, closed that way
        # and then drained, breaks the client's later abort() (AttributeError in _force_close).
        self._flush()
        self.draining = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(FAIL_DRAIN_TIMEOUT, self._close_transport)

    # ------------------------------------------------------------------ keepalive

    def _send_ping(self, payload: bytes) -> bool:
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return False
        self._write(encode_frame(OP_PING, payload))
        return True

    def keepalive_timeout(self) -> None:
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        reason = "keepalive ping timeout"
        self.close_sent = True
        self._put_disconnect({"type": "websocket.disconnect", "code": 1011, "reason": reason})
        if self.request_id:
            self._ending(1011, "server")
        self._write(encode_frame(OP_CLOSE, close_payload(1011, reason)))
        self._close_transport()

    # ------------------------------------------------------------------ the application

    async def run_asgi(self) -> None:
        tracer = self.server_state.tracer
        # --otel: the WebSocket's SERVER span, from its upgrade request to the app's end (current while
        # the app runs, so the app's own spans are its children), as RequestObserver does for HTTP.
        traced = None if tracer is None else tracer.start_request(self.scope, started=self.started or None)
        error: BaseException | None = None
        try:
            try:
                result = await self.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
            except ClientDisconnected:
                pass
            except BaseException as exc:
                error = exc
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                self.send_500_response()
                if self.request_id:
                    self._ending(1006, "server")
                if self.close_timer is None:
                    self._close_transport()
                if not isinstance(exc, Exception):
                    raise  # cancellation and exits are not ours to swallow
                return
            else:
                if not self.handshake_complete:
                    self.logger.error("ASGI callable returned without completing handshake.")
                    self.send_500_response()
                elif result is not None:
                    self.logger.error("ASGI callable should return None, but returned '%s'.", result)
            # As in Uvicorn, an app that ends without "websocket.close" (or raises after accepting)
            # gets its TCP connection closed with no close frame: the client sees 1006. While a close
            # timer runs we are waiting for the peer's close reply instead; let it arrive.
            if self.request_id:
                self._ending(1006, "server")
            if self.close_timer is None:
                self._close_transport()
        finally:
            if traced is not None:
                traced.end(self.status, error)

    def send_500_response(self) -> None:
        if self.response_started or self.handshake_complete or not self.request_seen:
            return
        if self.transport.is_closing():
            return
        self.response_started = True
        self.status = 500
        self._rejected(500)
        output = self.handshake.internal_error()
        if output:
            self._write(output)

    async def receive(self) -> Message:
        inbox = self.inbox
        while not inbox:
            if self.final_message is not None:
                return self.final_message
            waiter = self.inbox_waiter
            if waiter is None or waiter.done():
                # (done() only if a cancelled receive() left its future behind)
                waiter = self.inbox_waiter = self.loop.create_future()
            await waiter
        message = inbox.popleft()
        message_type = message["type"]
        if message_type == _RECEIVE:
            data = message.get("text")
            self.queued_bytes -= len(message["bytes"] if data is None else data)
        if message_type == "websocket.disconnect":
            self.final_message = message
        elif self.handshake_complete:
            if not inbox and self.deferred_failure is not None:
                # The app has the last message before a bad frame: fail once it has dealt with it
                # (what it sends in answer, before it next waits, still goes out first).
                self.loop.call_soon(self._fail_deferred)
            elif self.read_paused:
                self._maybe_resume_reading()  # room in the queue again: read on
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused:
            self._flush()
            await self.flow.drain()
        if self.disconnected:
            raise ClientDisconnected()
        message_type = message["type"]

        if not self.handshake_complete:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self._log_handshake("403")
                self.status = 403
                self._rejected(403)
                self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
                self.handshake_complete = True
                self.close_sent = True
                self._write(self.handshake.forbid())
                self._close_transport()
            elif message_type == "websocket.http.response.start":
                status = message.get("status")
                if not isinstance(status, int) or not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                headers = list(self.server_state.default_headers) + [
                    (bytes(name), bytes(value)) for name, value in message.get("headers", [])
                ]
                self._log_handshake("%d" % status)
                self.status = status
                self._rejected(status)
                self.handshake_complete = True
                self.response_started = True
                self._write(self.handshake.deny(status, headers))
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{message_type}'."
                )

        elif not self.close_sent and not self.response_started:
            if self.peer_closed:
                # The peer's close frame is in (connection_lost may not have run yet).
                raise ClientDisconnected()
            if message_type == "websocket.send":
                data = message.get("bytes")
                if data is not None:
                    payload = bytes(data)
                    opcode = OP_BINARY
                else:
                    text = message.get("text")
                    if text is None:
                        raise RuntimeError("The 'websocket.send' message must carry 'bytes' or 'text'.")
                    payload = text.encode("utf-8")
                    opcode = OP_TEXT
                if self.deflate is not None:
                    self._queue_output(encode_frame(opcode, self.deflate.compress(payload), rsv1=True))
                elif len(payload) >= _FLUSH_AT:
                    # Large: written now, header and payload as they are (joining them costs more than a send).
                    self._write(frame_header(opcode, len(payload)))
                    self._write(payload)
                else:
                    self._queue_output(encode_frame(opcode, payload))
                self.messages_sent += 1
            elif message_type == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason", "") or ""
                frame = encode_frame(OP_CLOSE, close_payload(code, reason))
                self.close_sent = True
                self.keepalive.stop()
                self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
                if self.request_id:
                    self._ending(code, "server")
                if not self.transport.is_closing():
                    self._write(frame)
                    self._await_close_reply()
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                )

        elif self.response_started:
            if message_type == "websocket.http.response.body":
                finished = not message.get("more_body", False)
                body = message.get("body", b"")
                self._write(self.handshake.deny_body(body, finished))
                if finished:
                    self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
                    self.close_sent = True
                    self._close_transport()
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{message_type}'.")

        elif self.peer_closed:
            raise ClientDisconnected()  # we failed the connection; the app sends into the void
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")

    # ------------------------------------------------------------------ helpers

    def _accept(self, message: ASGISendEvent) -> None:
        self._log_handshake("[accepted]")
        subprotocol = message.get("subprotocol")
        extra_headers = list(self.server_state.default_headers) + [
            (bytes(name), bytes(value)) for name, value in message.get("headers", [])
        ]
        if self.transport.is_closing():
            return
        output, self.deflate = self.handshake.accept(subprotocol, extra_headers, self.per_message_deflate)
        self.reader = FrameReader(self.max_size, self.deflate)
        self.handshake_complete = True
        self.status = 101
        events = self.server_state.events
        if events is not None:
            if not self.connection_id:
                self.connection_id = events.next_connection_id()  # opened while nobody listened
            self.request_id = hooks.websocket_accepted(events, self.connection_id, self.scope, subprotocol)
        self._write(output)
        self.keepalive.start()
        early, self.early_data = bytes(self.early_data), bytearray()
        if self.read_paused and not self._inbox_full():
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self.data_received(early)

    def _rejected(self, status: int) -> None:
        """The handshake is answered with ``status`` instead of a 101: report it, if anyone listens."""
        events = self.server_state.events
        if events is not None:
            if not self.connection_id:
                self.connection_id = events.next_connection_id()
            hooks.websocket_rejected(events, self.connection_id, self.scope, status)

    def _ending(self, code: int, initiator: Initiator) -> None:
        """How a reported WebSocket ends (the first close counts); reported at connection_lost."""
        if self.ended is None:
            self.ended = (code, initiator)

    def _report_closed(self) -> None:
        # Lost with neither close frame nor an app that ended first: the peer went away (1006).
        code, initiator = self.ended or (1006, "client")
        request_id, self.request_id = self.request_id, 0
        hooks.websocket_closed(
            self.server_state.event_bus,
            self.connection_id,
            request_id,
            code,
            initiator,
            self.messages_received,
            self.messages_sent,
        )

    def _log_handshake(self, outcome: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" %s', get_client_addr(self.scope), get_path_with_query_string(self.scope), outcome
            )

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _inbox_full(self) -> bool:
        """Whether received messages should stop being read: ``--ws-max-queue`` of them wait for the app,
        or ``--ws-max-size`` bytes (a few large messages must not hold max_queue x max_size)."""
        return len(self.inbox) >= self.max_queue or self.queued_bytes >= self.max_size

    def _maybe_resume_reading(self) -> None:
        """Read again once nothing holds reading back: room in the queue for the app, writes
        flowing, no failure pending (the early-data limit is lifted by ``_accept``)."""
        if (
            self.read_paused
            and not self._inbox_full()
            and not self.flow.write_paused
            and self.deferred_failure is None
            and self.handshake_complete
            and not self.transport.is_closing()
        ):
            reader = self.reader
            if reader is not None and reader.has_held:
                # Frames already read come first; reading resumes once they are all parsed.
                if not self.parse_scheduled:
                    self.parse_scheduled = True
                    self.loop.call_soon(self._parse_held)
                return
            self.read_paused = False
            self.transport.resume_reading()

    def _await_close_reply(self) -> None:
        # Reading must go on, or the peer's close frame would never be seen.
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.reader is not None and self.reader.has_held and not self.parse_scheduled:
            self.parse_scheduled = True  # it may be among the frames already read
            self.loop.call_soon(self._parse_held)
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_transport)

    def _cancel_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def _queue_output(self, output: bytes) -> None:
        """Hold websocket.send output until the app yields, then write it all at once."""
        outbox = self.outbox
        if not outbox:
            self.loop.call_soon(self._flush)
        outbox.append(output)
        self.outbox_size += len(output)
        if self.outbox_size >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        outbox = self.outbox
        if outbox:
            self.outbox_size = 0
            if self.transport.is_closing():
                outbox.clear()
            elif len(outbox) == 1:
                self.transport.write(outbox.pop())
            else:
                # write(), not writelines(): on some Pythons (3.12.1 here) writelines() lets a slow
                # reader's data pile up without pausing the protocol, so back-pressure would be lost.
                # A large payload (queued after its header by send()) gets a write of its own: joined,
                # it would be copied once more, ws_max_size bytes at worst.
                last = outbox[-1]
                if len(last) >= _FLUSH_AT:
                    self.transport.write(b"".join(outbox[:-1]) if len(outbox) > 2 else outbox[0])
                    self.transport.write(last)
                else:
                    self.transport.write(b"".join(outbox))
                outbox.clear()

    def _write(self, data: bytes) -> None:
        """Write now, after anything the app queued (frames must keep their order)."""
        if self.outbox:
            self._flush()
        if not self.transport.is_closing():
            self.transport.write(data)

    def _close_transport(self) -> None:
        if self.outbox:
            self._flush()
        self.transport.close()
        # close() waits for the write buffer to drain, which a peer that does not read never lets
        # happen: it gets --timeout-write to take the rest (our close frame included), then is dropped.
        if self.linger_timer is None and not self.disconnected and self.write_timeout is not None and self._unsent():
            self.linger_timer = self.loop.call_later(self.write_timeout, self.transport.abort)

    def _unsent(self) -> bool:
        """Whether the transport still holds bytes the peer has not taken. A transport without
        ``get_write_buffer_size`` (a test double) is judged by flow control: paused is over its
        high-water mark, the case that matters here."""
        size = getattr(self.transport, "get_write_buffer_size", None)
        if size is None:
            return self.flow.write_paused
        try:
            return bool(size())
        except AttributeError:
            # asyncio's TLS transport once its connection is gone (its SSL protocol is None): nothing
            # can be waiting to go out any more (seen when a browser left a wss:// page).
            return False

    def _put_disconnect(self, message: Message) -> None:
        # One disconnect per connection: a close frame followed by connection_lost (or a shutdown
        # followed by it) must not hand the app a second, different one.
        if not self.disconnect_queued:
            self.disconnect_queued = True
            self._put(message)

    def _put(self, message: Message) -> None:
        self.inbox.append(message)
        waiter = self.inbox_waiter
        if waiter is not None:
            self.inbox_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _prefix(self) -> str:
        return "%s:%d - " % self.client if self.client else ""
