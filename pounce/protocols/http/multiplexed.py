"""What HTTP/2 and HTTP/3 connections do alike: many streams, each a ``StreamCycle``, over one connection.

``MultiplexedProtocol`` is the connection side of ``stream_cycle``: the table of streams and the limit
on them, turning a request's header block into a cycle, request body under flow control, the pump that
hands each stream's pending output to the framing as far as the peer's credit goes, the deadline for a
stream whose output gets no credit, resets and their events, and forgetting a stream once it is over.
The subclasses (``H2Protocol``, ``H3Protocol``) keep only their framing: the ``_send_*`` hooks below,
how much a stream may send now (``_room``), giving credit back (``_credit``), reading and shutdown.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any, ClassVar

from pounce.observability import hooks
from pounce.observability.events import Initiator
from pounce.protocols.http.base import BaseHTTPProtocol, error_body
from pounce.protocols.http.cycle import BODY_PROGRESS, EARLY_HINT, TRAILERS
from pounce.protocols.http.request_checks import request_problem
from pounce.protocols.http.stream_cycle import StreamCycle, StreamOutput

Headers = list[tuple[bytes, bytes]]


def carries_streams(ws_protocol_class: type[asyncio.Protocol] | None) -> bool:
    """Whether WebSockets can run on streams (RFC 8441/9220): ours can (``websockets.stream``); an
    other implementation (a class named by --ws) knows only sockets, and wsproto may be missing."""
    if ws_protocol_class is None:
        return False
    try:
        from pounce.protocols.websockets.wsproto_impl import WSProtocol
    except ImportError:  # pragma: no cover - the ws extra is not installed
        return False
    return issubclass(ws_protocol_class, WSProtocol)


# RFC 9113 §8.2.1 / RFC 9114 §4.2: a field name is lowercase visible ASCII, without ":" (pseudo-header
# names apart); a field value holds no NUL, CR or LF, and neither starts nor ends with SP or HTAB.
_FIELD_NAME = re.compile(rb"[!-9;-@\[-~]+")
_BAD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z")
# RFC 9113 §8.2.2 / RFC 9114 §4.2: connection-specific fields make a request malformed ("te" is allowed
# with the value "trailers" only).
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))


class RequestHead:
    """A request's header block as the stream protocols read it: pseudo-headers apart, the rest in order.

    Reading it checks the field rules of RFC 9113 §8.2–8.3 and RFC 9114 §4.2–4.3 (the protocol
    libraries' own checks are off, see ``h2_limits.H2Connection``): the first rule broken is
    ``problem``, and such a request is malformed (a stream error). Cookie fields a client split for
    compression are joined again (RFC 9113 §8.2.3, RFC 9114 §4.2.1).
    """

    __slots__ = (
        "method", "path", "authority", "protocol", "declared", "headers", "expect_continue", "has_host", "problem"
    )
    method: bytes | None
    path: bytes | None
    authority: bytes | None
    protocol: bytes | None  # RFC 8441 / RFC 9220 extended CONNECT
    declared: bytes | None  # content-length
    problem: str | None

    def __init__(self, block: Iterable[tuple[bytes, bytes]]) -> None:
        self.method = self.path = self.authority = self.protocol = self.declared = self.problem = None
        headers: Headers = []
        expect_continue = False
        host: bytes | None = None
        scheme: bytes | None = None
        cookies: list[bytes] | None = None
        problem: str | None = None
        pseudo = True
        # h2 (header_encoding=None) and the QUIC seam hand over bytes.
        for name, value in block:
            if value and _BAD_VALUE.search(value) is not None:
                problem = problem or "invalid field value"
            if name[:1] == b":":
                if not pseudo:
                    problem = problem or "pseudo-header after a regular field"  # RFC 9113 §8.3
                if name == b":method":
                    duplicate = self.method is not None
                    self.method = value
                elif name == b":path":
                    duplicate = self.path is not None
                    self.path = value
                elif name == b":authority":
                    duplicate = self.authority is not None
                    self.authority = value
                elif name == b":scheme":
                    duplicate = scheme is not None
                    scheme = value
                elif name == b":protocol":
                    duplicate = self.protocol is not None
                    self.protocol = value
                else:
                    duplicate = False
                    problem = problem or "unknown pseudo-header"  # RFC 9113 §8.3: requests define these five
                if duplicate:
                    problem = problem or "repeated pseudo-header"
                continue
            pseudo = False
            if _FIELD_NAME.fullmatch(name) is None:
                problem = problem or "invalid field name"
            elif name in _CONNECTION_SPECIFIC or (name == b"te" and value.lower() != b"trailers"):
                problem = problem or "connection-specific field"
            elif name == b"cookie":
                if cookies is None:
                    cookies = []
                cookies.append(value)
                continue
            elif name == b"host":
                if host is not None:
                    problem = problem or "repeated host"
                host = value
            elif name == b"content-length":
                self.declared = value
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
            headers.append((name, value))
        if cookies is not None:
            headers.append((b"cookie", b"; ".join(cookies)))
        if problem is None:
            problem = self._pseudo_problem(scheme, host)
        self.headers = headers
        self.expect_continue = expect_continue
        self.has_host = host is not None
        self.problem = problem

    def _pseudo_problem(self, scheme: bytes | None, host: bytes | None) -> str | None:
        """RFC 9113 §8.3.1 (RFC 9114 §4.3.1), RFC 8441 §4: the pseudo-headers a request must (not) have."""
        method = self.method
        if method is None:
            return "no :method"
        if method == b"CONNECT" and self.protocol is None:
            if scheme is not None or self.path is not None:
                return "CONNECT with :scheme or :path"
        elif scheme is None or self.path is None:
            return "no :scheme or :path"
        elif self.protocol is not None and method != b"CONNECT":
            return ":protocol without CONNECT"
        if self.path is not None and not self.path:
            return "empty :path"
        authority = self.authority
        if authority is None and host is None:
            return "no :authority or host"
        if authority is not None and host is not None and authority != host:
            return ":authority and host differ"
        return None

    def scope_headers(self) -> Headers:
        """The headers for the scope, once the request passed its checks (they count the client's own)."""
        if self.authority is not None and not self.has_host:
            # RFC 9113 §8.3.1 / RFC 9114 §4.3.1: :authority replaces Host; ASGI apps (and URL building)
            # look for "host".
            self.headers.insert(0, (b"host", self.authority))
            self.has_host = True
        return self.headers


class MultiplexedProtocol(BaseHTTPProtocol):
    """The stream bookkeeping both HTTP/2 and HTTP/3 connections run (``StreamOwner`` for the cycles)."""

    stream_label: str  # "HTTP/2", "HTTP/3": log lines
    http_version: ClassVar[str]  # scope["http_version"]
    # Error codes of the framing, for the resets the shared code sends.
    INTERNAL_ERROR: ClassVar[int]  # the app failed mid-response
    CANCEL: ClassVar[int]  # we stop a stream whose response started (body refused, no credit)
    # What the framing raises for a frame it will not send: that stream only is reset.
    frame_errors: ClassVar[type[BaseException] | tuple[type[BaseException], ...]]
    # What it raises for a stream the peer reset meanwhile (its reset event says so): nothing to do.
    stream_gone: ClassVar[type[BaseException] | tuple[type[BaseException], ...]] = ()
    max_streams: int
    max_fields: int
    timeout_write: float
    # Extended CONNECT (RFC 8441, RFC 9220) advertised: a WebSocket may open on a stream.
    connect_protocol = False

    def _init_streams(self) -> None:
        self.streams: dict[int, StreamOutput] = {}
        # Streams forgotten while their app task still runs (reset by the client, refused a body, ...).
        self._orphans = 0
        self._to_pump: list[StreamOutput] = []
        self._flush_scheduled = False

    def _offer_extensions(self, transport: asyncio.BaseTransport) -> None:
        super()._offer_extensions(transport)
        # Every stream may end with trailers (sent when it said "te: trailers", as Uvicorn) and take
        # early hints (interim HEADERS): there is room for both whatever the request.
        self.extensions = {**self.extensions, TRAILERS: {}, EARLY_HINT: {}}

    @property
    def default_headers(self) -> Headers:
        return self.server_state.default_headers

    # Framing, by the subclass
    def _send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        raise NotImplementedError  # pragma: no cover

    def _send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError  # pragma: no cover

    def _end_stream(self, stream_id: int) -> None:
        raise NotImplementedError  # pragma: no cover

    def _send_reset(self, stream_id: int, error_code: int) -> None:
        raise NotImplementedError  # pragma: no cover

    def _room(self, stream_id: int) -> int:
        """How many bytes of body the stream may hand to the framing now (0: wait for credit)."""
        raise NotImplementedError  # pragma: no cover

    def _credit(self, stream_id: int, size: int) -> None:
        """``size`` bytes of the stream's received body are taken: the peer may send that much more."""
        raise NotImplementedError  # pragma: no cover

    def _malformed(self, stream_id: int) -> None:
        """Reset a malformed request's stream (RFC 9113 §8.1.1, RFC 9114 §4.1.2)."""
        raise NotImplementedError  # pragma: no cover

    def _stop_request(self, stream_id: int) -> None:
        """After our complete answer, ask the client to stop sending the rest of the request."""
        raise NotImplementedError  # pragma: no cover

    def _last_stream_done(self) -> None:
        """Draining, and the last stream is over: close the connection."""
        raise NotImplementedError  # pragma: no cover

    def _flush(self) -> None:
        raise NotImplementedError  # pragma: no cover

    # Requests
    def _over_stream_limit(self) -> bool:
        # A forgotten stream whose app task still runs counts: it holds what an open one holds, so
        # resetting streams cannot run more app tasks at once than the limit (CVE-2023-44487).
        return len(self.streams) + self._orphans >= self.max_streams

    def _start_request(self, stream_id: int, head: RequestHead, ended: bool) -> StreamCycle | None:
        """A request's header block is in: check it, then run the app on its stream (or answer/reset)."""
        method, path = head.method, head.path
        if head.problem is not None or method is None or not path:
            # RFC 9113 §8.1.1 / RFC 9114 §4.1.2: malformed (so is a plain CONNECT here: no ASGI request).
            self._refuse(stream_id, None, head.problem or "CONNECT without :protocol", stop_request=False)
            return None
        headers = head.headers
        declared = head.declared
        problem = request_problem(method, path, head.authority, headers, self.max_fields, self.limit_request_body)
        if problem is None and ended and declared is not None and int(declared) != 0:
            problem = None, "content-length without DATA"  # RFC 9113 §8.1.1
        if problem is not None:
            self._refuse(stream_id, *problem, stop_request=not ended)
            return None
        scope = self.build_scope(method, path, self.http_version, head.scope_headers())
        cycle = StreamCycle(self, stream_id, scope, head.expect_continue)
        if self.server_state.observing or self.server_timing:
            self._observe(cycle, scope, stream_id)
        if declared is not None:
            cycle.declared_length = int(declared)
        if ended:
            cycle.more_body = False
        self.streams[stream_id] = cycle
        self._unset_keepalive_if_required()
        self._run_cycle(cycle, self._select_app())
        return cycle

    def _start_tunnel(self, stream_id: int, head: RequestHead, ended: bool) -> None:
        """An extended CONNECT (RFC 8441 §4, RFC 9220 §3): ``:protocol websocket`` opens a WebSocket on
        the stream, with the ASGI ``websocket`` scope an HTTP/1.1 upgrade gets."""
        if head.problem is not None:
            self._refuse(stream_id, None, head.problem, stop_request=False)
            return
        if not self.connect_protocol or head.method != b"CONNECT" or ended or not head.path:
            # We did not advertise it (RFC 8441 §3: the client must not send :protocol then), or the
            # tunnel would have no request stream to run on: malformed.
            self._malformed(stream_id)
            return
        if head.protocol != b"websocket":
            self._answer(stream_id, 501, "Unsupported :protocol", stop_request=True)
            return
        problem = request_problem(head.method, head.path, head.authority, head.headers, self.max_fields, None)
        if problem is not None:
            self._refuse(stream_id, *problem, stop_request=True)
            return
        if self.draining:
            # The server is going away: a WebSocket opened now would only be cut off again.
            self._answer(stream_id, 503, "Service Unavailable", stop_request=True)
            return
        from pounce.protocols.websockets.stream import WebSocketStream  # the ws extra (wsproto)

        scope = self.build_scope(head.method, head.path, self.http_version, head.scope_headers())
        self.streams[stream_id] = WebSocketStream.open(self, stream_id, scope)
        self._requests += 1
        self._unset_keepalive_if_required()

    def _on_body(self, stream_id: int, data: bytes, credit: int) -> StreamCycle | None:
        """Request body for a stream (``credit``: the flow-controlled bytes it took); its cycle, if it
        is to be read on."""
        cycle = self.streams.get(stream_id)
        if not isinstance(cycle, StreamCycle):
            self._credit(stream_id, credit)  # nobody will read it: the credit goes back at once
            return None
        cycle.received += len(data)
        if cycle.response_complete or cycle.disconnected:
            self._credit(stream_id, credit)
            return None
        if self.limit_request_body is not None and cycle.received > self.limit_request_body:
            self._credit(stream_id, credit)
            self.refuse_body(cycle, 413, "Request body too large")
            return None
        if data:
            cycle.body += data
            cycle.unacked += credit
            cycle.notify()
        return cycle

    def _on_body_end(self, cycle: StreamCycle) -> None:
        if cycle.declared_length is not None and cycle.received != cycle.declared_length:
            # RFC 9113 §8.1.1 / RFC 9114 §4.1.2: the body ended shorter (or longer) than its content-length.
            self._malformed(cycle.stream_id)
            self._forget(cycle)
            return
        cycle.more_body = False
        cycle.notify()

    def _refuse(self, stream_id: int, status: int | None, reason: str, stop_request: bool) -> None:
        """A request that failed its checks: answered with ``status``, or (None) malformed and reset."""
        self._trace(f"{self.stream_label} stream {stream_id} refused: {reason}")
        if status is None:
            self._malformed(stream_id)
        else:
            self._answer(stream_id, status, reason, stop_request=stop_request)

    def _answer(self, stream_id: int, status: int, reason: str, stop_request: bool) -> None:
        """Answer a request ourselves (it is over a limit, or its body is late), on its stream only."""
        body = error_body(status, reason)
        try:
            if len(body) > self._room(stream_id):
                body = b""  # No credit for it: the status alone says enough.
            head = [
                (b":status", b"%d" % status),
                *self.server_state.default_headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ]
            self._send_headers(stream_id, head, not body)
            if body:
                self._send_data(stream_id, body, True)
            if stop_request:
                self._stop_request(stream_id)
        except self.frame_errors:
            pass  # The client reset it meanwhile: nobody to answer.
        self._flush_soon()

    # Called by cycles (``StreamOwner``)
    def is_open(self, cycle: StreamOutput) -> bool:
        return self.streams.get(cycle.stream_id) is cycle and not self.transport.is_closing()

    def acknowledge(self, cycle: StreamOutput, size: int) -> None:
        self._credit(cycle.stream_id, size)

    def send_informational(self, cycle: StreamCycle, status: int, headers: Headers) -> None:
        if self.is_open(cycle):
            self._send_headers(cycle.stream_id, [(b":status", b"%d" % status), *headers], False)
            self._flush_soon()

    def schedule(self, cycle: StreamOutput) -> None:
        """Pump this stream's output at the next flush (once per loop iteration for all streams)."""
        if not cycle.queued:
            cycle.queued = True
            self._to_pump.append(cycle)
            self._flush_soon()

    def abort_stream(self, cycle: StreamCycle) -> None:
        """The app failed mid-response: reset its stream; the other streams go on."""
        if cycle.end_queued or not self.is_open(cycle):
            return  # The response was complete; it is delivered as it was.
        self._reset(cycle.stream_id, self.INTERNAL_ERROR)
        self._forget(cycle)
        cycle.disconnected = True
        self._flush_soon()

    def refuse_body(self, cycle: StreamCycle, status: int, reason: str) -> None:
        """Stop one request whose body we will not take (413, 408): answered if the app has not started
        its response, else reset. The app sees a disconnect; the other streams go on."""
        if not self.is_open(cycle):
            return
        if cycle.response_started:
            self._reset(cycle.stream_id, self.CANCEL)
        else:
            self._answer(cycle.stream_id, status, reason, stop_request=cycle.more_body)
        self._forget(cycle)
        self._flush_soon()

    def task_done(self, cycle: StreamOutput) -> None:
        """A stream's app task has ended: if the stream was already forgotten, its slot is free now."""
        if cycle.orphaned:
            cycle.orphaned = False
            self._orphans -= 1

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1

    # Output
    def pump(self, cycle: StreamOutput) -> None:
        """Hand the stream's head, body bytes (as far as the peer's credit goes) and end to the framing."""
        cycle.queued = False
        stream_id = cycle.stream_id
        if self.streams.get(stream_id) is not cycle or self.transport.is_closing():
            return
        pending = cycle.pending
        finished = False
        try:
            head = cycle.take_head()
            if head is not None:
                finished = cycle.end_queued and not pending and cycle.trailers is None
                self._send_headers(stream_id, head, finished)
            while not finished and not self.flow.write_paused:
                if pending:
                    size = self._room(stream_id)
                    if size <= 0:
                        self._await_window(cycle)
                        break
                    chunk = cycle.take_chunk(size)
                    finished = not pending and cycle.end_queued and cycle.trailers is None
                    self._send_data(stream_id, chunk, finished)
                    cycle.window_progress += len(chunk)
                elif cycle.end_queued:
                    if cycle.trailers is not None:
                        self._send_headers(stream_id, cycle.trailers, True)
                    else:
                        self._end_stream(stream_id)
                    finished = True
                else:
                    break
        except self.stream_gone:
            finished = True  # The peer reset it; its reset event says so.
        except self.frame_errors as exc:
            # Something in the response the library will not send (our own checks should have caught it).
            self.logger.error("Invalid %s response: %s", self.stream_label, exc)
            self._reset(stream_id, self.INTERNAL_ERROR)
            finished = True
        if finished:
            self._forget(cycle)
            return
        if cycle.window_timer is not None and (not pending or cycle.window_progress >= BODY_PROGRESS):
            # The client took a window's worth (or all there was) within the deadline.
            cycle.window_timer.cancel()
            cycle.window_timer = None
        cycle.drained()

    def _pump_queued(self) -> None:
        if self._to_pump:
            cycles, self._to_pump = self._to_pump, []
            for cycle in cycles:
                self.pump(cycle)

    def _await_window(self, cycle: StreamOutput) -> None:
        """The stream has output and no credit for it (RFC 9113 §6.9 lets a client keep it so forever).

        It gets as long as a socket that takes nothing: within ``--timeout-write`` seconds the client
        must give credit for 64 KiB (or for everything pending), else the stream is reset.
        """
        if cycle.window_timer is None:
            cycle.window_progress = 0
            cycle.window_timer = self.loop.call_later(self.timeout_write, self._window_stalled, cycle)

    def _window_stalled(self, cycle: StreamOutput) -> None:
        cycle.window_timer = None
        if not self.is_open(cycle):
            return
        self.logger.info(
            "%s stream %d got no flow-control window for %s seconds; resetting it.",
            self.stream_label, cycle.stream_id, self.timeout_write,
        )
        self.cancel_stream(cycle)

    def cancel_stream(self, cycle: StreamOutput) -> None:
        """Stop a stream that cannot go on (no credit in time, its WebSocket aborted): reset, forget."""
        if self.is_open(cycle):
            self._reset(cycle.stream_id, self.CANCEL)
            self._forget(cycle)
            self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    # Resets and the end of streams
    def _reset(self, stream_id: int, error_code: int) -> bool:
        try:
            self._send_reset(stream_id, error_code)
        except self.frame_errors:
            return False  # Already closed (the client reset it in the same read): nothing to reset.
        if self.server_state.events is not None:
            self._report_reset(stream_id, error_code, "server")
        self._flush_soon()
        return True

    def _report_reset(self, stream_id: int, error_code: int, initiator: Initiator) -> None:
        events = self.server_state.events
        assert events is not None
        stream = self.streams.get(stream_id)
        observer = stream.observer if isinstance(stream, StreamCycle) else None
        request_id = observer.request.request_id if observer is not None and observer.request is not None else None
        if not self.connection_id:
            self.connection_id = events.next_connection_id()
        hooks.stream_reset(events, self.connection_id, stream_id, request_id, int(error_code), initiator)

    def _forget(self, cycle: StreamOutput) -> None:
        """The stream is over for us (sent, reset or the connection is gone): wake its app, drop it."""
        if self.streams.pop(cycle.stream_id, None) is None:
            return
        if cycle.window_timer is not None:
            cycle.window_timer.cancel()
            cycle.window_timer = None
        if cycle.unacked:
            # Body the app never read still holds connection credit: give it back.
            size, cycle.unacked = cycle.unacked, 0
            self._credit(cycle.stream_id, size)
        if cycle.forgotten():
            cycle.orphaned = True
            self._orphans += 1
        if not self.streams and not self.transport.is_closing():
            if self.draining:
                self._last_stream_done()
            else:
                self._arm_keepalive()

    def _forget_all(self) -> None:
        for cycle in list(self.streams.values()):
            self._forget(cycle)

    def timeout_keep_alive_handler(self) -> None:
        if self.streams:
            self.timeout_keep_alive_task = None  # Busy: the last stream's end arms it again.
            return
        super().timeout_keep_alive_handler()

    def _waiting_for_head(self) -> bool:
        return False


__all__ = ["MultiplexedProtocol", "RequestHead"]
