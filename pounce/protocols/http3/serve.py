"""Starting and stopping a worker's HTTP/3 listener (called from ``Server.startup``/``shutdown``)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import Any

from pounce.config import Config
from pounce.protocols.http.multiplexed import carries_streams
from pounce.protocols.http3.endpoint import H3Endpoint
from pounce.protocols.http3.seam import Address, QuicBackend, QuicSession
from pounce.server import ServerState

logger = logging.getLogger("uvicorn.error")

# Connections one worker holds at most (each costs its TLS state and windows); past it, refused.
MAX_CONNECTIONS = 4096
# Receive windows (see aioquic_backend): unread body a stream, and a connection, may hold.
STREAM_WINDOW = 262144


def make_backend(config: Config) -> QuicBackend:
    cfg = config.server_config
    options = cfg.http3
    assert options is not None
    from pounce.protocols.http3.aioquic_backend import AioquicBackend

    return AioquicBackend(
        certfile=options.certfile,
        keyfile=options.keyfile,
        password=options.password,
        idle_timeout=float(cfg.timeout_keep_alive),
        max_streams=cfg.h2_max_concurrent_streams,
        stream_window=STREAM_WINDOW,
        connection_window=STREAM_WINDOW * min(cfg.h2_max_concurrent_streams, 64),
        zero_rtt=options.zero_rtt,
        retry=options.retry,
        connect_protocol=carries_streams(cfg.ws_protocol_class),  # WebSockets on streams (RFC 9220)
    )


async def start_http3(
    config: Config,
    server_state: ServerState,
    app_state: dict[str, Any],
    listeners: Sequence[socket.SocketType],
    shared: bool,
) -> H3Endpoint:
    """Bind the UDP socket next to the TLS listener and serve HTTP/3 on it.

    ``shared``: other workers bind the same port (process or thread workers), so SO_REUSEPORT, and the
    kernel spreads clients over the workers by address (see ``endpoint``).
    """
    from pounce.protocols.http3.protocol import H3Protocol

    cfg = config.server_config
    options = cfg.http3
    assert options is not None
    listener = listeners[0].getsockname() if listeners else (cfg.host, cfg.port)
    host = str(listener[0]) if listeners else cfg.host
    port = options.port if options.port is not None else int(listener[1])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    backend = make_backend(config)
    loop = asyncio.get_running_loop()

    def make_connection(endpoint: H3Endpoint, session: QuicSession, peer: Address) -> H3Protocol:
        return H3Protocol(config, server_state, app_state, endpoint, session, peer, loop)

    _, endpoint = await loop.create_datagram_endpoint(
        lambda: H3Endpoint(backend, make_connection, MAX_CONNECTIONS), sock=sock
    )
    logger.info("Serving HTTP/3 on udp %s:%d (QUIC backend %s)", host, endpoint.port, backend.name)
    return endpoint


__all__ = ["MAX_CONNECTIONS", "make_backend", "start_http3"]
