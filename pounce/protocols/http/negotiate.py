"""``--http2``: HTTP/1.1 and HTTP/2 on one port.

The protocol the server creates is the chosen HTTP/1.1 protocol (``--http auto``/``fast`` or ``h11``)
with a decision at the start of each connection, and none afterwards:

* over TLS, ALPN decides: a client that negotiated ``h2`` gets ``H2Protocol`` at once;
* in cleartext, the first bytes decide: a connection that opens with the HTTP/2 client preface
  (RFC 9113 §3.3, "prior knowledge"; it may arrive split across packets) is handed to
  ``H2Protocol``, anything else is served as HTTP/1.1. ``Upgrade: h2c`` is not performed (as Uvicorn).

The sniffing ``data_received`` is an instance attribute that removes itself after the first bytes,
so HTTP/1.1 requests after that run exactly the code they run without ``--http2``. A connection
that stops in the middle of the preface is closed by the HTTP/1.1 request-head timeout.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pounce.protocols.http.base import BaseHTTPProtocol
from pounce.protocols.http.fast_impl import FastHTTPProtocol
from pounce.protocols.http.h2_impl import H2Protocol
from pounce.protocols.http.h11_impl import H11Protocol
from pounce.protocols.utils import is_ssl

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _NegotiatingProtocol(BaseHTTPProtocol):
    """Mixed in before an HTTP/1.1 protocol class: hands HTTP/2 connections to ``H2Protocol``."""

    # Offered in the TLS handshake, in order of preference (read by ``Config.load``).
    alpn_protocols: ClassVar[list[str]] = ["h2", "http/1.1"]
    _preface = b""
    # Reported opened (events) once it is known to stay HTTP/1.1; H2Protocol reports its own.
    _announce_on_attach = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if is_ssl(transport):
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._hand_over(transport, b"")
                return
            super().connection_made(transport)
            self._announce()
            return
        super().connection_made(transport)
        # Only the first bytes of a cleartext connection are looked at; see the module docstring.
        setattr(self, "data_received", self._sniff_preface)

    def connection_lost(self, exc: Exception | None) -> None:
        self.__dict__.pop("data_received", None)  # drop the self-reference of the bound method
        super().connection_lost(exc)

    def _sniff_preface(self, data: bytes) -> None:
        seen = self._preface + data
        if len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            self._preface = seen  # Maybe HTTP/2: wait for the rest of the preface.
            return
        del self.__dict__["data_received"]
        self._preface = b""
        if seen.startswith(PREFACE):
            # Undo what the HTTP/1.1 side set up for this connection, then hand it over.
            self.connections.discard(self)
            self._cancel_header_timer()
            self._unset_keepalive_if_required()
            if self._drain_timer is not None:
                self._drain_timer.cancel()
                self._drain_timer = None
            self._hand_over(self.transport, seen)
        else:
            self._announce()
            self.data_received(seen)

    def _hand_over(self, transport: asyncio.BaseTransport, data: bytes) -> None:
        protocol = H2Protocol(self.config, self.server_state, self.app_state, _loop=self.loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)
        if self.draining:
            protocol.shutdown()


class FastOrH2Protocol(_NegotiatingProtocol, FastHTTPProtocol):
    """``--http2`` with ``--http auto``/``fast``."""


class H11OrH2Protocol(_NegotiatingProtocol, H11Protocol):
    """``--http2`` with ``--http h11``."""


def http2_variant(http1_class: type[asyncio.Protocol]) -> type[asyncio.Protocol] | None:
    """The ``--http2`` protocol serving HTTP/1.1 with ``http1_class``; None for classes we cannot extend."""
    if http1_class is FastHTTPProtocol:
        return FastOrH2Protocol
    if http1_class is H11Protocol:
        return H11OrH2Protocol
    if "h2" in (getattr(http1_class, "alpn_protocols", None) or ()):
        return http1_class  # It negotiates HTTP/2 itself.
    return None


__all__ = ["PREFACE", "FastOrH2Protocol", "H11OrH2Protocol", "http2_variant"]
