"""``--http auto``: Pounce's own parser. h11 stays available with ``--http h11``."""

from __future__ import annotations

from pounce.protocols.http.fast_impl import FastHTTPProtocol

AutoHTTPProtocol = FastHTTPProtocol

__all__ = ["AutoHTTPProtocol"]
