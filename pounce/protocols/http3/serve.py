"""Starting and stopping a worker's HTTP/3 listener (called from ``Server.startup``/``shutdown``)."""

from __future__ import annotations

import asyncio
import importlib.metadata
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
ZOOMIES_RECEIVE_BUFFER = 4 << 20
# As measured for issue 11 (tests/test_http3_zoomies.py, benchmarks/h3_interop.py).
ZOOMIES_WARNING = (
    "HTTP/3 backend zoomies: bengal-zoomies %s interoperates only with zoomies clients, not with "
    "browsers, curl or aioquic; use --http3-backend aioquic to serve those."
)


def make_backend(config: Config, worker_id: int = 0) -> QuicBackend:
    """The backend ``options.backend`` names ("auto" resolved to aioquic by ``resolve_http3``).

    ``worker_id``: this server's worker (0 on its own, 1 and up under a supervisor); the zoomies warning
    goes out from the first one only, so a server logs it once however many workers it has.
    """
    cfg = config.server_config
    options = cfg.http3
    assert options is not None
    connection_window = STREAM_WINDOW * min(cfg.h2_max_concurrent_streams, 64)
    if options.backend == "zoomies":
        from pounce.protocols.http3.zoomies_backend import ZoomiesBackend

        if worker_id <= 1:  # worker IDs are never reused, so a replaced or reloaded worker stays quiet
            logger.warning(ZOOMIES_WARNING, _zoomies_version())
        return ZoomiesBackend(
            certfile=options.certfile,
            keyfile=options.keyfile,
            password=options.password,
            idle_timeout=float(cfg.timeout_keep_alive),
            stream_window=STREAM_WINDOW,
            connection_window=connection_window,
        )
    from pounce.protocols.http3.aioquic_backend import AioquicBackend

    return AioquicBackend(
        certfile=options.certfile,
        keyfile=options.keyfile,
        password=options.password,
        idle_timeout=float(cfg.timeout_keep_alive),
        max_streams=cfg.h2_max_concurrent_streams,
        stream_window=STREAM_WINDOW,
        connection_window=connection_window,
        zero_rtt=options.zero_rtt,
        retry=options.retry,
        connect_protocol=carries_streams(cfg.ws_protocol_class),  # WebSockets on streams (RFC 9220)
    )


def _zoomies_version() -> str:
    try:
        return importlib.metadata.version("bengal-zoomies")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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
    backend = make_backend(config, server_state.event_bus.worker_id)
    if backend.name == "zoomies":
        # zoomies cannot survive one lost packet (see zoomies_backend): a larger receive buffer keeps a
        # burst from being dropped while the loop is busy (the kernel caps it at net.core.rmem_max).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ZOOMIES_RECEIVE_BUFFER)
    loop = asyncio.get_running_loop()

    def make_connection(endpoint: H3Endpoint, session: QuicSession, peer: Address) -> H3Protocol:
        return H3Protocol(config, server_state, app_state, endpoint, session, peer, loop)

    _, endpoint = await loop.create_datagram_endpoint(
        lambda: H3Endpoint(backend, make_connection, MAX_CONNECTIONS), sock=sock
    )
    logger.info("Serving HTTP/3 on udp %s:%d (QUIC backend %s)", host, endpoint.port, backend.name)
    return endpoint


__all__ = ["MAX_CONNECTIONS", "ZOOMIES_WARNING", "make_backend", "start_http3"]
