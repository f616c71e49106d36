"""The UDP endpoint: one socket, many QUIC connections, datagrams routed by connection ID.

Everything that reaches the socket is read here first, before any backend sees it, so what costs us
nothing to drop is dropped here: a datagram for a connection we do not know is only worth a backend's
work if it is a valid Initial (long header, a version we speak, the Initial type, a destination
connection ID of at least 8 bytes, padded to 1200 bytes as RFC 9000 §14.1 requires), and only while
we take connections and have room for one more (``max_connections``); a full or stopping endpoint
answers CONNECTION_REFUSED instead.

Routing reads only the version-independent parts of a packet (RFC 8999): a long header names its
destination connection ID with a length, a short header does not, so the IDs we issue all have the
backend's ``connection_id_length``.

With several workers on one UDP port (SO_REUSEPORT), the kernel picks a socket by the datagram's
4-tuple: a connection stays with the worker that accepted it as long as the client's address does not
change (a client that migrates, or a NAT rebinding, lands on another worker, which drops it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from pounce.protocols.http3.seam import Address, InitialPacket, QuicBackend, QuicSession

logger = logging.getLogger("uvicorn.error")

MIN_INITIAL_SIZE = 1200  # RFC 9000 §14.1
MIN_INITIAL_CID = 8  # RFC 9000 §7.2


class EndpointConnection(Protocol):
    """What the endpoint needs of a connection (``H3Protocol``)."""

    def datagram_received(self, data: bytes, addr: Address) -> None: ...

    def received(self) -> None:
        """Act on what the session took in before the connection existed (its first datagram)."""

    def abort(self) -> None: ...


class H3Endpoint(asyncio.DatagramProtocol):
    """The ``asyncio.DatagramProtocol`` of the HTTP/3 listener."""

    def __init__(
        self,
        backend: QuicBackend,
        make_connection: Callable[[H3Endpoint, QuicSession, Address], EndpointConnection],
        max_connections: int,
    ) -> None:
        self.backend = backend
        self._make_connection = make_connection
        self.max_connections = max_connections
        self._cid_length = backend.connection_id_length
        # Connection ID -> connection; a connection has several (the client's first choice, ours).
        self.routes: dict[bytes, EndpointConnection] = {}
        self.live: set[EndpointConnection] = set()
        self.accepting = True
        self.transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_event_loop()
        self._closed = asyncio.Event()
        self.dropped = 0  # datagrams dropped unread (tests and diagnostics read it)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for datagrams we sent (a client gone away): its connection times out on its own.
        logger.debug("HTTP/3 socket error: %s", exc)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def sendto(self, data: bytes, addr: Address) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        size = len(data)
        if not size:
            return
        first = data[0]
        if first & 0x80:
            # Long header: flags, version (4 bytes), DCID length, DCID, SCID length, SCID.
            if size < 7:
                self.dropped += 1
                return
            cid_end = 6 + data[5]
            connection = self.routes.get(data[6:cid_end])
            if connection is None:
                self._unknown_long(data, addr, first, cid_end)
                return
        else:
            connection = self.routes.get(data[1 : 1 + self._cid_length])
            if connection is None:
                # A short header for no connection of ours (one we forgot, or noise): nothing to do.
                self.dropped += 1
                return
        connection.datagram_received(data, addr)

    def _unknown_long(self, data: bytes, addr: Address, first: int, cid_end: int) -> None:
        """A long-header packet for no known connection: maybe a new one."""
        size = len(data)
        # RFC 9000 §14.1: an Initial (and what a Version Negotiation answers) fills 1200 bytes, so
        # nothing we send back to an unvalidated address is bigger than what it sent.
        if size < MIN_INITIAL_SIZE or cid_end >= size:
            self.dropped += 1
            return
        version = int.from_bytes(data[1:5], "big")
        scid_end = cid_end + 1 + data[cid_end]
        if version == 0 or scid_end > size:
            self.dropped += 1  # a Version Negotiation packet is never answered (RFC 9000 §6.1)
            return
        backend = self.backend
        packet = InitialPacket(version, data[6:cid_end], data[cid_end + 1 : scid_end])
        if not backend.supports_version(version):
            self.sendto(backend.version_negotiation(packet), addr)
            return
        if not backend.is_initial(first, version) or cid_end - 6 < MIN_INITIAL_CID:
            self.dropped += 1
            return
        if not self.accepting or len(self.live) >= self.max_connections:
            if self.accepting:
                logger.warning("HTTP/3 connection refused: %d connections is the limit.", self.max_connections)
            refusal = backend.refuse(packet)
            if refusal is not None:
                self.sendto(refusal, addr)
            return
        result = backend.accept(data, packet, addr, self.loop.time())
        if result is None:
            self.dropped += 1
            return
        if isinstance(result, bytes):
            self.sendto(result, addr)  # Retry, or a close for an invalid token
            return
        result.receive(data, addr, self.loop.time())
        if not result.opened():
            # Nothing in it decrypted (Initial keys derive from the client's connection ID, so anyone can
            # send one, but not a valid one by accident): no connection, nothing sent back.
            self.dropped += 1
            return
        connection = self._make_connection(self, result, addr)
        self.live.add(connection)
        for connection_id in result.connection_ids():
            self.routes[connection_id] = connection
        connection.received()

    # Called by connections
    def route(self, connection_id: bytes, connection: EndpointConnection) -> None:
        self.routes[connection_id] = connection

    def unroute(self, connection_id: bytes) -> None:
        self.routes.pop(connection_id, None)

    def connection_ended(self, connection: EndpointConnection) -> None:
        self.live.discard(connection)
        for connection_id in [cid for cid, owner in self.routes.items() if owner is connection]:
            del self.routes[connection_id]

    # Lifecycle (the server's startup and shutdown)
    def stop_accepting(self) -> None:
        """New connections are refused from now on; those in flight finish (their datagrams still come)."""
        self.accepting = False

    async def close(self) -> None:
        """Close the socket: once the connections are done, or when the server gives up on them."""
        self.accepting = False
        for connection in list(self.live):
            connection.abort()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
            await self._closed.wait()


__all__ = ["H3Endpoint"]
