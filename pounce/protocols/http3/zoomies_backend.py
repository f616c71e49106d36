"""The bengal-zoomies backend (``--http3-backend zoomies``, Python >= 3.14): zoomies' QuicConnection and
H3Connection behind the seam (``pounce.protocols.http3.seam``).

zoomies 0.3.x does the handshake, packet protection, ACKs, loss recovery and QPACK (static table only
here); it talks only to zoomies clients (README "Backends and interop"). What the seam promises and
zoomies does not do, and what this module does instead:

* flow control: zoomies sends no MAX_DATA, MAX_STREAM_DATA or MAX_STREAMS and cannot parse them (it
  skips an unknown frame as if it had a length); its receive limits are lifetime totals. So we
  advertise unlimited credit (``_UNBOUNDED``; a zoomies client stops for good at a finite one) and
  bound what a connection holds ourselves (``_check_bounds``): a request stream holding more than
  ``stream_window`` (unread body, a DATA frame still being assembled, as zoomies delivers one only
  once complete, and data out of order), or taking the connection past ``connection_window``, is
  reset with H3_EXCESSIVE_LOAD (RFC 9114 §8.1). ``consumed`` frees our count only.
* streams: zoomies advertises 100 of each direction, never raises it, and keeps every stream's state
  (sent bytes included) until the connection ends. We retire a request stream once it is over both
  ways (``_maybe_retire``: zoomies' state dropped, late frames ignored), raise MAX_STREAMS ourselves
  as streams retire, and close a connection that opens more than it was given (STREAM_LIMIT_ERROR,
  RFC 9000 §4.6). Sent bytes of a stream whose FIN is acknowledged are dropped (``_release_finished``).
* send credit: the peer's initial MAX_DATA and MAX_STREAM_DATA are, for zoomies, final: we keep
  within them, and what does not fit waits here (``unsent``; the protocol's write timeout resets a
  stream that never gets through). zoomies puts each ``send_stream_data`` call in one packet, however
  big, so it gets pieces that fit a 1200-byte datagram (``_PIECE``).
* loss: zoomies derives the AEAD nonce from the packet number it expects, not the one received (RFC
  9001 §5.3), so after one lost 1-RTT packet its receiver decrypts nothing more (and it resends lost
  STREAM data at the stream's end, not its offset). We cannot repair that; we make loss unlikely where
  zoomies can work at all (one host, a LAN): at most ``_IN_FLIGHT`` bytes unacknowledged, as
  zoomies' congestion window grows until a loss, and only ack-eliciting packets are acknowledged
  (``AckingConnection``: zoomies and its client acknowledge each other's ACKs without end).
* frames zoomies cannot send: RESET_STREAM, STOP_SENDING, PING, MAX_STREAMS and the application
  CONNECTION_CLOSE (0x1d) are built here and sent once in a 1-RTT packet (``_packet``); GOAWAY and
  the SETTINGS that must come first (RFC 9114 §5.2, §6.2.1) on a control stream we open. The peer's
  control and QPACK streams are not read (zoomies cannot parse a stream type): a client's SETTINGS
  and GOAWAY are ignored.
* connection IDs: zoomies keeps the client's first destination connection ID as its own, so only
  Initials whose destination connection ID has our routing length (8 bytes) are accepted. Version
  Negotiation and the CONNECTION_REFUSED close are built here (zoomies has neither).
* not available: 0-RTT and Retry (``options.http3_problem`` refuses them), ALPN, connection ID
  authentication (RFC 9000 §7.3), and RFC 9000 clients: zoomies reads every packet number as 4 bytes
  (§17.1 allows 1 to 4; aioquic's first Initial has 2), so their Initial does not decrypt
  (``opened`` is False and the endpoint drops it).

This reaches into zoomies internals (``_stream_send_queue``, ``_encrypt_short_packet``, ``_send_queue``,
``_tls_ctx``, ``_streams``, ``_stream_buffers``...), as read in bengal-zoomies 0.3.3; the ``h3`` extra
pins it below 0.4.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Sequence
from typing import Any

from zoomies import QuicConfiguration
from zoomies import events as zevents
from zoomies.crypto import CryptoPair
from zoomies.encoding import Buffer
from zoomies.h3 import H3Connection
from zoomies.packet.builder import push_initial_packet_header
from zoomies.recovery import SentPingFrame

from pounce.protocols.http3 import seam
from pounce.protocols.http3.zoomies_quic import AckingConnection, varint

QUIC_VERSION_1 = 0x00000001  # the only version zoomies speaks
CID_LENGTH = 8  # zoomies issues 8-byte connection IDs; see the module docstring for the client's
# One STREAM frame per packet, in a 1200-byte datagram: zoomies allows 1154 bytes of frames, and a
# STREAM frame's type, stream ID, offset and length take at most 25.
_PIECE = 1100
# Unacknowledged bytes (in flight plus queued in zoomies) a connection may have: 40 datagrams, well
# within a default Linux socket receive buffer (see the module docstring). What does not fit waits
# here, where ``unsent`` and a reset can see it.
_IN_FLIGHT = 48000
# zoomies' receive limits are lifetime totals with no MAX_DATA to raise them (see the module
# docstring): 2**62 - 1, the largest QUIC varint, so that only our own bounds apply.
_UNBOUNDED = (1 << 62) - 1
_CONTROL_STREAM = 3  # our first unidirectional stream (RFC 9000 §2.1: server-initiated, uni)
_H3_GOAWAY = 0x07
_H3_SETTINGS = 0x04
_STREAM_TYPE_CONTROL = 0x00
_CONNECTION_REFUSED = 0x02  # RFC 9000 §20.1
_STREAM_LIMIT_ERROR = 0x04
# The streams of each direction zoomies lets a client open (its initial_max_streams_bidi and _uni,
# which it never raises: see ``ZoomiesSession._maybe_retire`` for the bidirectional ones).
_PEER_STREAMS = 100


class ZoomiesSession:
    """One connection: ``seam.QuicSession`` over zoomies."""

    def __init__(self, quic: Any, original_cid: bytes, stream_window: int, connection_window: int) -> None:
        self._quic = quic
        # zoomies' H3 layer frames and parses; what it frames comes to ``send_stream_data`` below.
        self._h3: Any = H3Connection(self, is_client=False)
        self._cids: list[bytes] = [original_cid]
        self._events: list[seam.SessionEvent] = []
        self.stream_window = stream_window
        self.connection_window = connection_window
        # Bytes framed for a stream that zoomies has not been given yet, and whether FIN follows them.
        self._outbox: dict[int, bytearray] = {}
        self._fin: set[int] = set()
        self._finished: set[int] = set()  # request streams whose FIN zoomies has: see ``_release_finished``
        self._sent: collections.Counter[int] = collections.Counter()  # bytes given to zoomies, per stream
        # Request body delivered to the protocol and not yet taken by the app, per stream and in all.
        self._unconsumed: dict[int, int] = {}
        self._unconsumed_total = 0
        self._discard: set[int] = set()  # request streams we ended: what still comes for them is dropped
        self._reset: set[int] = set()  # request streams we sent RESET_STREAM on
        self._control_open = False
        self._closed = False
        self._terminated: seam.ConnectionTerminated | None = None  # our close, reported once it is sent
        # Bytes zoomies and its H3 layer hold for a client stream (out of order, or a frame being
        # assembled), as last counted, per stream and in all: see ``_check_bounds``.
        self._buffered: dict[int, int] = {}
        self._buffered_total = 0
        # Request streams done one way or the other; done both ways, a stream is retired: zoomies'
        # state for it is dropped, and whatever still comes for it ignored.
        self._recv_done: set[int] = set()
        self._send_done: set[int] = set()
        self._retired_floor = 0  # every request stream below this index is retired, and those in:
        self._retired_above: set[int] = set()
        self._retired_count = 0
        self._stream_limit = _PEER_STREAMS  # MAX_STREAMS (bidirectional) as we last advertised it
        quic.touched = set()

    # seam.QuicSession
    def connection_ids(self) -> Sequence[bytes]:
        return self._cids

    def receive(self, data: bytes, addr: seam.Address, now: float) -> None:
        self._translate(self._quic.datagram_received(data, addr, now=now))
        self._check_bounds()

    def opened(self) -> bool:
        # zoomies counts packet numbers only once a packet decrypted.
        quic = self._quic
        return bool(quic._initial_recv_pn or quic._handshake_recv_pn or quic._one_rtt_recv_pn)

    def handle_timer(self, now: float) -> None:
        self._translate(self._quic.handle_timer(now))

    def timer(self) -> float | None:
        at = self._quic.get_timer()
        return None if at is None else float(at)

    def datagrams(self, now: float) -> list[tuple[bytes, seam.Address]]:
        quic = self._quic
        self._feed()
        packets = quic.send_datagrams(now=max(now, 1e-9))  # zoomies warns about a clock at 0
        if self._finished:
            self._release_finished()
        addr = (str(quic._peer_addr[0]), int(quic._peer_addr[1]))
        if self._terminated is not None:  # our close is in ``packets``: now the connection is over
            self._events.append(self._terminated)
            self._terminated = None
        return [(bytes(packet), addr) for packet in packets]

    def events(self) -> list[seam.SessionEvent]:
        events, self._events = self._events, []
        return events

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self._h3.send_headers(stream_id, headers, end_stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if data:
            self._h3.send_data(stream_id, data, end_stream)
        elif end_stream:
            self.send_stream_data(stream_id, b"", True)  # FIN alone, no empty DATA frame

    def unsent(self, stream_id: int) -> int:
        waiting = len(self._outbox.get(stream_id, b""))
        for queued_id, data, _ in self._quic._stream_send_queue:
            if queued_id == stream_id:
                waiting += len(data)
        return waiting

    def consumed(self, stream_id: int, size: int) -> None:
        # Our count only: zoomies has no MAX_STREAM_DATA to send (see the module docstring).
        left = self._unconsumed.get(stream_id, 0) - size
        if left > 0:
            self._unconsumed[stream_id] = left
        else:
            self._unconsumed.pop(stream_id, None)
        self._unconsumed_total -= size

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if stream_id in self._reset or self._retired(stream_id):
            return
        self._reset.add(stream_id)
        self._drop_output(stream_id)
        frames = varint(0x04) + varint(stream_id) + varint(error_code) + varint(self._final_size(stream_id))
        if not self._receive_done(stream_id):
            frames += varint(0x05) + varint(stream_id) + varint(error_code)
        self._forget_input(stream_id)
        self._send_frames(frames)

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        if self._retired(stream_id):
            return
        wanted = not self._receive_done(stream_id) and stream_id not in self._discard
        self._forget_input(stream_id)
        if wanted:
            self._send_frames(varint(0x05) + varint(stream_id) + varint(error_code))

    def ping(self) -> None:
        self._send_frames(b"\x01")

    def goaway(self, first_refused: int) -> None:
        if self._control_open and not self._closed:
            payload = varint(first_refused)
            self.send_stream_data(_CONTROL_STREAM, varint(_H3_GOAWAY) + varint(len(payload)) + payload, False)

    def close(self, error_code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        quic = self._quic
        if self._one_rtt() and error_code >= 0x100:
            # An HTTP/3 error code belongs in the application CONNECTION_CLOSE (0x1d, RFC 9000 §19.19);
            # zoomies' own close writes 0x1c, so we write the frame and mark the connection closed.
            # zoomies reads a 0x1d frame as if it had 0x1c's frame type field: with an empty reason
            # phrase and one PADDING byte after it, it reads the right error code (the phrase is lost).
            self._packet(varint(0x1D) + varint(error_code) + varint(0) + b"\x00")
            quic._state = type(quic._state).CLOSED
        else:
            # A transport error (0x1c is right), or before 1-RTT, where an application error is sent
            # as APPLICATION_ERROR (RFC 9000 §10.2.3).
            quic.close(error_code=error_code if error_code < 0x100 else 0x0C, reason=reason)

    def _violation(self, error_code: int, reason: str) -> None:
        """Close the connection for what the peer did; the protocol learns of it once the close is sent."""
        if not self._closed:
            self.close(error_code, reason)
            self._terminated = seam.ConnectionTerminated(error_code, reason)

    # zoomies' H3StreamSender: what its H3 layer frames, and our own control stream, wait in the outbox.
    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if stream_id in self._reset or self._retired(stream_id):
            return
        self._outbox.setdefault(stream_id, bytearray()).extend(data)
        if end_stream:
            self._fin.add(stream_id)

    # Output
    def _feed(self) -> None:
        """Hand zoomies what fits: its send queue, our pieces, and the peer's (final) credit."""
        quic = self._quic
        if not self._one_rtt() or self._closed or not self._outbox:
            return
        params = quic._tls_ctx._peer_transport_params if quic._tls_ctx is not None else None
        stream_limit = getattr(params, "initial_max_stream_data_bidi_local", None) or 0
        connection_room = quic._peer_max_data - quic._peer_data_sent if quic._peer_max_data > 0 else _UNBOUNDED
        for stream_id in list(self._outbox):
            buffer = self._outbox[stream_id]
            while quic._cc.bytes_in_flight + quic._stream_send_queue_bytes < _IN_FLIGHT:
                room = min(_PIECE, connection_room)
                if stream_id % 4 == 0 and stream_limit:
                    room = min(room, stream_limit - self._sent[stream_id])
                piece = bytes(buffer[:room]) if room > 0 else b""
                fin = stream_id in self._fin and len(piece) == len(buffer)
                if not piece and not fin:
                    break  # out of the peer's credit (or nothing left): it waits, see ``unsent``
                del buffer[: len(piece)]
                quic.send_stream_data(stream_id, piece, fin)
                self._sent[stream_id] += len(piece)
                connection_room -= len(piece)
                if fin:
                    self._fin.discard(stream_id)
                    self._sent.pop(stream_id, None)
                    if stream_id % 4 == 0:
                        self._finished.add(stream_id)
                    break
                if not buffer:
                    break
            if not buffer and stream_id not in self._fin:
                del self._outbox[stream_id]

    def _send_frames(self, frames: bytes) -> None:
        if self._one_rtt() and not self._closed:
            self._packet(frames)

    def _packet(self, frames: bytes) -> None:
        """One 1-RTT packet of frames zoomies has no sender for, through its packet protection. It is
        recorded as a PING, which zoomies never sends again: neither is this (see the module docstring)."""
        quic = self._quic
        quic._send_queue.append(quic._encrypt_short_packet(frames, (SentPingFrame(),)))

    def _release_finished(self) -> None:
        """Drop zoomies' copy of what finished streams sent once none of it can need resending.

        zoomies keeps every byte sent on a stream, for retransmission, until the connection ends; a
        stream whose FIN went out and none of whose packets are in flight any more needs none of them.
        """
        quic = self._quic
        in_flight = {
            frame.stream_id
            for packet in quic._application_space.sent_packets.values()
            for frame in packet.frames
            if getattr(frame, "stream_id", None) in self._finished
        }
        in_flight.update(stream_id for stream_id, _, _ in quic._stream_send_queue)  # not even sent yet
        for stream_id in [sid for sid in self._finished if sid not in in_flight]:
            self._finished.discard(stream_id)
            self._release(stream_id)

    def _release(self, stream_id: int) -> None:
        stream = self._quic._streams.get(stream_id)
        if stream is not None:
            send = stream._send
            send._send_buffer = bytearray()
            send._buffer_start = send.sent_end  # older offsets: nothing to resend (get_data gives b"")
        self._send_done.add(stream_id)
        self._maybe_retire(stream_id)

    # Request streams: retirement and MAX_STREAMS
    def _maybe_retire(self, stream_id: int) -> None:
        if stream_id not in self._send_done or stream_id not in self._recv_done:
            return
        self._send_done.discard(stream_id)
        self._recv_done.discard(stream_id)
        self._discard.discard(stream_id)
        self._reset.discard(stream_id)
        self._forget_stream(stream_id)
        index = stream_id >> 2
        self._retired_above.add(index)
        while self._retired_floor in self._retired_above:
            self._retired_above.discard(self._retired_floor)
            self._retired_floor += 1
        self._retired_count += 1
        # RFC 9000 §4.6: zoomies never raises the 100 streams it advertises; we do, as streams retire,
        # by half the limit at a time. Alone in its packet: zoomies (which ignores the limit anyway)
        # cannot parse MAX_STREAMS and drops the rest of a packet after it.
        target = self._retired_count + _PEER_STREAMS
        if target - self._stream_limit >= _PEER_STREAMS // 2 and self._one_rtt() and not self._closed:
            self._stream_limit = target
            self._packet(varint(0x12) + varint(target))

    def _retired(self, stream_id: int) -> bool:
        if stream_id % 4:
            return False  # only request streams retire
        index = stream_id >> 2
        return index < self._retired_floor or index in self._retired_above

    def _forget_stream(self, stream_id: int) -> None:
        """Drop zoomies' (and our) state for a client stream."""
        quic = self._quic
        quic._streams.pop(stream_id, None)
        quic._stream_max_offsets.pop(stream_id, None)
        self._h3._stream_buffers.pop(stream_id, None)
        self._buffered_total -= self._buffered.pop(stream_id, 0)
        self._unconsumed_total -= self._unconsumed.pop(stream_id, 0)

    def _drop_output(self, stream_id: int) -> None:
        self._outbox.pop(stream_id, None)
        self._fin.discard(stream_id)
        self._sent.pop(stream_id, None)
        quic = self._quic
        kept = [item for item in quic._stream_send_queue if item[0] != stream_id]
        if len(kept) != len(quic._stream_send_queue):
            quic._stream_send_queue = kept
            quic._stream_send_queue_bytes = sum(len(data) for _, data, _ in kept)
        self._finished.discard(stream_id)
        self._release(stream_id)  # reset: what was sent is not sent again

    def _final_size(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)
        return int(stream._send.sent_end) if stream is not None else 0

    def _receive_done(self, stream_id: int) -> bool:
        stream = self._quic._streams.get(stream_id)
        return stream is not None and bool(stream.receive_complete)

    def _one_rtt(self) -> bool:
        quic = self._quic
        return quic._one_rtt_crypto is not None and quic._state == type(quic._state).ONE_RTT

    # Input
    def _forget_input(self, stream_id: int) -> None:
        """The request side of the stream is over for us: drop what is buffered and what still comes."""
        self._h3._stream_buffers.pop(stream_id, None)
        left = self._unconsumed.pop(stream_id, 0)
        self._unconsumed_total -= left
        stream = self._quic._streams.get(stream_id)
        if stream is not None:
            stream._recv._chunks.clear()  # out of order, never to be read
        self._buffered_total -= self._buffered.pop(stream_id, 0)
        if not self._receive_done(stream_id):
            self._discard.add(stream_id)
        self._recv_done.add(stream_id)  # for us: what still comes is dropped, so it can retire
        self._maybe_retire(stream_id)

    def _translate(self, quic_events: list[Any]) -> None:
        out = self._events
        for event in quic_events:
            stream_id = getattr(event, "stream_id", 1)
            if self._retired(stream_id):
                continue  # a late or repeated frame for a stream that is over: see ``_check_bounds``
            if isinstance(event, zevents.StreamDataReceived):
                if stream_id % 4 == 0:
                    self._request_data(event)
                    if event.end_stream:
                        self._recv_done.add(stream_id)
                        self._maybe_retire(stream_id)
                # Peer-initiated unidirectional streams (control, QPACK) are not read: see the docstring.
            elif isinstance(event, (zevents.StreamReset, zevents.StopSendingReceived)):
                if event.stream_id % 4 == 0:
                    out.append(seam.StreamReset(event.stream_id, event.error_code))
                    if isinstance(event, zevents.StreamReset):
                        self._forget_input(event.stream_id)
                        self._discard.discard(event.stream_id)  # nothing follows a RESET_STREAM
                        self._recv_done.add(stream_id)
                        self._maybe_retire(stream_id)
            elif isinstance(event, zevents.ConnectionIdIssued):
                self._cids.append(event.connection_id)
                out.append(seam.ConnectionIdIssued(event.connection_id))
            elif isinstance(event, zevents.ConnectionIdRetired):
                out.append(seam.ConnectionIdRetired(event.connection_id))
            elif isinstance(event, zevents.HandshakeComplete):
                self._open_control_stream()
                out.append(seam.HandshakeCompleted(None, False))  # zoomies negotiates no ALPN
            elif isinstance(event, zevents.ConnectionClosed):
                self._closed = True
                out.append(seam.ConnectionTerminated(event.error_code, event.reason or ""))

    def _request_data(self, event: Any) -> None:
        stream_id = event.stream_id
        if stream_id in self._discard:
            return
        out = self._events
        for h3_event in self._h3.handle_event(event):
            if isinstance(h3_event, zevents.H3HeadersReceived):
                out.append(seam.HeadersReceived(stream_id, list(h3_event.headers), h3_event.end_stream))
            elif isinstance(h3_event, zevents.H3DataReceived):
                if h3_event.data:
                    size = len(h3_event.data)
                    self._unconsumed[stream_id] = self._unconsumed.get(stream_id, 0) + size
                    self._unconsumed_total += size
                out.append(seam.DataReceived(stream_id, h3_event.data, h3_event.end_stream))

    def _check_bounds(self) -> None:
        """The bounds zoomies' missing flow control leaves to us (see the module docstring), for the
        client streams the last datagram touched: the stream limit we advertised (RFC 9000 §4.6), and
        what a stream, and the connection, may hold."""
        quic = self._quic
        touched, quic.touched = quic.touched, set()
        for stream_id in touched:
            if stream_id % 2 or self._closed:
                continue  # ours (server-initiated)
            if self._retired(stream_id):
                self._forget_stream(stream_id)  # zoomies made it anew for a late frame
                continue
            limit = self._stream_limit if stream_id % 4 == 0 else _PEER_STREAMS
            if stream_id >> 2 >= limit:
                self._violation(_STREAM_LIMIT_ERROR, "stream limit exceeded")
                return
            stream = quic._streams.get(stream_id)
            if stream_id in self._discard:
                if stream is not None:
                    stream._recv._chunks.clear()  # not wanted (we stopped it), so not kept either
                continue
            out_of_order = sum(len(data) for _, data in stream._recv._chunks) if stream is not None else 0
            buffered = out_of_order + len(self._h3._stream_buffers.get(stream_id, b""))
            self._buffered_total += buffered - self._buffered.get(stream_id, 0)
            self._buffered[stream_id] = buffered
            held = buffered + self._unconsumed.get(stream_id, 0)
            if held <= self.stream_window and self._buffered_total + self._unconsumed_total <= self.connection_window:
                continue
            if stream_id % 4 == 0:
                self.reset_stream(stream_id, seam.H3_EXCESSIVE_LOAD)
                self._events.append(seam.StreamReset(stream_id, seam.H3_EXCESSIVE_LOAD))
            else:  # a control or QPACK stream cannot be reset alone (RFC 9114 §6.2.1)
                self._violation(seam.H3_EXCESSIVE_LOAD, "unidirectional stream over its window")
                return

    def _open_control_stream(self) -> None:
        if self._control_open:
            return
        self._control_open = True
        # RFC 9114 §6.2.1: the stream type, then SETTINGS (empty: no dynamic QPACK table, defaults).
        self.send_stream_data(_CONTROL_STREAM, varint(_STREAM_TYPE_CONTROL) + varint(_H3_SETTINGS) + varint(0), False)


