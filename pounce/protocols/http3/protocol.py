"""One HTTP/3 connection (RFC 9114): request streams mapped onto the shared ASGI request cycle.

``H3Protocol`` is what ``H2Protocol`` is for HTTP/2, over a ``QuicSession`` instead of a TCP transport:
each request stream is a ``StreamCycle`` (the shared ``RequestResponseCycle`` with stream framing), so
message validation, 500 before the response starts, the access log, events and disconnects are the
code every other protocol runs. It is sans-I/O apart from the endpoint's ``sendto`` and one timer:
datagrams come in through ``datagram_received``, and whatever they, the timer or the apps produce
leaves in ``_flush``, once per event-loop iteration for all streams.

Bounds, as for HTTP/2 (README "Resource model"):

* streams: at most ``--h2-max-concurrent-streams`` request streams at once (QUIC's MAX_STREAMS says
  so to the client; one over it is rejected with H3_REQUEST_REJECTED), and a stream counts until its
  app task has ended, even when the client reset it;
* request bodies: the backend grants credit as the app consumes (``QuicSession.consumed``), so a
  stream holds at most one stream window of unread body and the connection one connection window;
* response bodies: at most ``HIGH_WATER_LIMIT`` bytes wait in the cycle and ``SEND_BUFFER`` in the
  backend; beyond that the app's ``send`` waits, and a stream whose output gets no credit for
  ``--timeout-write`` seconds is reset;
* time: the QUIC idle timeout is ``--timeout-keep-alive``; a connection without streams closes after
  it as well, whatever PINGs keep QUIC busy (only streams count as activity, as for HTTP/2).

An extended CONNECT with ``:protocol websocket`` (RFC 9220; aioquic advertises
SETTINGS_ENABLE_CONNECT_PROTOCOL) runs a WebSocket on its stream through the tunnel RFC 8441 uses
(``websockets/stream.py``). An app that fails mid-response resets only its stream (H3_INTERNAL_ERROR). Graceful shutdown sends
GOAWAY naming the first stream not served, lets the open streams finish, then CONNECTION_CLOSE.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pounce.config import Config
from pounce.observability.events import ProtocolName
from pounce.protocols.http.multiplexed import MultiplexedProtocol, RequestHead, carries_streams
from pounce.protocols.http.stream_cycle import StreamCycle, StreamOutput
from pounce.protocols.http3 import seam
from pounce.protocols.http3.endpoint import H3Endpoint
from pounce.server import ServerState

# Response bytes a stream may have handed to the backend and not yet sent: enough to fill a fast
# path's congestion window between two loop iterations, little enough that a stalled client holds
# no more than this of ours.
SEND_BUFFER = 262144


class _QuicTransport(asyncio.Transport):
    """What the base protocol and the server see as this connection's transport."""

    def __init__(self, protocol: H3Protocol) -> None:
        super().__init__()
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._protocol.peer
        if name == "sockname":
            transport = self._protocol.endpoint.transport
            return transport.get_extra_info("sockname") if transport is not None else default
        if name == "sslcontext":
            # QUIC is TLS 1.3, always (the scope's scheme is https), with the TCP listener's certificate.
            return self._protocol.config.server_config.ssl
        return default

    def close(self) -> None:
        self._protocol.close_connection(seam.H3_NO_ERROR, "")

    def abort(self) -> None:
        self._protocol.abort()

    def is_closing(self) -> bool:
        return self._protocol.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class H3Protocol(MultiplexedProtocol):
    """One HTTP/3 connection; made by the endpoint for each accepted QUIC connection."""

    protocol_name: ProtocolName = "h3"
    stream_label = "HTTP/3"
    http_version = "3"
    INTERNAL_ERROR = seam.H3_INTERNAL_ERROR
    CANCEL = seam.H3_REQUEST_CANCELLED
    frame_errors = Exception  # whatever the library raises for a frame it refuses: this stream only

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        endpoint: H3Endpoint,
        session: seam.QuicSession,
        peer: seam.Address,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        cfg = config.server_config
        self.max_streams = cfg.h2_max_concurrent_streams
        self.max_fields = cfg.limit_request_fields
        self.timeout_write = cfg.timeout_write
        # RFC 9220: WebSockets on request streams (extended CONNECT), as RFC 8441 runs them over HTTP/2.
        self.connect_protocol = carries_streams(cfg.ws_protocol_class)
        self.endpoint = endpoint
        self.session = session
        self.peer = (str(peer[0]), int(peer[1]))
        self._init_streams()
        self._highest_stream = -4
        self._first_refused: int | None = None  # set by our GOAWAY
        self._blocked: set[StreamOutput] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self._attach(_QuicTransport(self))
        self._arm_keepalive()

    # Input: datagrams and the timer
    def datagram_received(self, data: bytes, addr: seam.Address) -> None:
        if self.closed:
            return
        self.session.receive(data, addr, self.loop.time())
        self._process()
        self._flush()

    def received(self) -> None:
        self._process()
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.closed:
            return
        self.session.handle_timer(self.loop.time())
        self._process()
        self._flush()

    def _arm_timer(self) -> None:
        at = self.session.timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)

    def _process(self) -> None:
        for event in self.session.events():
            if isinstance(event, seam.DataReceived):
                self._on_data(event)
            elif isinstance(event, seam.HeadersReceived):
                cycle = self.streams.get(event.stream_id)
                if cycle is None:
                    self._on_request(event)
                elif event.ended and isinstance(cycle, StreamCycle):
                    self._on_body_end(cycle)  # request trailers end the body; ASGI has no place for them
                elif event.ended and cycle.tunnel:
                    cycle.tunnel_ended()
            elif isinstance(event, seam.StreamReset):
                reset_cycle = self.streams.get(event.stream_id)
                if self.server_state.events is not None:
                    self._report_reset(event.stream_id, event.error_code, "client")
                if reset_cycle is not None:
                    # The client gave up on it: stop our side too (a no-op for what already ended).
                    self.session.reset_stream(event.stream_id, seam.H3_REQUEST_CANCELLED)
                    self._forget(reset_cycle)
            elif isinstance(event, seam.ConnectionIdIssued):
                self.endpoint.route(event.connection_id, self)
            elif isinstance(event, seam.ConnectionIdRetired):
                self.endpoint.unroute(event.connection_id)
            elif isinstance(event, seam.ConnectionTerminated):
                self._terminated()
                return
            elif isinstance(event, seam.HandshakeCompleted):
                self._trace(f"HTTP/3 handshake completed (ALPN {event.alpn}, 0-RTT {event.early_data})")

    def _on_request(self, event: seam.HeadersReceived) -> None:
        stream_id = event.stream_id
        if stream_id % 4 != 0:
            return  # only client-initiated bidirectional streams carry requests (RFC 9114 §6.1)
        if stream_id > self._highest_stream:
            self._highest_stream = stream_id
        if self._first_refused is not None and stream_id >= self._first_refused:
            self._reset(stream_id, seam.H3_REQUEST_REJECTED)  # after our GOAWAY: safe to retry elsewhere
            return
        if self._over_stream_limit():
            self._reset(stream_id, seam.H3_REQUEST_REJECTED)
            return
        head = RequestHead(event.headers)
        if head.protocol is None:
            self._start_request(stream_id, head, event.ended)
        else:
            self._start_tunnel(stream_id, head, event.ended)  # RFC 9220: a WebSocket on this stream
        if stream_id in self.streams and self._ping_timer is None:
            self._ping_timer = self.loop.call_later(self.timeout_keep_alive / 2, self._ping)

    def _ping(self) -> None:
        """While streams are open, the QUIC idle timeout must not end the connection (see ``ping``)."""
        self._ping_timer = None
        if self.streams and not self.closed:
            self.session.ping()
            self._flush_soon()
            self._ping_timer = self.loop.call_later(self.timeout_keep_alive / 2, self._ping)

    def _on_data(self, event: seam.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.tunnel:
            stream.tunnel_data(event.data, len(event.data))
            if event.ended:
                stream.tunnel_ended()
            return
        cycle = self._on_body(event.stream_id, event.data, len(event.data))
        if cycle is not None and event.ended:
            self._on_body_end(cycle)

    # Framing (``MultiplexedProtocol``)
    def _send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.session.send_headers(stream_id, headers, end_stream)

    def _send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.session.send_data(stream_id, data, end_stream)

    def _end_stream(self, stream_id: int) -> None:
        self.session.send_data(stream_id, b"", True)

    def _send_reset(self, stream_id: int, error_code: int) -> None:
        self.session.reset_stream(stream_id, error_code)

    def _room(self, stream_id: int) -> int:
        # What the backend buffers per stream is bounded by SEND_BUFFER; QUIC's own credit drains it.
        return SEND_BUFFER - self.session.unsent(stream_id)

    def _credit(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.session.consumed(stream_id, size)
            self._flush_soon()

    def _malformed(self, stream_id: int) -> None:
        self._reset(stream_id, seam.H3_MESSAGE_ERROR)

    def _stop_request(self, stream_id: int) -> None:
        # RFC 9114 §4.1.1: a complete response, then STOP_SENDING H3_NO_ERROR for the rest of the body
        # (a RESET_STREAM would discard the response).
        self.session.stop_sending(stream_id, seam.H3_NO_ERROR)

    def _last_stream_done(self) -> None:
        self._flush_soon()  # the last stream's end goes out first, then the close
        self.loop.call_soon(self.close_connection, seam.H3_NO_ERROR, "")

    # Output
    def _await_window(self, cycle: StreamOutput) -> None:
        """The backend's buffer for the stream is full: it goes on when that drains (see ``_flush``)."""
        self._blocked.add(cycle)
        super()._await_window(cycle)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed:
            return
        self._pump_queued()
        for data, addr in self.session.datagrams(self.loop.time()):
            self.endpoint.sendto(data, addr)
        self._process()  # sending may have ended the connection (its close went out, the idle timeout)
        if self.closed:
            return
        if self._blocked:
            # What was sent made room: top the blocked streams up at the next iteration.
            for cycle in list(self._blocked):
                if self.session.unsent(cycle.stream_id) < SEND_BUFFER // 2:
                    self.schedule(cycle)
        self._arm_timer()

    def pump(self, cycle: StreamOutput) -> None:
        self._blocked.discard(cycle)
        super().pump(cycle)

    def _forget(self, cycle: StreamOutput) -> None:
        self._blocked.discard(cycle)
        super()._forget(cycle)

    # Shutdown and the end
    def shutdown(self) -> None:
        """Graceful shutdown (RFC 9114 §5.2): GOAWAY, finish the open streams, then CONNECTION_CLOSE."""
        if self.draining or self.closed:
            return
        self.draining = True
        self._first_refused = self._highest_stream + 4
        self.session.goaway(self._first_refused)
        if not self.streams:
            self.close_connection(seam.H3_NO_ERROR, "")
        else:
            self._flush()

    def close_connection(self, error_code: int, reason: str) -> None:
        """CONNECTION_CLOSE, sent now; the connection is over for us at once (its apps see a disconnect)."""
        if self.closed:
            return
        self.session.close(error_code, reason)
        self._flush()
        self._terminated()

    def abort(self) -> None:
        self.close_connection(seam.H3_NO_ERROR, "server stopped")

    def _terminated(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._forget_all()
        self._blocked.clear()
        for timer in (self._timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._ping_timer = None
        self._unset_keepalive_if_required()
        self.endpoint.connection_ended(self)
        self.connections.discard(self)
        self.flow.resume_writing()
        self._trace("HTTP/3 connection closed")
        self._report_closed()

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        self.close_connection(seam.H3_NO_ERROR, "")


__all__ = ["H3Protocol", "SEND_BUFFER"]
