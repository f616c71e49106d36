"""Pounce's own HTTP/1.1 protocol: the default, pure-Python fast path.

The hot path for a keep-alive request is: parse the head (``parser.parse_request_head``), build the
scope, start the app task, and write the response head and body in one ``transport.write``. The
head is held back from ``http.response.start`` until the first body message (or the next loop
iteration, whichever comes first) so that most responses leave in a single buffer and the framing
can use a ``Content-Length`` when the whole body is known. Body messages with more to come are held
back the same way, up to ``COALESCE_LIMIT`` bytes: an app streaming small chunks without waiting in
between costs one ``send()`` per loop iteration, not one per chunk (on asyncio every write is a
system call; uvloop coalesces its writes the same way).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, BinaryIO

from pounce._types import Scope
from pounce.config import Config
from pounce.protocols.http.base import INVALID_REQUEST, BaseHTTPProtocol, error_body
from pounce.protocols.http.cycle import (
    INVALID_HEADER_NAME,
    INVALID_HEADER_VALUE,
    STATUS_LINE,
    RequestResponseCycle,
)
from pounce.protocols.http.flow_control import HIGH_WATER_LIMIT
from pounce.protocols.http.pathsend import can_sendfile, write_file_raw
from pounce.protocols.http.parser import (
    ChunkedReader,
    ContentLengthReader,
    MAX_EMPTY_LINES,
    ProtocolError,
    leading_empty_lines,
    parse_request_head,
)
from pounce.server import ServerState

_NO_BODY_STATUSES = frozenset((204, 304))
# Pipelined requests one connection may have answered in one event-loop callback (see
# _handle_buffered_requests): enough to keep pipelining cheap, few enough to stay fair.
PIPELINE_BATCH = 32
# Response header lines already validated and encoded, by (name, value): apps send the same few
# headers (content-type, cache-control, ...) over and over. Framing headers (content-length,
# transfer-encoding, connection) are never cached; they change how the response is sent. Bounded:
# once full it stops growing, and what varies per response simply misses.
_HEADER_LINES: dict[tuple[bytes, bytes], bytes] = {}
_HEADER_LINES_MAX = 512
# Content-Length fields already validated, with their line and value: an app answering the same few
# sizes over and over (the same page, an empty body) checks and encodes each once. Bounded the same way.
_LENGTH_LINES: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}
# Streamed body bytes held back until the loop iteration ends; past this they are written at once, so
# that flow control (the transport's write buffer) still sees an app that streams without pausing.
COALESCE_LIMIT = 65536
# A body this large is written on its own instead of joined to the head: copying it costs more than a
# second send() (see _write_parts).
SEPARATE_WRITE = 32768
_GATHERING_WRITES = sys.version_info >= (3, 12)


class FastCycle(RequestResponseCycle):
    """Frames responses by hand: one buffer per response where the app allows it."""

    # Response framing state; class-level defaults keep the per-request constructor short.
    _head_parts: list[bytes] | None = None
    # Framed output (head, chunks) not written yet, its body bytes, and whether the cycle is in pending_heads.
    _out: list[bytes] | None = None
    _out_size = 0
    _queued = False
    _chunked = False
    _length_left: int | None = None
    _body_allowed = True
    _framed = False

    def __init__(
        self,
        protocol: FastHTTPProtocol,
        scope: Scope,
        keep_alive: bool,
        expect_100_continue: bool,
        method: bytes,
        http_version: str,
    ) -> None:
        RequestResponseCycle.__init__(
            self,
            scope,
            protocol.transport,
            protocol.flow,
            protocol.logger,
            protocol.on_response_complete,
            keep_alive,
            expect_100_continue,
        )
        self.pending_heads = protocol.pending_heads
        self.default_headers = protocol.server_state.default_headers_raw
        self.is_head = method == b"HEAD"
        self.http10 = http_version == "1.0"
        self.body_timeout = protocol.timeout_request_body
        self.on_body_timeout = protocol.request_body_timeout

    def write_continue(self) -> None:
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def write_response_start(self, status: int, headers: Any) -> None:
        parts = [STATUS_LINE[status], self.default_headers]
        close_sent = False
        lines = _HEADER_LINES
        for header in headers:
            line = lines.get(header) if type(header) is tuple else None
            if line is not None:
                parts.append(line)
                continue
            known = _LENGTH_LINES.get(header) if type(header) is tuple else None
            if known is not None:
                parts.append(known[0])
                self._length_left = known[1]
                self._framed = True
                continue
            name, value = header
            if INVALID_HEADER_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if INVALID_HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            lname = name.lower()
            if lname == b"content-length":
                # RFC 9110 §8.6: Content-Length = 1*DIGIT; int() would also take "+5", " 5" or "1_0", and
                # the field would go out as the app wrote it.
                if not value.isdigit():
                    raise RuntimeError("Invalid HTTP Content-Length header value.")
                self._length_left = length = int(value)
                self._framed = True
                line = b"%s: %s\r\n" % (name, value)
                if len(_LENGTH_LINES) < _HEADER_LINES_MAX and type(header) is tuple:
                    _LENGTH_LINES[header] = (line, length)
                parts.append(line)
                continue
            elif lname == b"transfer-encoding":
                # The app asked for chunked framing: we do the encoding, it sends plain bytes.
                self._chunked = self._framed = b"chunked" in value.lower()
            elif lname == b"connection" and b"close" in [t.strip(b" \t") for t in value.lower().split(b",")]:
                self.keep_alive = False
                close_sent = True
            else:
                line = b"%s: %s\r\n" % (name, value)
                if len(lines) < _HEADER_LINES_MAX and type(header) is tuple:
                    lines[header] = line
                parts.append(line)
                continue
            parts.append(b"%s: %s\r\n" % (name, value))
        if not self.keep_alive and not close_sent:
            parts.append(b"connection: close\r\n")
        # RFC 9110 §6.4.1: no content in 1xx, 204 and 304 responses, nor in any response to HEAD.
        no_content = status < 200 or status in _NO_BODY_STATUSES
        self._body_allowed = not (no_content or self.is_head)
        if no_content:
            self._framed = True
        self._head_parts = parts
        # If the app awaits something between start and body, the head still leaves promptly: heads
        # waiting for their body are flushed together once per loop iteration. (_queue, inlined: this
        # runs once per response.)
        self._queued = True
        pending = self.pending_heads
        pending.append(self)
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(_flush_pending_heads, pending)

    def _queue(self) -> None:
        if not self._queued:
            self._queued = True
            pending = self.pending_heads
            pending.append(self)
            if len(pending) == 1:
                asyncio.get_running_loop().call_soon(_flush_pending_heads, pending)

    def _frame_head(self, parts: list[bytes], length: int | None) -> None:
        """Complete the held-back head now that the first body message shows how to frame it
        (``length``: the whole body's, or None while more is to come)."""
        if not self._framed:
            if length is not None:
                # The whole body is known: RFC 9112 §6.3 Content-Length framing, no chunking needed.
                if length or not self.is_head:
                    parts.append(b"content-length: %d\r\n" % length)
            elif self.is_head:
                pass
            elif not self.http10:
                parts.append(b"transfer-encoding: chunked\r\n")
                self._chunked = True
            else:
                # HTTP/1.0 has no chunked coding: the body ends when the connection does.
                if self.keep_alive:
                    self.keep_alive = False
                    parts.append(b"connection: close\r\n")
        if self.http10 and self.keep_alive:
            parts.append(b"connection: keep-alive\r\n")
        observer = self.observer
        if observer is not None:
            field = observer.head_sent()
            if field is not None:
                parts.append(b"%s: %s\r\n" % field)
        parts.append(b"\r\n")

    def flush_head(self) -> None:
        """Write what is held back: the head (framed for a body still to come) or streamed chunks."""
        self._queued = False
        parts = self._head_parts
        if parts is not None:
            if self.transport.is_closing():
                return
            self._head_parts = None
            self._frame_head(parts, None)
        else:
            parts = self._out
            if parts is None:
                return
            self._out = None
            self._out_size = 0
            if self.transport.is_closing():
                return
        self.transport.write(b"".join(parts))

    def write_body(self, body: bytes, more_body: bool) -> None:
        parts = self._head_parts
        if parts is not None:
            self._head_parts = None
            self._frame_head(parts, None if more_body else len(body))
        else:
            parts = self._out
        if not self._body_allowed:
            data = b""
        elif self._chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            data = body
            if self._length_left is not None:
                self._length_left -= len(body)
                if self._length_left < 0:
                    raise RuntimeError("Response content longer than Content-Length")
                if not more_body and self._length_left > 0:
                    raise RuntimeError("Response content shorter than Content-Length")
        if more_body:
            # Held back until the loop iteration ends (or enough is held): the next chunk usually
            # follows in the same iteration, and one send() then carries them all.
            if parts is None:
                if not data:
                    return
                if not self._queued:
                    # The first chunk since the last flush leaves at once: an app that sends one chunk
                    # and then waits (server-sent events, progress) must not have it held behind every
                    # other callback of the iteration. Chunks that follow within the same iteration
                    # are held and leave together when it ends (the flush queued here).
                    self._queue()
                    self.transport.write(data)
                    return
                parts = []
            if data:
                parts.append(data)
                self._out_size += len(data)
            if self._out_size < COALESCE_LIMIT:
                self._out = parts
                return
            self._out = None
            self._out_size = 0
        elif parts is None:
            if data:
                _write_parts(self.transport, [data])
            return
        else:
            # Head (or held-back chunks) and the last body bytes leave together.
            self._out = None
            self._out_size = 0
            parts.append(data)
        _write_parts(self.transport, parts)

    def write_held(self) -> None:
        """Write held-back chunks now: something is about to be written past them, or the connection closes."""
        parts = self._out
        if parts is not None:
            self._out = None
            self._out_size = 0
            if not self.transport.is_closing():
                self.transport.write(b"".join(parts))

    # Extensions (see RequestResponseCycle)
    def write_informational(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.transport.write(b"".join([STATUS_LINE[status], *(b"%s: %s\r\n" % field for field in headers), b"\r\n"]))

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.write_held()
        if not (trailers and self._chunked and self._body_allowed):
            self.write_body(b"", False)
            return
        # RFC 9112 §7.1.2: the last chunk, then the trailer section.
        self.transport.write(b"".join([b"0\r\n", *(b"%s: %s\r\n" % field for field in trailers), b"\r\n"]))

    def frame_file(self, size: int) -> int:
        self.write_held()
        parts = self._head_parts
        if parts is not None:
            self._head_parts = None
            # The file is the whole body (unless trailers follow it): its size is the Content-Length.
            length = None if self._trailers_expected else size
            if not self._framed and length is not None and self._body_allowed:
                self._length_left = length
            self._frame_head(parts, length)
            self.transport.write(b"".join(parts))
        if not self._body_allowed:
            return 0
        # A Content-Length the app declared is what goes out, even of a file that has grown since.
        return size if self._length_left is None else min(size, self._length_left)

    async def write_file(self, file: BinaryIO, count: int) -> int:
        if not can_sendfile(self.transport):
            return await super().write_file(file, count)
        if self._chunked:
            self.transport.write(b"%x\r\n" % count)
        sent = await write_file_raw(self, file, count)
        if self._chunked:
            self.transport.write(b"\r\n")
        if self._length_left is not None:
            self._length_left -= sent
        return sent


def _write_parts(transport: asyncio.Transport, parts: list[bytes]) -> None:
    """Write ``parts`` as one buffer, except a large last part: joining would copy it, and a second
    ``send()`` costs less than copying 32 KiB. (It goes as a memoryview: asyncio on 3.11 slices what
    ``send()`` did not take, and slicing bytes would copy the rest once more.) From 3.12 asyncio's
    ``writelines`` sends both in one ``sendmsg()``."""
    last = parts[-1]
    if len(last) >= SEPARATE_WRITE and type(last) is bytes:
        if len(parts) == 1:
            transport.write(memoryview(last))
        elif _GATHERING_WRITES:
            transport.writelines([b"".join(parts[:-1]), memoryview(last)])
        else:
            transport.write(b"".join(parts[:-1]))
            transport.write(memoryview(last))
    else:
        transport.write(b"".join(parts))


def _flush_pending_heads(pending: list[FastCycle]) -> None:
    cycles = pending[:]
    pending.clear()
    for cycle in cycles:
        cycle.flush_head()


class FastHTTPProtocol(BaseHTTPProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        cfg = self.config.server_config
        self.max_line = cfg.max_request_line_size
        self.max_head = cfg.max_request_head
        self.max_fields = cfg.limit_request_fields
        self.max_field = cfg.max_field_size
        self._buffer = bytearray()
        # How much of a still-incomplete head has been searched already (see parse_request_head).
        self._scanned = 0
        self._empty_lines = 0  # bytes of empty lines dropped before the head now arriving
        self._handling = False
        self._continue_scheduled = False
        self.pending_heads: list[FastCycle] = server_state.pending_heads
        self._body_reader: ContentLengthReader | ChunkedReader | None = None
        self.cycle: FastCycle | None = None

    def data_received(self, data: bytes) -> None:
        reader = self._body_reader
        if reader is not None and not self._buffer and type(reader) is ContentLengthReader:
            # The common upload read: all of it is body, and it goes to the app as it came, uncopied.
            if len(data) <= reader.remaining:
                reader.remaining -= len(data)
                self._deliver_body(data, reader.remaining == 0)
                return
        self._buffer += data
        if self._body_reader is not None:
            self._feed_body()
        elif self.cycle is None:
            self._handle_requests()
        if len(self._buffer) > HIGH_WATER_LIMIT and not self._head_in_progress():
            # Pipelined requests pile up faster than they are answered: stop reading until the
            # buffer has been worked down (see _next_request). One read adds at most 256 KiB.
            self.flow.pause_reading()

    def _waiting_for_head(self) -> bool:
        return bool(self._buffer) and self.cycle is None

    def _head_in_progress(self) -> bool:
        """Whether all that is buffered is the start of the next request head. The parser bounds that
        (--limit-request-line/-field-size, the whole head), so reading goes on until it is complete:
        paused at 64 KiB, a larger head would wait for its header deadline.

        Only once the parser has searched the whole buffer without finding a head's end: a response
        completed inside the pipelining loop (eager tasks, 3.12+) leaves complete requests buffered,
        and resuming then let one pipelining client grow the buffer without bound."""
        return (
            self.cycle is None
            and self._body_reader is None
            and not self._continue_scheduled
            and not self._handling
            and self._scanned == len(self._buffer)
        )

    def _handle_requests(self) -> None:
        # With eager tasks a response can complete inside this loop; _next_request must then leave the
        # next pipelined request to this loop instead of recursing into it.
        self._handling = True
        try:
            self._handle_buffered_requests()
        finally:
            self._handling = False

    def _handle_buffered_requests(self) -> None:
        buf = self._buffer
        budget = PIPELINE_BATCH
        while self.cycle is None and buf and not self.transport.is_closing():
            budget -= 1
            if budget < 0:
                # Eager tasks (3.12+) answer a simple request inside this loop, so a buffer full of
                # pipelined requests would be worked through in one callback while every other
                # connection waits. Yield to the event loop between batches instead.
                if not self._continue_scheduled:
                    self._continue_scheduled = True
                    self.loop.call_soon(self._continue_pipeline)
                return
            if buf[0] == 0x0D:  # "\r": RFC 9112 §2.2 empty lines before a request, dropped as they come
                skipped = leading_empty_lines(buf)
                self._empty_lines += skipped
                if self._empty_lines > MAX_EMPTY_LINES:
                    self._send_error(400, "Too many empty lines before the request")
                    return
                del buf[:skipped]
                if not buf:
                    return
            try:
                parsed = parse_request_head(
                    buf, self.max_line, self.max_head, self.max_fields, self._scanned, self.max_field
                )
            except ProtocolError as exc:
                self._send_error(exc.status, exc.reason)
                return
            if parsed is None:
                self._scanned = len(buf)
                self._arm_header_timer()
                return
            self._scanned = self._empty_lines = 0
            head, body_start = parsed
            if self._header_timer is not None:
                self._cancel_header_timer()
            raw_head = bytes(buf[:body_start]) if head.upgrade is not None else b""
            del buf[:body_start]

            self.scope = scope = self.build_scope(head.method, head.target, head.http_version, head.headers, head.trailers)

            if head.upgrade is not None:
                if head.upgrade == b"websocket" and self.ws_protocol_class is not None:
                    pending = raw_head + bytes(buf)
                    buf.clear()
                    self._handle_websocket_upgrade(pending)
                    return
                if self._unsupported_upgrade(head.upgrade):
                    return

            app = self.app if self.limit_concurrency is None else self._select_app()
            self.cycle = cycle = FastCycle(
                self,
                scope,
                head.keep_alive and not self.draining,
                head.expect_continue,
                head.method,
                head.http_version,
            )
            state = self.server_state
            if state.observing or self.server_timing:
                self._observe(cycle, scope)
            if head.chunked:
                self._body_reader = ChunkedReader()
            elif head.content_length:
                if self.limit_request_body is not None and head.content_length > self.limit_request_body:
                    self._send_error(413, "Request body too large", log=False)
                    return
                self._body_reader = ContentLengthReader(head.content_length)
            else:
                cycle.more_body = False
            self._run_cycle(cycle, app, self.eager_tasks)
            if self._body_reader is not None and buf:
                self._feed_body()

    def _feed_body(self) -> None:
        reader = self._body_reader
        cycle = self.cycle
        assert reader is not None and cycle is not None
        try:
            data, done = reader.feed(self._buffer)
        except ProtocolError as exc:
            self._send_error(exc.status, exc.reason)
            return
        self._deliver_body(data, done)

    def _deliver_body(self, data: bytes, done: bool) -> None:
        """Hand ``data`` (request body; ``done``: the last of it) to the cycle."""
        cycle = self.cycle
        assert cycle is not None
        if done:
            self._body_reader = None
        if data and self.limit_request_body is not None and not self._count_body(len(data)):
            return
        if cycle.response_complete:
            # The app answered without reading the whole body: drop the rest, then go on.
            if done:
                self._next_request()
            return
        if data:
            body = cycle.body
            if not body:
                cycle.body = body = data
            else:
                if type(body) is bytes:
                    # A second read before the app took the first: accumulate from here on, amortised.
                    cycle.body = body = bytearray(body)
                body += data
            # An app waiting in receive() takes this before the next read: pausing now would only cost
            # two system calls (epoll_ctl) per read of a large upload.
            if len(body) > HIGH_WATER_LIMIT and not cycle.receiving:
                self.flow.pause_reading()
        if done:
            cycle.more_body = False
        if data or done:
            cycle.notify()

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        """Answer a request we cannot parse or serve, then close: the framing can no longer be trusted."""
        if log:
            self.logger.warning(INVALID_REQUEST)
        cycle = self.cycle
        if (cycle is None or not cycle.response_started) and not self.transport.is_closing():
            body = error_body(status, reason)
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        self.server_state.default_headers_raw,
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.notify()
        self._body_reader = None
        self._cancel_header_timer()
        self._close()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._body_reader is not None:
            # The rest of the request body is still to come; _feed_body drops it and moves on.
            self.flow.resume_reading()
            return
        self._next_request()

    def _next_request(self) -> None:
        self.cycle = None
        # The cycle (while its app runs) holds its own reference: an idle connection need not keep the
        # last request's scope (about 1 KiB and ten objects the garbage collector walks on every full pass).
        self.scope = None  # type: ignore[assignment]
        self._body_received = 0
        if self._buffer:
            if not self._handling:
                self._handle_requests()
        else:
            self._arm_keepalive()
        self._read_if_room()

    def _continue_pipeline(self) -> None:
        self._continue_scheduled = False
        if self.cycle is None and self._buffer:
            self._handle_requests()
            self._read_if_room()

    def _read_if_room(self) -> None:
        # Read again only once what is buffered has been worked down: resuming after every response
        # while pipelined requests keep arriving would let one connection's buffer grow without end.
        if self.flow.read_paused and (len(self._buffer) <= HIGH_WATER_LIMIT or self._head_in_progress()):
            cycle = self.cycle
            if cycle is None or len(cycle.body) <= HIGH_WATER_LIMIT:
                self.flow.resume_reading()
