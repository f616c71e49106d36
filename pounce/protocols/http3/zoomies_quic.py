"""zoomies' QUIC connection, acknowledging as RFC 9000 §13.2.1 says (for ``zoomies_backend``), and the
QUIC varint its hand-built frames use.

Apart from the backend because it is the one place that subclasses a zoomies class: what it overrides
(``_handle_short``, ``_parse_payload_frames``, ``_get_or_create_stream``) is zoomies 0.3.3's internals.
"""

from __future__ import annotations

from typing import Any

from zoomies import QuicConnection
from zoomies.encoding import Buffer
from zoomies.frames.ack import pull_ack_frame


def varint(value: int) -> bytes:
    buf = Buffer()
    buf.push_uint_var(value)
    return bytes(buf.data)


def only_acks(payload: bytes) -> bool:
    """Whether a packet's frames are ACKs and PADDING only: a packet nobody must acknowledge."""
    buf = Buffer(data=payload)
    try:
        while not buf.eof():
            frame_type = buf.pull_uint_var()
            if frame_type == 0x00:
                continue
            if frame_type not in (0x02, 0x03):
                return False
            pull_ack_frame(buf)
            if frame_type == 0x03:  # ECN counts
                for _ in range(3):
                    buf.pull_uint_var()
    except ValueError:
        return False
    return True


class AckingConnection(QuicConnection):  # type: ignore[misc]  # zoomies is untyped for mypy (< 3.14)
    """zoomies' connection, acknowledging only ack-eliciting packets (RFC 9000 §13.2.1).

    zoomies acknowledges every 1-RTT packet, ACK-only ones included, and so does its client: each
    ACK answers the last, an ACK storm that overruns socket buffers, and a lost packet is fatal to
    zoomies (see the module docstring). Here a packet of ACKs alone leaves the ACK state as it was.
    """

    _acks_only = False
    _ack_needed_application: bool  # zoomies': an ACK goes out with the next datagrams

    def _handle_short(self, data: bytes, buf: Any, header: Any, events: list[Any]) -> None:
        before = self._ack_needed_application
        self._acks_only = False
        super()._handle_short(data, buf, header, events)
        if self._acks_only:
            self._ack_needed_application = before

    def _parse_payload_frames(self, payload: bytes, events: list[Any], **kwargs: Any) -> None:
        self._acks_only = only_acks(payload)
        super()._parse_payload_frames(payload, events, **kwargs)

    # The streams a datagram touched, for ``ZoomiesSession._check_bounds``: zoomies makes a stream's
    # state at its first frame and keeps out-of-order data in it, and tells nobody.
    touched: set[int]

    def _get_or_create_stream(self, stream_id: Any) -> Any:
        self.touched.add(stream_id.value)
        return super()._get_or_create_stream(stream_id)


__all__ = ["AckingConnection", "only_acks", "varint"]
