"""The ``--http3`` options, checked and resolved without importing any QUIC library.

``Config.load`` and the CLI both ask ``http3_problem`` first, so a combination that cannot work is one
clear usage error (exit code 2) before anything is bound.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys

BACKENDS = ("auto", "aioquic", "zoomies")
INSTALL_HINT = "pip install 'pounce-asgi[h3]'"
ZOOMIES_INSTALL_HINT = "pip install 'pounce-asgi[h3]' (bengal-zoomies installs on Python >= 3.14 only)"


@dataclasses.dataclass(frozen=True)
class HTTP3Options:
    """What a worker needs to serve HTTP/3 (``ServerConfig.http3``; None when ``--http3`` is off)."""

    backend: str  # resolved: "aioquic" or "zoomies" ("auto" is aioquic)
    port: int | None  # None: the port of the TLS listener
    zero_rtt: bool
    retry: bool
    certfile: str
    keyfile: str
    password: str | None


def http3_problem(
    backend: str, certfile: object, keyfile: object, zero_rtt: bool = False, retry: bool = False
) -> str | None:
    """Why ``--http3`` cannot work as configured, or None."""
    if backend not in BACKENDS:
        return f"--http3-backend must be one of {', '.join(BACKENDS)}, not {backend!r}."
    if not certfile or not keyfile:
        return "--http3 needs --ssl-certfile and --ssl-keyfile: QUIC carries its own TLS 1.3, read from those files."
    if backend == "zoomies":
        return _zoomies_problem(zero_rtt, retry)
    if importlib.util.find_spec("aioquic") is None:
        return f"--http3 needs the aioquic package: {INSTALL_HINT}"
    return None


def _zoomies_problem(zero_rtt: bool, retry: bool) -> str | None:
    if sys.version_info < (3, 14):
        return (
            "--http3-backend zoomies needs Python >= 3.14 (bengal-zoomies supports no older one); this is "
            f"Python {sys.version_info[0]}.{sys.version_info[1]}. Use --http3-backend aioquic (the default)."
        )
    if importlib.util.find_spec("zoomies") is None:
        return f"--http3-backend zoomies needs the bengal-zoomies package: {ZOOMIES_INSTALL_HINT}"
    # Neither exists server-side in bengal-zoomies 0.3: it sends no session tickets (so no 0-RTT), and
    # its Retry lives inside a connection Pounce would discard (see zoomies_backend).
    if zero_rtt:
        return "--http3-0rtt is not available with --http3-backend zoomies; use --http3-backend aioquic."
    if retry:
        return "--http3-retry is not available with --http3-backend zoomies; use --http3-backend aioquic."
    return None


def resolve_http3(
    port: int | None,
    zero_rtt: bool,
    retry: bool,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    password: str | None,
    backend: str = "auto",
) -> HTTP3Options:
    """The options of a configuration ``http3_problem`` found nothing wrong with."""
    resolved = "zoomies" if backend == "zoomies" else "aioquic"  # "auto" is aioquic
    return HTTP3Options(resolved, port, zero_rtt, retry, os.fspath(certfile), os.fspath(keyfile), password)


def alt_svc(port: int) -> tuple[bytes, bytes]:
    """RFC 7838 Alt-Svc for our HTTP/3 port, for every response over TCP (a day, as browsers cache it)."""
    return (b"alt-svc", b'h3=":%d"; ma=86400' % port)


__all__ = ["BACKENDS", "HTTP3Options", "alt_svc", "http3_problem", "resolve_http3"]
