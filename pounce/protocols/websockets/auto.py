"""``--ws auto``: the wsproto implementation when wsproto is installed, else no WebSocket support.

With ``None`` the HTTP protocols answer upgrade requests themselves (see the HTTP protocols).
Pounce has a single WebSocket implementation, so unlike Uvicorn there is nothing to rank.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

AutoWebSocketsProtocol: Callable[..., asyncio.Protocol] | None
try:
    import wsproto  # noqa: F401
except ImportError:  # pragma: no cover - exercised by the "ws extra missing" tests in a subprocess
    AutoWebSocketsProtocol = None
else:
    from pounce.protocols.websockets.wsproto_impl import WSProtocol

    AutoWebSocketsProtocol = WSProtocol

__all__ = ["AutoWebSocketsProtocol"]
