"""Honour X-Forwarded-For / X-Forwarded-Proto, but only from trusted proxies.

Rewrites ``scope["client"]`` and ``scope["scheme"]`` so the application sees the real
client rather than the proxy in front of it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable
from typing import Union

from pounce._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

_IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_VALID_PROTOS = frozenset({"http", "https", "ws", "wss"})

# Longest DNS name; anything longer cannot be a trusted host and is not worth caching.
_MAX_CACHED_HOST = 253


class ProxyHeadersMiddleware:
    def __init__(self, app: ASGI3Application, trusted_hosts: list[str] | str = "127.0.0.1") -> None:
        self.app = app
        self.trusted_hosts = _TrustedHosts(trusted_hosts)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "lifespan":
            self.rewrite(scope)
        return await self.app(scope, receive, send)

    def rewrite(self, scope: Scope) -> None:
        """Apply X-Forwarded-Proto / X-Forwarded-For to ``scope`` when the peer is a trusted proxy."""
        client_addr = scope.get("client")
        client_host = client_addr[0] if client_addr else None
        if client_host not in self.trusted_hosts:
            return

        proto_value: bytes | None = None
        for_values: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto_value = value  # last one wins, as a proxy chain would overwrite it
            elif name == b"x-forwarded-for":
                for_values.append(value)

        if proto_value is not None:
            proto = proto_value.decode("latin1").strip()
            if proto in _VALID_PROTOS:
                if scope["type"] == "websocket":
                    # A proxy talking plain HTTP(S) to us still fronts a WebSocket.
                    scope["scheme"] = proto.replace("http", "ws")
                else:
                    scope["scheme"] = proto

        if for_values:
            # Repeated headers are equivalent to one comma-joined header (RFC 9110 5.3).
            forwarded_for = b", ".join(for_values).decode("latin1")
            host, port = self.trusted_hosts.get_trusted_client_address(forwarded_for)
            # An empty header yields "", which is not a usable client address.
            if host:
                scope["client"] = (host, port)


class ServerProxyHeaders(ProxyHeadersMiddleware):
    """The proxy-headers layer the server itself adds (``--proxy-headers``, on by default).

    ``__call__`` is a plain function returning the app's awaitable: it runs on every request and adds
    no coroutine frame to the request's task. Only the server uses it, after the app's interface was
    detected; the public ``ProxyHeadersMiddleware`` stays ``async def`` so apps that wrap themselves
    in it are still recognised as ASGI 3.
    """

    def __call__(  # type: ignore[override]
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            self.rewrite(scope)
        return self.app(scope, receive, send)


def _parse_raw_hosts(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host``, ``ipv4:port`` or ``[ipv6]:port`` into (host, port); port 0 when absent.

    Malformed values come back whole with port 0, so that the trust check sees exactly
    what was sent rather than a normalised guess.
    """
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host = value[1:end]
        rest = value[end + 1 :]
        if not rest:
            return host, 0
        if not rest.startswith(":"):
            return value, 0
        try:
            return host, int(rest[1:])
        except ValueError:
            return host, 0

    # Exactly one colon: IPv4/hostname with a port. More than one is a bare IPv6 address.
    if value.count(":") == 1:
        host, port = value.rsplit(":", 1)
        try:
            return host, int(port)
        except ValueError:
            return value, 0

    return value, 0


class _TrustedHosts:
    """Set of trusted proxies: IP addresses, CIDR networks, ``*``, and plain literals.

    Literals cover non-IP peers such as a unix socket path. Addresses are compared as
    ``ipaddress`` objects because one IPv6 address has many spellings.
    """

    def __init__(self, trusted_hosts: list[str] | str) -> None:
        self.always_trust: bool = trusted_hosts in ("*", ["*"])

        self.trusted_literals: set[str] = set()
        self.trusted_hosts: set[_IPAddress] = set()
        self.trusted_networks: set[_IPNetwork] = set()

        if not self.always_trust:
            if isinstance(trusted_hosts, str):
                trusted_hosts = _parse_raw_hosts(trusted_hosts)
            for host in trusted_hosts:
                # Anything that does not parse as an IP/network is kept as a literal,
                # matching Uvicorn (so a unix socket path can be trusted).
                if "/" in host:
                    try:
                        self.trusted_networks.add(ipaddress.ip_network(host))
                    except ValueError:
                        self.trusted_literals.add(host)
                else:
                    try:
                        self.trusted_hosts.add(ipaddress.ip_address(host))
                    except ValueError:
                        self.trusted_literals.add(host)

        # Network membership is a linear scan; the same few proxy addresses repeat on every request.
        self._trusts = functools.lru_cache(maxsize=4096)(self._compute_trust)

    def __contains__(self, host: str | None) -> bool:
        if self.always_trust:
            return True
        if not host:
            return False
        if len(host) > _MAX_CACHED_HOST:
            return self._compute_trust(host)
        return self._trusts(host)

    def _compute_trust(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.trusted_literals
        return ip in self.trusted_hosts or any(ip in net for net in self.trusted_networks)

    def get_trusted_client_address(self, x_forwarded_for: str) -> tuple[str, int]:
        """Return the client address from an X-Forwarded-For value.

        Each proxy appends the address it received from, so walk right to left and
        stop at the first hop we do not trust: everything left of it could be forged.
        """
        hosts = _parse_raw_hosts(x_forwarded_for)

        if self.always_trust:
            return _parse_host_port(hosts[0])

        for host_port in reversed(hosts):
            host, port = _parse_host_port(host_port)
            if host not in self:
                return host, port

        # Every hop is trusted: the original client was itself a trusted proxy.
        return _parse_host_port(hosts[0])
