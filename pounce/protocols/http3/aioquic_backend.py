"""The aioquic backend (``--http3-backend aioquic``, the default): aioquic's QuicConnection and H3Connection
behind the seam (``pounce.protocols.http3.seam``).

aioquic does the QUIC and HTTP/3 work; two things are changed, because the seam promises them and
aioquic does not do them its own way:

* receive windows follow the app, not the network. aioquic doubles a stream's (and the connection's)
  window whenever the peer has used half of it, whether or not anyone read the bytes, so a client
  could make us buffer any amount of request body. Here a request stream's credit is what the app has
  taken plus one window (``stream_window``), and the connection's is everything consumed plus
  ``connection_window``: unread body is bounded by those two numbers.
* the number of request streams a client may open at once is ours (``max_streams``), not aioquic's 128.

Both reach into aioquic internals (``_write_stream_limits``, ``_write_connection_limits``, ``Limit``),
known to work with aioquic 1.2 to 1.7; the ``h3`` extra pins aioquic below 2.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

from aioquic._buffer import Buffer
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, Setting, encode_frame
from aioquic.h3 import events as h3_events
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import SessionTicket

from pounce.protocols.http3 import seam

# Session tickets kept per worker for 0-RTT (``--http3-0rtt``); each is used once.
MAX_TICKETS = 4096


class _FlowControlledConnection(QuicConnection):
    """aioquic's connection, with receive credit granted as the app consumes (see the module docstring)."""

    stream_window = 0
    connection_window = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Request body delivered to the HTTP/3 layer and not yet taken by the app, per stream and in all.
        self.unconsumed: dict[int, int] = {}
        self.unconsumed_total = 0

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        limit = self._local_max_data
        target = limit.used - self.unconsumed_total + self.connection_window
        if target - limit.value >= self.connection_window // 2:
            limit.value = target
        # aioquic doubles the limit when ``used`` passes half of it; hide ``used`` from that rule only.
        used, limit.used = limit.used, 0
        try:
            super()._write_connection_limits(builder, space)
        finally:
            limit.used = used

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        if stream.stream_id % 4 != 0 or not stream.max_stream_data_local:
            super()._write_stream_limits(builder, space, stream)  # control and QPACK streams: aioquic's way
            return
        receiver = stream.receiver
        target = receiver.highest_offset - self.unconsumed.get(stream.stream_id, 0) + self.stream_window
        if target - stream.max_stream_data_local >= self.stream_window // 2:
            stream.max_stream_data_local = target
        highest, receiver.highest_offset = receiver.highest_offset, 0  # no doubling, as above
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            receiver.highest_offset = highest


class _H3Connection(H3Connection):
    """aioquic's H3 layer, advertising SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220) only when we can run
    a WebSocket on a stream (aioquic always does)."""

    def __init__(self, quic: QuicConnection, connect_protocol: bool) -> None:
        self._connect_protocol = connect_protocol
        super().__init__(quic)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if not self._connect_protocol:
            settings.pop(Setting.ENABLE_CONNECT_PROTOCOL, None)
        return settings


