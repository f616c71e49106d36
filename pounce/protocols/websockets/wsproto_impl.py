"""WebSocket over HTTP/1.1: wsproto for the handshake, a lean RFC 6455 frame codec for the traffic.

The HTTP protocol hands over the connection on an upgrade request: it builds this protocol,
calls ``connection_made(transport)``, replays the raw request head (plus any bytes already
read) through ``data_received`` and switches the transport to us.

wsproto (the ``ws`` extra) does what it is best at: it validates the upgrade request, negotiates
permessage-deflate, and writes the 101, 403, 500 and ``websocket.http.response`` answers. Once
the connection is accepted, frames go through ``frames.FrameReader`` and ``frames.encode_frame``
instead of wsproto's frame layer: one pass over each frame, one unmasking copy, no
per-frame objects, and permessage-deflate (RFC 7692) with a decompression budget, so that a
small compressed frame cannot inflate past ``ws_max_size``. That makes a small message about six
times cheaper than on Uvicorn's wsproto path; at 64 KiB the gain is about 1.3x, because there
unmasking the payload (pure Python, see ``frames.unmask``) is most of the work on both.

Behaviour follows Uvicorn's wsproto implementation (ASGI events, close codes, log lines, reads
paused while a received message waits for the app). Differences, all on purpose:

* ``websocket.send`` output is coalesced: what the app sends before it next yields to the event
  loop goes out in one ``write``, flushed at once past 64 KiB so that the transport's write
  flow control still applies;
* protocol errors (bad UTF-8, bad opcodes, unmasked or malformed frames) are answered with a
  close frame carrying the right code (1002/1007) instead of a bare TCP close, and a send after
  such a failure raises ``ClientDisconnected`` like a send after the peer left;
* ``receive()`` after the disconnect message returns the disconnect message again instead of
  waiting forever;
* wsproto drops ``sec-websocket-protocol`` and ``sec-websocket-extensions`` from the request
  headers; they are put back in the scope.

``ws_max_queue`` needs no separate limit here: reads pause as soon as one message waits, so at
most one read's worth of messages is ever queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Any, Literal, cast
from urllib.parse import unquote

import h11
import wsproto
from wsproto import ConnectionType, events
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from pounce._types import ASGI3Application, ASGISendEvent, Message, Scope
from pounce.logging import TRACE_LOG_LEVEL
from pounce.protocols.websockets.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Deflate,
    FrameEvent,
    FrameReader,
    ProtocolViolation,
    close_payload,
    encode_frame,
    frame_header,
)
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

# Coalesced websocket.send output is written at once past this size, so that the transport
# sees the data (and can pause us) before an app that never yields fills memory.
_FLUSH_AT = 64 * 1024

_RECEIVE = "websocket.receive"

class WSProtocol(asyncio.Protocol):
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
        self.per_message_deflate: bool = settings.ws_per_message_deflate
        self.ping_interval: float | None = settings.ws_ping_interval
        self.ping_timeout: float | None = settings.ws_ping_timeout

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
        self.conn = wsproto.WSConnection(connection_type=ConnectionType.SERVER)
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
        self.early_data = bytearray()

        # Messages for the app. A deque and one shared wake-up future are much cheaper per
        # message than asyncio.Queue, and the app is the only consumer.
        self.inbox: deque[Message] = deque()
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.disconnect_queued = False
        self.final_message: Message | None = None

        # Write flow control, and websocket.send output waiting for the end of this loop turn
        self.writable = asyncio.Event()
        self.writable.set()
        self.outbox: list[bytes] = []
        self.outbox_size = 0

        # Keepalive state
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.pending_ping_payload: bytes | None = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = cast(asyncio.Transport, transport)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "wss" if is_ssl(transport) else "ws"
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self._prefix())

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        self.outbox.clear()
        # Uvicorn's codes: 1006 before the handshake completed, 1005 ("no status") after.
        self._put_disconnect({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
        self.connections.discard(self)
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._prefix())
        self.handshake_complete = True
        self.disconnected = True
        # asyncio never calls resume_writing() on a transport lost while paused.
        self.writable.set()
        self._cancel_close_timer()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            if self.peer_closed or (self.close_sent and self.close_timer is None):
                # Bytes after the closing handshake (a late pong, say): the session is over.
                self._close_transport()
                return
            try:
                frames = reader.feed(data)
            except ProtocolViolation as violation:
                self.fail(violation.code, violation.reason)
                return
            if frames:
                self.handle_frames(frames)
        elif self.request_seen:
            if not self.handshake_complete:
                # The client spoke before our 101: hold the bytes until the app decides.
                self.early_data += data
                if len(self.early_data) > _EARLY_DATA_LIMIT:
                    self._pause_reading()
            # else: a denial response is under way; whatever the client sends is moot.
        else:
            self.handle_handshake_data(data)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def shutdown(self) -> None:
        """Server shutdown: close open WebSockets with 1012 (service restart)."""
        self.stop_keepalive()
        if self.close_sent or self.disconnected or self.peer_closed:
            self._cancel_close_timer()
            self._close_transport()
            return
        if self.response_started:
            pass  # a denial response is being written: it ends with the transport
        elif self.handshake_complete:
            self._put_disconnect({"type": "websocket.disconnect", "code": 1012})
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
            self.conn.receive_data(data)
            for event in self.conn.events():
                if isinstance(event, events.Request):
                    self.handle_connect(event)
                    break
        except RemoteProtocolError as err:
            self.reject_handshake(err)

    def reject_handshake(self, err: RemoteProtocolError) -> None:
        """A malformed upgrade request: answer with wsproto's status (400 or 426) and the reason."""
        self.logger.warning("Invalid WebSocket upgrade request: %s", err)
        hint = err.event_hint
        status = hint.status_code if isinstance(hint, events.RejectConnection) else 400
        headers = list(hint.headers) if isinstance(hint, events.RejectConnection) else []
        body = f"Invalid WebSocket upgrade request: {err}\n".encode()
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True))
            output += self.conn.send(events.RejectData(data=body))
        except (LocalProtocolError, h11.LocalProtocolError):
            output = b""  # the request was not even HTTP: nothing sensible to answer
        if output:
            self._write(output)
        self._close_transport()

    def handle_connect(self, event: events.Request) -> None:
        self.request_seen = True
        # Bytes that followed the request head in the same read sit in wsproto's HTTP parser,
        # which never hands them on after the upgrade: take them now.
        h11_conn = getattr(self.conn.handshake, "_h11_connection", None)
        trailing = getattr(h11_conn, "trailing_data", (b"", False))[0]
        if trailing:
            self.early_data += trailing
        headers: list[tuple[bytes, bytes]] = [(b"host", event.host.encode())]
        headers += [(key.lower(), value) for key, value in event.extra_headers]
        # wsproto strips these two from extra_headers; ASGI apps expect every request header.
        if event.subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(event.subprotocols).encode()))
        if event.extensions:
            offered = [ext if isinstance(ext, str) else ext.name for ext in event.extensions]
            headers.append((b"sec-websocket-extensions", ", ".join(offered).encode()))
        raw_path, _, query_string = event.target.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": event.subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    # ------------------------------------------------------------------ incoming frames

    def handle_frames(self, frames: list[FrameEvent]) -> None:
        for frame in frames:
            kind = frame[0]
            if kind == "message":
                if self.close_sent:
                    continue  # crossing our close frame: RFC 6455 lets us drop it
                self._put({"type": _RECEIVE, "text": frame[1]} if type(frame[1]) is str else {"type": _RECEIVE, "bytes": frame[1]})
                # Back-pressure as in Uvicorn: stop reading while a message waits for the app.
                if not self.read_paused:
                    self._pause_reading()
            elif kind == "ping":
                if not self.close_sent:
                    self._write(encode_frame(OP_PONG, frame[1]))
            elif kind == "pong":
                self.handle_pong(frame[1])
            else:
                self.handle_close(cast(int, frame[1]), cast(str, frame[2]))

    def handle_close(self, code: int, reason: str) -> None:
        if self.close_sent:
            # The peer answered our close frame: the closing handshake is complete.
            self.peer_closed = True
            self._cancel_close_timer()
            self._close_transport()
            return
        # The peer started the close: echo its code (RFC 6455 5.5.1), then drop TCP, as the
        # server should (RFC 6455 7.1.1).
        self.stop_keepalive()
        self.peer_closed = True
        self._write(encode_frame(OP_CLOSE, close_payload(code)))
        self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._close_transport()

    def fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or sent too much): close with ``code`` and drop TCP."""
        self.stop_keepalive()
        if code != 1009:
            self.logger.debug("WebSocket protocol error from %s: %s", self._prefix() or "peer", reason)
        if not self.close_sent:
            self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.close_sent = True
            self._write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.peer_closed = True
        self._cancel_close_timer()
        self._close_transport()

    def handle_pong(self, payload: bytes) -> None:
        # Unsolicited pongs, and stale ones not matching the ping in flight, are ignored.
        if self.pending_ping_payload is None or payload != self.pending_ping_payload:
            return
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.schedule_ping()

    # ------------------------------------------------------------------ keepalive

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self.ping_interval > 0:
            self.schedule_ping()

    def stop_keepalive(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending_ping_payload = None

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_later(delay, self.send_keepalive_ping)

    def send_keepalive_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return
        # A random payload identifies this ping, so a stale pong cannot satisfy it.
        self.pending_ping_payload = os.urandom(4)
        self.ping_sent_at = self.loop.time()
        self._write(encode_frame(OP_PING, self.pending_ping_payload))
        if self.ping_timeout is not None and self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.peer_closed or self.transport.is_closing():
            return
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        reason = "keepalive ping timeout"
        self.close_sent = True
        self._put_disconnect({"type": "websocket.disconnect", "code": 1011, "reason": reason})
        self._write(encode_frame(OP_CLOSE, close_payload(1011, reason)))
        self._close_transport()

    # ------------------------------------------------------------------ the application

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except ClientDisconnected:
            pass
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            self.send_500_response()
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
        if self.close_timer is None:
            self._close_transport()

    def send_500_response(self) -> None:
        if self.response_started or self.handshake_complete or not self.request_seen:
            return
        if self.transport.is_closing():
            return
        self.response_started = True
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            (b"content-length", b"21"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=500, headers=headers, has_body=True))
            output += self.conn.send(events.RejectData(data=b"Internal Server Error"))
        except (LocalProtocolError, h11.LocalProtocolError):  # pragma: no cover - defensive
            return
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
        if message["type"] == "websocket.disconnect":
            self.final_message = message
        elif self.read_paused and not inbox and self.handshake_complete:
            # The app caught up: read again (the transport may be gone by now).
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if not self.writable.is_set():
            self._flush()
            await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        message_type = message["type"]

        if not self.handshake_complete:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self._log_handshake("403")
                self._put_disconnect({"type": "websocket.disconnect", "code": 1006})
                self.handshake_complete = True
                self.close_sent = True
                self._write(self.conn.send(events.RejectConnection(status_code=403, headers=[])))
                self._close_transport()
            elif message_type == "websocket.http.response.start":
                status = message.get("status")
                if not isinstance(status, int) or not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                headers = list(self.server_state.default_headers) + [
                    (bytes(name), bytes(value)) for name, value in message.get("headers", [])
                ]
                self._log_handshake("%d" % status)
                self.handshake_complete = True
                self.response_started = True
                self._write(self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True)))
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
                    # Large: header and payload go out without concatenating them first.
                    self._queue_output(frame_header(opcode, len(payload)))
                    self._queue_output(payload)
                else:
                    self._queue_output(encode_frame(opcode, payload))
            elif message_type == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason", "") or ""
                frame = encode_frame(OP_CLOSE, close_payload(code, reason))
                self.close_sent = True
                self.stop_keepalive()
                self._put_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
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
                self._write(self.conn.send(events.RejectData(data=body, body_finished=finished)))
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
        deflate = PerMessageDeflate() if self.per_message_deflate else None
        extensions: list[Extension] = [deflate] if deflate is not None else []
        if self.transport.is_closing():
            return
        output = self.conn.send(
            events.AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=extra_headers)
        )
        if deflate is not None and deflate.enabled():
            self.deflate = Deflate(deflate)
        self.reader = FrameReader(self.max_size, self.deflate)
        self.handshake_complete = True
        self._write(output)
        self.start_keepalive()
        early, self.early_data = bytes(self.early_data), bytearray()
        if self.read_paused and not self.inbox:
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self.data_received(early)

    def _log_handshake(self, outcome: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" %s', get_client_addr(self.scope), get_path_with_query_string(self.scope), outcome
            )

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _await_close_reply(self) -> None:
        # Reading must go on, or the peer's close frame would never be seen.
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
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
                # One write(), not writelines(): on some Pythons (3.12.1 here) writelines() lets a slow
                # reader's data pile up without pausing the protocol, so back-pressure would be lost.
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
