"""HTTP/2 through the ``h2`` library (``--http2``, extra ``pounce-asgi[h2]``).

One ``H2Protocol`` serves one connection; each stream is a ``RequestResponseCycle`` (``H2Cycle``), so
the ASGI side (message validation, 500 before the response starts, access log, disconnects) is the
same code the HTTP/1.1 protocols run. A cycle talks to its stream through a small stand-in transport:
``close()`` resets the stream, never the connection, so one failing app call cannot take its sibling
streams down.

Flow control works in both directions without unbounded buffers:

* inbound, a stream's DATA is acknowledged (its window reopened) only when the app has received it,
  so a stream holds at most one window (64 KiB) of unread body; the connection window is opened wide
  enough that stalled streams cannot block their siblings;
* outbound, response bytes wait in the stream's buffer for window updates; above
  ``HIGH_WATER_LIMIT`` the app's next ``send`` waits until the peer has taken enough.

Writes are coalesced: what the streams of a connection produce in one event-loop iteration leaves in
one ``transport.write``.

What one connection may hold, and for how long (README "Resource model"; the checks that need state of
their own are in ``h2_limits``):

* streams: ``--h2-max-concurrent-streams`` is advertised (SETTINGS_MAX_CONCURRENT_STREAMS) and a
  stream counts against it until its app task has finished, even when the client reset it, so
  resetting streams cannot run more app tasks at once than the limit (CVE-2023-44487);
* resets and control frames the client makes us handle are rate-limited (``--h2-max-reset-rate``,
  ``--h2-max-control-frame-rate``); beyond the rate, GOAWAY ENHANCE_YOUR_CALM and the connection ends;
* output: while the transport's write buffer is full nothing more is read (every frame read may
  oblige us to answer); a buffer that stays full ``--timeout-write`` seconds aborts the connection, and
  a stream whose output gets no flow-control window for that long is reset;
* input: one frame of at most 16 KiB is buffered per connection (SETTINGS_MAX_FRAME_SIZE), a header
  block is at most what SETTINGS_MAX_HEADER_LIST_SIZE (``max_header_size``) allows, and each stream
  holds at most one window (64 KiB) of unread body;
* time: a request body must progress within ``--timeout-request-body`` (else 408 on that stream), and
  only streams keep a connection open: with none, ``--timeout-keep-alive`` closes it, whatever
  PINGs or other control frames the client sends.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h2.errors
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from pounce._types import ASGI3Application, Message, Scope
from pounce.config import Config
from pounce.observability import hooks
from pounce.observability.events import Initiator, ProtocolName
from pounce.protocols.http.base import BaseHTTPProtocol, error_body
from pounce.protocols.http.cycle import (
    BODY_PROGRESS,
    EARLY_HINT,
    TRAILERS,
    INVALID_HEADER_NAME,
    INVALID_HEADER_VALUE,
    RequestResponseCycle,
)
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from pounce.protocols.http.h2_limits import H2Connection, InboundFrames, connection_error_code, request_problem
from pounce.server import ServerState

# RFC 9113 §8.2.2: connection-specific fields are not allowed in HTTP/2. Apps written for HTTP/1.1 send
# them anyway ("connection: close" from our own 503/500 answers too), so they are dropped on the way out.
FORBIDDEN_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
_NO_CONTENT_STATUSES = frozenset((204, 304))
# Connection-level receive window: one stream window (64 KiB) per stream allowed, so streams whose apps
# do not read their body (each holding at most its own window) cannot starve the others of connection
# window. It is also the most unread request body one connection holds.
STREAM_WINDOW = 65535
MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1


class _StreamTransport(asyncio.Transport):
    """What a cycle sees as its transport: closing it resets its stream (RST_STREAM), not the connection."""

    def __init__(self, protocol: H2Protocol, cycle: H2Cycle) -> None:
        super().__init__()
        self._protocol = protocol
        self._cycle = cycle

    def close(self) -> None:
        self._protocol.abort_stream(self._cycle)

    def is_closing(self) -> bool:
        return self._cycle.stream_id not in self._protocol.streams or self._protocol.transport.is_closing()

    # Inbound back-pressure is HTTP/2 flow control (see ``H2Cycle.receive``), not socket reads.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class H2Cycle(RequestResponseCycle):
    """One stream: the shared ASGI cycle with HTTP/2 framing hooks, trailers and early hints."""

    # Outbound state, read by ``H2Protocol.pump``.
    head: list[tuple[bytes, bytes]] | None = None  # response head not yet handed to h2
    end_queued = False  # the app finished the response; END_STREAM goes out after ``pending``
    trailers: list[tuple[bytes, bytes]] | None = None
    queued = False  # in the protocol's list of streams to pump at the next flush
    unacked = 0  # received DATA the app has not taken yet (flow-controlled bytes)
    _length_left: int | None = None
    # Request body: what content-length declared (None: nothing) and how much DATA has arrived.
    declared_length: int | None = None
    received = 0
    # Reset (or otherwise forgotten) while its app task still runs: it still counts against the stream
    # limit until the task ends (see ``H2Protocol.task_done``).
    orphaned = False
    # Output waiting for flow-control window: the deadline, and what was sent since it was armed.
    window_timer: asyncio.TimerHandle | None = None
    window_progress = 0
    _body_allowed = True

    def __init__(self, protocol: H2Protocol, stream_id: int, scope: Scope, expect_100_continue: bool) -> None:
        self.stream_id = stream_id
        self.protocol = protocol
        handle = _StreamTransport(protocol, self)
        super().__init__(
            scope,
            handle,
            FlowControl(handle),
            protocol.logger,
            protocol.on_response_complete,
            True,
            expect_100_continue,
        )
        self.pending = bytearray()
        self.default_headers = protocol.server_state.default_headers
        self.is_head = scope["method"] == "HEAD"
        # The shared receive() enforces the request-body deadline; what happens then is ours.
        self.body_timeout = protocol.timeout_request_body

    def on_body_timeout(self) -> None:
        """The body made no progress in time: 408 on this stream (a reset once the response started)."""
        self.protocol.logger.warning("Request body not received in time on HTTP/2 stream %d.", self.stream_id)
        self.protocol.refuse_body(self, 408, "Request body not received in time.")

    async def run_asgi(self, app: ASGI3Application) -> None:
        try:
            await super().run_asgi(app)
        finally:
            self.protocol.task_done(self)

    # HTTP/2 never closes the connection for one response: the shared cycle's "keep-alive off" (an app's
    # "connection: close", an unread body after a final answer) has no meaning per stream.
    @property
    def keep_alive(self) -> bool:
        return True

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        pass

    async def receive(self) -> Message:
        message = await super().receive()
        if self.unacked:
            # The app has the bytes: give the peer the window back.
            size, self.unacked = self.unacked, 0
            self.protocol.acknowledge(self.stream_id, size)
        return message

    # Framing hooks
    def write_continue(self) -> None:
        self.protocol.send_informational(self, 100, [])

    def write_response_start(self, status: int, headers: Any) -> None:
        head = [(b":status", b"%d" % status), *self.default_headers]
        for name, value in headers:
            if INVALID_HEADER_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if INVALID_HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            lname = name.lower()
            if lname in FORBIDDEN_HEADERS:
                continue
            if lname == b"te" and value.lower().strip() != b"trailers":
                continue
            if lname == b"content-length":
                self._length_left = int(value)
            head.append((lname, value))
        if status < 200 or status in _NO_CONTENT_STATUSES or self.is_head:
            # RFC 9110 §6.4.1: no content; a HEAD response keeps the length a GET would have had.
            self._body_allowed = False
            self._length_left = None
        self.head = head
        self.protocol.schedule(self)

    def write_body(self, body: bytes, more_body: bool) -> None:
        if self._body_allowed and body:
            if self._length_left is not None:
                self._length_left -= len(body)
                if self._length_left < 0:
                    raise RuntimeError("Response content longer than Content-Length")
            self.pending += body
        if not more_body:
            if self._length_left:
                raise RuntimeError("Response content shorter than Content-Length")
            self.end_queued = True
        if len(self.pending) > HIGH_WATER_LIMIT:
            self.flow.pause_writing()
        self.protocol.schedule(self)

    # Extensions (see RequestResponseCycle); a file (pathsend) is sent in chunks through write_body.
    def write_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.protocol.send_informational(self, status, headers)

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = trailers or None
        self.write_body(b"", False)

    def frame_file(self, size: int) -> int:
        if not self._body_allowed:
            return 0
        if self._length_left is None:
            self._length_left = size
            if self.head is not None:
                # The file is the whole body: its size is the content-length (clients show progress).
                self.head.append((b"content-length", b"%d" % size))
            return size
        # A content-length the app declared is what goes out, even of a file that has grown since.
        return min(size, self._length_left)


class H2Protocol(BaseHTTPProtocol):
    """One HTTP/2 connection (RFC 9113) served through h2; created by the ``--http2`` negotiation."""

    alpn_protocols: ClassVar[list[str]] = ["h2"]
    protocol_name: ProtocolName = "h2"

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        cfg = config.server_config
        self.max_streams = cfg.h2_max_concurrent_streams
        self.max_fields = cfg.limit_request_fields
        self.limit_request_body = cfg.limit_request_body
        self.timeout_write = cfg.timeout_write
        self.inbound = InboundFrames(cfg.h2_max_reset_rate, cfg.h2_max_control_frame_rate, cfg.max_header_size)
        self.conn = H2Connection(self.max_streams, cfg.max_header_size, self.inbound.charge_reset)
        self.streams: dict[int, H2Cycle] = {}
        # Streams forgotten while their app task still runs (reset by the client, refused a body, ...).
        self._orphans = 0
        self._to_pump: list[H2Cycle] = []
        self._flush_scheduled = False
        # Streams above this id arrived after our shutdown GOAWAY and are refused (None: not shutting down).
        self._goaway_last_stream: int | None = None
        # Once we close: a transport that cannot flush its last bytes in time is aborted.
        self._close_timer: asyncio.TimerHandle | None = None

    def _offer_extensions(self, transport: asyncio.BaseTransport) -> None:
        super()._offer_extensions(transport)
        # Every stream may end with trailers (sent when it said "te: trailers", as Uvicorn) and take
        # early hints: HTTP/2 has room for both whatever the request.
        self.extensions = {**self.extensions, TRAILERS: {}, EARLY_HINT: {}}

    # Protocol interface
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        self._trace("HTTP/2 connection made")
        self.conn.initiate_connection()
        extra = min(self.max_streams * STREAM_WINDOW, MAX_WINDOW) - STREAM_WINDOW
        if extra > 0:
            self.conn.increment_flow_control_window(extra)
        self._flush()
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._trace("HTTP/2 connection lost")
        for cycle in list(self.streams.values()):
            self._forget(cycle)
        self.flow.resume_writing()
        self._unset_keepalive_if_required()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._report_closed()
        if exc is None and not self.transport.is_closing():
            self.transport.close()

    def pause_writing(self) -> None:
        # The client is not taking what we send. Stop reading too: almost any frame read can oblige us
        # to answer (PING and SETTINGS ACKs, RST_STREAM, WINDOW_UPDATE, responses), so reading on would
        # grow the output buffer by what the client sends. The write-stall deadline (``--timeout-write``)
        # armed by the base class ends a connection that stays like this.
        super().pause_writing()
        self.flow.pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.flow.resume_reading()
        for cycle in self.streams.values():
            self.schedule(cycle)

    def data_received(self, data: bytes) -> None:
        # Only streams count as activity for the keep-alive timer (``_requests``, counted when a stream
        # starts): frames read here do not, so a client sending PINGs alone is closed when it expires.
        if self.transport.is_closing():
            return  # A connection error was sent: nothing more is read.
        verdict = self.inbound.feed(data)
        if verdict is not None:
            # Before h2 sees any of it: a flood stopped here costs us one walk over frame headers.
            self._connection_error(*verdict)
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.logger.warning("Invalid HTTP/2 frame received: %s", exc)
            self._connection_error(connection_error_code(exc), str(exc))
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self._on_data(event)
            elif isinstance(event, h2.events.RequestReceived):
                self._on_request(event)
            elif isinstance(event, h2.events.StreamEnded):
                cycle = self.streams.get(event.stream_id)
                if cycle is not None:
                    self._on_body_end(cycle)
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id:
                    window_cycle = self.streams.get(event.stream_id)
                    if window_cycle is not None:
                        self.schedule(window_cycle)
                else:
                    for cycle in self.streams.values():
                        self.schedule(cycle)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for cycle in self.streams.values():
                    self.schedule(cycle)
            elif isinstance(event, h2.events.StreamReset):
                # The client's RST_STREAM, or our own for a malformed request (``H2Connection``).
                reset_cycle = self.streams.get(event.stream_id)
                if self.server_state.events is not None and event.remote_reset:
                    self._report_reset(event.stream_id, event.error_code, "client")
                if reset_cycle is not None:
                    self._forget(reset_cycle)
            elif isinstance(event, h2.events.ConnectionTerminated):
                # The peer's GOAWAY: h2 accepts no more frames from us, so nothing in flight can finish.
                self._write(self.conn.data_to_send())
                self._close_transport()
                return
            # PING and SETTINGS are acknowledged by h2; request trailers are not passed to ASGI apps.
            if self.transport.is_closing():
                return  # A connection error while handling an event (too many resets provoked).
        self._flush()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._goaway_last_stream is not None and stream_id > self._goaway_last_stream:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = self.conn.streams.get(stream_id)
        if stream is None or stream.closed:
            return  # Reset by the client in the same read (the rapid-reset pattern): nothing to start.
        if len(self.streams) + self._orphans >= self.max_streams:
            # RFC 9113 §5.1.2: over the advertised limit, REFUSED_STREAM (the request was not processed,
            # so the client may retry it). A reset stream whose app task still runs counts: it holds
            # what an open one holds, so rapid resets cannot run more app tasks than the limit.
            self._reset_for_client(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method = path = authority = declared = None
        headers: list[tuple[bytes, bytes]] = []
        expect_continue = False
        has_host = False
        for raw_name, raw_value in event.headers:
            # header_encoding=None: h2 hands over bytes.
            name = raw_name if isinstance(raw_name, bytes) else raw_name.encode("latin-1")
            value = raw_value if isinstance(raw_value, bytes) else raw_value.encode("latin-1")
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"host":
                has_host = True
            elif name == b"content-length":
                declared = value
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
            headers.append((name, value))
        if method is None or not path:
            # CONNECT (no :path) cannot be expressed as an ASGI HTTP request.
            self._reset_for_client(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        ended = event.stream_ended is not None
        problem = request_problem(method, path, authority, headers, self.max_fields, self.limit_request_body)
        if problem is None and ended and declared is not None and int(declared) != 0:
            problem = None, "content-length without DATA"  # RFC 9113 §8.1.1
        if problem is not None:
            status, reason = problem
            self._trace(f"HTTP/2 stream {stream_id} refused: {reason}")
            if status is None:
                self._reset_for_client(stream_id, ErrorCodes.PROTOCOL_ERROR)  # RFC 9113 §8.1.1
            else:
                self._answer(stream_id, status, reason, stop_request=not ended)
            return
        if authority is not None and not has_host:
            # RFC 9113 §8.3.1: :authority replaces Host; ASGI apps (and URL building) look for "host".
            headers.insert(0, (b"host", authority))
        scope = self.build_scope(method, path, "2", headers)
        cycle = H2Cycle(self, stream_id, scope, expect_continue)
        state = self.server_state
        if state.observing or self.server_timing:
            self._observe(cycle, scope, stream_id)
        if declared is not None:
            cycle.declared_length = int(declared)
        self.streams[stream_id] = cycle
        self._unset_keepalive_if_required()
        self._run_cycle(cycle, self._select_app())

    def _on_data(self, event: h2.events.DataReceived) -> None:
        cycle = self.streams.get(event.stream_id)
        if cycle is not None:
            cycle.received += len(event.data)
        if cycle is None or cycle.response_complete or cycle.disconnected:
            # Nobody will read it: hand the window back at once.
            self.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        if self.limit_request_body is not None and cycle.received > self.limit_request_body:
            self.acknowledge(event.stream_id, event.flow_controlled_length)
            self.refuse_body(cycle, 413, "Request body too large")
            return
        cycle.body += event.data
        cycle.unacked += event.flow_controlled_length
        cycle.notify()

    def _on_body_end(self, cycle: H2Cycle) -> None:
        if cycle.declared_length is not None and cycle.received != cycle.declared_length:
            # RFC 9113 §8.1.1: the body ended (by trailers; h2 checks DATA with END_STREAM) shorter than
            # its content-length.
            self._reset_for_client(cycle.stream_id, ErrorCodes.PROTOCOL_ERROR)
            self._forget(cycle)
            return
        cycle.more_body = False
        cycle.notify()

    # Called by cycles
    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.transport.is_closing():
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except h2.exceptions.ProtocolError:
                return  # The connection is closing (a GOAWAY went either way): no window to give back.
            self._flush_soon()

    def send_informational(self, cycle: H2Cycle, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.streams.get(cycle.stream_id) is cycle and not self.transport.is_closing():
            self.conn.send_headers(cycle.stream_id, [(b":status", b"%d" % status), *headers])
            self._flush_soon()

    def schedule(self, cycle: H2Cycle) -> None:
        """Pump this stream's output at the next flush (once per loop iteration for all streams)."""
        if not cycle.queued:
            cycle.queued = True
            self._to_pump.append(cycle)
            self._flush_soon()

    def abort_stream(self, cycle: H2Cycle) -> None:
        """The app failed mid-response: reset its stream (INTERNAL_ERROR); the other streams go on."""
        if cycle.end_queued or self.streams.get(cycle.stream_id) is not cycle:
            return  # The response was complete; it is delivered as it was.
        self._reset(cycle.stream_id, ErrorCodes.INTERNAL_ERROR)
        self._forget(cycle)
        cycle.disconnected = True
        self._flush_soon()

    def refuse_body(self, cycle: H2Cycle, status: int, reason: str) -> None:
        """Stop one request whose body we will not take (413, 408): answered if the app has not started
        its response, else reset (CANCEL). The app sees a disconnect; the other streams go on."""
        if self.streams.get(cycle.stream_id) is not cycle or self.transport.is_closing():
            return
        if cycle.response_started:
            self._reset(cycle.stream_id, ErrorCodes.CANCEL)
        else:
            self._answer(cycle.stream_id, status, reason, stop_request=cycle.more_body)
        self._forget(cycle)
        self._flush_soon()

    def task_done(self, cycle: H2Cycle) -> None:
        """A stream's app task has ended: if the stream was already forgotten, its slot is free now."""
        if cycle.orphaned:
            cycle.orphaned = False
            self._orphans -= 1

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1

    # Output
    def pump(self, cycle: H2Cycle) -> None:
        """Hand the stream's head, body bytes (as far as the windows allow) and end to h2."""
        cycle.queued = False
        stream_id = cycle.stream_id
        if self.streams.get(stream_id) is not cycle or self.transport.is_closing():
            return
        conn = self.conn
        pending = cycle.pending
        finished = False
        frames = 0
        try:
            head = cycle.head
            if head is not None:
                cycle.head = None
                if cycle.end_queued and cycle._length_left is None and cycle._body_allowed:
                    # The whole body is known: say how long it is (clients show progress, preallocate).
                    head.append((b"content-length", b"%d" % len(pending)))
                finished = cycle.end_queued and not pending and cycle.trailers is None
                if cycle.observer is not None:
                    field = cycle.observer.head_sent()
                    if field is not None:
                        head.append(field)
                conn.send_headers(stream_id, head, end_stream=finished)
            while not finished and not self.flow.write_paused:
                if pending:
                    size = min(len(pending), conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                    if size <= 0:
                        self._await_window(cycle)
                        break
                    if size == len(pending):
                        chunk = bytes(pending)
                        pending.clear()
                    else:
                        chunk = bytes(pending[:size])
                        del pending[:size]
                    finished = not pending and cycle.end_queued and cycle.trailers is None
                    conn.send_data(stream_id, chunk, end_stream=finished)
                    frames += 1
                    cycle.window_progress += size
                elif cycle.end_queued:
                    if cycle.trailers is not None:
                        conn.send_headers(stream_id, cycle.trailers, end_stream=True)
                    else:
                        conn.end_stream(stream_id)
                    finished = True
                else:
                    break
        except h2.exceptions.StreamClosedError:
            finished = True  # The peer reset it; its StreamReset event says so.
        except h2.exceptions.ProtocolError as exc:
            # Something in the response h2 will not send (our own checks should have caught it first).
            self.logger.error("Invalid HTTP/2 response: %s", exc)
            self._reset(stream_id, ErrorCodes.INTERNAL_ERROR)
            finished = True
        if frames:
            self.inbound.data_frames_sent(frames)
        if finished:
            self._forget(cycle)
            return
        if cycle.window_timer is not None and (not pending or cycle.window_progress >= BODY_PROGRESS):
            # The client took a window's worth (or all there was) within the deadline.
            cycle.window_timer.cancel()
            cycle.window_timer = None
        if cycle.flow.write_paused and len(pending) <= HIGH_WATER_LIMIT:
            cycle.flow.resume_writing()

    def _await_window(self, cycle: H2Cycle) -> None:
        """The stream has output and no window for it (RFC 9113 §6.9 lets a client keep it so forever).

        It gets as long as a socket that takes nothing: within ``--timeout-write`` seconds the client
        must open enough window for 64 KiB (or for everything pending), else the stream is reset.
        """
        if cycle.window_timer is None:
            cycle.window_progress = 0
            cycle.window_timer = self.loop.call_later(self.timeout_write, self._window_stalled, cycle)

    def _window_stalled(self, cycle: H2Cycle) -> None:
        cycle.window_timer = None
        if self.streams.get(cycle.stream_id) is not cycle or self.transport.is_closing():
            return
        self.logger.info(
            "HTTP/2 stream %d got no flow-control window for %s seconds; resetting it.", cycle.stream_id, self.timeout_write
        )
        self._reset(cycle.stream_id, ErrorCodes.CANCEL)
        self._forget(cycle)
        self._flush_soon()

    def _answer(self, stream_id: int, status: int, reason: str, stop_request: bool) -> None:
        """Answer a request ourselves (it is over a limit, or its body is late), on its stream only."""
        body = error_body(status, reason)
        try:
            if len(body) > self.conn.local_flow_control_window(stream_id):
                body = b""  # No window for it: the status alone says enough.
            head = [
                (b":status", b"%d" % status),
                *self.server_state.default_headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ]
            self.conn.send_headers(stream_id, head, end_stream=not body)
            if body:
                self.conn.send_data(stream_id, body, end_stream=True)
            if stop_request:
                # RFC 9113 §8.1: after a complete response, RST_STREAM NO_ERROR asks the client to stop
                # sending the rest of the request (it must not discard the response for it).
                self.conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass  # The client reset it meanwhile: nobody to answer.
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._to_pump:
            cycles, self._to_pump = self._to_pump, []
            for cycle in cycles:
                self.pump(cycle)
        self._write(self.conn.data_to_send())

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _reset(self, stream_id: int, error_code: ErrorCodes) -> bool:
        try:
            self.conn.reset_stream(stream_id, error_code)
        except h2.exceptions.ProtocolError:
            return False  # Already closed (the client reset it in the same read): nothing to reset.
        if self.server_state.events is not None:
            self._report_reset(stream_id, error_code, "server")
        return True

    def _report_reset(self, stream_id: int, error_code: int, initiator: Initiator) -> None:
        events = self.server_state.events
        assert events is not None
        cycle = self.streams.get(stream_id)
        request = cycle.observer.request if cycle is not None and cycle.observer is not None else None
        if not self.connection_id:
            self.connection_id = events.next_connection_id()
        hooks.stream_reset(
            events, self.connection_id, stream_id, request.request_id if request is not None else None,
            int(error_code), initiator,
        )

    def _reset_for_client(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Reset a stream because of what the client sent: charged to the reset budget like its own
        RST_STREAM, so provoking resets is no cheaper than sending them."""
        if self._reset(stream_id, error_code) and not self.inbound.charge_reset():
            self._connection_error(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")

    def _forget(self, cycle: H2Cycle) -> None:
        """The stream is over for us (sent, reset or the connection is gone): wake its app, drop it."""
        if self.streams.pop(cycle.stream_id, None) is None:
            return
        if not cycle.finished:
            cycle.orphaned = True
            self._orphans += 1
        if not cycle.response_complete:
            cycle.disconnected = True
            if cycle.observer is not None:
                cycle.observer.client_disconnected()
        if cycle.window_timer is not None:
            cycle.window_timer.cancel()
            cycle.window_timer = None
        if cycle.unacked:
            # Body the app never read still holds connection window: give it back.
            size, cycle.unacked = cycle.unacked, 0
            self.acknowledge(cycle.stream_id, size)
        cycle.pending.clear()
        cycle.notify()
        cycle.flow.resume_writing()
        if not self.streams and not self.transport.is_closing():
            if self.draining:
                self._close()
            else:
                self._arm_keepalive()

    # Shutdown, errors and timers
    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY at once, finish the open streams, then close (RFC 9113 §6.8).

        h2 accepts nothing from us after its own GOAWAY, so the first one is written here by hand, naming
        the last stream we will serve; later streams are refused (REFUSED_STREAM, safe for clients to
        retry elsewhere). The connection closes when its last stream is done.
        """
        if self.draining:
            return
        self.draining = True
        if not self.streams:
            self._close()
            return
        self._goaway_last_stream = self.conn.highest_inbound_stream_id
        self._flush()
        self._write(_goaway(self._goaway_last_stream, ErrorCodes.NO_ERROR))

    def _connection_error(self, error_code: ErrorCodes, reason: str) -> None:
        """RFC 9113 §5.4.1: GOAWAY naming the error, then close; the open streams' apps see a disconnect.

        What h2 had queued is dropped, its own GOAWAY included: that one may name the wrong error
        (see ``connection_error_code``), and nothing else matters on a connection that is ending.
        """
        if error_code == ErrorCodes.ENHANCE_YOUR_CALM:
            client = "%s:%d" % self.client if self.client else "client"
            self.logger.warning("HTTP/2 connection from %s closed: %s.", client, reason)
        self.conn.data_to_send()
        self._write(_goaway(self.conn.highest_inbound_stream_id, error_code, reason.encode("ascii", "replace")))
        self._close_transport()

    def _close_transport(self) -> None:
        """Close after what is buffered has gone out, but no later than ``--timeout-write`` from now."""
        if self.transport.is_closing():
            return
        self.transport.close()
        self._close_timer = self.loop.call_later(self.timeout_write, self.transport.abort)
        for cycle in list(self.streams.values()):
            self._forget(cycle)

    def timeout_keep_alive_handler(self) -> None:
        if self.streams:
            self.timeout_keep_alive_task = None  # Busy: the last stream's end arms it again.
            return
        super().timeout_keep_alive_handler()

    def _close(self) -> None:
        if self.transport.is_closing():
            return
        self._flush()
        try:
            self.conn.close_connection()
        except h2.exceptions.ProtocolError:
            pass
        self._write(self.conn.data_to_send())
        self._close_transport()

    def _waiting_for_head(self) -> bool:
        return False

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        self._close()


def _goaway(last_stream_id: int, error_code: ErrorCodes, debug: bytes = b"") -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = error_code
    frame.additional_data = debug
    return bytes(frame.serialize())


__all__ = ["H2Cycle", "H2Protocol"]
