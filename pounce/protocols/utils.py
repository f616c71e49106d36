"""Helpers every protocol needs to describe its connection in the ASGI scope."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from pounce._types import Scope


class ClientDisconnected(OSError):
    """Raised by ``send`` when the application writes to a connection the peer closed."""


def _addr(info: Any) -> tuple[str, int] | None:
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def _extra_or_socket(transport: asyncio.BaseTransport, key: str, method: str) -> Any:
    info = transport.get_extra_info(key)
    if info is None:
        # Some transports (and test doubles) expose only the socket; ask it, tolerating a closed one.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                info = getattr(sock, method)()
            except OSError:
                return None
    return info


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The peer as ``(host, port)``, or None for UNIX sockets and unknown peers."""
    return _addr(_extra_or_socket(transport, "peername", "getpeername"))


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    """Our end as ``(host, port)``; ``(path, None)`` for a UNIX socket, as the ASGI spec has it."""
    info = _extra_or_socket(transport, "sockname", "getsockname")
    if isinstance(info, str):
        return (info, None)
    return _addr(info)


def is_ssl(transport: asyncio.BaseTransport) -> bool:
    return bool(transport.get_extra_info("sslcontext"))


def get_client_addr(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return ""
    return "%s:%d" % (client[0], client[1])


def get_path_with_query_string(scope: Scope) -> str:
    # The query is ASCII on HTTP/1.1 (the parser rejects anything else) but HTTP/2 carries any byte:
    # show a stray one escaped rather than fail the request over its log line.
    path_with_query_string = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path_with_query_string = "{}?{}".format(path_with_query_string, scope["query_string"].decode("ascii", "backslashreplace"))
    return path_with_query_string
