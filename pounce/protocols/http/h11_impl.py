"""HTTP/1.1 through h11 (``--http h11``): the reference-parser fallback to our own fast path."""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO

import h11

from pounce.config import Config
from pounce.protocols.http.base import INVALID_REQUEST, BaseHTTPProtocol, error_body
from pounce.protocols.http.cycle import RequestResponseCycle, status_phrase
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT
from pounce.protocols.http.parser import ChunkedReader, ProtocolError, parse_request_head, te_accepts_trailers
from pounce.protocols.http.pathsend import can_sendfile, write_file_raw
from pounce.server import ServerState



_NO_CONTENT_STATUSES = frozenset((204, 304))


class _FileBody:
    """Stands for a file's bytes in an ``h11.Data`` event: h11 needs only their length to frame them,
    and ``send_with_data_passthrough`` hands the object back where the bytes go (h11's sendfile way)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class H11Cycle(RequestResponseCycle):
    """Frames responses with h11, which enforces the HTTP/1.1 rules on what the app sends."""

    _headers: list[tuple[bytes, bytes]] = []

    def __init__(self, *args: Any, conn: h11.Connection, default_headers: list[tuple[bytes, bytes]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conn = conn
        self.default_headers = default_headers

    def write_continue(self) -> None:
        event = h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
        self.transport.write(self.conn.send(event))

    def write_response_start(self, status: int, headers: Any) -> None:
        if self.scope["method"] == "HEAD" or status < 200 or status in _NO_CONTENT_STATUSES:
            self._body_allowed = False  # no body goes out (h11 sends none)
        self._headers = headers = self.default_headers + list(headers)
        if not self.keep_alive and (b"connection", b"close") not in headers:
            headers = headers + [(b"connection", b"close")]
        if self.observer is not None:
            field = self.observer.head_sent()
            if field is not None:
                headers.append(field)
        response = h11.Response(status_code=status, headers=headers, reason=status_phrase(status))
        self.transport.write(self.conn.send(response))

    def write_body(self, body: bytes, more_body: bool) -> None:
        data = b"" if self.scope["method"] == "HEAD" else body
        output = self.conn.send(h11.Data(data=data))
        if not more_body:
            output += self.conn.send(h11.EndOfMessage())
            if self.conn.our_state is h11.MUST_CLOSE:
                self.keep_alive = False
        if output:
            self.transport.write(output)

    # Extensions (see RequestResponseCycle)
    def write_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        event = h11.InformationalResponse(status_code=status, headers=headers, reason=status_phrase(status))
        self.transport.write(self.conn.send(event))

    def _declared_length(self) -> int | None:
        for name, value in self._headers:
            if name.lower() == b"content-length":
                return int(value)
        return None

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        # h11 frames a body without Content-Length chunked (trailers are offered to HTTP/1.1 only).
        if not trailers or not self._body_allowed or self._declared_length() is not None:
            self.write_body(b"", False)
            return
        output = self.conn.send(h11.EndOfMessage(headers=trailers))
        if self.conn.our_state is h11.MUST_CLOSE:
            self.keep_alive = False
        self.transport.write(output)

    def frame_file(self, size: int) -> int:
        if not self._body_allowed:
            return 0
        declared = self._declared_length()
        # A Content-Length the app declared is what goes out, even of a file that has grown since.
        return size if declared is None else min(size, declared)

    async def write_file(self, file: BinaryIO, count: int) -> int:
        if not can_sendfile(self.transport):
            return await super().write_file(file, count)
        placeholder = _FileBody(count)
        pieces: list[object] = list(self.conn.send_with_data_passthrough(h11.Data(data=placeholder)) or ())  # type: ignore[arg-type]
        sent = 0
        for piece in pieces:
            if piece is placeholder:
                sent = await write_file_raw(self, file, count)
            else:
                self.transport.write(piece)  # type: ignore[arg-type]  # framing bytes
        return sent


class H11Protocol(BaseHTTPProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # h11 buffers at most the head size our own parser allows (ServerConfig.max_request_head: 1 MiB,
        # or --h11-max-incomplete-event-size if larger), so both paths accept the same heads.
        self.conn = h11.Connection(h11.SERVER, self.config.server_config.max_request_head)
        self.headers: list[tuple[bytes, bytes]] = []
        self.cycle: H11Cycle | None = None
        cfg = self.config.server_config
        # The same size and count limits as our own parser, whichever parser runs.
        self.max_line = cfg.max_request_line_size
        self.max_head = cfg.max_request_head
        self.max_fields = cfg.limit_request_fields
        self.max_field = cfg.max_field_size
        self._head_scanned = 0
        # A chunked request body is also read by our ChunkedReader, which only validates: h11 accepts
        # chunk lines our parser rejects (``5 \r\n``, over-long extensions), and the rules must not
        # depend on the parser chosen.
        self._chunk_check: ChunkedReader | None = None
        self._chunk_buf = bytearray()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn.our_state != h11.ERROR:
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass  # The client left mid-request.
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._chunk_check is not None and not self._check_chunks(data):
            return
        self.conn.receive_data(data)
        self.handle_events()

    def _check_chunks(self, data: bytes) -> bool:
        """Run body bytes through the shadow ChunkedReader before h11 sees them; False once rejected."""
        assert self._chunk_check is not None
        buf = self._chunk_buf
        buf += data
        try:
            _, done = self._chunk_check.feed(buf)
        except ProtocolError as exc:
            self._send_error(exc.status, exc.reason)
            return False
        if done:
            self._chunk_check = None
            buf.clear()
        return True

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _check_head(self) -> bool:
        """Hold the next request head to the same rules as our own parser; False when it was rejected.

        h11 is more lenient than we want on its own: it unfolds obs-fold lines, accepts bare-LF line
        endings, control characters in values, repeated Content-Length and CL + TE together. Any of
        those can make two parsers disagree about where a request ends (request smuggling).
        """
        head = self.conn.trailing_data[0]
        if not head:
            return True
        try:
            parsed = parse_request_head(
                head, self.max_line, self.max_head, self.max_fields, self._head_scanned, self.max_field
            )
        except ProtocolError as exc:
            self._send_error(exc.status, exc.reason)
            return False
        self._head_scanned = len(head) if parsed is None else 0
        return True

    def handle_events(self) -> None:
        while True:
            if self.conn.their_state is h11.IDLE and not self._check_head():
                return
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                # Uvicorn's h11 protocol answers every h11 parse error with 400, whatever the hint.
                self._send_error(400, INVALID_REQUEST)
                return

            if event is h11.NEED_DATA:
                if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                    self._arm_header_timer()
                break

            elif event is h11.PAUSED:
                # Pipelined requests wait until the current response completes.
                self.flow.pause_reading()
                break

            elif isinstance(event, h11.Request):
                self._cancel_header_timer()
                self._unset_keepalive_if_required()
                self.headers = [(key.lower(), value) for key, value in event.headers]
                self.scope = scope = self.build_scope(
                    event.method,
                    event.target,
                    event.http_version.decode("ascii"),
                    self.headers,
                    any(name == b"te" and te_accepts_trailers(value) for name, value in self.headers),
                )
                upgrade = self._get_upgrade()
                if upgrade is not None:
                    if upgrade == b"websocket" and self.ws_protocol_class is not None:
                        self._handle_websocket_upgrade(self._replay_request(event))
                        return
                    if self._unsupported_upgrade(upgrade):
                        return

                if not self._check_request_body():
                    return
                app = self._select_app()
                self.cycle = H11Cycle(
                    scope,
                    self.transport,
                    self.flow,
                    self.logger,
                    self.on_response_complete,
                    not self.draining,
                    self.conn.they_are_waiting_for_100_continue,
                    conn=self.conn,
                    default_headers=self.server_state.default_headers,
                )
                self.cycle.body_timeout = self.timeout_request_body
                self.cycle.on_body_timeout = self.request_body_timeout
                state = self.server_state
                if state.observing or self.server_timing:
                    self._observe(self.cycle, scope)
                self._run_cycle(self.cycle, app)

            elif isinstance(event, h11.Data):
                if self.limit_request_body is not None and not self._count_body(len(event.data)):
                    return
                if self.conn.our_state is h11.DONE or self.cycle is None:
                    continue
                self.cycle.body += event.data
                if len(self.cycle.body) > HIGH_WATER_LIMIT:
                    self.flow.pause_reading()
                self.cycle.notify()

            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE:
                    # The app answered before reading the whole body; the rest was dropped above.
                    self.flow.resume_reading()
                    self.conn.start_next_cycle()
                    continue
                if self.cycle is not None:
                    self.cycle.more_body = False
                    self.cycle.notify()
                if self.conn.their_state == h11.MUST_CLOSE:
                    break

            elif isinstance(event, h11.ConnectionClosed):
                break

    def _check_request_body(self) -> bool:
        """Before the app runs: a declared body over ``--limit-request-body`` is a 413; a chunked one is
        validated by our reader as it arrives. False when the request was rejected."""
        self._body_received = 0
        chunked = False
        for name, value in self.headers:
            if name == b"content-length":
                if self.limit_request_body is not None and int(value) > self.limit_request_body:
                    self._send_error(413, "Request body too large", log=False)
                    return False
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:
            self._chunk_check = ChunkedReader()
            self._chunk_buf.clear()
            return self._check_chunks(self.conn.trailing_data[0])
        return True

    def _get_upgrade(self) -> bytes | None:
        connection: list[bytes] = []
        upgrade = None
        for name, value in self.headers:
            if name == b"connection":
                connection = [token.lower().strip() for token in value.split(b",")]
            if name == b"upgrade":
                upgrade = value.lower()
        return upgrade if b"upgrade" in connection else None

    def _replay_request(self, event: h11.Request) -> bytes:
        output = [event.method, b" ", event.target, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            output += [name, b": ", value, b"\r\n"]
        output.append(b"\r\n")
        # Bytes the client sent after the head (a first frame) belong to the WebSocket protocol.
        output.append(self.conn.trailing_data[0])
        return b"".join(output)

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        if log:
            self.logger.warning(INVALID_REQUEST)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self.transport.is_closing():
            body = error_body(status, reason)
            headers = [
                *self.server_state.default_headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                # Capitalised as Uvicorn's h11 protocol sends it (h11 keeps the casing it is given).
                (b"Connection", b"close"),
            ]
            try:
                output = self.conn.send(h11.Response(status_code=status, headers=headers, reason=status_phrase(status)))
                output += self.conn.send(h11.Data(data=body))
                output += self.conn.send(h11.EndOfMessage())
                self.transport.write(output)
            except h11.LocalProtocolError:
                pass
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.notify()
        self._cancel_header_timer()
        self._close()

    def send_400_response(self, msg: str) -> None:
        self._send_error(400, msg)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._arm_keepalive()
        self.flow.resume_reading()
        # Unblock pipelined requests.
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.handle_events()

    def _close(self) -> None:
        if not self.transport.is_closing():
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()
