"""What bounds one HTTP/2 connection, decided before and around ``h2`` (sans-I/O: no sockets, no timers).

* ``InboundFrames`` walks the frame headers of what the client sends (RFC 9113 §4.1) *before* h2
  parses them, and charges the frames that make us work for free to two token buckets
  (``RateBudget``): stream resets (``--h2-max-reset-rate``, CVE-2023-44487 "rapid reset") and control
  frames (``--h2-max-control-frame-rate``). An overdrawn budget, or a frame that breaks a rule h2
  reports with the wrong error code, is a connection error decided here, so a flood is stopped at
  its first read instead of after h2 has answered every frame in it.
* ``H2Connection`` is h2's connection with RFC 9113 §8.1.1 applied: a malformed request (bad field,
  bad pseudo-header, content-length contradicting the DATA sent) is a *stream* error. h2 raises
  those as connection errors, which would take every healthy sibling stream down with it.
* ``connection_error_code`` maps h2's generic PROTOCOL_ERROR to the code RFC 9113 names for
  HPACK failures (COMPRESSION_ERROR, §4.3).
* ``request_problem`` checks what h2 does not: the target and authority syntax, and our own limits
  on header fields and declared body size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import DataFrame, Frame, HeadersFrame

from pounce.protocols.http.h2_hpack import CachingDecoder, CachingEncoder
from pounce.protocols.http.request_checks import request_problem
from pounce.protocols.limits import RateBudget

PREFACE_LENGTH = 24  # RFC 9113 §3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# SETTINGS_MAX_FRAME_SIZE we advertise: the RFC's initial value and minimum (§6.5.2), so the most of
# one frame a connection ever buffers.
MAX_FRAME_SIZE = 16384
_FRAME_HEADER = 9  # RFC 9113 §4.1: length (24 bits), type, flags, reserved bit + stream id (31 bits)

# RFC 9113 §6: frame types and flags the guard looks at.
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PING, _WINDOW_UPDATE, _CONTINUATION = 0, 1, 2, 3, 4, 6, 8, 9
_KNOWN_TYPES = frozenset(range(10))
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8

# Padding a header block may carry on top of its fields: 255 bytes in each of the 64 frames h2 accepts
# for one block (h2.frame_buffer.CONTINUATION_BACKLOG).
_HEADER_BLOCK_PADDING = 64 * 256
# Each DATA frame we send may be answered with two WINDOW_UPDATEs (stream and connection). Credit for
# them is kept up to this many, so a client that batches its updates never pays for them.
_MAX_WINDOW_CREDIT = 4096


class InboundFrames:
    """The frame headers of one connection's inbound bytes, and what they cost.

    Charged to the control-frame budget (each makes h2 parse, and often answer, a frame that carries no
    request; RFC 9113 §10.5 names them as the way to make a peer work for nothing):

    * PING (§6.7): each one obliges us to send a PING ACK;
    * SETTINGS (§6.5): one per setting in it (each is an update we apply), one for an ACK;
    * PRIORITY (§5.3.2, deprecated): parsed and dropped;
    * WINDOW_UPDATE (§6.9) beyond two per DATA frame we have sent: a client reading our responses
      sends those, so a fast download is never charged, but a flood of increments is;
    * DATA, HEADERS or CONTINUATION with nothing in it that does not end anything (no END_STREAM, no
      END_HEADERS): an "empty frame" flood;
    * frames of unknown type (§5.5): ignored by rule, but each one still has to be read.

    Charged to the reset budget: every RST_STREAM the client sends (§6.4; the rapid-reset attack). The
    protocol charges it too for the streams it resets or refuses because of the client
    (``charge_reset``), so provoking resets (malformed requests, streams over the limit) costs the same.

    And rules enforced here because h2 gets the error code wrong or learns too late:

    * §4.2: a frame longer than SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR as soon as its header
      says so (h2 buffers the whole frame, up to 16 MiB, before it checks);
    * §6.5: a SETTINGS ACK with a payload is a connection error of type FRAME_SIZE_ERROR (h2 reports a
      PROTOCOL_ERROR);
    * §4.3 / §10.5.1: a header block (HEADERS plus CONTINUATIONs) longer than the header list we
      advertised could ever decode to is stopped while it arrives, before h2 buffers it all.
    """

    __slots__ = ("_skip", "_head", "_need", "_block", "_window_credit", "resets", "control", "max_block")

    def __init__(self, reset_rate: float, control_rate: float, max_header_list: int) -> None:
        self._skip = PREFACE_LENGTH  # bytes to pass over: the preface, then each frame's payload
        self._head = bytearray()  # the start of a frame header (and pad length) split across reads
        self._need = _FRAME_HEADER
        self._block: int | None = None  # length of the header block in progress, None outside one
        self._window_credit = 0
        self.resets = RateBudget(reset_rate)
        self.control = RateBudget(control_rate)
        self.max_block = max_header_list + _HEADER_BLOCK_PADDING

    def data_frames_sent(self, count: int) -> None:
        """We sent ``count`` DATA frames: the client may acknowledge each with two WINDOW_UPDATEs."""
        self._window_credit = min(self._window_credit + 2 * count, _MAX_WINDOW_CREDIT)

    def charge_reset(self) -> bool:
        """A stream was reset because of the client; False once that happens too often."""
        return self.resets.spend()

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[ErrorCodes, str] | None:
        """Walk the frames that start in ``data``; a connection error to send instead of passing it on, or None."""
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            step = min(self._need - len(self._head), end - pos)
            self._head += view[pos : pos + step]
            pos += step
            if len(self._head) < self._need:
                break
            verdict = self._frame()
            if verdict is not None:
                return verdict
        return None

    def _frame(self) -> tuple[ErrorCodes, str] | None:
        head = self._head
        length = int.from_bytes(head[0:3], "big")
        kind, flags = head[3], head[4]
        if length > MAX_FRAME_SIZE:
            return ErrorCodes.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"
        if kind == _DATA and flags & _PADDED and length and self._need == _FRAME_HEADER:
            self._need += 1  # Read the pad length too: only then is it known whether any data is in it.
            return None
        pad = head[9] + 1 if self._need > _FRAME_HEADER else 0
        self._head = bytearray()
        self._need = _FRAME_HEADER
        self._skip = length - (pad > 0)  # the pad length byte, if read, was part of the payload
        cost = 0
        if kind == _RST_STREAM:
            if not self.resets.spend():
                return ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets"
        elif kind == _PING or kind == _PRIORITY or kind not in _KNOWN_TYPES:
            cost = 1
        elif kind == _SETTINGS:
            if flags & _ACK and length:
                return ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"
            cost = max(1, length // 6)
        elif kind == _WINDOW_UPDATE:
            if self._window_credit:
                self._window_credit -= 1
            else:
                cost = 1
        elif kind == _DATA:
            if length == pad and not flags & _END_STREAM:
                cost = 1
        elif kind == _HEADERS or kind == _CONTINUATION:
            if kind == _HEADERS or self._block is not None:
                self._block = (self._block or 0) + length if kind == _CONTINUATION else length
                if self._block > self.max_block:
                    return ErrorCodes.ENHANCE_YOUR_CALM, "header block too large"
            if flags & _END_HEADERS:
                self._block = None
            elif not length:
                cost = 1
        if cost and not self.control.spend(cost):
            return ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames"
        return None


def connection_error_code(exc: h2.exceptions.ProtocolError) -> ErrorCodes:
    """The error code for the GOAWAY answering ``exc`` (which h2 raised from ``receive_data``).

    RFC 9113 §4.3: a header block that cannot be decompressed is a COMPRESSION_ERROR (the HPACK state
    both ends share is broken). h2 reports these as PROTOCOL_ERROR; the HPACK error is their cause. An
    oversized header list is h2's ENHANCE_YOUR_CALM and stays one.
    """
    cause = exc.__cause__
    if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
        return ErrorCodes.COMPRESSION_ERROR
    return ErrorCodes(exc.error_code)


class H2Connection(h2.connection.H2Connection):
    """h2's server connection, with our settings and malformed requests as stream errors (RFC 9113 §8.1.1).

    The field rules of RFC 9113 §8.2-8.3 are ours (``multiplexed.RequestHead``; h2's own header checks
    are off). What h2 still checks of a request (content-length against DATA, trailers without
    END_STREAM) it raises as a connection error. Here, a frame that h2 rejects *after* its header block
    was decoded (so the HPACK state is intact) and that concerns one request is answered with
    RST_STREAM PROTOCOL_ERROR on that stream, and h2 goes on with the next frame. Everything else stays
    a connection error.

    ``on_reset`` is asked before each such reset (it charges the reset budget); when it answers False,
    the client is provoking resets faster than allowed and the connection ends (ENHANCE_YOUR_CALM).
    """

    # h2 remembers how each closed stream closed, so that frames still in flight for a stream it reset
    # are tolerated (RFC 9113 §5.4.2, §6.4). Its default, 65,536 streams, costs about 8 MB on a
    # long-lived connection; frames in flight arrive within a round trip, for which 1,024 is ample.
    MAX_CLOSED_STREAMS = 1024

    def __init__(
        self, max_concurrent_streams: int, max_header_list: int, on_reset: Callable[[], bool], connect_protocol: bool = False
    ) -> None:
        # h2's own header checks and normalisation are off: every rule they enforce is enforced once, for
        # HTTP/2 and HTTP/3 alike, where a request head is read (``multiplexed.RequestHead``), and our
        # responses are built valid (``stream_cycle``); run twice they were a fifth of a request's CPU.
        super().__init__(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        # Repeated header blocks are coded once per state of the HPACK table (``h2_hpack``).
        self.encoder = CachingEncoder()
        self.decoder = CachingDecoder(max_header_list)
        codes = h2.settings.SettingCodes
        # What the first SETTINGS frame advertises (RFC 9113 §6.5.2); SETTINGS_ENABLE_CONNECT_PROTOCOL:
        # extended CONNECT (RFC 8441 §3), for WebSockets on streams.
        initial_values = {
            codes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            codes.MAX_HEADER_LIST_SIZE: max_header_list,
            codes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
        }
        if connect_protocol:
            initial_values[codes.ENABLE_CONNECT_PROTOCOL] = 1
        self.local_settings = h2.settings.Settings(client=False, initial_values=initial_values)
        self._on_reset = on_reset

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        try:
            return super()._receive_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            if not self._malformed_request(frame, exc):
                raise
            stream_id = frame.stream_id
            try:
                self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
                if isinstance(frame, DataFrame) and frame.flow_controlled_length:
                    # h2 took the frame out of the connection window before rejecting it: give it back.
                    self.acknowledge_received_data(frame.flow_controlled_length, stream_id)
            except h2.exceptions.ProtocolError:
                raise exc from None  # The stream is in no state to reset: keep it a connection error.
            if not self._on_reset():
                raise h2.exceptions.DenialOfServiceError("too many malformed requests") from exc
            return [h2.events.StreamReset(stream_id=stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False)]

    def _malformed_request(self, frame: Frame, exc: h2.exceptions.ProtocolError) -> bool:
        """Whether h2 rejected ``frame`` for what one request says, not for the connection's state."""
        if isinstance(frame, DataFrame):
            # RFC 9113 §8.1.1: DATA contradicting content-length makes the request malformed.
            return isinstance(exc, h2.exceptions.InvalidBodyLengthError)
        if not isinstance(frame, HeadersFrame) or type(exc) is not h2.exceptions.ProtocolError:
            # Typed errors (too many streams, oversized header list, stream closed, ...) are h2's
            # connection errors, raised before or instead of decoding; they stay so.
            return False
        if isinstance(exc.__cause__, (HPACKError, IndexError, TypeError, UnicodeDecodeError)):
            return False  # The block could not be decoded: the HPACK state is lost (§4.3).
        # A plain ProtocolError once the stream exists was raised by the stream's own checks, after
        # decoding: field validation (§8.2), pseudo-headers (§8.3), content-length (§8.6 of RFC 9110),
        # trailers without END_STREAM (§8.1), a stream depending on itself (§5.3.1).
        return frame.stream_id in self.streams


__all__ = ["H2Connection", "InboundFrames", "connection_error_code", "request_problem"]
