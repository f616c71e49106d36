"""WebSocket over HTTP/1.1, built on wsproto (the ``ws`` extra).

The HTTP protocol hands over the connection on an upgrade request: it builds this protocol,
calls ``connection_made(transport)``, replays the raw request head (plus any bytes already
read) through ``data_received`` and switches the transport to us. wsproto parses the handshake
and the frames; this class maps them to the ASGI ``websocket`` events and back.

Differences from Uvicorn's wsproto implementation, all on purpose:

* reads pause only once ``ws_max_queue`` messages wait for the application (Uvicorn pauses
  after every message, which costs two syscalls per message);
* protocol errors found while parsing (bad UTF-8, bad opcodes, unmasked frames) are answered
  with a close frame carrying wsproto's code (1002/1007) instead of a bare TCP close;
* ``receive()`` after the disconnect message returns the disconnect message again instead of
  waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import deque
from typing import Any, Literal, cast
from urllib.parse import unquote

import h11
import wsproto
from wsproto import ConnectionType, events
from wsproto.connection import ConnectionState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from pounce._types import ASGI3Application, ASGISendEvent, Message, Scope
from pounce.logging import TRACE_LOG_LEVEL
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
        # At least one: zero would mean "pause before the first message", which could never resume.
        self.max_queue: int = max(1, settings.ws_max_queue or 1)
        self.per_message_deflate: bool = settings.ws_per_message_deflate
        self.ping_interval: float | None = settings.ws_ping_interval
        self.ping_timeout: float | None = settings.ws_ping_timeout

        # Shared server state
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks

        # Connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.scope: Scope = {}

        # WebSocket state
        self.conn = wsproto.WSConnection(connection_type=ConnectionType.SERVER)
        self.request_seen = False
        self.handshake_complete = False
        self.response_started = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.close_timeout = CLOSE_TIMEOUT
        self.early_data = bytearray()

        # Messages for the app. A deque and one shared wake-up future are much cheaper per
        # message than asyncio.Queue, and the app is the only consumer.
        self.inbox: deque[Message] = deque()
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.data_messages = 0  # data messages in the inbox, for the max_queue high-water mark
        self.read_paused = False
        self.final_message: Message | None = None

        # Partial message: fragments (or partial frames) collected until message_finished.
        self.fragments: list[Any] = []
        self.fragments_size = 0

        # Write flow control
        self.writable = asyncio.Event()
        self.writable.set()

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
        # Uvicorn's codes: 1006 before the handshake completed, 1005 ("no status") after.
        self._put({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
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
        if self.request_seen and not self.handshake_complete:
            # The client spoke before our 101: hold the bytes until the app decides.
            self.early_data += data
            if len(self.early_data) > _EARLY_DATA_LIMIT and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        self._feed(data)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def shutdown(self) -> None:
        """Server shutdown: close open WebSockets with 1012 (service restart)."""
        self.stop_keepalive()
        if self.close_sent or self.disconnected:
            self._cancel_close_timer()
            self.transport.close()
            return
        if self.response_started:
            pass  # a denial response is being written; the app finishes or the transport goes
        elif self.handshake_complete:
            self._put({"type": "websocket.disconnect", "code": 1012})
            self.close_sent = True
            self._write_event(events.CloseConnection(code=1012))
        else:
            self.send_500_response()
        self.transport.close()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)

    # ------------------------------------------------------------------ incoming

    def _feed(self, data: bytes) -> None:
        conn = self.conn
        try:
            conn.receive_data(data)
        except RemoteProtocolError as err:
            self.reject_handshake(err)
            return
        except LocalProtocolError:
            # Bytes after the close handshake completed (a late pong, say): nothing to do.
            self.transport.close()
            return
        self.handle_events()

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
        if output and not self.transport.is_closing():
            self.transport.write(output)
        self.transport.close()

    def handle_events(self) -> None:
        for event in self.conn.events():
            kind = type(event)
            if self.close_sent:
                # Waiting for the peer's close: only that matters now.
                if kind is events.CloseConnection:
                    self.handle_close(cast(events.CloseConnection, event))
                continue
            if kind is events.TextMessage or kind is events.BytesMessage:
                self.handle_message(cast("events.TextMessage | events.BytesMessage", event))
            elif kind is events.Ping:
                self.transport.write(self.conn.send(cast(events.Ping, event).response()))
            elif kind is events.Pong:
                self.handle_pong(cast(events.Pong, event))
            elif kind is events.CloseConnection:
                self.handle_close(cast(events.CloseConnection, event))
            elif kind is events.Request:
                self.handle_connect(cast(events.Request, event))

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

    def handle_message(self, event: events.TextMessage | events.BytesMessage) -> None:
        data = event.data
        message: Message
        if isinstance(data, str):
            # ws_max_size is a byte budget: count UTF-8 bytes for text.
            size = len(data) if data.isascii() else len(data.encode())
        else:
            size = len(data)
        if event.message_finished and not self.fragments:
            # The common case: a whole message in one frame, no copying.
            if size > self.max_size:
                self.fail_too_big()
                return
            if isinstance(data, str):
                message = {"type": _RECEIVE, "text": data}
            else:
                message = {"type": _RECEIVE, "bytes": bytes(data)}
        else:
            self.fragments.append(data)
            self.fragments_size += size
            if self.fragments_size > self.max_size:
                self.fail_too_big()
                return
            if not event.message_finished:
                return
            if isinstance(data, str):
                message = {"type": _RECEIVE, "text": "".join(self.fragments)}
            else:
                message = {"type": _RECEIVE, "bytes": b"".join(self.fragments)}
            self.fragments = []
            self.fragments_size = 0
        self._put(message)
        self.data_messages += 1
        if self.data_messages >= self.max_queue and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def fail_too_big(self) -> None:
        reason = f"Message exceeds the maximum size ({self.max_size} bytes)"
        self.fragments = []
        self.fragments_size = 0
        self.close_sent = True
        self.stop_keepalive()
        self._put({"type": "websocket.disconnect", "code": 1009, "reason": reason})
        if not self.transport.is_closing():
            self._write_event(events.CloseConnection(code=1009, reason=reason))
            self.transport.close()

    def handle_close(self, event: events.CloseConnection) -> None:
        if self.close_sent:
            # The peer answered our close frame: the closing handshake is complete.
            if self.close_timer is not None:
                self._cancel_close_timer()
                self.transport.close()
            return
        self.stop_keepalive()
        state = self.conn.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the close: echo it (RFC 6455 5.5.1), then we may drop TCP.
            self.transport.write(self.conn.send(event.response()))
        elif state is ConnectionState.OPEN:
            # No close frame arrived: wsproto hit a protocol error (1002, 1007, ...) and reports
            # it as a close event. Fail the connection with that code, as RFC 6455 7.1.7 asks.
            self.logger.debug("WebSocket protocol error from peer: %s (%d)", event.reason, event.code)
            self._write_event(events.CloseConnection(code=event.code, reason=event.reason or ""))
        self.close_sent = True
        self._put({"type": "websocket.disconnect", "code": event.code, "reason": event.reason or ""})
        self.transport.close()

    def handle_pong(self, event: events.Pong) -> None:
        # Unsolicited pongs, and stale ones not matching the ping in flight, are ignored.
        if self.pending_ping_payload is None or bytes(event.payload) != self.pending_ping_payload:
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
        if self.close_sent or self.transport.is_closing():
            return
        # A random payload identifies this ping, so a stale pong cannot satisfy it.
        self.pending_ping_payload = struct.pack("!I", int.from_bytes(os.urandom(4), "big"))
        self.ping_sent_at = self.loop.time()
        self.transport.write(self.conn.send(events.Ping(payload=self.pending_ping_payload)))
        if self.ping_timeout is not None and self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        reason = "keepalive ping timeout"
        self.close_sent = True
        self._put({"type": "websocket.disconnect", "code": 1011, "reason": reason})
        self._write_event(events.CloseConnection(code=1011, reason=reason))
        self.transport.close()

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
                self.transport.close()
            if not isinstance(exc, Exception):
                raise  # cancellation and exits are not ours to swallow
            return
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        # As Uvicorn does, an app that ends without "websocket.close" (or raises after accepting)
        # gets its TCP connection closed with no close frame: the client sees 1006. While a close
        # timer runs we are waiting for the peer's close reply instead; let it arrive.
        if self.close_timer is None:
            self.transport.close()

    def send_500_response(self) -> None:
        if self.response_started or self.handshake_complete or not self.request_seen:
            return
        if self.transport.is_closing():
            return
        self.handshake_complete = True
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
        self.transport.write(output)

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
        if message["type"] == _RECEIVE:
            self.data_messages -= 1
            # Resume once the app has drained the backlog to a quarter of the limit (at least
            # to empty), as websockets does with its max_queue.
            if self.read_paused and self.data_messages <= self.max_queue // 4 and self.handshake_complete:
                self.read_paused = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()
        elif message["type"] == "websocket.disconnect":
            self.final_message = message
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        message_type = message["type"]

        if not self.handshake_complete:
            if message_type == "websocket.accept":
                self._accept(message)
            elif message_type == "websocket.close":
                self._log_handshake("403")
                self._put({"type": "websocket.disconnect", "code": 1006})
                self.handshake_complete = True
                self.close_sent = True
                self.transport.write(self.conn.send(events.RejectConnection(status_code=403, headers=[])))
                self.transport.close()
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
                event = events.RejectConnection(status_code=status, headers=headers, has_body=True)
                self.transport.write(self.conn.send(event))
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{message_type}'."
                )

        elif not self.close_sent and not self.response_started:
            if message_type == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("The 'websocket.send' message must carry 'bytes' or 'text'.")
                try:
                    output = self.conn.send(events.Message(data=data))
                except LocalProtocolError as exc:
                    # The peer closed first (its close frame is in, connection_lost not yet).
                    raise ClientDisconnected from exc
                if not self.transport.is_closing():
                    self.transport.write(output)
            elif message_type == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason", "") or ""
                try:
                    output = self.conn.send(events.CloseConnection(code=code, reason=reason))
                except LocalProtocolError as exc:
                    raise ClientDisconnected from exc
                self.close_sent = True
                self.stop_keepalive()
                self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
                if not self.transport.is_closing():
                    self.transport.write(output)
                    self._await_close_reply()
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                )

        elif self.response_started:
            if message_type == "websocket.http.response.body":
                finished = not message.get("more_body", False)
                body = message.get("body", b"")
                self.transport.write(self.conn.send(events.RejectData(data=body, body_finished=finished)))
                if finished:
                    self._put({"type": "websocket.disconnect", "code": 1006})
                    self.close_sent = True
                    self.transport.close()
            else:
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{message_type}'.")

        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")

    # ------------------------------------------------------------------ helpers

    def _accept(self, message: ASGISendEvent) -> None:
        self._log_handshake("[accepted]")
        subprotocol = message.get("subprotocol")
        extra_headers = list(self.server_state.default_headers) + [
            (bytes(name), bytes(value)) for name, value in message.get("headers", [])
        ]
        extensions: list[Extension] = [PerMessageDeflate()] if self.per_message_deflate else []
        if self.transport.is_closing():
            return
        output = self.conn.send(
            events.AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=extra_headers)
        )
        self.handshake_complete = True
        self.transport.write(output)
        self.start_keepalive()
        early, self.early_data = bytes(self.early_data), bytearray()
        if self.read_paused and self.data_messages < self.max_queue:
            self.read_paused = False
            self.transport.resume_reading()
        if early:
            self._feed(early)

    def _log_handshake(self, outcome: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" %s', get_client_addr(self.scope), get_path_with_query_string(self.scope), outcome
            )

    def _await_close_reply(self) -> None:
        # Reading must go on, or the peer's close frame would never be seen.
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def _cancel_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def _write_event(self, event: events.Event) -> None:
        try:
            output = self.conn.send(event)
        except LocalProtocolError:
            return
        if not self.transport.is_closing():
            self.transport.write(output)

    def _put(self, message: Message) -> None:
        self.inbox.append(message)
        waiter = self.inbox_waiter
        if waiter is not None:
            self.inbox_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _prefix(self) -> str:
        return "%s:%d - " % self.client if self.client else ""
