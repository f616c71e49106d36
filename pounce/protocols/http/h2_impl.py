"""HTTP/2 through the ``h2`` library (``--http2``, extra ``pounce-asgi[h2]``).

One ``H2Protocol`` serves one connection; each stream is a ``StreamCycle`` (the shared
``RequestResponseCycle`` with stream framing), so the ASGI side (message validation, 500 before the
response starts, access log, disconnects) is the same code the HTTP/1.1 protocols run. A cycle talks
to its stream through a small stand-in transport: ``close()`` resets the stream, never the connection,
so one failing app call cannot take its sibling streams down. What HTTP/3 does alike (the stream table,
the pump, resets, forgetting a stream) is ``MultiplexedProtocol``'s; this module is the h2 framing.

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

from pounce.config import Config
from pounce.observability.events import ProtocolName
from pounce.protocols.http.h2_limits import H2Connection, InboundFrames, connection_error_code
from pounce.protocols.http.multiplexed import MultiplexedProtocol, RequestHead, carries_streams
from pounce.protocols.http.stream_cycle import StreamCycle
from pounce.server import ServerState

# Connection-level receive window: one stream window (64 KiB) per stream allowed, so streams whose apps
# do not read their body (each holding at most its own window) cannot starve the others of connection
# window. It is also the most unread request body one connection holds.
STREAM_WINDOW = 65535
MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1


class H2Protocol(MultiplexedProtocol):
    """One HTTP/2 connection (RFC 9113) served through h2; created by the ``--http2`` negotiation."""

    alpn_protocols: ClassVar[list[str]] = ["h2"]
    protocol_name: ProtocolName = "h2"
    stream_label = "HTTP/2"
    http_version = "2"
    INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
    CANCEL = ErrorCodes.CANCEL
    frame_errors = h2.exceptions.ProtocolError
    stream_gone = h2.exceptions.StreamClosedError

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
        # RFC 8441: WebSockets on streams, when our WebSocket implementation is there to run them.
        self.connect_protocol = carries_streams(cfg.ws_protocol_class)
        self.conn = H2Connection(self.max_streams, cfg.max_header_size, self.inbound.charge_reset, self.connect_protocol)
        self._init_streams()
        # Streams above this id arrived after our shutdown GOAWAY and are refused (None: not shutting down).
        self._goaway_last_stream: int | None = None
        # Once we close: a transport that cannot flush its last bytes in time is aborted.
        self._close_timer: asyncio.TimerHandle | None = None

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
        self._forget_all()
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
                if isinstance(cycle, StreamCycle):
                    self._on_body_end(cycle)
                elif cycle is not None:
                    cycle.tunnel_ended()
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
        if self._over_stream_limit():
            # RFC 9113 §5.1.2: over the advertised limit, REFUSED_STREAM (the request was not processed,
            # so the client may retry it).
            self._reset_for_client(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        head = RequestHead(event.headers)
        if head.protocol is None:
            self._start_request(stream_id, head, event.stream_ended is not None)
        else:
            self._start_tunnel(stream_id, head, event.stream_ended is not None)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.tunnel:
            stream.tunnel_data(event.data, event.flow_controlled_length)
        else:
            self._on_body(event.stream_id, event.data, event.flow_controlled_length)

    # Framing (``MultiplexedProtocol``)
    def _send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)

    def _send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)
        self.inbound.data_frames_sent(1)

    def _end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)

    def _send_reset(self, stream_id: int, error_code: int) -> None:
        self.conn.reset_stream(stream_id, error_code)

    def _room(self, stream_id: int) -> int:
        return min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)

    def _credit(self, stream_id: int, size: int) -> None:
        if size and not self.transport.is_closing():
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except h2.exceptions.ProtocolError:
                return  # The connection is closing (a GOAWAY went either way): no window to give back.
            self._flush_soon()

    def _malformed(self, stream_id: int) -> None:
        self._reset_for_client(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def _stop_request(self, stream_id: int) -> None:
        # RFC 9113 §8.1: after a complete response, RST_STREAM NO_ERROR asks the client to stop sending
        # the rest of the request (it must not discard the response for it).
        self.conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)

    def _last_stream_done(self) -> None:
        self._close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._pump_queued()
        self._write(self.conn.data_to_send())

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _reset_for_client(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Reset a stream because of what the client sent: charged to the reset budget like its own
        RST_STREAM, so provoking resets is no cheaper than sending them."""
        if self._reset(stream_id, error_code) and not self.inbound.charge_reset():
            self._connection_error(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")

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
        self._forget_all()

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

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        self._close()


def _goaway(last_stream_id: int, error_code: ErrorCodes, debug: bytes = b"") -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = error_code
    frame.additional_data = debug
    return bytes(frame.serialize())


__all__ = ["H2Protocol"]