class ZoomiesBackend:
    """``seam.QuicBackend`` over zoomies."""

    name = "zoomies"
    connection_id_length = CID_LENGTH

    def __init__(
        self,
        *,
        certfile: str,
        keyfile: str | None,
        password: str | None,
        idle_timeout: float,
        stream_window: int,
        connection_window: int,
    ) -> None:
        with open(certfile, "rb") as f:
            certificate = f.read()
        private_key = certificate
        if keyfile is not None:
            with open(keyfile, "rb") as f:
                private_key = f.read()
        if password is not None:
            private_key = _decrypt_key(private_key, password)
        self.configuration = QuicConfiguration(
            is_client=False,
            certificate=certificate,
            private_key=private_key,
            idle_timeout=idle_timeout,
            max_data=_UNBOUNDED,
            max_stream_data=_UNBOUNDED,
        )
        self.stream_window = stream_window
        self.connection_window = connection_window

    def supports_version(self, version: int) -> bool:
        return version == QUIC_VERSION_1

    def is_initial(self, first_byte: int, version: int) -> bool:
        return (first_byte & 0x30) >> 4 == 0  # RFC 9000 §17.2: long packet type, bits 4-5

    def version_negotiation(self, packet: seam.InitialPacket) -> bytes:
        # RFC 8999 §6 (zoomies builds none): version 0, the client's connection IDs swapped, ours.
        dcid, scid = packet.source_cid, packet.destination_cid
        return b"\xc0" + bytes(4) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + QUIC_VERSION_1.to_bytes(4, "big")

    def accept(
        self, data: bytes, packet: seam.InitialPacket, addr: seam.Address, now: float
    ) -> ZoomiesSession | bytes | None:
        if len(packet.destination_cid) != CID_LENGTH:
            return None  # zoomies would keep it as our connection ID, which routing could not find
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            quic = AckingConnection(self.configuration)
        return ZoomiesSession(quic, packet.destination_cid, self.stream_window, self.connection_window)

    def refuse(self, packet: seam.InitialPacket) -> bytes | None:
        """An Initial carrying CONNECTION_CLOSE (CONNECTION_REFUSED), in the client's Initial keys."""
        crypto: Any = CryptoPair()
        crypto.setup_initial(cid=packet.destination_cid, is_client=False)
        payload = varint(0x1C) + varint(_CONNECTION_REFUSED) + varint(0) + varint(0)
        payload += b"\x00" * 16  # PADDING: header protection samples 16 bytes past the packet number
        header = Buffer()
        push_initial_packet_header(
            header,
            destination_cid=packet.source_cid,
            source_cid=packet.destination_cid,
            token=b"",
            payload_length=4 + len(payload) + 16,  # packet number, payload, AEAD tag
        )
        return bytes(crypto.encrypt_packet(bytes(header.data), payload, 0))


def _decrypt_key(pem: bytes, password: str) -> bytes:
    """zoomies takes an unencrypted PEM key: decrypt it with ``--ssl-keyfile-password`` here."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem, password.encode())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


__all__ = ["ZoomiesBackend", "ZoomiesSession"]
