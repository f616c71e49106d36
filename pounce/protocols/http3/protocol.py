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

An app that fails mid-response resets only its stream (H3_INTERNAL_ERROR). Graceful shutdown sends
GOAWAY naming the first stream not served, lets the open streams finish, then CONNECTION_CLOSE.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pounce.config import Config
from pounce.observability import hooks
from pounce.observability.events import Initiator, ProtocolName
from pounce.protocols.http.base import BaseHTTPProtocol, error_body
from pounce.protocols.http.cycle import BODY_PROGRESS
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT
from pounce.protocols.http.request_checks import request_problem
from pounce.protocols.http.cycle import EARLY_HINT, TRAILERS
from pounce.protocols.http.stream_cycle import StreamCycle
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


class H3Protocol(BaseHTTPProtocol):
    """One HTTP/3 connection; made by the endpoint for each accepted QUIC connection."""

    protocol_name: ProtocolName = "h3"
    stream_label = "HTTP/3"

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
        self.endpoint = endpoint
        self.session = session
        self.peer = (str(peer[0]), int(peer[1]))
        self.streams: dict[int, StreamCycle] = {}
        self._orphans = 0
        self._highest_stream = -4
        self._first_refused: int | None = None  # set by our GOAWAY
        self._to_pump: list[StreamCycle] = []
        self._blocked: set[StreamCycle] = set()
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self._attach(_QuicTransport(self))
        self._arm_keepalive()

    def _offer_extensions(self, transport: asyncio.BaseTransport) -> None:
        super()._offer_extensions(transport)
        # As over HTTP/2: every stream may end with trailers (sent when it said "te: trailers") and
        # take early hints (interim HEADERS).
        self.extensions = {**self.extensions, TRAILERS: {}, EARLY_HINT: {}}

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return self.server_state.default_headers

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
                elif event.ended:
                    self._on_body_end(cycle)  # request trailers end the body; ASGI has no place for them
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
        if len(self.streams) + self._orphans >= self.max_streams:
            self._reset(stream_id, seam.H3_REQUEST_REJECTED)
            return
        method = path = authority = declared = None
        headers: list[tuple[bytes, bytes]] = []
        expect_continue = has_host = False
        for name, value in event.headers:
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
            # RFC 9114 §4.3.1: malformed (CONNECT, without :path, is no ASGI HTTP request either).
            self._reset(stream_id, seam.H3_MESSAGE_ERROR)
            return
        problem = request_problem(method, path, authority, headers, self.max_fields, self.limit_request_body)
        if problem is None and event.ended and declared is not None and int(declared) != 0:
            problem = None, "content-length without DATA"
        if problem is not None:
            status, reason = problem
            self._trace(f"HTTP/3 stream {stream_id} refused: {reason}")
            if status is None:
                self._reset(stream_id, seam.H3_MESSAGE_ERROR)
            else:
                self._answer(stream_id, status, reason, stop_request=not event.ended)
            return
        if authority is not None and not has_host:
            # RFC 9114 §4.3.1: :authority replaces Host; ASGI apps (and URL building) look for "host".
            headers.insert(0, (b"host", authority))
        scope = self.build_scope(method, path, "3", headers)
        cycle = StreamCycle(self, stream_id, scope, expect_continue)
        if self.server_state.observing or self.server_timing:
            self._observe(cycle, scope, stream_id)
        if declared is not None:
            cycle.declared_length = int(declared)
        if event.ended:
            cycle.more_body = False
        self.streams[stream_id] = cycle
        self._unset_keepalive_if_required()
        if self._ping_timer is None:
            self._ping_timer = self.loop.call_later(self.timeout_keep_alive / 2, self._ping)
        self._run_cycle(cycle, self._select_app())

    def _ping(self) -> None:
        """While streams are open, the QUIC idle timeout must not end the connection (see ``ping``)."""
        self._ping_timer = None
        if self.streams and not self.closed:
            self.session.ping()
            self._flush_soon()
            self._ping_timer = self.loop.call_later(self.timeout_keep_alive / 2, self._ping)

    def _on_data(self, event: seam.DataReceived) -> None:
        cycle = self.streams.get(event.stream_id)
        size = len(event.data)
        if cycle is None or cycle.response_complete or cycle.disconnected:
            if size:
                self.session.consumed(event.stream_id, size)  # nobody will read it: credit back at once
            return
        cycle.received += size
        if self.limit_request_body is not None and cycle.received > self.limit_request_body:
            self.session.consumed(event.stream_id, size)
            self.refuse_body(cycle, 413, "Request body too large")
            return
        if size:
            cycle.body += event.data
            cycle.unacked += size
            cycle.notify()
        if event.ended:
            self._on_body_end(cycle)

    def _on_body_end(self, cycle: StreamCycle) -> None:
        if cycle.declared_length is not None and cycle.received != cycle.declared_length:
            self._reset(cycle.stream_id, seam.H3_MESSAGE_ERROR)  # RFC 9114 §4.1.2: length mismatch
            self._forget(cycle)
            return
        cycle.more_body = False
        cycle.notify()

    # Called by cycles (``StreamOwner``)
    def is_open(self, cycle: StreamCycle) -> bool:
        return self.streams.get(cycle.stream_id) is cycle and not self.closed

    def acknowledge(self, cycle: StreamCycle, size: int) -> None:
        if size and not self.closed:
            self.session.consumed(cycle.stream_id, size)
            self._flush_soon()

    def send_informational(self, cycle: StreamCycle, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.is_open(cycle):
            self.session.send_headers(cycle.stream_id, [(b":status", b"%d" % status), *headers], False)
            self._flush_soon()

    def schedule(self, cycle: StreamCycle) -> None:
        if not cycle.queued:
            cycle.queued = True
            self._to_pump.append(cycle)
            self._flush_soon()

    def abort_stream(self, cycle: StreamCycle) -> None:
        """The app failed mid-response: reset its stream (H3_INTERNAL_ERROR); the other streams go on."""
        if cycle.end_queued or not self.is_open(cycle):
            return  # The response was complete; it is delivered as it was.
        self._reset(cycle.stream_id, seam.H3_INTERNAL_ERROR)
        self._forget(cycle)
        cycle.disconnected = True
        self._flush_soon()

    def refuse_body(self, cycle: StreamCycle, status: int, reason: str) -> None:
        """Stop a request whose body we will not take (413, 408): answered if the app has not started its
        response, else reset (H3_REQUEST_CANCELLED). The app sees a disconnect; the other streams go on."""
        if not self.is_open(cycle):
            return
        if cycle.response_started:
            self._reset(cycle.stream_id, seam.H3_REQUEST_CANCELLED)
        else:
            self._answer(cycle.stream_id, status, reason, stop_request=cycle.more_body)
        self._forget(cycle)
        self._flush_soon()

    def task_done(self, cycle: StreamCycle) -> None:
        if cycle.orphaned:
            cycle.orphaned = False
            self._orphans -= 1

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1

    # Output
    def pump(self, cycle: StreamCycle) -> None:
        """Hand the stream's head, body (as far as ``SEND_BUFFER`` allows) and end to the session."""
        cycle.queued = False
        self._blocked.discard(cycle)
        if not self.is_open(cycle):
            return
        session = self.session
        stream_id = cycle.stream_id
        finished = False
        try:
            head = cycle.take_head()
            if head is not None:
                finished = cycle.end_queued and not cycle.pending and cycle.trailers is None
                session.send_headers(stream_id, head, finished)
            while not finished:
                if cycle.pending:
                    room = SEND_BUFFER - session.unsent(stream_id)
                    if room <= 0:
                        self._await_credit(cycle)
                        break
                    chunk = cycle.take_chunk(room)
                    finished = not cycle.pending and cycle.end_queued and cycle.trailers is None
                    session.send_data(stream_id, chunk, finished)
                    cycle.window_progress += len(chunk)
                elif cycle.end_queued:
                    if cycle.trailers is not None:
                        session.send_headers(stream_id, cycle.trailers, True)
                    else:
                        session.send_data(stream_id, b"", True)
                    finished = True
                else:
                    break
        except Exception as exc:  # the library refused what we framed: this stream only
            self.logger.error("Invalid HTTP/3 response: %s", exc)
            self._reset(stream_id, seam.H3_INTERNAL_ERROR)
            finished = True
        if finished:
            self._forget(cycle)
            return
        if cycle.window_timer is not None and (not cycle.pending or cycle.window_progress >= BODY_PROGRESS):
            cycle.window_timer.cancel()  # the client took a window's worth (or all there was) in time
            cycle.window_timer = None
        if cycle.flow.write_paused and len(cycle.pending) <= HIGH_WATER_LIMIT:
            cycle.flow.resume_writing()

    def _await_credit(self, cycle: StreamCycle) -> None:
        """The stream has output and the backend's buffer for it is full: it goes on when that drains.

        A client that never gives credit gets as long as a socket that takes nothing: ``--timeout-write``
        seconds to take 64 KiB (or everything pending), else the stream is reset.
        """
        self._blocked.add(cycle)
        if cycle.window_timer is None:
            cycle.window_progress = 0
            cycle.window_timer = self.loop.call_later(self.timeout_write, self._credit_stalled, cycle)

    def _credit_stalled(self, cycle: StreamCycle) -> None:
        cycle.window_timer = None
        if not self.is_open(cycle):
            return
        self.logger.info(
            "HTTP/3 stream %d got no flow-control credit for %s seconds; resetting it.", cycle.stream_id, self.timeout_write
        )
        self._reset(cycle.stream_id, seam.H3_REQUEST_CANCELLED)
        self._forget(cycle)
        self._flush_soon()

    def _answer(self, stream_id: int, status: int, reason: str, stop_request: bool) -> None:
        """Answer a request ourselves (over a limit, or its body is late), on its stream only."""
        body = error_body(status, reason)
        head = [
            (b":status", b"%d" % status),
            *self.server_state.default_headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        try:
            self.session.send_headers(stream_id, head, False)
            self.session.send_data(stream_id, body, True)
            if stop_request:
                # RFC 9114 §4.1.1: a complete response, then STOP_SENDING H3_NO_ERROR for the rest of the body.
                self.session.reset_stream(stream_id, seam.H3_NO_ERROR)
        except Exception:
            pass  # The client reset it meanwhile: nobody to answer.
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed:
            return
        if self._to_pump:
            cycles, self._to_pump = self._to_pump, []
            for cycle in cycles:
                self.pump(cycle)
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

    def _reset(self, stream_id: int, error_code: int) -> None:
        try:
            self.session.reset_stream(stream_id, error_code)
        except Exception:
            return  # Already over on the library's side: nothing to reset.
        if self.server_state.events is not None:
            self._report_reset(stream_id, error_code, "server")
        self._flush_soon()

    def _report_reset(self, stream_id: int, error_code: int, initiator: Initiator) -> None:
        events = self.server_state.events
        assert events is not None
        cycle = self.streams.get(stream_id)
        request = cycle.observer.request if cycle is not None and cycle.observer is not None else None
        if not self.connection_id:
            self.connection_id = events.next_connection_id()
        request_id = request.request_id if request is not None else None
        hooks.stream_reset(events, self.connection_id, stream_id, request_id, error_code, initiator)

    def _forget(self, cycle: StreamCycle) -> None:
        """The stream is over for us (sent, reset, or the connection is gone): wake its app, drop it."""
        if self.streams.pop(cycle.stream_id, None) is None:
            return
        self._blocked.discard(cycle)
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
        if cycle.unacked and not self.closed:
            # Body the app never read still holds connection credit: give it back.
            size, cycle.unacked = cycle.unacked, 0
            self.session.consumed(cycle.stream_id, size)
        cycle.pending.clear()
        cycle.notify()
        cycle.flow.resume_writing()
        if not self.streams and not self.closed:
            if self.draining:
                self._flush_soon()  # the last stream's end goes out first, then the close
                self.loop.call_soon(self.close_connection, seam.H3_NO_ERROR, "")
            else:
                self._arm_keepalive()

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
        for cycle in list(self.streams.values()):
            self._forget(cycle)
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

    def timeout_keep_alive_handler(self) -> None:
        if self.streams:
            self.timeout_keep_alive_task = None  # Busy: the last stream's end arms it again.
            return
        super().timeout_keep_alive_handler()

    def _waiting_for_head(self) -> bool:
        return False

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        self.close_connection(seam.H3_NO_ERROR, "")


__all__ = ["H3Protocol", "SEND_BUFFER"]
