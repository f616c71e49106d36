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


def get_remote_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The peer as ``(host, port)``, or None for UNIX sockets and unknown peers."""
    return _addr(transport.get_extra_info("peername"))


def get_local_addr(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """Our end as ``(host, port)``, or None where the socket has no such address."""
    return _addr(transport.get_extra_info("sockname"))


def is_ssl(transport: asyncio.BaseTransport) -> bool:
    return bool(transport.get_extra_info("sslcontext"))


def get_client_addr(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return ""
    return "%s:%d" % (client[0], client[1])


def get_path_with_query_string(scope: Scope) -> str:
    path_with_query_string = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path_with_query_string = "{}?{}".format(path_with_query_string, scope["query_string"].decode("ascii"))
    return path_with_query_string