class AioquicSession:
    """One connection: ``seam.QuicSession`` over aioquic."""

    def __init__(self, quic: _FlowControlledConnection, original_cid: bytes, connect_protocol: bool = True) -> None:
        self._quic = quic
        self._h3 = _H3Connection(quic, connect_protocol)
        self._cids = [original_cid, quic.host_cid]
        self._events: list[seam.SessionEvent] = []

    def connection_ids(self) -> Sequence[bytes]:
        return self._cids

    def receive(self, data: bytes, addr: seam.Address, now: float) -> None:
        self._quic.receive_datagram(data, addr, now)
        self._translate()

    def opened(self) -> bool:
        return any(space.largest_received_packet >= 0 for space in self._quic._spaces.values())

    def handle_timer(self, now: float) -> None:
        self._quic.handle_timer(now)
        self._translate()

    def timer(self) -> float | None:
        return self._quic.get_timer()

    def datagrams(self, now: float) -> list[tuple[bytes, seam.Address]]:
        datagrams = self._quic.datagrams_to_send(now)
        self._translate()  # sending can end the connection (the close was sent, or the idle timeout)
        return datagrams

    def events(self) -> list[seam.SessionEvent]:
        events, self._events = self._events, []
        return events

    def _translate(self) -> None:
        quic = self._quic
        out = self._events
        while (event := quic.next_event()) is not None:
            if isinstance(event, (quic_events.StreamDataReceived, quic_events.StreamReset, quic_events.StopSendingReceived)):
                for h3_event in self._h3.handle_event(event):
                    if isinstance(h3_event, h3_events.DataReceived):
                        if h3_event.data:
                            size = len(h3_event.data)
                            quic.unconsumed[h3_event.stream_id] = quic.unconsumed.get(h3_event.stream_id, 0) + size
                            quic.unconsumed_total += size
                        out.append(seam.DataReceived(h3_event.stream_id, h3_event.data, h3_event.stream_ended))
                    elif isinstance(h3_event, h3_events.HeadersReceived):
                        out.append(seam.HeadersReceived(h3_event.stream_id, h3_event.headers, h3_event.stream_ended))
                if isinstance(event, (quic_events.StreamReset, quic_events.StopSendingReceived)) and event.stream_id % 4 == 0:
                    out.append(seam.StreamReset(event.stream_id, event.error_code))
            elif isinstance(event, quic_events.ConnectionIdIssued):
                out.append(seam.ConnectionIdIssued(event.connection_id))
            elif isinstance(event, quic_events.ConnectionIdRetired):
                out.append(seam.ConnectionIdRetired(event.connection_id))
            elif isinstance(event, quic_events.HandshakeCompleted):
                out.append(seam.HandshakeCompleted(event.alpn_protocol, event.early_data_accepted))
            elif isinstance(event, quic_events.ConnectionTerminated):
                out.append(seam.ConnectionTerminated(event.error_code, event.reason_phrase))

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self._h3.send_headers(stream_id, headers, end_stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self._h3.send_data(stream_id, data, end_stream)

    def unsent(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender.highest_offset)

    def consumed(self, stream_id: int, size: int) -> None:
        quic = self._quic
        left = quic.unconsumed.get(stream_id, 0) - size
        if left > 0:
            quic.unconsumed[stream_id] = left
        else:
            quic.unconsumed.pop(stream_id, None)
        quic.unconsumed_total -= size

    def forget(self, stream_id: int) -> None:
        """The stream is over for us: body nobody will read no longer holds the connection's window."""
        left = self._quic.unconsumed.pop(stream_id, 0)
        self._quic.unconsumed_total -= left

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.forget(stream_id)
        quic = self._quic
        quic.reset_stream(stream_id, error_code)
        stream = quic._streams.get(stream_id)
        if stream is not None and not stream.receiver.is_finished:
            quic.stop_stream(stream_id, error_code)

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        self.forget(stream_id)
        quic = self._quic
        stream = quic._streams.get(stream_id)
        if stream is not None and not stream.receiver.is_finished:
            quic.stop_stream(stream_id, error_code)

    def ping(self) -> None:
        self._quic.send_ping(0)

    def goaway(self, first_refused: int) -> None:
        control = self._h3._local_control_stream_id
        if control is not None and self._quic._state == QuicConnectionState.CONNECTED:
            self._quic.send_stream_data(control, encode_frame(FrameType.GOAWAY, encode_uint_var(first_refused)))

    def close(self, error_code: int, reason: str) -> None:
        self._quic.close(error_code=error_code, reason_phrase=reason)


class _TicketStore:
    """Session tickets for resumption and 0-RTT, bounded, each handed out once (which limits replay)."""

    def __init__(self) -> None:
        self._tickets: collections.OrderedDict[bytes, SessionTicket] = collections.OrderedDict()

    def add(self, ticket: SessionTicket) -> None:
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > MAX_TICKETS:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> SessionTicket | None:
        return self._tickets.pop(label, None)


class AioquicBackend:
    """``seam.QuicBackend`` over aioquic."""

    name = "aioquic"

    def __init__(
        self,
        *,
        certfile: str,
        keyfile: str | None,
        password: str | None,
        idle_timeout: float,
        max_streams: int,
        stream_window: int,
        connection_window: int,
        zero_rtt: bool,
        retry: bool,
        connect_protocol: bool = True,
    ) -> None:
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=H3_ALPN,
            idle_timeout=idle_timeout,
            max_data=connection_window,
            max_stream_data=stream_window,
        )
        configuration.load_cert_chain(certfile, keyfile, password)
        self.configuration = configuration
        self.connection_id_length = configuration.connection_id_length
        self.max_streams = max_streams
        self.stream_window = stream_window
        self.connection_window = connection_window
        self.connect_protocol = connect_protocol  # extended CONNECT (RFC 9220) advertised
        self._retry = QuicRetryTokenHandler() if retry else None
        # Without a ticket store aioquic issues no session tickets, and so accepts no 0-RTT data.
        self._tickets = _TicketStore() if zero_rtt else None

    def supports_version(self, version: int) -> bool:
        return version in self.configuration.supported_versions

    def is_initial(self, first_byte: int, version: int) -> bool:
        # RFC 9000 §17.2: long packet type in bits 4-5; QUIC v2 (RFC 9369 §3.2) renumbered them.
        packet_type = (first_byte & 0x30) >> 4
        return packet_type == (1 if version == QuicProtocolVersion.VERSION_2 else 0)

    def version_negotiation(self, packet: seam.InitialPacket) -> bytes:
        return encode_quic_version_negotiation(
            source_cid=packet.destination_cid,
            destination_cid=packet.source_cid,
            supported_versions=self.configuration.supported_versions,
        )

    def accept(
        self, data: bytes, packet: seam.InitialPacket, addr: seam.Address, now: float
    ) -> AioquicSession | bytes | None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self.connection_id_length)
        except ValueError:
            return None
        if header.packet_type != QuicPacketType.INITIAL or header.version is None:
            return None
        original_cid: bytes | None = packet.destination_cid
        retry_source_cid: bytes | None = None
        if self._retry is not None:
            if not header.token:
                # RFC 9000 §8.1.2: prove the address first; the client's next Initial carries the token.
                source_cid = os.urandom(8)
                token = self._retry.create_token(
                    address=addr,
                    original_destination_connection_id=packet.destination_cid,
                    retry_source_connection_id=source_cid,
                    now=now,
                )
                return encode_quic_retry(
                    version=header.version,
                    source_cid=source_cid,
                    destination_cid=packet.source_cid,
                    original_destination_cid=packet.destination_cid,
                    retry_token=token,
                )
            try:
                original_cid = self._retry.validate_token(
                    address=addr, destination_cid=packet.destination_cid, token=header.token, now=now
                )
            except ValueError:
                return self._initial_close(packet, QuicErrorCode.INVALID_TOKEN)  # RFC 9000 §8.1.3
            retry_source_cid = packet.destination_cid
        tickets = self._tickets
        quic = _FlowControlledConnection(
            configuration=self.configuration,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_source_cid,
            session_ticket_fetcher=tickets.pop if tickets is not None else None,
            session_ticket_handler=tickets.add if tickets is not None else None,
        )
        quic.stream_window = self.stream_window
        quic.connection_window = self.connection_window
        # Advertised in the transport parameters, which are written at the first datagram: set it now.
        quic._local_max_streams_bidi.value = self.max_streams
        return AioquicSession(quic, packet.destination_cid, self.connect_protocol)

    def refuse(self, packet: seam.InitialPacket) -> bytes | None:
        return self._initial_close(packet, QuicErrorCode.CONNECTION_REFUSED)

    def _initial_close(self, packet: seam.InitialPacket, error_code: int) -> bytes:
        """An Initial carrying CONNECTION_CLOSE, in keys derived from the client's chosen connection ID."""
        crypto = CryptoPair()
        crypto.setup_initial(cid=packet.destination_cid, is_client=False, version=packet.version)
        builder = QuicPacketBuilder(
            host_cid=packet.destination_cid,
            is_client=False,
            max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
            peer_cid=packet.source_cid,
            version=packet.version,
        )
        builder.start_packet(QuicPacketType.INITIAL, crypto)
        buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=16)
        buf.push_uint_var(error_code)
        buf.push_uint_var(QuicFrameType.PADDING)
        buf.push_uint_var(0)
        datagrams, _ = builder.flush()
        return datagrams[0]


__all__ = ["AioquicBackend", "AioquicSession"]
